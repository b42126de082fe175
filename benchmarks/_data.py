"""Shared helpers for benchmarks: locating the clothing dataset."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATASET = REPO.parent / "shared" / "datasets" / "clothing-small"


def dataset_files(limit: int | None = None, root: Path | None = None) -> list[Path]:
    """The clothing photos (``root``: another folder of the same layout, split/label/x.jpg)."""
    root = root or DATASET
    if not root.is_dir():
        sys.exit(f"benchmark data not found: {root} (the clothing-small dataset)")
    files = sorted(root.rglob("*.jpg"))
    return files[:limit] if limit else files
