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
