"""Decode workers: a script without a main guard works, and workers never outlive `index`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import imagegen
import numpy as np
import pytest
from PIL import Image


def _cli_command() -> list[str]:
    script = Path(sys.executable).parent / "lookalike"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lookalike"]


def _images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        imagegen.save(imagegen.photo_like(i, (96, 64)), folder / f"p{i:03d}.jpg")
    return folder


@pytest.mark.parametrize("decode", ["threads", "processes"])
def test_readme_example_without_main_guard_runs_and_never_hangs(
    tmp_path: Path, decode: str
) -> None:
    _images(tmp_path / "photos", 12)
    script = tmp_path / "example.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from lookalike import Collection

            coll = Collection.open("coll", "phash")
            report = coll.add("photos/", workers=2, decode="{decode}")
            print("indexed", report.indexed)
            coll.close()
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "indexed 12" in proc.stdout


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(x) for x in out.split()}


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_workers_and_resource_tracker_exit_when_index_is_killed(tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.mkdir()
    noise = np.random.default_rng(0).integers(0, 255, (1600, 1600, 3), dtype=np.uint8)
    data = imagegen.encode(Image.fromarray(noise), "PNG", compress_level=1)
    for i in range(150):  # distinct files (trailing bytes after IEND), each slow to decode
        (src / f"n{i:03d}.png").write_bytes(data + i.to_bytes(4, "big"))
    proc = subprocess.Popen(
        [
            *_cli_command(),
            "index",
            str(src),
            "--model",
            "phash",
            "--workers",
            "2",
            "--decode",
            "processes",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        children: set[int] = set()
        deadline = time.monotonic() + 60
        while len(children) < 3 and time.monotonic() < deadline:  # 2 workers + tracker
            children |= _children(proc.pid)
            time.sleep(0.05)
        assert len(children) >= 3, "index never started its workers"
        time.sleep(0.5)
        assert proc.poll() is None, "index finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [c for c in children if _alive(c)]
    finally:
        if proc.poll() is None:
            proc.kill()
