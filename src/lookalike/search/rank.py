"""Rank the stored items against a query vector: the index proposes, the catalog names."""

from __future__ import annotations

import difflib

import numpy as np

from ..errors import UnknownLabel
from ..store.base import VectorStore
from ..store.catalog import Catalog
from .hits import Hit


def ranked_hits(
    store: VectorStore,
    catalog: Catalog,
    vec: np.ndarray,
    k: int,
    *,
    threshold: float | None = None,
    exclude_slot: int | None = None,
) -> list[Hit]:
    """The ``k`` best items for ``vec`` (above ``threshold``), best first.

    Fetches more candidates from the index until ``k`` are found in the catalog, the index
    is exhausted, or the scores fall below the threshold (filters: :mod:`.filtered`).
    """
    total = len(store)
    fetch = k + (1 if exclude_slot is not None else 0)
    while True:
        fetch = min(fetch, total)
        scores, ids = store.search(vec, fetch)
        pairs = [
            (float(s), int(i))
            for s, i in zip(scores[0], ids[0], strict=True)
            if i >= 0 and i != exclude_slot and (threshold is None or s >= threshold)
        ]
        items = catalog.by_slots(i for _, i in pairs)
        hits: list[Hit] = []
        for score, slot in pairs:
            item = items.get(slot)
            if item is None:
                continue
            hits.append(
                Hit(
                    len(hits) + 1,
                    item.id,
                    score,
                    item.path,
                    item.label,
                    item.url,
                    item.metadata,
                )
            )
            if len(hits) == k:
                break
        # Stop when we have enough, the index is exhausted, or scores fell below threshold.
        below = threshold is not None and len(scores[0]) and scores[0][-1] < threshold
        if len(hits) >= k or fetch >= total or below:
            return hits
        fetch *= 4


def check_label(catalog: Catalog, label: str) -> None:
    """Raise :class:`UnknownLabel` when no item has ``label``, naming the nearest labels."""
    if catalog.has_label(label):
        return
    labels = catalog.labels()
    if not labels:
        raise UnknownLabel(f"unknown label {label!r}: no item of this collection has a label")
    count = f"{len(labels)} label{'s' if len(labels) != 1 else ''}"
    near = difflib.get_close_matches(label, labels, n=3)
    if near:
        raise UnknownLabel(
            f"unknown label {label!r}; nearest: {', '.join(near)} (the collection has {count})"
        )
    shown = ", ".join(labels[:5]) + (", ..." if len(labels) > 5 else "")
    raise UnknownLabel(
        f"unknown label {label!r}: the collection has {count}, none of them close to "
        f"{label!r} ({shown})"
    )
