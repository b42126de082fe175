"""Vectors in Milvus: a server (``http://host:19530``) or a Milvus Lite file (``path.db``).

The primary key is the item id (VARCHAR); rows also hold ``label`` ("" = none) and ``meta``
(the item's metadata, JSON) for filter expressions. Scores are "higher is more similar":
inner product of unit vectors (cosine) or ``1 - hamming / bits``. pymilvus is imported lazily.
Every call has a timeout; connection failures become ServiceUnavailable, and the next call
connects again (a restarted server is picked up by itself).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np

from lookalike.errors import (
    CollectionNotFound,
    InvalidInput,
    LookalikeError,
    ServiceUnavailable,
)
from lookalike.store import milvus_wire as wire
from lookalike.store.coalesce import Coalescer
from lookalike.store.milvus_client import (
    Fence,
    KeptVectors,
    is_expr_error,
    new_client,
    read_options,
    record_write,
    unavailable_detail,
)
from lookalike.store.milvus_index import (
    EXPR_IDS,
    MAX_K,
    IndexPlan,
    adopt_index,
    as_vectors,
    check_adoption,
    check_collection,
    check_ids,
    check_setup,
    chunks,
    first_line,
    id_expr,
    make_schema,
    plan_index,
    row_batches,
    split_credentials,
)
from lookalike.store.milvus_upkeep import MilvusError, MilvusUpkeep
from lookalike.store.milvus_write import write_rows

Ranked = list[tuple[str, float]]  # (id, score) best first


class MilvusVectors(MilvusUpkeep):
    """One Milvus collection of item vectors. Call :meth:`open` before anything else."""

    def __init__(
        self,
        uri: str,
        collection: str,
        *,
        dim: int,
        binary: bool,
        index: str = "auto",
        params: dict[str, Any] | None = None,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        uri, uri_user, uri_password = split_credentials(uri)
        user, password = user or uri_user, password or uri_password
        self.uri = uri
        self.display_uri = uri
        self.collection = collection
        self.dim, self.binary = int(dim), bool(binary)
        self.timeout = float(timeout)
        self._secrets = [s for s in (token, password) if s]
        self._auth = {"token": token or "", "user": user or "", "password": password or ""}
        self._call_timeout = max(1, math.ceil(self.timeout))  # pymilvus bounds retries by ints
        self._client: Any = None
        self._lock = threading.Lock()
        self.fence: Fence | None = None  # set by the owner: see Fence
        self.kept: KeptVectors | None = None  # set by the owner: a re-rank reads vectors there
        self._reload = False  # a call found the collection not loaded: check before the next
        # concurrent searches (same k and filter) and reads share requests: see coalesce.py
        self._searches = Coalescer(self._search_merged)
        self._reads: Coalescer[str, np.ndarray | None] = Coalescer(lambda _, ids: self._read(ids))
        check_setup(collection, self.dim, self.binary, uri, self.lite)
        self.requested_index = index
        self.requested_params = dict(params or {})
        self.plan: IndexPlan = plan_index(index, params, binary=self.binary, lite=self.lite)

    def __repr__(self) -> str:
        where, kind = f"{self.display_uri!r}, {self.collection!r}", self.plan.kind
        return f"MilvusVectors({where}, dim={self.dim}, binary={self.binary}, index={kind!r})"

    @property
    def lite(self) -> bool:
        """Whether the uri is a local Milvus Lite file (not a server)."""
        return "://" not in self.uri

    # -- connection and errors ------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _unavailable(self, detail: str) -> ServiceUnavailable:
        return ServiceUnavailable("Milvus", self.display_uri, self._scrub(detail))

    def _translate(self, exc: BaseException, action: str) -> LookalikeError:
        detail = unavailable_detail(exc, action, self.timeout)
        if detail is not None:
            return self._unavailable(detail)
        text = f"Milvus at {self.display_uri}: {action} failed: {first_line(exc)}"
        return MilvusError(self._scrub(text))

    def _connect(self) -> Any:
        try:
            return new_client(self.uri, self.timeout, self._auth, lite=self.lite)
        except LookalikeError:
            raise
        except Exception as exc:  # unreachable, or a refused login
            raise self._translate(exc, "connect") from None

    @contextmanager
    def _call(self, action: str) -> Iterator[Any]:
        """The client (connecting when needed), with pymilvus errors turned into ours; after a
        connection failure the client is dropped so that the next call connects afresh."""
        with self._lock:  # threads share one client
            if self._client is None:
                self._client = self._connect()
            client = self._client
        try:
            if self._reload:
                self._load(client)
            yield client
        except LookalikeError:
            raise
        except Exception as exc:
            error = self._translate(exc, action)
            if isinstance(error, ServiceUnavailable):
                if "not loaded" in str(exc):  # a restarted server loads it again by itself
                    self._reload = True
                    error = self._unavailable(f"collection '{self.collection}' is not loaded")
                else:
                    self._discard(client)
            raise error from None

    def _load(self, client: Any) -> None:
        """Load the collection unless it is loaded or being loaded (a restarted server
        reloads what was loaded before; a released collection is loaded again here)."""
        state = str(client.get_load_state(self.collection, timeout=self._call_timeout)["state"])
        if "NotLoad" in state:
            client.load_collection(self.collection, timeout=self._call_timeout)
        self._reload = "Loading" in state

    def _discard(self, client: Any) -> None:
        with self._lock:  # not a newer client another thread made meanwhile
            if client is None or client is not self._client:
                return
            self._client = None
        with suppress(Exception):
            client.close()

    # -- collection set-up ----------------------------------------------------------------

    def open(self, create: bool = True) -> None:
        """Connect, and create the collection (with its index) when missing, or check that an
        existing one holds our fields, dims and metric (BackendMismatch names both)."""
        t = self._call_timeout
        with self._call("open the collection") as client:
            exists = client.has_collection(self.collection, timeout=t)
        if not exists:
            if not create:
                raise CollectionNotFound(
                    f"Milvus at {self.display_uri} has no collection '{self.collection}'"
                )
            self._create()
        self._check_existing()
        with self._call("load the collection") as client:
            self._load(client)

    def _create(self) -> None:
        t = self._call_timeout
        schema = make_schema(binary=self.binary, dim=self.dim)
        with self._call("create the collection") as client:
            try:
                client.create_collection(
                    self.collection,
                    schema=schema,
                    index_params=self._index_params(client),
                    consistency_level="Strong",
                    timeout=t,
                )
            except Exception:
                # another replica may have created it meanwhile: then check that one
                if not client.has_collection(self.collection, timeout=t):
                    raise

    def _check_existing(self) -> None:
        t, name = self._call_timeout, self.collection
        with self._call("describe the collection") as client:
            desc = client.describe_collection(name, timeout=t)
            indexes = client.list_indexes(name, field_name="vector", timeout=t)
            index = client.describe_index(name, indexes[0], timeout=t) if indexes else None
        check_collection(
            name, desc, index, binary=self.binary, dim=self.dim, where=self.display_uri
        )
        if index is None:
            self._create_index()
            return
        existing = adopt_index(index, self.requested_params, binary=self.binary)
        check_adoption(name, existing, self.plan, self.requested_index, self.requested_params)
        self.plan = existing

    def _index_params(self, client: Any) -> Any:
        params = client.prepare_index_params()
        params.add_index(
            field_name="vector",
            index_name="vector",
            index_type=self.plan.milvus_type,
            metric_type=self.plan.metric,
            params=dict(self.plan.build),
        )
        return params

    def _create_index(self) -> None:
        with self._call("create the index") as client:
            client.create_index(
                self.collection, self._index_params(client), timeout=self._call_timeout
            )

    # -- rows -----------------------------------------------------------------------------

    def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        labels: Sequence[str | None],
        metas: Sequence[dict[str, Any]],
    ) -> None:
        """Insert new ids, replace stored ones (milvus_write); a later duplicate id wins."""
        ids = check_ids(ids, self.lite)
        array = as_vectors(vectors, "vectors", binary=self.binary, dim=self.dim)
        if not len(ids) == len(array) == len(labels) == len(metas):
            raise InvalidInput(
                f"upsert needs as many ids, vectors, labels and metas: "
                f"{len(ids)}, {len(array)}, {len(labels)}, {len(metas)}"
            )
        for batch in row_batches(ids, array, labels, metas, binary=self.binary):
            with self._call("upsert") as client:
                write_rows(client, self.collection, batch, self._call_timeout)
                record_write(self.fence, self.lite, self.collection)

    def delete(self, ids: Sequence[str]) -> None:
        """Delete rows by id (unknown ids are ignored)."""
        ids = check_ids(ids, self.lite)
        with self._call("delete") as client:
            for chunk in chunks(ids, EXPR_IDS):
                client.delete(self.collection, filter=id_expr(chunk), timeout=self._call_timeout)
                record_write(self.fence, self.lite, self.collection)

    def vectors_of(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of ``ids`` that exist: float32 rows, or packed uint8 codes."""
        ids = check_ids(ids, self.lite)
        found = self._reads(None, ids)
        return {i: v for i, v in zip(ids, found, strict=True) if v is not None}

    def _read(self, ids: list[str]) -> list[np.ndarray | None]:
        out: dict[str, np.ndarray] = {}
        with self._call("get vectors") as client:
            for chunk in chunks(list(dict.fromkeys(ids)), EXPR_IDS):
                out |= wire.query_vectors(
                    client,
                    self.collection,
                    id_expr(chunk),
                    binary=self.binary,
                    timeout=self._call_timeout,
                    consistency=read_options(self.fence, self.lite),
                )
        return [out.get(i) for i in ids]

    def search(self, queries: np.ndarray, k: int, expr: str | None = None) -> list[Ranked]:
        """Top ``k`` (id, score) per query, best first, among rows matching ``expr`` (a Milvus
        filter expression over id, label and meta, e.g. ``label == "shoes"``). On IVF_SQ8 a
        shortlist is re-ranked by exact scores, with its raw vectors from the kept copy
        (``kept``) when there is one, else returned by Milvus with the shortlist."""
        if not 1 <= k <= MAX_K:
            raise InvalidInput(f"Milvus returns 1 to {MAX_K} neighbours per query, not k={k}")
        array = as_vectors(queries, "queries", binary=self.binary, dim=self.dim)
        return self._searches((k, expr or None), [array])[0] if len(array) else []

    def _search_merged(self, key: Any, arrays: list[np.ndarray]) -> list[list[Ranked]]:
        """The query arrays of concurrent calls in one search (a lone call's as it is)."""
        found = self._search_now(arrays[0] if len(arrays) == 1 else np.concatenate(arrays), *key)
        ends = np.cumsum([len(a) for a in arrays])
        return [found[end - len(a) : end] for a, end in zip(arrays, ends, strict=True)]

    def _search_now(self, array: np.ndarray, k: int, expr: str | None) -> list[Ranked]:
        limit, rerank = self.plan.shortlist(k), self.plan.reranks
        own = rerank and self.kept is None  # Milvus returns the shortlists' vectors
        params, batch = self.plan.search_params(limit), self.plan.query_batch(k, self.dim, own)
        answers: list[wire.Shortlist] = []
        with self._call("search") as client:
            for chunk in np.array_split(array, math.ceil(len(array) / batch) or 1):
                try:
                    answers += wire.search(
                        client, self.collection, chunk, limit, expr or "", params,
                        with_vectors=own, binary=self.binary, timeout=self._call_timeout,
                        consistency=read_options(self.fence, self.lite),
                    )  # fmt: skip
                except Exception as exc:
                    if expr and is_expr_error(exc):
                        raise InvalidInput(
                            f"bad Milvus filter {expr!r}: {first_line(exc)}"
                        ) from None
                    raise
        if rerank and not own:
            answers = self._with_kept(answers)
        return [
            wire.best(q, found, k, rerank, self.binary)
            for q, found in zip(array, answers, strict=True)
        ]

    def _with_kept(self, answers: list[wire.Shortlist]) -> list[wire.Shortlist]:
        """The shortlists with their raw vectors from the kept copy, in one read for all;
        from Milvus for ids with none kept (published before vectors were kept)."""
        assert self.kept is not None
        ids = list(dict.fromkeys(i for found in answers for i in found.ids))
        rows = wire.kept_rows(ids, self.kept.kept_vectors(ids), self.dim, self.binary)
        missing = [i for i in ids if i not in rows]
        if missing:
            rows |= self.vectors_of(missing)
        return [wire.with_rows(found, rows) for found in answers]

    def count(self) -> int:
        """Exact row count, rows not yet flushed included."""
        with self._call("count") as client:
            rows = client.query(
                self.collection, filter="", output_fields=["count(*)"], timeout=self._call_timeout
            )
        return int(rows[0]["count(*)"]) if rows else 0

    def info(self) -> dict[str, Any]:
        return {
            **self.plan.describe(),
            "metric": self.plan.metric,
            "dim": self.dim,
            "count": self.count(),
            "uri": self.display_uri,
            "collection": self.collection,
            "deployment": "lite" if self.lite else "server",
        }

    def ping(self) -> None:
        """Raise ServiceUnavailable when Milvus does not answer."""
        with self._call("ping") as client:
            client.has_collection(self.collection, timeout=self._call_timeout)

    def drop(self) -> None:
        """Drop the whole collection (tests, and ``reset``-like tools)."""
        with self._call("drop the collection") as client:
            if client.has_collection(self.collection, timeout=self._call_timeout):
                client.drop_collection(self.collection, timeout=self._call_timeout)

    def close(self) -> None:
        self._discard(self._client)

    def __enter__(self) -> MilvusVectors:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
