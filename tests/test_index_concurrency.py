"""Several `index` processes on the same new collection: they take turns, none crashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imagegen


def _cli_command() -> list[str]:
    script = Path(sys.executable).parent / "lookalike"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lookalike"]


def test_index_processes_racing_to_create_a_collection_take_turns(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        imagegen.save(imagegen.photo_like(i, (64, 48)), src / f"p{i}.jpg")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for round_ in range(3):
        coll = tmp_path / f"coll{round_}"
        procs = [
            subprocess.Popen(
                [*_cli_command(), "index", str(src), "--model", "phash", "--workers", "0"]
                + ["--collection", str(coll), "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(4)
        ]
        outcomes = [p.communicate(timeout=120) for p in procs]
        for proc, (_, err) in zip(procs, outcomes, strict=True):
            assert "Traceback" not in err, err
            assert proc.returncode == 0, err
            # the only thing said: that it waits its turn
            assert all("waiting for another lookalike process" in x for x in err.splitlines())
        indexed = sorted(json.loads(out)["indexed"] for out, _ in outcomes)
        assert indexed == [0, 0, 0, 3]
