"""Concurrent ``/similar`` requests of a replica answered together, in three round trips.

Each request alone reads its item's vector from Redis, searches Milvus, then reads its hits'
records from Redis: three calls, each with a fixed cost on the replica and on the service
(a Milvus search call costs milliseconds whatever it holds). Under load, the requests that
arrive while a batch is out wait for it to finish (``store/coalesce.py``; the server's
requests wait on its event loop, the others in their threads) and the next batch
serves them all: one Redis read of all their vectors, one Milvus search of all their rows,
one Redis read of all their hits' records. Only requests with the same ``k`` and Milvus
filter share a batch, and each gets exactly what it would have got alone: the first round
of ``search.search_hits`` (which asks for more when hits are hidden).

The vectors are read from Redis when the collection keeps them there (``index
--redis-vectors``), else from Milvus: in one read for the batch, after one Redis read that
tells which of the items are ready.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np

from ..store import milvus_wire as wire
from ..store.coalesce import AsyncCoalescer, Coalescer
from .search import Round

if TYPE_CHECKING:
    from ..store.milvus import MilvusVectors
    from ..store.redis_meta import RedisMetadata

__all__ = ["SimilarBatches", "stored_rows"]


class SimilarBatches:
    """``batches(item_id, limit, expr)``: the first round of ``/similar`` for a ready item
    (its ``limit`` best by Milvus among rows matching ``expr``, with their records), or None
    when the item is not ready (not there, being added or removed)."""

    def __init__(self, milvus: MilvusVectors, redis: RedisMetadata, *, inflight: int = 1) -> None:
        self.milvus, self.redis = milvus, redis
        # one batch out at a time: the others gather behind it (they share its costs)
        self._batches: Coalescer[str, Round | None] = Coalescer(self._run, inflight=inflight)
        self._waits: AsyncCoalescer[str, Round | None] = AsyncCoalescer(
            self._run, inflight=inflight
        )

    @property
    def batches(self) -> int:
        """Batches answered so far (tests and benchmarks read it)."""
        return self._batches.batches + self._waits.batches

    def __call__(self, item_id: str, limit: int, expr: str | None) -> Round | None:
        return self._batches((limit, expr), [item_id])[0]

    async def wait(self, item_id: str, limit: int, expr: str | None) -> Round | None:
        """The same answer, awaited on an event loop: the request holds no thread while
        its batch gathers and runs (the batch runs in a worker thread)."""
        return await self._waits((limit, expr), item_id)

    def _run(self, key: Hashable, ids: list[str]) -> list[Round | None]:
        assert isinstance(key, tuple)
        limit, expr = key
        rows = stored_rows(self.milvus, self.redis, list(dict.fromkeys(ids)))
        queries = list(rows)
        if not queries:
            return [None] * len(ids)
        found = self.milvus.search(np.stack([rows[i] for i in queries]), limit, expr)
        hit_ids = list(dict.fromkeys(i for ranked in found for i, _ in ranked))
        records = dict(zip(hit_ids, self.redis.get(hit_ids), strict=True))
        rounds = {
            q: Round(rows[q].reshape(1, -1), ranked, {i: records[i] for i, _ in ranked})
            for q, ranked in zip(queries, found, strict=True)
        }
        return [rounds.get(i) for i in ids]


def stored_rows(
    milvus: MilvusVectors, redis: RedisMetadata, ids: list[str]
) -> dict[str, np.ndarray]:
    """The stored rows of the ready ids among ``ids``, in their order: kept in Redis, else
    (published before the vectors were kept, or without ``--redis-vectors``) from Milvus."""
    states = redis.vectors(ids)
    ready = [i for i, (ok, _) in zip(ids, states, strict=True) if ok]
    rows = wire.kept_rows(ready, [raw for ok, raw in states if ok], milvus.dim, milvus.binary)
    older = [i for i in ready if i not in rows]
    if older:
        rows |= milvus.vectors_of(older)
    return {i: rows[i] for i in ready if i in rows}
