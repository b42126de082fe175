"""The "similar items" table: for every item, its k most similar items with their scores.

Computed in batches of stored vectors searched against the collection's index (never an
N x N matrix), and written incrementally (Parquet: one row group per batch; CSV; JSON Lines).
The table is long: one row per (item, neighbour) with the columns of every hit table,
``query`` (the item's id) then the hit shape (``rank``, 1 = most similar, ``id`` of the
neighbour, ``score``, ``label``, ``metadata``, ``url``, ``path``). An item is never its own
neighbour.

Also the ``lookalike neighbors`` command (``ID -k K`` for one item, ``--all --out FILE``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import InvalidInput
from .search.table import HitTable

if TYPE_CHECKING:
    from .collection import Collection, Hit

BATCH = 4096


def neighbors_of(coll: Collection, item_id: str, k: int = 10) -> list[Hit]:
    """The ``k`` items most similar to the item ``item_id`` (itself excluded)."""
    return coll.search(f"id:{item_id}", k=k)


def write_neighbors_table(
    coll: Collection,
    k: int,
    out: str | os.PathLike[str],
    *,
    batch_size: int = BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write every item's ``k`` nearest items to ``out`` (``.parquet``, ``.csv`` or
    ``.jsonl``), atomically. Returns the number of rows written.
    """
    import numpy as np

    if k <= 0:
        raise InvalidInput("k must be a positive number")
    store = coll.index.store()
    rows = coll.catalog.db.execute(
        "SELECT slot, id, label, metadata, url, path FROM items ORDER BY slot"
    ).fetchall()
    size = max(coll.catalog.next_slot, 1)
    by_slot = {
        name: np.empty(size, dtype=object) for name in ("id", "label", "metadata", "url", "path")
    }
    slots = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    for col, name in enumerate(("id", "label", "metadata", "url", "path"), 1):
        by_slot[name][slots] = [r[col] for r in rows]
    del rows
    kk = min(k, max(len(slots) - 1, 0))
    with HitTable(out) as table:
        for start in range(0, len(slots), batch_size):
            part = slots[start : start + batch_size]
            queries = coll.vectors.read(part, coll.catalog.next_slot)
            scores, found = store.search(queries, kk + 1)
            # drop the item itself (or, when it is not among the results, the last one)
            own = found == part[:, None]
            own[~own.any(axis=1), -1] = True
            keep = ~own
            found = found[keep].reshape(len(part), -1)[:, :kk]
            scores = scores[keep].reshape(len(part), -1)[:, :kk]
            valid = found >= 0
            counts = valid.sum(axis=1)
            near = found[valid]
            columns = {
                "query": by_slot["id"][np.repeat(part, counts)].tolist(),
                "rank": [r for c in counts.tolist() for r in range(1, c + 1)],
                "score": scores[valid].tolist(),
                **{name: by_slot[name][near].tolist() for name in by_slot},
            }
            columns["metadata"] = [m or "{}" for m in columns["metadata"]]
            table.write(columns)
            if progress:
                progress(min(start + batch_size, len(slots)), len(slots))
    return table.rows


# -- command line -----------------------------------------------------------------------------
