"""Milvus searches and vector reads, with the replies read by numpy.

pymilvus turns every hit into a dict and every returned vector into a list of Python floats:
about 3 ms of client CPU per query whose shortlist of 30 carries its raw vectors (the IVF_SQ8
re-rank), more than Milvus itself spends on it. Here pymilvus still builds the request
(``Prepare``) and sends it on its own connection (auth and channel included), but the
reply's repeated fields go to numpy in one copy each (protobuf exposes their buffers).
Errors are the ones pymilvus raises (``check_status``), so ``MilvusVectors._call`` treats
them as before. ``_get_connection()._stub`` is pymilvus' internals: the ``milvus`` extra
pins pymilvus (pyproject.toml), and tests/test_milvus_store.py runs this on Milvus Lite and
on a real server, so a pymilvus upgrade that moves them fails there first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Shortlist", "best", "kept_rows", "query_vectors", "reranked", "search", "with_rows"]


@dataclass(frozen=True)
class Shortlist:
    """One query's answer: ids best first, Milvus' scores (distances), raw vectors or None."""

    ids: list[str]
    scores: np.ndarray
    vectors: np.ndarray | None


def _vectors(field: Any, binary: bool) -> np.ndarray:
    """A FieldData of vectors -> (n, dim) float32 rows or (n, dim/8) packed uint8 codes."""
    dim = int(field.vectors.dim)
    if binary:
        raw = np.frombuffer(field.vectors.binary_vector, dtype=np.uint8)
        return raw.reshape(-1, dim // 8).copy()
    return np.array(field.vectors.float_vector.data, dtype=np.float32).reshape(-1, dim)


def _field(fields: Sequence[Any], name: str) -> Any:
    for field in fields:
        if field.field_name == name:
            return field
    raise LookupError(f"Milvus returned no {name!r} field")


def search(
    client: Any,
    collection: str,
    queries: np.ndarray,
    limit: int,
    expr: str,
    params: dict[str, Any],
    *,
    with_vectors: bool,
    binary: bool,
    timeout: float,
    consistency: dict[str, Any],
) -> list[Shortlist]:
    """One Search request for the query rows; a :class:`Shortlist` per query."""
    from pymilvus.client.prepare import Prepare
    from pymilvus.client.utils import check_status

    data = [row.tobytes() if binary else row.tolist() for row in queries]
    request = Prepare.search_requests_with_expr(
        collection,
        data,
        "vector",
        params,
        limit,
        expr,
        None,
        ["vector"] if with_vectors else [],
        -1,
        **consistency,
    )
    reply = client._get_connection()._stub.Search(request, timeout=timeout)
    check_status(reply.status)
    res = reply.results
    ids = list(res.ids.str_id.data)
    scores = np.array(res.scores, dtype=np.float32)
    vectors = _vectors(_field(res.fields_data, "vector"), binary) if with_vectors and ids else None
    out, start = [], 0
    topks = list(res.topks) or [0] * len(data)
    for n in topks:
        end = start + int(n)
        rows = vectors[start:end] if vectors is not None else None
        out.append(Shortlist(ids[start:end], scores[start:end], rows))
        start = end
    return out


def best(
    query: np.ndarray, shortlist: Shortlist, k: int, rerank: bool, binary: bool
) -> list[tuple[str, float]]:
    """(id, score) best first: the shortlist re-ranked to ``k`` when ``rerank``, else as
    Milvus ranked it, with scores "higher is more similar" (``1 - hamming / bits``)."""
    if rerank:
        return reranked(query, shortlist, k)
    scores = shortlist.scores.astype(np.float64)
    if binary:
        scores = 1.0 - scores / (8 * len(query))
    return list(zip(shortlist.ids, scores.tolist(), strict=True))


def reranked(query: np.ndarray, shortlist: Shortlist, k: int) -> list[tuple[str, float]]:
    """The best ``k`` of a shortlist by exact inner product with its raw vectors."""
    if not shortlist.ids or shortlist.vectors is None:
        return []
    exact = shortlist.vectors @ query.astype(np.float32)
    order = np.argsort(-exact, kind="stable")[:k]
    return [(shortlist.ids[i], float(exact[i])) for i in order]


def kept_rows(
    ids: Sequence[str], kept: Sequence[bytes | None], dim: int, binary: bool
) -> dict[str, np.ndarray]:
    """Rows by id from their kept bytes (``KeptVectors``); ids with none, or with bytes of
    another size, are left out."""
    dtype, width = (np.uint8, dim // 8) if binary else (np.float32, dim)
    size = width * np.dtype(dtype).itemsize
    return {
        item_id: np.frombuffer(raw, dtype=dtype)
        for item_id, raw in zip(ids, kept, strict=True)
        if raw is not None and len(raw) == size
    }


def with_rows(shortlist: Shortlist, rows: dict[str, np.ndarray]) -> Shortlist:
    """The shortlist with its raw vectors taken from ``rows``; ids not in it (removed since
    Milvus answered) are left out."""
    keep = [n for n, item_id in enumerate(shortlist.ids) if item_id in rows]
    if not keep:
        return Shortlist([], shortlist.scores[:0], None)
    ids = [shortlist.ids[n] for n in keep]
    return Shortlist(ids, shortlist.scores[keep], np.stack([rows[i] for i in ids]))


def query_vectors(
    client: Any,
    collection: str,
    expr: str,
    *,
    binary: bool,
    timeout: float,
    consistency: dict[str, Any],
) -> dict[str, np.ndarray]:
    """The vectors of the rows matching ``expr``, by id."""
    from pymilvus.client.prepare import Prepare
    from pymilvus.client.types import Status
    from pymilvus.client.utils import check_status

    request = Prepare.query_request(collection, expr, ["id", "vector"], [], **consistency)
    reply = client._get_connection()._stub.Query(request, timeout=timeout)
    if Status.EMPTY_COLLECTION in {reply.status.code, reply.status.error_code}:
        return {}
    check_status(reply.status)
    if not reply.fields_data:
        return {}
    ids = list(_field(reply.fields_data, "id").scalars.string_data.data)
    if not ids:
        return {}
    rows = _vectors(_field(reply.fields_data, "vector"), binary)
    return {item_id: rows[n] for n, item_id in enumerate(ids)}
