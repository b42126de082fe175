"""Filtered search: exactly the top ``k`` of the items a :class:`~.where.Where` accepts.

The catalog first lists the matching items (one SQL scan of label and metadata, cached per
expression and catalog generation). Then:

* up to ``SCAN_MAX`` matching items (a selective filter): their vectors are scored
  directly, which is exact and cheaper than any index walk;
* more (a broad filter): the index searches with a FAISS id selector, its knob widened by
  the inverse of the selectivity; should it return fewer than ``k`` hits while more items
  match, the matching items are scored directly after all. Stores that cannot restrict a
  search (binary codes) are always scored directly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from ..store.base import VectorStore
from ..store.catalog import Catalog
from ..store.vectors import VectorFile
from .hits import Hit
from .rank import ranked_hits
from .where import Where, as_where, both, label_where

__all__ = ["SCAN_MAX", "SlotCache", "filtered_hits", "scan_slots", "search_hits"]

# Filters matching up to this many items are answered by scoring their vectors directly.
SCAN_MAX = 5_000


class SlotCache:
    """The matching slots of the last few filters, valid for one catalog generation."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[object, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the server searches from several threads

    def slots(self, catalog: Catalog, where: Where) -> np.ndarray:
        sql, params = where.sql()
        key = (catalog.generation, sql, *params)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        slots = np.asarray(catalog.slots_where(sql, params), dtype=np.int64)
        with self._lock:
            self._entries[key] = slots
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return slots


def search_hits(
    parts: tuple[VectorStore, Catalog, VectorFile, SlotCache],
    vec: np.ndarray,
    k: int,
    threshold: float | None,
    label: str | None,
    where: str | Where | None,
    exclude_slot: int | None,
) -> list[Hit]:
    """Unfiltered (:func:`.rank.ranked_hits`) or filtered (:func:`filtered_hits`: ``label``
    and ``where`` both) search over a collection's (store, catalog, vectors, slot cache)."""
    store, catalog, vectors, cache = parts
    where = both(label_where(label) if label is not None else None, as_where(where))
    if where is None:
        return ranked_hits(store, catalog, vec, k, threshold=threshold, exclude_slot=exclude_slot)
    return filtered_hits(
        store,
        catalog,
        vectors,
        vec,
        k,
        where,
        threshold=threshold,
        exclude_slot=exclude_slot,
        cache=cache,
    )


def filtered_hits(
    store: VectorStore,
    catalog: Catalog,
    vectors: VectorFile,
    vec: np.ndarray,
    k: int,
    where: Where,
    *,
    threshold: float | None = None,
    exclude_slot: int | None = None,
    cache: SlotCache | None = None,
) -> list[Hit]:
    """The ``k`` best items accepted by ``where`` (above ``threshold``), best first."""
    slots = (cache or SlotCache()).slots(catalog, where)  # the same array while cached
    if len(slots) > SCAN_MAX:
        # the query item stays in the allowed set (so the store can reuse its selector for
        # this array) and is dropped from one more result
        extra = 1 if exclude_slot is not None else 0
        fraction = len(slots) / max(len(store), 1)
        found = store.search_selected(vec.reshape(1, -1), k + extra, slots, fraction)
        if found is not None:
            scores, ids = found
            valid = [(float(s), int(i)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
            valid = [p for p in valid if p[1] != exclude_slot][:k]
            if len(valid) >= min(k, len(slots) - extra):
                pairs = [p for p in valid if threshold is None or p[0] >= threshold]
                return _hits(catalog, pairs)
    return scan_slots(vectors, catalog, vec, slots, k, threshold, exclude_slot)


def scan_slots(
    vectors: VectorFile,
    catalog: Catalog,
    vec: np.ndarray,
    slots: Sequence[int] | np.ndarray,
    k: int,
    threshold: float | None,
    exclude_slot: int | None = None,
) -> list[Hit]:
    """The best ``k`` of ``slots`` for ``vec`` scored directly (ties by slot), as hits."""
    idx = np.asarray(slots, dtype=np.int64)
    if exclude_slot is not None:
        idx = idx[idx != exclude_slot]
    if idx.size == 0:
        return []
    if idx.size <= 64:  # a few rows: read them (cheaper than mapping the file)
        mat = vectors.read(idx, catalog.next_slot)
    else:  # one gather from the mapped file, without the memmap subclass's extra copy
        mat = np.asarray(vectors.matrix(catalog.next_slot))[idx]
    query = np.asarray(vec, dtype=vectors.dtype).reshape(-1)
    if vectors.dtype == np.uint8:
        bits = np.unpackbits(np.bitwise_xor(mat, query[None, :]), axis=1)
        scores = 1.0 - bits.sum(axis=1, dtype=np.int64) / float(bits.shape[1])
    else:
        scores = mat.astype(np.float32, copy=False) @ query.astype(np.float32)
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
        cut = scores[part].min()
        keep = np.nonzero(scores >= cut)[0]  # everything tied with the k-th, for slot order
    else:
        keep = np.arange(len(scores))
    order = keep[np.lexsort((idx[keep], -scores[keep]))]
    if threshold is not None:
        order = order[scores[order] >= threshold]
    order = order[:k]
    return _hits(catalog, [(float(scores[j]), int(idx[j])) for j in order.tolist()])


def _hits(catalog: Catalog, pairs: list[tuple[float, int]]) -> list[Hit]:
    items = catalog.by_slots(slot for _, slot in pairs)
    hits: list[Hit] = []
    for score, slot in pairs:
        item = items.get(slot)
        if item is None:
            continue
        hits.append(
            Hit(len(hits) + 1, item.id, score, item.path, item.label, item.url, item.metadata)
        )
    return hits
