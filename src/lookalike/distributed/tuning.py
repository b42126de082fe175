"""Milvus' search knob tuned to a recall target, as the embedded store tunes its own: recall@10
is measured against exact search over the folder's vectors, and ``nprobe`` (IVF, from 1) or
``ef`` (HNSW, from 16) doubled from its smallest value until it reaches the target: every
list probed or candidate visited costs Milvus time on every query. A knob the user gave is
kept as given.

A re-ranking index (IVF_SQ8) is tuned with its longest shortlist; then the shortlist is cut to
the fewest candidates that still reach the target (or the longest's recall, when it falls
short): each candidate's raw vector is sent per query, by Milvus or Redis, and re-scored."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import numpy as np

from ..store.milvus_index import SHORTLIST_STEPS

if TYPE_CHECKING:
    from ..store.milvus_index import IndexPlan

RECALL_TARGET = 0.95
EF_MAX = 4096
LOWEST = {"nprobe": 1, "ef": 16}  # where the tuning starts
GAIN = 0.002  # a doubling that gains less recall than this stops the tuning


def tune_search(
    plan: IndexPlan, measure: Callable[[], float], target: float, pinned: Collection[str]
) -> float:
    """Set the plan's search knob (in place) to its smallest value, doubled until
    ``measure()`` reaches ``target`` (unless the knob is ``pinned``), then cut a re-rank's
    shortlist; returns the recall of the plan's final setting."""
    if "shortlist" not in plan.search or "shortlist" in pinned:
        return _tune_knob(plan, measure, target, pinned)
    plan.search["shortlist"] = SHORTLIST_STEPS[-1]
    recall = _tune_knob(plan, measure, target, pinned)
    goal = min(target, recall)
    for step in SHORTLIST_STEPS[:-1]:
        plan.search["shortlist"] = step
        cut = measure()
        if cut >= goal:
            return cut
    plan.search["shortlist"] = SHORTLIST_STEPS[-1]
    return recall


def _tune_knob(
    plan: IndexPlan, measure: Callable[[], float], target: float, pinned: Collection[str]
) -> float:
    knob = next((k for k in ("nprobe", "ef") if k in plan.search), None)
    if knob is None or knob in pinned:
        return measure()
    top = int(plan.build.get("nlist", EF_MAX)) if knob == "nprobe" else EF_MAX
    plan.search[knob] = min(top, LOWEST[knob])
    recall = measure()
    best, best_recall = int(plan.search[knob]), recall
    while recall < target and int(plan.search[knob]) < top:
        plan.search[knob] = min(top, int(plan.search[knob]) * 2)
        recall = measure()
        if recall < best_recall + GAIN:
            # no gain: the index's own approximation (IVF_SQ8's quantised codes) caps the
            # recall; searching more lists would only cost time
            plan.search[knob] = best
            return best_recall
        best, best_recall = int(plan.search[knob]), recall
    return recall


def exact_top(matrix: np.ndarray, queries: np.ndarray, k: int, binary: bool) -> np.ndarray:
    """Row positions of each query's exact top ``k`` (cosine, or fewest differing bits)."""
    import faiss

    index: Any
    if binary:
        index = faiss.IndexBinaryFlat(matrix.shape[1] * 8)
        index.add(np.ascontiguousarray(matrix, dtype=np.uint8))
        _, found = index.search(np.ascontiguousarray(queries, dtype=np.uint8), k)
    else:
        index = faiss.IndexFlatIP(matrix.shape[1])
        index.add(np.ascontiguousarray(matrix, dtype=np.float32))
        _, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return np.asarray(found)
