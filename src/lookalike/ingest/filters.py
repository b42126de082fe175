"""The content filters (``min_side``, ``max_aspect``) as settings of a collection.

They are stored in the catalog's ``meta`` table. When a run uses other values than the
stored ones, :func:`reapply` brings the whole collection in line before anything is
indexed: items that now break a filter are removed (and listed as skipped, with the
reason), files skipped by a filter that they now pass are forgotten so they are tried again
(at once for the sources of this run, else the next time their source is indexed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..store.catalog import Catalog, Skipped
from .decode import DecodeLimits, filter_problem

__all__ = ["FilterChange", "reapply", "stored_filters"]

META_KEY = "filters"
_FILTER_REASONS = ("too-small", "aspect")
_SIZE = re.compile(r"^(\d+)x(\d+):")


def stored_filters(catalog: Catalog) -> dict[str, Any]:
    """``{"min_side": int | None, "max_aspect": float | None}`` as last used."""
    raw = catalog.get_meta(META_KEY)
    stored = json.loads(raw) if raw else {}
    return {"min_side": stored.get("min_side"), "max_aspect": stored.get("max_aspect")}


def _wanted(limits: DecodeLimits) -> dict[str, Any]:
    return {"min_side": limits.min_side, "max_aspect": limits.max_aspect}


@dataclass
class FilterChange:
    message: str
    removed_slots: list[int] = field(default_factory=list)
    retried: int = 0


def reapply(catalog: Catalog, limits: DecodeLimits) -> FilterChange | None:
    """Store ``limits``' filters; if they differ from the stored ones, re-apply them to
    every item and filtered skip (in one transaction). None when nothing changed."""
    old, new = stored_filters(catalog), _wanted(limits)
    if old == new:
        return None
    change = FilterChange(message="")
    removed: list[tuple[str, Skipped]] = []
    with catalog.transaction():
        for item in list(catalog.items()):
            if item.width is None or item.height is None:
                continue
            problem = filter_problem(item.width, item.height, limits)
            if problem is not None and item.path is not None:
                skip = Skipped(item.path, item.source, *problem, item.size, item.mtime_ns)
                removed.append((item.id, skip))
        for item_id, skip in removed:
            change.removed_slots += catalog.delete([item_id])
            catalog.record_skip(skip)
        for skip in catalog.skipped():
            if skip.reason not in _FILTER_REASONS:
                continue
            size = _SIZE.match(skip.detail)
            problem = (
                filter_problem(int(size[1]), int(size[2]), limits) if size is not None else None
            )
            if problem is None:
                catalog.clear_skip(skip.path)
                change.retried += 1
            elif problem != (skip.reason, skip.detail):
                catalog.record_skip(
                    Skipped(skip.path, skip.source, *problem, skip.size, skip.mtime_ns)
                )
        catalog.set_meta(META_KEY, json.dumps(new))
        if removed:
            catalog.bump_generation()
    change.message = (
        f"filters changed ({_describe(old)} -> {_describe(new)}): "
        f"{len(removed)} items removed, {change.retried} skipped files to try again"
    )
    return change


def _describe(filters: dict[str, Any]) -> str:
    parts = [f"{key.replace('_', '-')} {value:g}" for key, value in filters.items() if value]
    return ", ".join(parts) or "none"
