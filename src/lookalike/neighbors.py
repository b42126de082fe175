"""The "similar items" table: for every item, its k most similar items with their scores.

Computed in batches of stored vectors searched against the collection's index (never an
N x N matrix), and written incrementally, one batch at a time, in the format the output
file's extension names: Parquet (one row group per batch), CSV or JSON Lines. The table is
long: one row per (item, neighbour) with columns ``id``, ``rank`` (1 = most similar),
``neighbor_id`` and ``score``. An item is never its own neighbour.

Also the ``lookalike neighbors`` command (``ID -k K`` for one item, ``--all --out FILE``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InvalidInput, MissingDependency

if TYPE_CHECKING:
    import numpy as np

    from .collection import Collection, Hit

BATCH = 4096


def neighbors_of(coll: Collection, item_id: str, k: int = 10) -> list[Hit]:
    """The ``k`` items most similar to the item ``item_id`` (itself excluded)."""
    return coll.search(f"id:{item_id}", k=k)


FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}
COLUMNS = ("id", "rank", "neighbor_id", "score")


def table_format(out: str | os.PathLike[str]) -> str:
    """The format the file name's extension names (``.parquet``, ``.csv``, ``.jsonl``);
    :class:`InvalidInput` for any other name."""
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInput(
            f"cannot tell the format of {str(out)!r}: name the file .parquet, .csv or .jsonl"
        )
    return FORMATS[suffix]


Batch = tuple[list[str], "np.ndarray", list[str], "np.ndarray"]


def _batches(
    coll: Collection,
    k: int,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
) -> Iterator[Batch]:
    """(ids, ranks, neighbour ids, scores) for each batch of stored items, in slot order."""
    import numpy as np

    store = coll.index.store()
    rows = coll.catalog.db.execute("SELECT slot, id FROM items ORDER BY slot").fetchall()
    ids_by_slot = np.empty(max(coll.catalog.next_slot, 1), dtype=object)
    slots = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    ids_by_slot[slots] = [r[1] for r in rows]
    del rows
    kk = min(k, max(len(slots) - 1, 0))
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
        ranks = (
            np.concatenate([np.arange(1, c + 1) for c in counts]).astype(np.int32)
            if len(counts)
            else np.zeros(0, np.int32)
        )
        yield (
            ids_by_slot[np.repeat(part, counts)].tolist(),
            ranks,
            ids_by_slot[found[valid]].tolist(),
            scores[valid].astype(np.float32),
        )
        if progress:
            progress(min(start + batch_size, len(slots)), len(slots))


def _write_parquet(batches: Iterator[Batch], tmp: Path) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependency(
            "writing the neighbours table as Parquet needs pyarrow: "
            "pip install 'lookalike[parquet]' (or name the file .csv or .jsonl)"
        ) from None
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("rank", pa.int32()),
            ("neighbor_id", pa.string()),
            ("score", pa.float32()),
        ]
    )
    written = 0
    with pq.ParquetWriter(str(tmp), schema) as writer:
        for ids, ranks, nbs, scores in batches:
            table = pa.table(
                {"id": ids, "rank": ranks, "neighbor_id": nbs, "score": scores}, schema=schema
            )
            writer.write_table(table)
            written += table.num_rows
    return written


def _write_text(batches: Iterator[Batch], tmp: Path, fmt: str) -> int:
    import csv
    import json

    written = 0
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh) if fmt == "csv" else None
        if writer is not None:
            writer.writerow(COLUMNS)
        for ids, ranks, nbs, scores in batches:
            values = [round(v, 6) for v in scores.tolist()]  # as `search --json` prints
            for row in zip(ids, ranks.tolist(), nbs, values, strict=True):
                if writer is not None:
                    writer.writerow(row)
                else:
                    fh.write(json.dumps(dict(zip(COLUMNS, row, strict=True))) + "\n")
            written += len(ids)
    return written


def write_neighbors_table(
    coll: Collection,
    k: int,
    out: str | os.PathLike[str],
    *,
    batch_size: int = BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write every item's ``k`` nearest items to ``out`` (atomically), in the format its
    extension names: ``.parquet``, ``.csv`` (with a header row) or ``.jsonl`` (one object
    per row). Any other extension is :class:`InvalidInput`.

    Returns the number of rows written.
    """
    if k <= 0:
        raise InvalidInput("k must be a positive number")
    out = Path(out)
    if out.is_dir():
        raise InvalidInput(
            f"{out} is a folder; give a file name ending in .parquet, .csv or .jsonl"
        )
    fmt = table_format(out)
    if not out.parent.is_dir():
        raise InvalidInput(f"folder {out.parent} does not exist")
    tmp = out.with_name(out.name + ".tmp")
    try:
        batches = _batches(coll, k, batch_size, progress)
        if fmt == "parquet":
            written = _write_parquet(batches, tmp)
        else:
            written = _write_text(batches, tmp, fmt)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return written


# -- command line -----------------------------------------------------------------------------
