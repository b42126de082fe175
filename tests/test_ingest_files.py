"""What `index` does with odd files: names that are not UTF-8, FIFOs, devices, huge files,
broken symlinks. Each is skipped with a reason that `info` lists; none stops the run."""

from __future__ import annotations

import os
from pathlib import Path

import imagegen


def _index(cli, *args: str):  # type: ignore[no-untyped-def]
    return cli("index", *args, "--model", "phash", "--collection", "coll", "--json", timeout=60)


def _skipped(cli) -> dict[str, str]:  # type: ignore[no-untyped-def]
    info = cli("info", "--collection", "coll", "--json")
    assert info.code == 0, info.err
    return {Path(s["path"]).name: s["reason"] for s in info.json()["skipped"]}


def test_names_that_are_not_utf8_never_stop_a_run(cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        imagegen.save(imagegen.photo_like(i, (64, 48)), src / f"ok{i}.jpg")
    raw = os.fsencode(src)
    with open(raw + b"/bad\xff.jpg", "wb") as fh:
        fh.write(imagegen.encode(imagegen.photo_like(10, (64, 48)), "JPEG"))
    os.mkdir(raw + b"/dir\xfe")
    with open(raw + b"/dir\xfe/inside.jpg", "wb") as fh:
        fh.write(imagegen.encode(imagegen.photo_like(11, (64, 48)), "JPEG"))
    for _ in range(2):  # and on every later run
        r = _index(cli, str(src))
        assert r.code == 0, r.err
        assert "Traceback" not in r.err
        counts = r.json()
        assert counts["indexed"] + counts["unchanged"] == 3 and counts["skipped"] == 2
    skipped = _skipped(cli)
    assert skipped == {"bad\ufffd.jpg": "bad-name", "inside.jpg": "bad-name"}


def test_special_and_huge_files_are_skipped_by_type_and_size(cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    imagegen.save(imagegen.photo_like(1, (64, 48)), src / "good.jpg")
    os.mkfifo(src / "fifo.jpg")
    (src / "dangling.jpg").symlink_to(src / "missing.jpg")
    (src / "loop.jpg").symlink_to(src / "loop.jpg")
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as fh:
        fh.truncate(300 * 2**20)  # sparse: takes no disk space
    other_fifo = tmp_path / "other-fifo.png"
    os.mkfifo(other_fifo)
    manifest = tmp_path / "rows.csv"
    manifest.write_text(f"path\n{other_fifo}\n/dev/zero\n{huge}\n{src / 'good.jpg'}\n")

    r = _index(cli, str(src))
    assert r.code == 0, r.err
    assert r.json()["indexed"] == 1 and r.json()["skipped"] == 3
    r = _index(cli, str(manifest))
    assert r.code == 0, r.err
    assert r.json()["skipped"] == 3
    assert _skipped(cli) == {
        "fifo.jpg": "not-a-file",
        "dangling.jpg": "broken-link",
        "loop.jpg": "broken-link",
        "other-fifo.png": "not-a-file",
        "zero": "not-a-file",
        "huge.jpg": "too-big",
    }
    # the limit is a setting
    r = _index(cli, str(manifest), "--max-file-mb", "400")
    assert r.code == 0, r.err
    assert "huge.jpg" in _skipped(cli) and _skipped(cli)["huge.jpg"] != "too-big"
