"""Searching a Milvus-backed collection: Milvus ranks, the metadata store completes the hits.

Label and ``--where`` filters are pushed down to Milvus as boolean expressions
(``search/milvus_filter.py``), so Milvus returns the best matching items, not the best items
filtered afterwards. Only ids whose metadata is ready are shown (``publisher.py``); when some
are hidden (an add or removal in flight) the search asks Milvus for more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..errors import InvalidInput
from ..search.hits import Hit

if TYPE_CHECKING:
    from ..search.where import Where
    from ..store.catalog import Catalog, Item
    from ..store.milvus import MilvusVectors

MILVUS_TOPK = 16384  # the most results Milvus returns for one query


class MetadataSource(Protocol):
    """Where hits get their records: Redis (``RedisMetadata``) or the local catalog."""

    def get(self, ids: Sequence[str]) -> list[Item | None]: ...

    def count(self) -> int: ...

    def labels(self) -> dict[str, int]: ...


class CatalogMetadata:
    """The local catalog as a :class:`MetadataSource` (``--store milvus`` without Redis)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def get(self, ids: Sequence[str]) -> list[Item | None]:
        return [self.catalog.get(i) for i in ids]

    def count(self) -> int:
        return self.catalog.count()

    def labels(self) -> dict[str, int]:
        return {k: v for k, v in self.catalog.label_counts().items() if k is not None}


@dataclass(frozen=True)
class Round:
    """One search round's answer for the 1-row ``query``: Milvus' (id, score) best first, and
    the records of those ids (None where an id is not ready)."""

    query: np.ndarray
    found: list[tuple[str, float]]
    records: dict[str, Item | None]


def first_limit(k: int, exclude: Sequence[str]) -> int:
    """How many results a search's first round asks Milvus for."""
    return min(MILVUS_TOPK, k + len(set(exclude)))


def expression(label: str | None, where: Where | None) -> tuple[str | None, Where | None]:
    """(the Milvus expression, the part left to check in Python: None when all pushed)."""
    from ..search.milvus_filter import label_expr, to_milvus

    parts = [label_expr(label)] if label is not None else []
    rest = None
    if where is not None:
        try:
            parts.append(to_milvus(where))
        except InvalidInput:
            rest = where  # not expressible in Milvus: checked on the returned items
    return (" and ".join(f"({p})" for p in parts) or None), rest


def search_hits(
    milvus: MilvusVectors,
    meta: MetadataSource,
    vec: np.ndarray,
    k: int,
    *,
    threshold: float | None = None,
    label: str | None = None,
    where: Where | None = None,
    exclude: Sequence[str] = (),
    first: Round | None = None,
) -> list[Hit]:
    """The best ``k`` ready items for the query row ``vec`` (1 x dim). ``first`` is the first
    round's answer when it was already read (``batched.py``: Milvus asked for
    ``first_limit(k, exclude)`` with the same filter)."""
    expr, rest = expression(label, where)
    skip = set(exclude)
    limit = first_limit(k, exclude)
    if first is not None:
        settled = first_hits(first, k, threshold=threshold, label=label, where=where,
                             exclude=exclude)  # fmt: skip
        if settled is not None:
            return settled
        limit = min(MILVUS_TOPK, limit * 4)
    while True:
        found = milvus.search(np.atleast_2d(vec), limit, expr)[0]
        ids = [i for i, _ in found if i not in skip]
        settled = _settled(found, ids, meta.get(ids), k, threshold, rest, limit)
        if settled is not None:
            return settled
        limit = min(MILVUS_TOPK, limit * 4)


def first_hits(
    first: Round,
    k: int,
    *,
    threshold: float | None = None,
    label: str | None = None,
    where: Where | None = None,
    exclude: Sequence[str] = (),
) -> list[Hit] | None:
    """The hits of a first round already read (no call made), or None when it does not
    settle them: some were hidden, and Milvus must be asked for more (``search_hits``)."""
    rest = expression(label, where)[1]
    skip = set(exclude)
    ids = [i for i, _ in first.found if i not in skip]
    items = [first.records.get(i) for i in ids]
    return _settled(first.found, ids, items, k, threshold, rest, first_limit(k, exclude))


def _settled(
    found: list[tuple[str, float]],
    ids: list[str],
    items: list[Item | None],
    k: int,
    threshold: float | None,
    rest: Where | None,
    limit: int,
) -> list[Hit] | None:
    """The hits among one round's ``found`` (``ids``: those not excluded, with their
    ``items``), or None when that round, of ``limit`` results, cannot settle them."""
    hits: list[Hit] = []
    scores = dict(found)
    for item_id, item in zip(ids, items, strict=True):
        score = scores[item_id]
        if threshold is not None and score < threshold:
            break
        if item is None or (rest is not None and not rest.matches(item.label, item.metadata)):
            continue
        hits.append(_hit(len(hits) + 1, item, score))
        if len(hits) == k:
            return hits
    exhausted = len(found) < limit or limit >= MILVUS_TOPK
    below = threshold is not None and found and found[-1][1] < threshold
    return hits if exhausted or below else None


def _hit(rank: int, item: Item, score: float) -> Hit:
    return Hit(
        rank=rank,
        id=item.id,
        score=float(score),
        path=item.path,
        label=item.label,
        url=item.url,
        metadata=item.metadata,
    )
