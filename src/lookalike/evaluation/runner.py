"""Running a retrieval evaluation: rank every query against one or more collections (through
their index, and optionally by exact search over the stored vectors), judge the rankings
and summarise them with confidence intervals. See ``metrics`` and ``queries`` for the
definitions; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInput
from .metrics import bootstrap_ci, metric_names, per_query_metrics
from .queries import RetrievalQuery, Truth, check_truth_ids

if TYPE_CHECKING:
    from ..collection import Collection

EXACT_CHUNK = 8192  # stored rows scored at once by the exact search
EXACT_QUERIES = 256  # queries scored at once by the exact search
_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1)


@dataclass
class Column:
    """One system's results: a collection searched through its index or exactly."""

    name: str
    collection: str
    model: str
    index: str
    search: str  # "index" or "exact"
    per_query: dict[str, np.ndarray]
    metrics: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    per_label: dict[str, dict[str, float]] = field(default_factory=dict)
    agreement: float | None = None  # exact columns: share of the index's top K that is exact

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "collection": self.collection,
            "model": self.model,
            "index": self.index,
            "search": self.search,
            "metrics": {
                m: {"value": v, "ci_low": lo, "ci_high": hi}
                for m, (v, lo, hi) in self.metrics.items()
            },
            "per_label": self.per_label,
            **({"index_agreement": self.agreement} if self.agreement is not None else {}),
        }


@dataclass
class RetrievalReport:
    ks: list[int]
    relevance: str  # "labels" or "truth"
    queries: int  # evaluated
    left_out: int  # queries with no relevant item in some collection
    labels: dict[str, int]  # evaluated queries per label
    columns: list[Column]
    resamples: int
    seed: int

    @property
    def depth(self) -> int:
        return max(self.ks)

    def metric_names(self) -> list[str]:
        return metric_names(self.ks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.ks,
            "depth": self.depth,
            "relevance": self.relevance,
            "queries": self.queries,
            "left_out": self.left_out,
            "labels": self.labels,
            "confidence_interval": {
                "level": 0.95,
                "method": "percentile bootstrap over queries",
                "resamples": self.resamples,
                "seed": self.seed,
            },
            "results": [c.to_dict() for c in self.columns],
        }


class _Ranker:
    """Rankings of one collection: through its index, and exactly over its stored vectors."""

    def __init__(self, coll: Collection) -> None:
        self.coll = coll
        rows = coll.catalog.db.execute("SELECT id, slot, label FROM items").fetchall()
        self.labels: dict[str, str | None] = {r[0]: r[2] for r in rows}
        self.slot_of = {r[0]: r[1] for r in rows}
        self.slots = np.array(sorted(r[1] for r in rows), dtype=np.int64)
        self.id_of = {r[1]: r[0] for r in rows}
        self.label_counts: dict[str, int] = {}
        for label in self.labels.values():
            if label is not None:
                self.label_counts[label] = self.label_counts.get(label, 0) + 1

    def vector(self, q: RetrievalQuery) -> tuple[np.ndarray, int | None]:
        if q.item_id is not None:
            slot = self.slot_of.get(q.item_id)
            if slot is None:
                raise InvalidInput(f"query item {q.item_id!r} is not in {self.coll.root}")
            return self.coll.vectors.read([slot], self.coll.catalog.next_slot), slot
        vec, _, _ = self.coll.query_vector(str(q.path))
        return vec, None

    def by_index(self, vec: np.ndarray, exclude: int | None, depth: int) -> list[str]:
        return [h.id for h in self.coll.search_vector(vec, depth, exclude_slot=exclude)]

    def exact(
        self, vecs: np.ndarray, excludes: Sequence[int | None], depth: int
    ) -> list[list[str]]:
        """Exact top ``depth`` by cosine (float) or Hamming distance (binary codes), ties
        broken by slot; each query's own slot left out. Blocks of queries against chunks of
        stored rows, so memory stays bounded."""
        out: list[list[str]] = []
        for start in range(0, len(vecs), EXACT_QUERIES):
            out += self._exact_block(
                vecs[start : start + EXACT_QUERIES], excludes[start : start + EXACT_QUERIES], depth
            )
        return out

    def _exact_block(
        self, vecs: np.ndarray, excludes: Sequence[int | None], depth: int
    ) -> list[list[str]]:
        n_slots = self.coll.catalog.next_slot
        best_s = np.full((len(vecs), 0), -np.inf)
        best_i = np.zeros((len(vecs), 0), dtype=np.int64)
        own = np.array([-1 if e is None else e for e in excludes], dtype=np.int64)
        for start in range(0, len(self.slots), EXACT_CHUNK):
            part = self.slots[start : start + EXACT_CHUNK]
            rows = self.coll.vectors.read(part, n_slots)
            if self.coll.binary:
                xor = np.bitwise_xor(vecs[:, None, :], rows[None, :, :])
                scores = -_POPCOUNT[xor].sum(axis=2, dtype=np.float64)
            else:
                scores = vecs.astype(np.float64) @ rows.astype(np.float64).T
            scores[part[None, :] == own[:, None]] = -np.inf
            all_s = np.concatenate([best_s, scores], axis=1)
            all_i = np.concatenate([best_i, np.broadcast_to(part, scores.shape)], axis=1)
            order = np.lexsort((all_i, -all_s), axis=1)[:, :depth]
            best_s = np.take_along_axis(all_s, order, axis=1)
            best_i = np.take_along_axis(all_i, order, axis=1)
        return [
            [self.id_of[int(i)] for i, s in zip(row_i, row_s, strict=True) if s > -np.inf]
            for row_i, row_s in zip(best_i, best_s, strict=True)
        ]

    def relevant(self, q: RetrievalQuery, truth: Truth | None) -> set[str] | int:
        """The relevant ids (truth), or for labels just how many there are."""
        if truth is not None:
            return truth.get(q.name, set()) - {q.item_id}
        if q.label is None:
            return 0
        n = self.label_counts.get(q.label, 0)
        return n - 1 if q.item_id is not None and self.labels.get(q.item_id) == q.label else n

    def judge(self, ranked: list[str], q: RetrievalQuery, rel: set[str] | int) -> list[bool]:
        if isinstance(rel, set):
            return [i in rel for i in ranked]
        return [self.labels.get(i) == q.label for i in ranked]


