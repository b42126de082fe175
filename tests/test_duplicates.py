"""lookalike duplicates: exact / near / similar groups, keepers, --against, outputs, moves.

File names say the expected answer: ``a_*`` are copies of one picture, ``b_*`` of another,
``c_alone`` has no duplicate.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
from pathlib import Path

import imagegen
import numpy as np
import pytest
from PIL import Image

from lookalike import Collection
from lookalike.cli.entry import main
from lookalike.dedup import actions as dedup_actions


def _make_photos(folder: Path) -> Path:
    a = imagegen.photo_like(1)
    imagegen.save(a, folder / "a_orig.png")
    shutil.copyfile(folder / "a_orig.png", folder / "a_copy.png")  # same bytes
    imagegen.save(a, folder / "a_lossless.png", compress_level=1)  # same pixels, other bytes
    imagegen.save(a, folder / "a_q30.jpg", quality=30)
    imagegen.save(a.resize((160, 120), Image.Resampling.LANCZOS), folder / "a_half.jpg")
    imagegen.save(a.transpose(Image.Transpose.FLIP_LEFT_RIGHT), folder / "a_flip.jpg", quality=95)
    b = imagegen.photo_like(2)
    imagegen.save(b, folder / "b_orig.png")
    edits = imagegen.near_duplicates(b)
    imagegen.save(edits["crop5"], folder / "b_crop5.jpg", quality=95)
    imagegen.save(edits["bright"], folder / "b_bright.jpg", quality=95)
    imagegen.save(imagegen.photo_like(3), folder / "c_alone.png")
    return folder


@pytest.fixture
def indexed(tmp_path: Path) -> tuple[Path, Path]:
    photos = _make_photos(tmp_path / "photos")
    coll = tmp_path / "coll"
    with Collection.open(coll, "phash") as c:
        assert c.add(photos, workers=0).indexed == 10
    return coll, photos


def _names(group) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(Path(m.path).name for m in group.members)


def test_exact_groups_identical_pixels_or_bytes_only(indexed: tuple[Path, Path]) -> None:
    coll, _ = indexed
    with Collection.open(coll) as c:
        groups = c.duplicates(level="exact")
    assert [_names(g) for g in groups] == [["a_copy.png", "a_lossless.png", "a_orig.png"]]
    assert all(m.score == 1.0 for m in groups[0].duplicates)


def test_near_groups_catch_edited_and_flipped_copies(indexed: tuple[Path, Path]) -> None:
    coll, _ = indexed
    with Collection.open(coll) as c:
        groups = c.duplicates(level="near")
        phash_only = c.duplicates(level="near", hashes="phash")
    assert [_names(g) for g in groups] == [
        ["a_copy.png", "a_flip.jpg", "a_half.jpg", "a_lossless.png", "a_orig.png", "a_q30.jpg"],
        ["b_bright.jpg", "b_crop5.jpg", "b_orig.png"],
    ]
    # phash alone misses the mirrored copy; the mirrored phash catches it
    assert "a_flip.jpg" not in _names(phash_only[0])
    assert (coll / "dupes" / "hashes-v3.npy").is_file()  # the extra hashes are cached
    for g in groups:
        assert all(0.85 <= m.score <= 1.0 for m in g.duplicates)
        scores = {Path(m.path).name: m.score for m in g.duplicates}
        if "a_copy.png" in scores:
            assert scores["a_copy.png"] == 1.0


def test_keeper_highest_resolution_then_largest_then_oldest(tmp_path: Path) -> None:
    photos = tmp_path / "k"
    img = imagegen.photo_like(7)
    imagegen.save(img.resize((160, 120)), photos / "small.png")
    imagegen.save(img, photos / "big_q80.jpg", quality=80)
    imagegen.save(img, photos / "big.png")  # same resolution, larger file: the keeper
    other = imagegen.photo_like(8)
    imagegen.save(other, photos / "old.png")
    shutil.copyfile(photos / "old.png", photos / "new.png")
    os.utime(photos / "old.png", (1_000_000_000, 1_000_000_000))
    with Collection.open(tmp_path / "c", "phash") as c:
        c.add(photos, workers=0)
        groups = {Path(g.keeper.path).name: g for g in c.duplicates("near")}
    assert set(groups) == {"big.png", "old.png"}
    assert [Path(m.path).name for m in groups["big.png"].duplicates] == ["big_q80.jpg", "small.png"]
    assert [Path(m.path).name for m in groups["old.png"].duplicates] == ["new.png"]


def test_against_lists_only_items_duplicated_in_the_other_collection(tmp_path: Path) -> None:
    train = tmp_path / "train"
    test = tmp_path / "test"
    for i in range(4):
        imagegen.save(imagegen.photo_like(20 + i), train / f"train{i}.png")
    imagegen.save(imagegen.photo_like(21), test / "leak_of_train1.jpg", quality=90)
    imagegen.save(imagegen.photo_like(30), test / "fresh.png")
    imagegen.save(imagegen.photo_like(31), test / "fresh_twin.png")
    shutil.copyfile(test / "fresh_twin.png", test / "fresh_twin_copy.png")  # a test-only dup
    with Collection.open(tmp_path / "ctrain", "phash") as ct:
        ct.add(train, workers=0)
    with Collection.open(tmp_path / "ctest", "phash") as cs:
        cs.add(test, workers=0)
    with Collection.open(tmp_path / "ctest") as cs, Collection.open(tmp_path / "ctrain") as ct:
        for level in ("near", "exact"):
            groups = cs.duplicates(level=level, against=ct)
            if level == "exact":
                assert groups == []
                continue
            assert len(groups) == 1
            (g,) = groups
            assert Path(g.keeper.path).name == "train1.png" and g.keeper.against
            assert [Path(m.path).name for m in g.duplicates] == ["leak_of_train1.jpg"]
    code = main(
        [
            "duplicates",
            "--collection",
            str(tmp_path / "ctest"),
            "--against",
            str(tmp_path / "ctrain"),
            "--move-to",
            str(tmp_path / "quarantine"),
        ]
    )
    assert code == 0
    assert not (tmp_path / "quarantine").exists()  # a dry run moves nothing


def test_cli_out_csv_and_json(indexed: tuple[Path, Path], tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    coll, _ = indexed
    out_csv = tmp_path / "groups.csv"
    out_json = tmp_path / "groups.json"
    assert main(["duplicates", "--collection", str(coll), "--out", str(out_csv)]) == 0
    assert main(["duplicates", "--collection", str(coll), "--out", str(out_json)]) == 0
    assert "2 groups, 7 duplicates (level near)" in capsys.readouterr().out
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 9
    assert {r["role"] for r in rows if r["group"] == "1"} == {"keeper", "duplicate"}
    assert sum(r["role"] == "keeper" for r in rows) == 2
    data = json.loads(out_json.read_text())
    assert [1 + len(g["duplicates"]) for g in data] == [6, 3]
    assert data[0]["keeper"]["path"].endswith("a_lossless.png")  # largest file at 320x240
    assert all(0 < d["score"] <= 1 for g in data for d in g["duplicates"])
    code = main(["duplicates", "--collection", str(coll), "--out", str(tmp_path / "g.txt")])
    assert code == 2
    assert "use a .csv or .json" in capsys.readouterr().err


def test_html_report_and_matplotlib_grid(indexed: tuple[Path, Path], tmp_path: Path) -> None:
    coll, _ = indexed
    report = tmp_path / "report.html"
    assert main(["duplicates", "--collection", str(coll), "--html", str(report)]) == 0
    text = report.read_text()
    assert text.count("data:image/jpeg;base64,") == 9  # every member has a thumbnail
    assert text.count('<section class="group"') == 2
    assert "a_flip.jpg" in text and "score" in text
    from lookalike.dedup.report import plot_group

    with Collection.open(coll) as c:
        group = c.duplicates("near")[1]
    png = tmp_path / "group.png"
    plot_group(group, png)
    with Image.open(png) as im:
        assert im.size[0] > 300
    cli_png = tmp_path / "cli.png"
    assert main(["duplicates", "--collection", str(coll), "--plot", "1", str(cli_png)]) == 0
    assert cli_png.stat().st_size > 1000
    assert main(["duplicates", "--collection", str(coll), "--plot", "9", str(cli_png)]) == 2


def test_bad_levels_and_thresholds_are_clear_errors(indexed: tuple[Path, Path], capsys) -> None:  # type: ignore[no-untyped-def]
    coll, _ = indexed
    assert main(["duplicates", "--collection", str(coll), "--level", "similar"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs embedding vectors" in err and "phash" in err
    assert main(["duplicates", "--collection", str(coll), "--threshold", "70"]) == 2
    assert "0..64" in capsys.readouterr().err
    args = ["duplicates", "--collection", str(coll), "--hashes", "phash", "--threshold", "40"]
    assert main(args) == 2
    assert "0..32" in capsys.readouterr().err
    args = ["duplicates", "--collection", str(coll), "--level", "exact", "--threshold", "3"]
    assert main(args) == 2
    assert main(["duplicates", "--collection", str(coll), "--apply"]) == 2
    assert "--move-to" in capsys.readouterr().err


def test_similar_level_on_vectors(tmp_path: Path) -> None:
    vecs = np.array([[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0, 0.98, 0.2], [0, 0, 1]])
    with Collection.open_vectors(tmp_path / "v", 3) as c:
        c.add_vectors(["x1", "x2", "y1", "y2", "z"], vecs)
        groups = c.duplicates(level="similar", threshold=0.95)
        assert sorted(sorted(m.id for m in g.members) for g in groups) == [
            ["x1", "x2"],
            ["y1", "y2"],
        ]
        for g in groups:
            (d,) = g.duplicates
            assert 0.95 <= d.score <= 1.0
        assert c.duplicates(level="similar", threshold=0.999) == []
        with pytest.raises(Exception, match="no perceptual hashes"):
            c.duplicates(level="near")


def _move_args(coll: Path, target: Path, *extra: str) -> list[str]:
    return ["duplicates", "--collection", str(coll), "--move-to", str(target), *extra]


def test_dry_run_then_apply_then_undo(indexed: tuple[Path, Path], tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    coll, photos = indexed
    before = sorted(p.name for p in photos.iterdir())
    target = tmp_path / "moved"
    assert main(_move_args(coll, target)) == 0
    out = capsys.readouterr().out
    assert "dry run: would move 7 files" in out and "nothing was moved" in out
    assert sorted(p.name for p in photos.iterdir()) == before and not target.exists()

    assert main(_move_args(coll, target, "--apply")) == 0
    out = capsys.readouterr().out
    assert "moved 7, already moved 0, skipped 0" in out
    assert sorted(p.name for p in photos.iterdir()) == [
        "a_lossless.png",
        "b_orig.png",
        "c_alone.png",
    ]
    manifest = target / "lookalike-undo.json"
    data = json.loads(manifest.read_text())
    assert len(data["moves"]) == 7
    assert all(Path(m["dest"]).is_file() and not Path(m["src"]).exists() for m in data["moves"])

    assert main(["duplicates", "--undo", str(manifest)]) == 0
    assert "restored 7" in capsys.readouterr().out
    assert sorted(p.name for p in photos.iterdir()) == before


def test_interrupted_apply_resumes_and_undo_stays_valid(
    indexed: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    coll, photos = indexed
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    target = tmp_path / "moved"
    real = dedup_actions.move_file
    calls = {"n": 0}

    def flaky(src: str, dest: str, sha: str | None = None) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real(src, dest, sha)

    monkeypatch.setattr(dedup_actions, "move_file", flaky)
    assert main(_move_args(coll, target, "--apply")) == 130
    assert len(json.loads((target / "lookalike-undo.json").read_text())["moves"]) == 7
    assert len(list(photos.iterdir())) == 8  # two moved before the interruption
    monkeypatch.setattr(dedup_actions, "move_file", real)
    assert main(_move_args(coll, target, "--apply")) == 0
    assert "moved 5, already moved 2, skipped 0" in capsys.readouterr().out
    assert main(["duplicates", "--undo", str(target / "lookalike-undo.json")]) == 0
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


def test_changed_file_is_skipped_and_reported(
    indexed: tuple[Path, Path], tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    coll, photos = indexed
    imagegen.save(imagegen.photo_like(1), photos / "a_q30.jpg", quality=55)  # edited since
    target = tmp_path / "moved"
    assert main(_move_args(coll, target, "--apply")) == 1
    out = capsys.readouterr().out
    assert "moved 6, already moved 0, skipped 1" in out
    assert "a_q30.jpg: changed since indexing" in out
    assert (photos / "a_q30.jpg").is_file()


def test_cross_filesystem_move_copies_verifies_then_removes(
    indexed: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    coll, photos = indexed
    original = (photos / "b_crop5.jpg").read_bytes()

    def no_rename(src: str, dest: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(dedup_actions.os, "rename", no_rename)
    target = tmp_path / "other-fs"
    assert main(_move_args(coll, target, "--apply")) == 0
    moved = target / "group-00002" / "b_crop5.jpg"
    assert moved.read_bytes() == original and not (photos / "b_crop5.jpg").exists()
    assert not list(target.rglob("*.part"))

    # interrupted after the verified copy and the original's removal, before the copy's
    # rename: both a re-run and an undo finish from the verified .part
    monkeypatch.undo()
    manifest = str(target / "lookalike-undo.json")
    assert main(["duplicates", "--undo", manifest]) == 0
    part = Path(str(moved) + ".part")
    shutil.copy2(photos / "b_crop5.jpg", part)
    (photos / "b_crop5.jpg").unlink()
    assert main(["duplicates", "--undo", manifest]) == 0
    assert (photos / "b_crop5.jpg").read_bytes() == original and not part.exists()
    shutil.copy2(photos / "b_crop5.jpg", part)
    (photos / "b_crop5.jpg").unlink()
    dedup_actions_report = dedup_actions.apply_moves(
        [m for m in _plan(coll, target) if m.src.endswith("b_crop5.jpg")], target, str(coll)
    )
    assert len(dedup_actions_report.moved) == 1
    assert not (photos / "b_crop5.jpg").exists() and moved.read_bytes() == original
    assert not part.exists() and not list(target.rglob("b_crop5-*"))


def _plan(coll: Path, target: Path) -> list[dedup_actions.Move]:
    with Collection.open(coll) as c:
        return dedup_actions.plan_moves(c.duplicates("near"), target)


def test_similar_against_needs_the_same_model(tmp_path: Path) -> None:
    with Collection.open_vectors(tmp_path / "train", 3) as train:
        train.add_vectors(["t1", "t2"], np.array([[1, 0, 0], [0, 1, 0]]))
    with Collection.open_vectors(tmp_path / "test", 3) as test:
        test.add_vectors(["leak", "new"], np.array([[0.99, 0.05, 0], [0, 0, 1]]))
    with Collection.open_vectors(tmp_path / "other", 3, name="another-model") as other:
        other.add_vectors(["o"], np.array([[1, 0, 0]]))
    with (
        Collection.open(tmp_path / "test") as test,
        Collection.open(tmp_path / "train") as train,
        Collection.open(tmp_path / "other") as other,
    ):
        (g,) = test.duplicates("similar", 0.95, against=train)
        assert g.keeper.id == "t1" and [m.id for m in g.duplicates] == ["leak"]
        with pytest.raises(Exception, match="same model"):
            test.duplicates("similar", 0.95, against=other)


def _all_files(*folders: Path) -> list[bytes]:
    return sorted(
        p.read_bytes()
        for folder in folders
        for p in folder.rglob("*")
        if p.is_file() and p.name != "lookalike-undo.json"
    )


def test_second_apply_into_the_same_folder_deletes_nothing_and_undo_restores_all(
    indexed: tuple[Path, Path], tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    coll, photos = indexed
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    target = tmp_path / "moved"
    assert main(_move_args(coll, target, "--apply")) == 0
    manifest = target / "lookalike-undo.json"
    (first,) = [
        m for m in json.loads(manifest.read_text())["moves"] if m["src"].endswith("a_copy.png")
    ]
    # the user puts the file back by hand (same bytes, same mtime): the destination the plan
    # names for it already holds identical bytes
    shutil.copy2(first["dest"], first["src"])
    files = _all_files(photos, target)
    capsys.readouterr()
    assert main(_move_args(coll, target, "--apply")) == 0
    assert "moved 1, already moved 6, skipped 0" in capsys.readouterr().out
    assert _all_files(photos, target) == files  # nothing deleted
    assert not Path(first["src"]).exists()
    fresh = Path(first["dest"]).with_name("a_copy-1.png")
    assert fresh.read_bytes() == Path(first["dest"]).read_bytes() == before["a_copy.png"]
    moves = json.loads(manifest.read_text())["moves"]
    assert len(moves) == 8 and {m["dest"] for m in moves} >= {first["dest"], str(fresh)}

    # a third run finds everything moved and changes nothing
    assert main(_move_args(coll, target, "--apply")) == 0
    assert "moved 0, already moved 7, skipped 0" in capsys.readouterr().out
    assert _all_files(photos, target) == files

    assert main(["duplicates", "--undo", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "restored 8, not moved 0" in out
    assert "a_copy.png existed: restored as" in out
    assert not [p for p in target.rglob("*") if p.is_file() and p.name != manifest.name]
    after = {p.name: p.read_bytes() for p in photos.iterdir()}
    assert after == {**before, "a_copy-1.png": before["a_copy.png"]}  # every moved file back


def test_a_taken_destination_gets_a_fresh_name(
    indexed: tuple[Path, Path], tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    coll, photos = indexed
    target = tmp_path / "moved"
    plan = {Path(m.src).name: Path(m.dest) for m in _plan(coll, target)}
    taken = plan["b_crop5.jpg"]
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"someone else's file")
    (taken.parent / "b_crop5-1.jpg").write_bytes(b"and another")
    original = (photos / "b_crop5.jpg").read_bytes()
    assert main(_move_args(coll, target, "--apply")) == 0
    assert "moved 7, already moved 0, skipped 0" in capsys.readouterr().out
    assert taken.read_bytes() == b"someone else's file"
    assert (taken.parent / "b_crop5-2.jpg").read_bytes() == original
    assert main(["duplicates", "--undo", str(target / "lookalike-undo.json")]) == 0
    assert (photos / "b_crop5.jpg").read_bytes() == original
    assert taken.read_bytes() == b"someone else's file"  # not ours: left alone
