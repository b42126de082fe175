"""Label-filtered search by scoring the label's vectors directly (exact, like the flat
index), used by the server for labels up to ``LABEL_SCAN_MAX`` items."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..collection import Hit

if TYPE_CHECKING:
    from ..collection import Collection

__all__ = ["scan_slots"]


def scan_slots(
    coll: Collection,
    vec: np.ndarray,
    slots: list[int],
    k: int,
    threshold: float | None,
    exclude_slot: int | None,
) -> list[Hit]:
    """The best ``k`` of ``slots`` for ``vec`` (ties by slot), as hits."""
    idx = np.asarray(slots, dtype=np.int64)
    if exclude_slot is not None:
        idx = idx[idx != exclude_slot]
    if idx.size == 0:
        return []
    mat = coll.vectors.read(idx, coll.catalog.next_slot)
    query = np.asarray(vec, dtype=coll.vectors.dtype).reshape(-1)
    if coll.binary:
        bits = np.unpackbits(np.bitwise_xor(mat, query[None, :]), axis=1)
        scores = 1.0 - bits.sum(axis=1, dtype=np.int64) / float(coll.dim)
    else:
        scores = mat.astype(np.float32) @ query.astype(np.float32)
    order = np.lexsort((idx, -scores))  # best score first, then by slot
    if threshold is not None:
        order = order[scores[order] >= threshold]
    order = order[:k]
    items = coll.catalog.by_slots(idx[order].tolist())
    hits: list[Hit] = []
    for j in order.tolist():
        item = items.get(int(idx[j]))
        if item is None:
            continue
        hits.append(
            Hit(
                len(hits) + 1,
                item.id,
                float(scores[j]),
                item.path,
                item.label,
                item.url,
                item.metadata,
            )
        )
    return hits