def _column_name(coll: Collection, names: list[str]) -> str:
    name = coll.root.name or str(coll.root)
    return str(coll.root) if name in names else name


def evaluate_retrieval(
    collections: Sequence[Collection],
    queries: Sequence[RetrievalQuery],
    ks: Sequence[int],
    *,
    truth: Truth | None = None,
    exact: bool = False,
    resamples: int = 1000,
    seed: int = 0,
) -> RetrievalReport:
    """Evaluate ``queries`` against each collection (the first is the main one; the others
    are compared on the same queries). ``truth``: relevant ids per query name (else labels).
    ``exact`` adds, per collection, the same queries answered by exact search."""
    ks = sorted(set(ks))
    if not ks or ks[0] < 1:
        raise InvalidInput("k must be positive whole numbers")
    if not queries:
        raise InvalidInput("no queries to evaluate")
    depth = max(ks)
    rankers = [_Ranker(c) for c in collections]
    for r in rankers:
        if len(r.slots) == 0:
            raise InvalidInput(f"collection {r.coll.root} is empty")
        if truth is not None:
            check_truth_ids(truth, r.labels, f"collection {r.coll.root}")
    rels = [[r.relevant(q, truth) for q in queries] for r in rankers]
    keep = [i for i in range(len(queries)) if all(_count(rel[i]) > 0 for rel in rels)]
    if not keep:
        raise InvalidInput(
            "no query has a relevant item in the collection"
            + (" (do the query folders' names match the items' labels?)" if truth is None else "")
        )
    kept = [queries[i] for i in keep]
    labels: dict[str, int] = {}
    for q in kept:
        if q.label is not None:
            labels[q.label] = labels.get(q.label, 0) + 1
    columns: list[Column] = []
    names: list[str] = []
    for r, rel in zip(rankers, rels, strict=True):
        name = _column_name(r.coll, names)
        names.append(name)
        vecs, excludes, ranked = [], [], []
        for i in keep:
            vec, exclude = r.vector(queries[i])
            vecs.append(vec)
            excludes.append(exclude)
            ranked.append(r.by_index(vec, exclude, depth))
        info = r.coll.index.info()
        ident = (str(r.coll.root), str(r.coll.config["model"]["name"]), str(info.get("type")))
        systems = [(name, "index", ranked)]
        if exact:
            systems.append((f"{name} exact", "exact", r.exact(np.vstack(vecs), excludes, depth)))
        for col_name, how, rankings in systems:
            hits = np.zeros((len(keep), depth), dtype=bool)
            n_rel = np.zeros(len(keep), dtype=np.int64)
            for row, (i, ids) in enumerate(zip(keep, rankings, strict=True)):
                judged = r.judge(ids, queries[i], rel[i])
                hits[row, : len(judged)] = judged
                n_rel[row] = _count(rel[i])
            col = Column(col_name, *ident, how, per_query_metrics(hits, n_rel, ks))
            _summarise(col, kept, resamples, seed)
            if how == "exact":
                col.agreement = float(
                    np.mean(
                        [
                            len(set(a) & set(b)) / max(len(b), 1)
                            for a, b in zip(ranked, rankings, strict=True)
                        ]
                    )
                )
            columns.append(col)
    return RetrievalReport(
        list(ks),
        "truth" if truth is not None else "labels",
        len(kept),
        len(queries) - len(kept),
        dict(sorted(labels.items())),
        columns,
        resamples,
        seed,
    )


def _count(rel: set[str] | int) -> int:
    return len(rel) if isinstance(rel, set) else rel


def _summarise(col: Column, queries: list[RetrievalQuery], resamples: int, seed: int) -> None:
    for metric, values in col.per_query.items():
        low, high = bootstrap_ci(values, resamples=resamples, seed=seed)
        col.metrics[metric] = (float(values.mean()), low, high)
    by_label: dict[str, list[int]] = {}
    for row, q in enumerate(queries):
        if q.label is not None:
            by_label.setdefault(q.label, []).append(row)
    for label in sorted(by_label):
        rows = by_label[label]
        col.per_label[label] = {m: float(v[rows].mean()) for m, v in col.per_query.items()}
