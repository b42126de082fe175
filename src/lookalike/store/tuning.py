"""Measuring an ANN index against exact search: recall@k, tuning the search knob, latency.

Recall is measured on a held-out sample of the collection's own vectors, leave-one-out: each
sampled item is a query, its own id is removed from both the exact and the approximate
answers (exactly what an ``id:`` search does), and recall@k is the share of the exact top-k
that the index returns in its top-k.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ann import AnnStore
from .planning import (
    DRIFT_SAMPLE_SIZE,
    MEASURE_EVERY,
    MEASURE_MIN_CHANGES,
    TOMBSTONE_LIMIT,
)

log = logging.getLogger(__name__)

RECALL_K = 10


def drop_self(ids: np.ndarray, query_slots: np.ndarray, k: int) -> np.ndarray:
    """Rows of ``ids`` without the query's own id, cut to ``k`` columns."""
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for row, (cand, own) in enumerate(zip(ids, query_slots, strict=True)):
        kept = cand[(cand != own) & (cand >= 0)][:k]
        out[row, : len(kept)] = kept
    return out


def exact_knn(
    read_rows: Callable[[np.ndarray], np.ndarray],
    slots: np.ndarray,
    queries: np.ndarray,
    k: int,
    chunk: int = 65536,
) -> np.ndarray:
    """Exact top-``k`` slots (by inner product) of each query among ``slots``, in chunks."""
    nq = len(queries)
    best_s = np.full((nq, 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((nq, 0), dtype=np.int64)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    for start in range(0, len(slots), chunk):
        part = np.asarray(slots[start : start + chunk], dtype=np.int64)
        scores = q @ read_rows(part).T
        s = np.concatenate([best_s, scores], axis=1)
        i = np.concatenate([best_i, np.broadcast_to(part, scores.shape)], axis=1)
        kk = min(k, s.shape[1])
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        best_s = np.take_along_axis(s, top, axis=1)
        best_i = np.take_along_axis(i, top, axis=1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, axis=1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each truth row (ignoring -1) present in the matching found row."""
    hits = 0
    total = 0
    for f, t in zip(found, truth, strict=True):
        t = t[t >= 0]
        hits += len(np.intersect1d(f, t))
        total += len(t)
    return hits / total if total else 1.0


@dataclass
class Sample:
    """Held-out queries: item slots, their vectors and their exact neighbours (self removed)."""

    slots: np.ndarray
    vectors: np.ndarray
    truth: np.ndarray

    @classmethod
    def draw(
        cls,
        read_rows: Callable[[np.ndarray], np.ndarray],
        live: np.ndarray,
        size: int,
        seed: int = 0,
        prefer: np.ndarray | None = None,
    ) -> Sample:
        """``size`` random live items (half of them from ``prefer`` when given, e.g. the
        items added since the last measurement) with their exact top-10."""
        rng = np.random.default_rng(seed)
        size = min(size, len(live))
        chosen = np.zeros(0, dtype=np.int64)
        if prefer is not None and len(prefer):
            chosen = rng.choice(prefer, min(len(prefer), size // 2), replace=False)
        rest = np.setdiff1d(live, chosen, assume_unique=False)
        more = rng.choice(rest, min(len(rest), size - len(chosen)), replace=False)
        slots = np.sort(np.concatenate([chosen, more]).astype(np.int64))
        vectors = read_rows(slots)
        truth = drop_self(exact_knn(read_rows, live, vectors, RECALL_K + 1), slots, RECALL_K)
        return cls(slots, vectors, truth)

    def measure(self, store: AnnStore) -> float:
        _, ids = store.search(self.vectors, RECALL_K + 1)
        return recall(drop_self(ids, self.slots, RECALL_K), self.truth)


def tune(
    store: AnnStore, sample: Sample, target: float, at_least: int | None = None
) -> tuple[int, float]:
    """Set the store's knob to the smallest ladder value meeting ``target`` recall@10
    (at least ``at_least``); when none does, the value with the best recall. Returns
    (value, measured recall)."""
    limit = int(store.params.get("nlist", 1 << 30)) if store.knob == "nprobe" else 1 << 30
    values = [v for v in store.ladder if v <= limit and (at_least is None or v >= at_least)]
    if not values:
        values = [min(limit, at_least or limit)]
    best = (values[-1], -1.0)
    for value in values:
        store.params[store.knob] = value
        got = sample.measure(store)
        if got >= target:
            return value, got
        if got > best[1]:
            best = (value, got)
    store.params[store.knob] = best[0]
    return best


def latency_ms(store: Any, queries: np.ndarray, k: int = RECALL_K, n: int = 200) -> dict[str, Any]:
    """p50 / p99 of one-query searches, in milliseconds, with one FAISS thread (as the
    server runs them: with more, idle OpenMP workers spin, which made this measurement
    cost about 1.4 s of CPU at the end of every ``index`` run on 2 cores)."""
    import faiss

    times = []
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        for row in queries[:n]:
            t0 = time.perf_counter()
            store.search(row.reshape(1, -1), k)
            times.append((time.perf_counter() - t0) * 1000.0)
    finally:
        faiss.omp_set_num_threads(threads)
    if not times:
        return {"p50": None, "p99": None, "queries": 0}
    arr = np.array(times)
    return {
        "p50": round(float(np.percentile(arr, 50)), 4),
        "p99": round(float(np.percentile(arr, 99)), 4),
        "queries": len(times),
    }


def recheck_recall(
    store: Any,
    meta: dict[str, Any],
    changes: int,
    added: list[int],
    rows: Callable[[np.ndarray], np.ndarray],
    live_slots: Callable[[], np.ndarray],
    *,
    seed: int,
    target: float,
    fixed: bool = False,
) -> str | None:
    """After incremental changes: once enough changed, measure recall@10 again on a fresh
    sample (favouring the added items) and raise the search knob when it drifted below
    ``target`` (unless the user ``fixed`` it: then the new recall is only recorded).
    Returns why the index must be rebuilt instead, or None. Updates ``meta``."""
    if store.tombstones > TOMBSTONE_LIMIT * max(1, int(store.index.ntotal)):
        return f"{store.tombstones} removed items ({TOMBSTONE_LIMIT:.0%} limit)"
    changes += int(meta.get("changes_since_measure", 0))
    meta["changes_since_measure"] = changes
    if changes < max(MEASURE_MIN_CHANGES, MEASURE_EVERY * len(store)):
        return None
    live = live_slots()
    sample = Sample.draw(
        rows,
        live,
        DRIFT_SAMPLE_SIZE,
        seed=seed,
        prefer=np.intersect1d(np.asarray(added, dtype=np.int64), live),
    )
    got = sample.measure(store)
    knob = store.knob
    if got < target and not fixed:
        value, got = tune(store, sample, target, at_least=int(store.params[knob]))
        if got < target:
            return f"measured recall@10 {got:.3f} < {target} at {knob}={value}"
        log.info("recall drifted; %s raised to %s (recall@10 %.3f)", knob, value, got)
        meta["latency_ms"] = latency_ms(store, sample.vectors)
    meta.update(
        {
            "recall_at_10": round(got, 4),
            "recall_queries": len(sample.slots),
            "changes_since_measure": 0,
            "measured_at": time.time(),
        }
    )
    return None
