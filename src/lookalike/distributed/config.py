"""The remote store of a collection: what ``collection.json`` remembers under ``remote``
(never credentials), and opening its parts.

Credentials come from the environment only: ``LOOKALIKE_MILVUS_TOKEN`` (or
``LOOKALIKE_MILVUS_USER`` + ``LOOKALIKE_MILVUS_PASSWORD``) and ``LOOKALIKE_REDIS_PASSWORD``
(or a password inside the Redis URI, used but never stored or shown).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from ..store.uris import milvus_credentials, parse_milvus_uri, parse_redis_uri, redis_password

if TYPE_CHECKING:
    from ..store.milvus import MilvusVectors
    from ..store.redis_meta import RedisMetadata

INDEX_KINDS = ("auto", "flat", "ivf-flat", "ivf-sq8", "hnsw")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
DEFAULT_COLLECTION = "lookalike"


@dataclass(frozen=True)
class RemoteSpec:
    """Where a collection's vectors (and perhaps metadata) live."""

    milvus_uri: str
    collection: str = DEFAULT_COLLECTION
    index: str = "auto"
    params: dict[str, int] = field(default_factory=dict)
    metadata_uri: str | None = None  # redis://...; None: the local catalog
    namespace: str = "lookalike"
    redis_vectors: bool = False  # each item's vector kept in Redis too (one Milvus call less)
    _redis_password: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(
        cls,
        milvus_uri: str,
        collection: str | None = None,
        index: str | None = None,
        params: dict[str, int | None] | None = None,
        metadata_uri: str | None = None,
        redis_vectors: bool = False,
    ) -> RemoteSpec:
        """Checked user input (one-line ``InvalidInput`` for anything wrong)."""
        milvus = parse_milvus_uri(milvus_uri)
        name = collection or DEFAULT_COLLECTION
        if not _NAME.match(name):
            raise InvalidInput(
                f"--milvus-collection must start with a letter or _ and hold only letters,"
                f" digits and _ (at most 255), not {name!r}"
            )
        kind = index or "auto"
        if kind not in INDEX_KINDS:
            raise InvalidInput(
                f"a Milvus store takes the index {', '.join(INDEX_KINDS)}, not {kind!r}"
            )
        chosen = {k: int(v) for k, v in (params or {}).items() if v is not None}
        redis = parse_redis_uri(metadata_uri) if metadata_uri else None
        if redis_vectors and redis is None:
            raise InvalidInput("--redis-vectors keeps vectors beside the metadata in Redis:"
                               " it needs --metadata redis://...")  # fmt: skip
        return cls(
            milvus_uri=milvus.uri,
            collection=name,
            index=kind,
            params=chosen,
            metadata_uri=redis.uri if redis else None,
            redis_vectors=redis_vectors,
            _redis_password=redis.password if redis else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "store": "milvus",
            "milvus_uri": self.milvus_uri,
            "collection": self.collection,
            "index": self.index,
            "params": dict(self.params),
            "metadata": self.metadata_uri,
            "namespace": self.namespace,
            "redis_vectors": self.redis_vectors,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RemoteSpec:
        return cls(
            milvus_uri=str(data["milvus_uri"]),
            collection=str(data.get("collection") or DEFAULT_COLLECTION),
            index=str(data.get("index") or "auto"),
            params={str(k): int(v) for k, v in (data.get("params") or {}).items()},
            metadata_uri=data.get("metadata"),
            namespace=str(data.get("namespace") or "lookalike"),
            redis_vectors=bool(data.get("redis_vectors", False)),
        )

    def same_place(self, other: RemoteSpec) -> bool:
        return (self.milvus_uri, self.collection, self.metadata_uri) == (
            other.milvus_uri,
            other.collection,
            other.metadata_uri,
        )

    @property
    def display(self) -> str:
        meta = (
            f", metadata in {parse_redis_uri(self.metadata_uri).display}"
            if self.metadata_uri
            else ""
        )
        return f"Milvus {parse_milvus_uri(self.milvus_uri).display} collection {self.collection!r}{meta}"


def identity(model: dict[str, Any], spec: RemoteSpec) -> dict[str, Any]:
    """What a Redis database and a Milvus collection must agree on with the collection."""
    return {
        "collection": spec.collection,
        "model": model["name"],
        "dim": int(model["dim"]),
        "metric": model["metric"],
        "model_sha256": model.get("onnx_sha256"),
    }


def open_milvus(spec: RemoteSpec, dim: int, binary: bool) -> MilvusVectors:
    from ..store.milvus import MilvusVectors

    creds = milvus_credentials()
    vectors = MilvusVectors(
        spec.milvus_uri,
        spec.collection,
        dim=dim,
        binary=binary,
        index=spec.index,
        params=dict(spec.params),
        token=creds.get("token"),
        user=creds.get("user"),
        password=creds.get("password"),
    )
    vectors.open(create=True)
    return vectors


def open_redis(spec: RemoteSpec, ident: dict[str, Any], model: dict[str, Any]) -> RedisMetadata:
    """The Redis metadata store, bound to this collection (another one's keys: refused)."""
    from ..store.redis_meta import RedisMetadata

    assert spec.metadata_uri is not None
    uri = parse_redis_uri(spec.metadata_uri)
    password = spec._redis_password or redis_password(uri)
    meta = RedisMetadata(uri, namespace=spec.namespace, password=password)
    meta.bind(ident)
    if meta.info().get("model_record") is None:
        meta.set_info("model_record", model)
    return meta
