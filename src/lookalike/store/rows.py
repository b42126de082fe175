"""Add items from precomputed rows (no image files): vectors first, then the catalog rows
that point at them, then the index."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInput
from .catalog import Catalog, Item
from .indexes import IndexManager
from .vectors import VectorFile


def unit_rows(vectors: Any, count: int, width: int, binary: bool) -> np.ndarray:
    """``count`` rows of ``width`` as stored: L2-normalised float32, or packed uint8 bits."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[1] != width or count != len(vectors):
        raise InvalidInput(f"expected {count} vectors of width {width}, got shape {vectors.shape}")
    if binary:
        return np.ascontiguousarray(vectors, dtype=np.uint8)
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(rows / norms, dtype=np.float32)


def commit_rows(
    catalog: Catalog,
    vectors: VectorFile,
    index: IndexManager,
    ids: Sequence[str],
    rows: np.ndarray,
    labels: Sequence[str | None] | None,
    metadata: Sequence[dict[str, Any]] | None,
    source: str,
    batch_size: int,
    paths: Sequence[str | None] | None,
) -> int:
    """Commit precomputed rows as new items (the caller holds the write lock)."""
    cat = catalog
    clash = next((i for i in ids if cat.id_exists(i)), None)
    if clash is not None:
        raise InvalidInput(f"an item with id {clash!r} already exists")
    gen_before = cat.generation
    added: list[int] = []
    now = time.time()
    for start in range(0, len(ids), batch_size):
        chunk = slice(start, start + batch_size)
        first = cat.next_slot
        vectors.write(first, rows[chunk])
        with cat.transaction():
            cat.reserve_slots(len(rows[chunk]))
            for offset, item_id in enumerate(ids[chunk]):
                i = start + offset
                cat.insert(
                    Item(
                        id=item_id,
                        slot=first + offset,
                        source=source,
                        path=paths[i] if paths is not None else None,
                        url=None,
                        label=labels[i] if labels is not None else None,
                        metadata=dict(metadata[i]) if metadata is not None else {},
                        added_at=now,
                    )
                )
                added.append(first + offset)
            cat.bump_generation()
    index.update(gen_before, added=added, removed=[])
    return len(added)
