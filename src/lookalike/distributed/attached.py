"""The remote store of a local collection folder (``lookalike index --store milvus``).

The folder keeps the ingest bookkeeping (catalog: content hashes, mtimes, skipped files;
vectors.bin), and every committed change is published to Milvus (and Redis) through the
catalog's outbox. Searches go to Milvus; hits are completed from Redis, or from the local
catalog without Redis.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInput
from ..store import outbox
from .config import RemoteSpec, identity, open_milvus, open_redis
from .fences import CatalogFence, RedisFence
from .publisher import publish
from .search import CatalogMetadata, MetadataSource, search_hits
from .tuning import RECALL_TARGET, exact_top, tune_search

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..search.hits import Hit
    from ..search.where import Where
    from ..store.catalog import Catalog
    from ..store.milvus import MilvusVectors
    from ..store.redis_meta import RedisMetadata
    from ..store.vectors import VectorFile

RECALL_KEY = "remote_recall"
RECALL_QUERIES = 200


def check_spec(config: dict[str, Any], spec: RemoteSpec) -> bool:
    """Whether ``spec`` is new for the collection whose marker is ``config`` (False: it is
    the one stored). Another place than the stored one is refused: a collection publishes
    to one store."""
    stored = config.get("remote")
    if stored is None:
        return True
    have = RemoteSpec.from_json(stored)
    if not have.same_place(spec):
        raise InvalidInput(
            f"this collection publishes to {have.display}; it cannot move to {spec.display}"
            " (index into a new collection folder instead)"
        )
    if (have.index, have.params) != (spec.index, spec.params) and spec.index != "auto":
        raise InvalidInput(
            f"this collection's Milvus index is {have.index} {have.params or ''}; changing it"
            " needs a new Milvus collection (--milvus-collection NEW in a new folder)"
        )
    if spec.redis_vectors and not have.redis_vectors:
        raise InvalidInput(
            "this collection keeps its vectors in Milvus only; --redis-vectors is chosen when"
            " the store is first made (index into a new folder and Milvus collection)"
        )
    return False


class Attached:
    """Milvus (and Redis) parts of a collection folder, opened on first use."""

    def __init__(
        self,
        spec: RemoteSpec,
        model: dict[str, Any],
        binary: bool,
        catalog: Catalog,
        vectors: VectorFile,
    ) -> None:
        self.spec, self.model, self.binary = spec, model, binary
        self.catalog, self.vectors = catalog, vectors
        self._milvus: MilvusVectors | None = None
        self._redis: RedisMetadata | None = None

    @property
    def milvus(self) -> MilvusVectors:
        if self._milvus is None:
            milvus = open_milvus(self.spec, int(self.model["dim"]), self.binary)
            redis = self.redis
            milvus.fence = RedisFence(redis) if redis is not None else CatalogFence(self.catalog)
            if redis is not None and self.spec.redis_vectors:
                milvus.kept = redis  # IVF_SQ8's re-rank reads its shortlist's vectors there
            tuned = (self.recall() or {}).get("search") or {}
            milvus.plan.search.update(
                {k: int(v) for k, v in tuned.items() if k in milvus.plan.search}
                | {k: int(v) for k, v in self.spec.params.items() if k in milvus.plan.search}
            )
            if redis is not None:  # the replicas search with the same knobs (nprobe, ef)
                redis.set_info("search", dict(milvus.plan.search))
            self._milvus = milvus
        return self._milvus

    @property
    def redis(self) -> RedisMetadata | None:
        if self.spec.metadata_uri is None:
            return None
        if self._redis is None:
            self._redis = open_redis(self.spec, identity(self.model, self.spec), self.model)
            if self.spec.redis_vectors:  # the replicas read them (and write them on adds)
                self._redis.set_info("redis_vectors", True)
        return self._redis

    def metadata(self) -> MetadataSource:
        redis = self.redis
        return redis if redis is not None else CatalogMetadata(self.catalog)

    def publish(self, progress: Callable[[int], None] | None = None) -> tuple[int, int]:
        """Publish what the outbox holds (nothing to do: no connection is made)."""
        if outbox.pending(self.catalog.db) == 0:
            return 0, 0
        return publish(
            self.catalog, self.vectors, self.milvus, self.redis, progress,
            redis_vectors=self.spec.redis_vectors,
        )  # fmt: skip

    def search(
        self,
        vec: np.ndarray,
        k: int,
        threshold: float | None,
        label: str | None,
        where: Where | None,
        exclude_slot: int | None,
    ) -> list[Hit]:
        exclude: list[str] = []
        if exclude_slot is not None:
            exclude = [it.id for it in self.catalog.by_slots([exclude_slot]).values()]
        return search_hits(
            self.milvus, self.metadata(), vec, k,
            threshold=threshold, label=label, where=where, exclude=exclude,
        )  # fmt: skip

    def measure_recall(self, force: bool = False) -> dict[str, Any] | None:
        """recall@10 of Milvus against exact search over the local vectors, on up to 200
        stored items as queries; kept in the catalog and re-measured when the item count
        moved by 1 % or more."""
        n = self.catalog.count()
        old = self.recall()
        if n == 0 or (not force and old and abs(old["items"] - n) < max(1, n // 100)):
            return old
        slots = np.asarray(self.catalog.slots(), dtype=np.int64)
        rng = np.random.default_rng(0)
        picked = rng.choice(slots, size=min(RECALL_QUERIES, len(slots)), replace=False)
        matrix = self.vectors.read(slots, self.catalog.next_slot)
        queries = self.vectors.read(picked, self.catalog.next_slot)
        depth = min(10, n)
        ids = {it.slot: it.id for it in self.catalog.by_slots(slots.tolist()).values()}
        exact = exact_top(matrix, queries, depth, self.binary)
        truth = [{ids[int(slots[j])] for j in row} for row in exact]

        def measure() -> float:
            got = self.milvus.search(queries, depth)
            found = sum(len(t & {i for i, _ in f[:depth]}) for t, f in zip(truth, got, strict=True))
            return found / (depth * len(picked))

        plan = self.milvus.plan
        recall = tune_search(plan, measure, RECALL_TARGET, set(self.spec.params))
        result = {
            "recall_at_10": round(recall, 4),
            "target": RECALL_TARGET,
            "search": dict(plan.search),
            "queries": len(picked),
            "items": n,
            "measured_at": time.time(),
        }
        with self.catalog.transaction():
            self.catalog.set_meta(RECALL_KEY, json.dumps(result))
        redis = self.redis
        if redis is not None:
            redis.set_info("recall", result)
            redis.set_info("search", dict(plan.search))  # the replicas' knobs
        return result

    def recall(self) -> dict[str, Any] | None:
        raw = self.catalog.get_meta(RECALL_KEY)
        return json.loads(raw) if raw else None

    def info(self) -> dict[str, Any]:
        out = {"store": self.spec.display, **self.milvus.info()}
        out["redis_vectors"] = self.spec.redis_vectors
        out["pending_publish"] = outbox.pending(self.catalog.db)
        out["measured"] = self.recall()
        return out


def attached(config: dict[str, Any], catalog: Catalog, vectors: VectorFile) -> Attached | None:
    """The remote parts a collection's marker names, or None (an embedded collection)."""
    stored = config.get("remote")
    if not stored:
        return None
    spec = RemoteSpec.from_json(stored)
    binary = config["model"]["metric"] == "hamming"
    return Attached(spec, config["model"], binary, catalog, vectors)


def attach(config: dict[str, Any], catalog: Catalog, spec: RemoteSpec) -> dict[str, Any] | None:
    """The marker with ``spec`` recorded (None: already so); the catalog's outbox triggers
    are installed and the stored items queued. Call under the writers' lock, then write it."""
    if not check_spec(config, spec):
        return None
    outbox.enable(catalog.db, backfill=True)
    return {**config, "remote": spec.to_json()}
