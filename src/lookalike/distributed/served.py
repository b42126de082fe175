"""The collection a stateless replica serves: vectors in Milvus, metadata in Redis, uploads
in a shared folder, nothing else on the machine.

Writes are safe with any number of replicas:

- **add**: the upload file is written (and fsynced) first; the ids are then claimed in
  Redis atomically (all or nothing: exactly one replica wins an id, the others get
  :class:`ItemExists`); the vectors go into Milvus; last, the claimed records become ready.
  Searches only show ready ids, so a half-done add is invisible, and a claim whose replica
  died expires (its lease) so the id can be added again.
- **remove**: the record is marked deleting (hidden at once), the vector deleted from
  Milvus, then the record removed; a removal interrupted halfway is finished by the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendMismatch, CollectionNotFound, InvalidInput, ItemExists, ItemNotFound
from ..search.hits import Hit
from .batched import SimilarBatches, stored_rows
from .config import RemoteSpec, open_milvus, open_redis
from .fences import RedisFence
from .publisher import stored_bytes
from .search import Round, expression, first_hits, first_limit, search_hits

if TYPE_CHECKING:
    from ..models.embedders.base import Embedder
    from ..search.where import Where
    from ..store.catalog import Item
    from ..store.milvus import MilvusVectors
    from ..store.redis_meta import RedisMetadata


@dataclass
class NewItem:
    id: str
    label: str | None
    metadata: dict[str, Any]
    path: str | None
    source: str
    size: int | None = None
    width: int | None = None
    height: int | None = None


class ServedCollection:
    """Milvus + Redis, shared by every replica; see the module docstring."""

    def __init__(
        self,
        spec: RemoteSpec,
        *,
        model: str | None = None,
        model_path: str | None = None,
        threads: int | None = None,
    ) -> None:
        if spec.metadata_uri is None:
            raise InvalidInput(
                "serving from Milvus needs the metadata in Redis: add --metadata redis://..."
            )
        self.spec = spec
        self._model_args, self._threads = (model, model_path), threads
        probe = _bare_redis(spec)
        ident = probe.identity()
        stored = probe.info()
        record = stored.get("model_record")
        if ident is None or record is None:
            raise CollectionNotFound(
                f"{spec.display} holds no lookalike collection yet: build one with"
                f" `lookalike index SOURCE --store milvus --milvus-uri ... --metadata ...`"
            )
        if ident.get("collection") != spec.collection:
            raise BackendMismatch(
                f"Redis {probe.address.display} holds collection {ident.get('collection')!r}, not"
                f" {spec.collection!r}"
            )
        self.model: dict[str, Any] = record
        self.binary = record["metric"] == "hamming"
        self.dim = int(record["dim"])
        self.width = self.dim // 8 if self.binary else self.dim
        self.redis: RedisMetadata = open_redis(spec, ident, record)
        knobs = {**(stored.get("search") or {}), **spec.params}  # the indexer's nprobe/ef
        # vectors kept in Redis too (index --redis-vectors): /similar reads them there
        self.redis_vectors = bool(stored.get("redis_vectors"))
        self.milvus: MilvusVectors = open_milvus(replace(spec, params=knobs), self.dim, self.binary)
        self.milvus.fence = RedisFence(self.redis)
        if self.redis_vectors:  # IVF_SQ8's re-rank reads its shortlist's vectors there too
            self.milvus.kept = self.redis
        self._similar = SimilarBatches(self.milvus, self.redis)
        self._embedder: Embedder | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from ..models.binding import bind_requested, stored_embedder

            config: dict[str, Any] = {"model": dict(self.model)}
            model, model_path = self._model_args
            if model is None and model_path is None:
                self._embedder = stored_embedder(
                    config, self.spec.display, self._threads, lambda *_: True
                )
            else:
                self._embedder, _ = bind_requested(
                    config, model, model_path, self._threads, self.spec.display, lambda *_: True
                )
        return self._embedder

    # -- reading -----------------------------------------------------------------------

    def __len__(self) -> int:
        return self.redis.count()

    def get(self, item_id: str) -> Item:
        item = self.redis.get([item_id])[0]
        if item is None:
            raise ItemNotFound(f"no item with id {item_id!r}")
        return item

    def unit(self, row: np.ndarray) -> np.ndarray:
        """A query row as stored rows are: float rows L2-normalised, bits as they are."""
        vec = np.atleast_2d(np.asarray(row))
        if self.binary:
            return vec.astype(np.uint8)
        vec = vec.astype(np.float32)
        norm = float(np.linalg.norm(vec))
        if not norm:
            raise InvalidInput("the query vector is all zeros")
        return vec / norm

    def search_vector(
        self,
        vec: np.ndarray,
        k: int,
        *,
        threshold: float | None = None,
        label: str | None = None,
        where: Where | None = None,
        exclude: Sequence[str] = (),
    ) -> list[Hit]:
        return search_hits(
            self.milvus, self.redis, vec, k, threshold=threshold, label=label, where=where,
            exclude=exclude,
        )  # fmt: skip

    def similar(
        self,
        item_id: str,
        k: int,
        *,
        threshold: float | None = None,
        where: Where | None = None,
    ) -> list[Hit]:
        """The items most like ``item_id``, itself left out (ItemNotFound unless it is ready).
        The first round is answered with the concurrent requests' (``batched.py``)."""
        first = _found(self._similar(item_id, *_first_round(item_id, k, where)), item_id)
        return self._finish(first, item_id, k, threshold, where)

    async def similar_async(
        self,
        item_id: str,
        k: int,
        *,
        threshold: float | None = None,
        where: Where | None = None,
    ) -> list[Hit]:
        """:meth:`similar` for a caller on an event loop: the request waits for its batch
        without holding a thread. Only hits that need another Milvus round (some were
        hidden) are finished in a thread."""
        first = _found(await self._similar.wait(item_id, *_first_round(item_id, k, where)), item_id)
        hits = first_hits(first, k, threshold=threshold, where=where, exclude=[item_id])
        if hits is None:  # some were hidden: Milvus is asked for more
            hits = await asyncio.to_thread(self._finish, first, item_id, k, threshold, where)
        return hits

    def _finish(
        self, first: Round, item_id: str, k: int, threshold: float | None, where: Where | None
    ) -> list[Hit]:
        """``/similar``'s hits from its first round, asking Milvus for more when needed."""
        return search_hits(
            self.milvus, self.redis, first.query, k, threshold=threshold, where=where,
            exclude=[item_id], first=first,
        )  # fmt: skip

    def item_vector(self, item_id: str) -> np.ndarray:
        """A ready item's stored vector as a 1-row query (else ItemNotFound): from Redis
        when it keeps it (one round trip, no Milvus call), else from Milvus."""
        rows = stored_rows(self.milvus, self.redis, [item_id])
        if item_id not in rows:
            raise ItemNotFound(f"no item with id {item_id!r}")
        return rows[item_id].reshape(1, -1)

    def info(self) -> dict[str, Any]:
        return {
            "items": len(self),
            "model": self.model["name"],
            "dim": self.dim,
            "metric": self.model["metric"],
            "index": {**self.milvus.info(), "measured": self.redis.info().get("recall")},
        }

    def dependencies(self) -> dict[str, str]:
        """``{"milvus": "ok" | "down: reason", "redis": ...}``."""
        out = {}
        for name, part in (("milvus", self.milvus), ("redis", self.redis)):
            try:
                part.ping()
                out[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                out[name] = f"down: {exc}"
        return out

    # -- writing -----------------------------------------------------------------------

    def add(self, items: Sequence[NewItem], vectors: np.ndarray) -> None:
        """Add new items (all or nothing); :class:`ItemExists` names an id already taken."""
        from ..store.catalog import Item

        ids = [it.id for it in items]
        token = uuid.uuid4().hex
        taken = self.redis.claim(ids, token)
        if taken is not None:
            raise ItemExists(f"an item with id {taken!r} already exists")
        try:
            self.milvus.upsert(
                ids, vectors, [it.label for it in items], [it.metadata for it in items]
            )
            records = [
                Item(
                    id=it.id,
                    slot=-1,
                    source=it.source,
                    path=it.path,
                    url=None,
                    label=it.label,
                    metadata=it.metadata,
                    size=it.size,
                    width=it.width,
                    height=it.height,
                    added_at=time.time(),
                )  # fmt: skip
                for it in items
            ]
            kept = stored_bytes(vectors, self.milvus) if self.redis_vectors else None
            self.redis.commit(token, records, kept)
        except BaseException:
            with contextlib.suppress(Exception):  # else the lease expires by itself
                self.redis.release(token, ids)
            raise

    def remove(self, item_id: str) -> Item:
        """Remove one item (ItemNotFound when there is none); returns what it was."""
        item = self.redis.get([item_id])[0]
        missing = self.redis.begin_remove([item_id])
        if missing:
            raise ItemNotFound(f"no item with id {item_id!r}; nothing removed")
        self.milvus.delete([item_id])
        self.redis.finish_remove([item_id])
        if item is None:  # a removal that was interrupted halfway: finished now
            raise ItemNotFound(f"no item with id {item_id!r}; nothing removed")
        return item

    def close(self) -> None:
        for part in (self.milvus, self.redis):
            close = getattr(part, "close", None)
            if close is not None:
                close()


def _bare_redis(spec: RemoteSpec) -> RedisMetadata:
    from ..store.redis_meta import RedisMetadata
    from ..store.uris import parse_redis_uri, redis_password

    assert spec.metadata_uri is not None
    uri = parse_redis_uri(spec.metadata_uri)
    return RedisMetadata(
        uri, namespace=spec.namespace, password=spec._redis_password or redis_password(uri)
    )


def _first_round(item_id: str, k: int, where: Where | None) -> tuple[int, str | None]:
    """(how many results, the Milvus filter) of ``/similar``'s first, batched round."""
    return first_limit(k, [item_id]), expression(None, where)[0]


def _found(first: Round | None, item_id: str) -> Round:
    """The first round of a ready item (None: not there, being added or removed)."""
    if first is None:
        raise ItemNotFound(f"no item with id {item_id!r}")
    return first
