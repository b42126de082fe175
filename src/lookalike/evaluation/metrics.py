"""Retrieval metrics over binary relevance, computed for many queries at once, and bootstrap
confidence intervals of their means. Pure functions of numpy arrays.

Each query is a row of ``hits``: ``hits[q, i]`` is True when the item at rank ``i + 1`` is
relevant (rows are padded with False when fewer than ``depth`` results came back), and
``n_relevant[q]`` (>= 1) is how many relevant items the collection holds for it.

* precision@k = relevant items in the top k / k (k is the denominator even when fewer than
  k results came back);
* recall@k = relevant items in the top k / all relevant items;
* AP@K (K = the depth, the largest k asked for) = sum over the relevant ranks i <= K of
  precision@i, divided by min(relevant items, K); mAP@K is its mean over queries. A query
  whose relevant items all fill the first ranks scores 1;
* nDCG@k = DCG@k / ideal DCG@k with DCG@k = sum over relevant ranks i <= k of 1/log2(i + 1),
  the ideal ranking putting min(relevant items, k) relevant items first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InvalidInput


def parse_ks(text: str) -> list[int]:
    """``"1,5,10"`` -> ``[1, 5, 10]`` (sorted, unique, each a positive whole number)."""
    ks: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise InvalidInput(
                f"-k {text}: {part!r} is not a positive whole number (e.g. -k 1,5,10)"
            )
        ks.add(int(part))
    return sorted(ks)


def _check(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> None:
    if hits.ndim != 2 or len(hits) != len(n_relevant):
        raise InvalidInput("hits must be a (queries, depth) array with one count per query")
    if k < 1 or k > hits.shape[1]:
        raise InvalidInput(f"k={k} is outside 1..{hits.shape[1]} (the ranking depth)")
    if len(n_relevant) and n_relevant.min() < 1:
        raise InvalidInput("every query needs at least one relevant item")


def precision_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    _check(hits, n_relevant, k)
    return hits[:, :k].sum(axis=1) / k


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    _check(hits, n_relevant, k)
    return hits[:, :k].sum(axis=1) / n_relevant


def average_precision_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    _check(hits, n_relevant, k)
    top = hits[:, :k].astype(np.float64)
    precision_at_i = np.cumsum(top, axis=1) / np.arange(1, k + 1)
    return (precision_at_i * top).sum(axis=1) / np.minimum(n_relevant, k)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    _check(hits, n_relevant, k)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * discount).sum(axis=1)
    ideal = np.cumsum(discount)[np.minimum(n_relevant, k) - 1]
    return dcg / ideal


def metric_names(ks: Sequence[int]) -> list[str]:
    """The metrics reported for ``ks``, in order."""
    depth = max(ks)
    return (
        [f"precision@{k}" for k in ks]
        + [f"recall@{k}" for k in ks]
        + [f"mAP@{depth}"]
        + [f"nDCG@{k}" for k in ks]
    )


def per_query_metrics(
    hits: np.ndarray, n_relevant: np.ndarray, ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Every metric of :func:`metric_names` for every query (rows of ``hits``)."""
    n_relevant = np.asarray(n_relevant, dtype=np.int64)
    depth = max(ks)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"precision@{k}"] = precision_at_k(hits, n_relevant, k)
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(hits, n_relevant, k)
    out[f"mAP@{depth}"] = average_precision_at_k(hits, n_relevant, depth)
    for k in ks:
        out[f"nDCG@{k}"] = ndcg_at_k(hits, n_relevant, k)
    return out


def bootstrap_ci(
    values: np.ndarray, *, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``: ``resamples`` resamples of
    the queries with replacement from ``default_rng(seed)``. The same seed and number of
    queries resample the same queries, so intervals of two systems on one query set are
    paired. A single query gives a zero-width interval."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, 2_000_000 // len(values))  # bounded memory for many queries
    for start in range(0, resamples, step):
        n = min(step, resamples - start)
        means[start : start + n] = values[rng.integers(0, len(values), (n, len(values)))].mean(
            axis=1
        )
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)
