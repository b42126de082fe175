"""The "similar items" table: for every item, its k most similar items with their scores.

Computed in batches of stored vectors searched against the collection's index (never an
N x N matrix), and written to Parquet incrementally, one row group per batch. The table is
long: one row per (item, neighbour) with columns ``id``, ``rank`` (1 = most similar),
``neighbor_id`` and ``score``. An item is never its own neighbour.

Also the ``lookalike neighbors`` command (``ID -k K`` for one item, ``--all --out FILE``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InvalidInput, MissingDependency

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
    """Write every item's ``k`` nearest items to the Parquet file ``out`` (atomically).

    Returns the number of rows written.
    """
    import numpy as np

    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependency(
            "writing the neighbours table needs pyarrow: pip install 'lookalike[parquet]'"
        ) from None
    if k <= 0:
        raise InvalidInput("k must be a positive number")
    out = Path(out)
    if out.is_dir():
        raise InvalidInput(f"{out} is a folder; give a file name ending in .parquet")
    if not out.parent.is_dir():
        raise InvalidInput(f"folder {out.parent} does not exist")
    store = coll.index.store()
    rows = coll.catalog.db.execute("SELECT slot, id FROM items ORDER BY slot").fetchall()
    ids_by_slot = np.empty(max(coll.catalog.next_slot, 1), dtype=object)
    slots = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    ids_by_slot[slots] = [r[1] for r in rows]
    del rows
    kk = min(k, max(len(slots) - 1, 0))
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("rank", pa.int32()),
            ("neighbor_id", pa.string()),
            ("score", pa.float32()),
        ]
    )
    tmp = out.with_name(out.name + ".tmp")
    written = 0
    try:
        with pq.ParquetWriter(str(tmp), schema) as writer:
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
                table = pa.table(
                    {
                        "id": ids_by_slot[np.repeat(part, counts)].tolist(),
                        "rank": np.concatenate([np.arange(1, c + 1) for c in counts]).astype(
                            np.int32
                        )
                        if len(counts)
                        else np.zeros(0, np.int32),
                        "neighbor_id": ids_by_slot[found[valid]].tolist(),
                        "score": scores[valid].astype(np.float32),
                    },
                    schema=schema,
                )
                writer.write_table(table)
                written += table.num_rows
                if progress:
                    progress(min(start + batch_size, len(slots)), len(slots))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return written


# -- command line -----------------------------------------------------------------------------
