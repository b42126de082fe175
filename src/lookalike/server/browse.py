"""Browsing a collection without a query: a page of items in the order they were added,
and the labels with their item counts (cached per catalog generation)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .uploads import public_item

if TYPE_CHECKING:
    from ..store.catalog import Catalog
    from .locking import RWLock

__all__ = ["Browser"]


class Browser:
    """The ``GET /items`` and ``GET /labels`` answers over one catalog. Label counts are
    one ``GROUP BY`` over the label index, kept until the catalog's generation changes
    (every add, removal or rename bumps it, in this process or another)."""

    def __init__(self, catalog: Catalog, lock: RWLock) -> None:
        self.catalog = catalog
        self.lock = lock
        self._cached: tuple[int, dict[str | None, int]] | None = None
        self._cache_lock = threading.Lock()

    def _counts(self) -> dict[str | None, int]:
        """Call with the read lock held."""
        generation = self.catalog.generation
        with self._cache_lock:
            cached = self._cached
        if cached is not None and cached[0] == generation:
            return cached[1]
        counts = self.catalog.label_counts()
        with self._cache_lock:
            self._cached = (generation, counts)
        return counts

    def labels(self) -> dict[str, Any]:
        with self.lock.read():
            counts = self._counts()
        labelled = sorted((k, v) for k, v in counts.items() if k is not None)
        return {
            "labels": [{"label": k, "count": v} for k, v in labelled],
            "unlabelled": counts.get(None, 0),
            "total": sum(counts.values()),
        }

    def page(self, offset: int, limit: int, label: str | None) -> dict[str, Any]:
        with self.lock.read():
            counts = self._counts()
            items = self.catalog.page(offset, limit, label)
        total = counts.get(label, 0) if label is not None else sum(counts.values())
        return {
            "items": [public_item(item) for item in items],
            "total": total,
            "offset": offset,
            "limit": limit,
            "label": label,
        }
