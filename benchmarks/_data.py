"""Shared helpers for benchmarks: locating the clothing dataset."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATASET = REPO.parent / "shared" / "datasets" / "clothing-small"


def dataset_files(limit: int | None = None) -> list[Path]:
    if not DATASET.is_dir():
        sys.exit(f"benchmark data not found: {DATASET} (the clothing-small dataset)")
    files = sorted(DATASET.rglob("*.jpg"))
    return files[:limit] if limit else files
