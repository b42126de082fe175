"""Incremental re-indexing and crash safety (kill -9 at the worst moments)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike import Collection


def _open(coll: Path) -> Collection:
    return Collection.open(coll, "phash")


def test_rerun_embeds_nothing(photos: Path, tmp_path: Path) -> None:
    with _open(tmp_path / "c") as c:
        assert c.add(photos, workers=0).indexed == 60
        report = c.add(photos, workers=0)
        assert report.to_dict() == {
            "indexed": 0,
            "unchanged": 60,
            "renamed": 0,
            "removed": 0,
            "skipped": 0,
        }
        assert len(c) == 60


def test_touched_file_with_same_content_is_not_reembedded(photos: Path, tmp_path: Path) -> None:
    f = next(photos.rglob("*.jpg"))
    with _open(tmp_path / "c") as c:
        c.add(photos, workers=0)
        slot_before = c.catalog.by_path(str(f.resolve())).slot  # type: ignore[union-attr]
        os.utime(f, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
        report = c.add(photos, workers=0)
        assert report.indexed == 0 and report.unchanged == 60
        item = c.catalog.by_path(str(f.resolve()))
        assert item is not None and item.slot == slot_before
        assert item.mtime_ns == f.stat().st_mtime_ns  # stat refreshed: next run skips the hash


def test_changed_file_is_reembedded(photos: Path, tmp_path: Path) -> None:
    hat = sorted((photos / "hat").glob("*.jpg"))[0]
    shoe = sorted((photos / "shoes").glob("*.jpg"))[0]
    with _open(tmp_path / "c") as c:
        c.add(photos, workers=0)
        item_id = f"hat/{hat.name}"
        shutil.copyfile(shoe, hat)  # the "hat" file now holds a shoe photo
        report = c.add(photos, workers=0)
        assert report.indexed == 1 and report.unchanged == 59
        assert len(c) == 60
        hits = c.search(f"id:{item_id}", k=1)
        assert hits[0].id == f"shoes/{shoe.name}" and hits[0].score == 1.0


def test_renamed_file_keeps_its_vector(photos: Path, tmp_path: Path) -> None:
    src = sorted((photos / "pants").glob("*.jpg"))[0]
    with _open(tmp_path / "c") as c:
        c.add(photos, workers=0)
        old = c.catalog.by_path(str(src.resolve()))
        assert old is not None
        dest = photos / "shorts" / "renamed.jpg"
        src.rename(dest)
        report = c.add(photos, workers=0)
        assert report.to_dict() == {
            "indexed": 0,
            "unchanged": 59,
            "renamed": 1,
            "removed": 0,
            "skipped": 0,
        }
        new = c.catalog.by_path(str(dest.resolve()))
        assert new is not None
        assert new.slot == old.slot and new.content_hash == old.content_hash
        assert new.id == "shorts/renamed.jpg" and new.label == "shorts"
        assert c.search(str(dest), k=1)[0].id == "shorts/renamed.jpg"


def test_deleted_files_are_removed_only_from_their_source(photos: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(photos / "hat", other / "hat")
    with _open(tmp_path / "c") as c:
        c.add([photos, other], workers=0)
        assert len(c) == 66
        for f in (photos / "dress").glob("*.jpg"):
            f.unlink()
        report = c.add(photos, workers=0)  # only this source is rescanned
        assert report.removed == 6
        assert len(c) == 60  # the other source's items are still there
        assert not any(i.label == "dress" for i in c.items())
        hits = c.search(str(next((photos / "hat").glob("*.jpg"))), k=60)
        assert all(h.label != "dress" for h in hits)


def test_same_relative_path_in_two_sources_gets_distinct_ids(photos: Path, tmp_path: Path) -> None:
    a = tmp_path / "a"
    b = tmp_path / "b"
    shutil.copytree(photos / "hat", a / "hat")
    shutil.copytree(photos / "shoes", b / "hat")  # same relative names? no: different files
    clash = b / "hat" / next((a / "hat").glob("*.jpg")).name
    shutil.copyfile(next((b / "hat").glob("*.jpg")), clash)
    with _open(tmp_path / "c") as c:
        c.add([a, b], workers=0)
        ids = [i.id for i in c.items()]
        assert len(ids) == len(set(ids)) == 13
        assert f"b/hat/{clash.name}" in ids


# -- crash safety ------------------------------------------------------------------------

_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import lookalike.{module} as target
    calls = {{"n": 0}}
    original = target.{attr}
    def patched(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == {when} and {before}:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls["n"] == {when} and not {before}:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    target.{attr} = patched
    from lookalike.cli.entry import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _check_collection(cli, coll: Path, photos: Path) -> None:
    files = sorted(photos.rglob("*.jpg"))
    db = sqlite3.connect(coll / "catalog.sqlite")
    paths = [r[0] for r in db.execute("SELECT path FROM items")]
    db.close()
    assert len(paths) == len(set(paths)) == len(files)
    assert set(paths) == {str(f.resolve()) for f in files}
    r = cli("search", *map(str, files[::7]), "--collection", str(coll), "-k", "1", "--json")
    assert r.code == 0, r.err
    for line in r.json_lines():
        assert line["results"][0]["path"] == str(Path(line["query"]).resolve())
        assert line["results"][0]["score"] == 1.0


@pytest.mark.parametrize(
    ("module", "attr", "when", "before"),
    [
        (
            "store.vectors.VectorFile",
            "write",
            3,
            False,
        ),  # vectors written, catalog not yet committed
        ("store.catalog.Catalog", "insert", 40, False),  # in the middle of a catalog transaction
        ("store.flat.FlatStore", "save", 1, True),  # all committed, index not yet saved
    ],
    ids=["after-vectors", "mid-transaction", "before-index-save"],
)
def test_kill_9_then_rerun_leaves_one_entry_per_file(
    cli, photos: Path, tmp_path: Path, module: str, attr: str, when: int, before: bool
) -> None:
    coll = tmp_path / "coll"
    mod, _, cls = module.rpartition(".")
    args = [
        "index",
        str(photos),
        "--model",
        "phash",
        "--collection",
        str(coll),
        "--workers",
        "0",
        "--batch-size",
        "8",
    ]
    script = _KILLER.format(module=mod, attr=f"{cls}.{attr}", when=when, before=before)
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    r = cli(*args[:1], *args[1:], "--json")
    assert r.code == 0, r.err
    _check_collection(cli, coll, photos)


def test_kill_9_at_a_random_moment(cli, tmp_path: Path) -> None:
    """A real kill -9 from outside while a multi-process run is going."""
    src = tmp_path / "many"
    src.mkdir()
    rng = np.random.default_rng(7)
    for i in range(400):
        cells = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(cells).resize((480, 360), Image.Resampling.BILINEAR)
        img.save(src / f"m{i:03d}.jpg", quality=90)
    coll = tmp_path / "coll"
    args = [
        "index",
        str(src),
        "--model",
        "phash",
        "--collection",
        str(coll),
        "--batch-size",
        "4",
        "--workers",
        "2",
    ]
    script = "import sys; from lookalike.cli.entry import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 60
    count = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            db = sqlite3.connect(f"file:{coll / 'catalog.sqlite'}?mode=ro", uri=True)
            count = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            db.close()
        except sqlite3.Error:
            count = 0
        if count >= 20:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    r = cli(*args, "--json")
    assert r.code == 0, r.err
    db = sqlite3.connect(coll / "catalog.sqlite")
    paths = [row[0] for row in db.execute("SELECT path FROM items")]
    db.close()
    assert len(paths) == len(set(paths)) == 400
    probe = sorted(src.glob("*.jpg"))[::50]
    r = cli("search", *map(str, probe), "--collection", str(coll), "-k", "1", "--json")
    for line in r.json_lines():
        assert line["results"][0]["path"] == str(Path(line["query"]).resolve())
