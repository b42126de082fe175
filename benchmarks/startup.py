"""Import time and CLI start-up: this tree against another commit, side by side in one run.

    python benchmarks/startup.py [--ref COMMIT] [--runs N]

Checks out ``--ref`` (default: the commit before the package was regrouped into folders)
into a temporary git worktree and alternates runs of both trees, so machine noise hits both
alike: ``python -c "import lookalike"``, ``python -m lookalike --help`` and
``python -m lookalike search --help``. Prints medians and the ratio new/old.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE_REGROUP = "d7bd3d9"

CASES = {
    "import lookalike": ["-c", "import lookalike"],
    "from lookalike import Collection": ["-c", "from lookalike import Collection"],
    "lookalike --help": ["-m", "lookalike", "--help"],
    "lookalike search --help": ["-m", "lookalike", "search", "--help"],
}


def _time(src: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default=BEFORE_REGROUP)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(old), args.ref], cwd=REPO, check=True
        )
        try:
            trees = {"before": old / "src", "now": REPO / "src"}
            print(f"{'case':<34} {'before (ms)':>12} {'now (ms)':>10} {'now/before':>11}")
            for name, case in CASES.items():
                times: dict[str, list[float]] = {k: [] for k in trees}
                for _ in range(2):  # warm the page cache
                    for src in trees.values():
                        _time(src, case)
                for _ in range(args.runs):
                    for key, src in trees.items():
                        times[key].append(_time(src, case))
                b = statistics.median(times["before"]) * 1000
                n = statistics.median(times["now"]) * 1000
                print(f"{name:<34} {b:>12.1f} {n:>10.1f} {n / b:>11.2f}")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO)


if __name__ == "__main__":
    main()
