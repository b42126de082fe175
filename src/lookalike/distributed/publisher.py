"""Publishing local changes (the catalog's outbox) to Milvus and Redis.

For each queued id, the remote side is made to match the local catalog, whatever happened
before (each step is idempotent, so a crash anywhere is repaired by publishing again):

- the item exists locally: its vector is upserted into Milvus **first**, then its record is
  written to Redis as ready. A search only shows ids whose Redis record is ready, so an item
  is never half visible (a vector without metadata, or metadata without a vector);
- the item is gone: its Redis record is marked deleting (hidden at once), the vector is
  deleted from Milvus, then the record is removed.

Only then are the outbox rows forgotten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..store import outbox
from ..store.milvus_index import as_vectors

if TYPE_CHECKING:
    from ..store.catalog import Catalog, Item
    from ..store.milvus import MilvusVectors
    from ..store.redis_meta import RedisMetadata
    from ..store.vectors import VectorFile

log = logging.getLogger(__name__)
BATCH = 2000


def publish(
    catalog: Catalog,
    vectors: VectorFile,
    milvus: MilvusVectors,
    redis: RedisMetadata | None,
    progress: Callable[[int], None] | None = None,
    *,
    redis_vectors: bool = False,
) -> tuple[int, int]:
    """Publish the whole outbox; returns (items put, items removed). ``redis_vectors``: each
    record carries its vector's bytes, as Milvus stores them (``--redis-vectors``)."""
    put = removed = 0
    while True:
        ids, upto = outbox.next_batch(catalog.db, BATCH)
        if not ids:
            return put, removed
        found = _items(catalog, ids)
        present = [found[i] for i in ids if i in found]
        gone = [i for i in ids if i not in found]
        if present:
            rows = vectors.read(
                np.asarray([it.slot for it in present], dtype=np.int64), catalog.next_slot
            )
            milvus.upsert(
                [it.id for it in present],
                rows,
                [it.label for it in present],
                [it.metadata for it in present],
            )
            if redis is not None:
                kept = stored_bytes(rows, milvus) if redis_vectors else None
                redis.put([_public(it) for it in present], kept)
        if gone:
            if redis is not None:
                redis.begin_remove(gone)
            milvus.delete(gone)
            if redis is not None:
                redis.finish_remove(gone)
        outbox.done(catalog.db, upto)
        put, removed = put + len(present), removed + len(gone)
        if progress is not None:
            progress(put + removed)
        log.debug("published %d items, removed %d", len(present), len(gone))


def stored_bytes(rows: np.ndarray, milvus: MilvusVectors) -> list[bytes | None]:
    """Each row's bytes exactly as Milvus stores it (float32, or packed bits)."""
    array = as_vectors(rows, "vectors", binary=milvus.binary, dim=milvus.dim)
    return [row.tobytes() for row in array]


def _items(catalog: Catalog, ids: list[str]) -> dict[str, Item]:
    out: dict[str, Item] = {}
    for i in ids:
        item = catalog.get(i)
        if item is not None:
            out[i] = item
    return out


def _public(item: Item) -> Item:
    """What Redis keeps of a catalog item: no hashes, no local slot or mtime."""
    return replace(item, slot=-1, mtime_ns=None, content_hash=None, pixel_hash=None, phash=None)
