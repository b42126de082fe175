"""Read fences (``store.milvus.Fence``): the timestamp of the last Milvus write, shared by
every process that reads the collection, so that a search sees every add made before it
(through any replica) without Strong consistency's wait for the newest moment."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..store.catalog import Catalog
    from ..store.redis_meta import RedisMetadata

NAME = "milvus_ts"


class RedisFence:
    """In Redis, beside the items: what the replicas share."""

    def __init__(self, redis: RedisMetadata) -> None:
        self.redis = redis

    def read(self) -> int:
        return self.redis.high_water(NAME)

    def advance(self, ts: int) -> None:
        self.redis.raise_high_water(NAME, ts)


class CatalogFence:
    """In a folder's catalog (Milvus without Redis: searches from that folder)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def read(self) -> int:
        return int(self.catalog.get_meta(NAME) or 0)

    def advance(self, ts: int) -> None:
        if ts > self.read():
            with self.catalog.transaction():
                self.catalog.set_meta(NAME, str(ts))
