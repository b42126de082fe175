"""Approximate (ANN) stores for float unit vectors: HNSW, IVF-SQ8, IVF-PQ and LSH.

All of them share :class:`AnnStore`, which holds what is common:

* one search knob (``ef`` for HNSW, ``nprobe`` for IVF, ``shortlist`` for LSH), set by the
  tuner in :mod:`lookalike.store.tuning` to the smallest value that meets the recall target;
* **exact re-ranking**: the compressed index proposes a shortlist, whose exact cosine scores
  are computed from the memory-mapped ``vectors.bin`` (``rerank`` maps slots to rows), so
  reported scores are exact and the index can hold compressed codes only;
* **tombstones** for indexes that cannot delete in place (HNSW graphs): removed ids are kept
  in a set, filtered out during the graph search with a FAISS ``IDSelector``, saved beside the
  index, and counted so the index manager can rebuild when there are too many.

Ids are int64 catalog slots; scores are cosine similarity (higher is more similar).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .base import SelectorCache, VectorStore

Rerank = Callable[[np.ndarray], np.ndarray]


def _faiss() -> Any:
    import faiss

    return faiss


def _fsync_replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def default_nlist(n: int) -> int:
    """IVF list count: about 4 * sqrt(n), at least 16, at most 65536."""
    return int(min(65536, max(16, 4 * int(np.sqrt(max(n, 1))))))


def pq_subquantizers(dim: int) -> int:
    """PQ sub-vector count: one byte per 8 dimensions (64 bytes for 512 dims), dividing dim."""
    m = max(1, dim // 8)
    while dim % m:
        m -= 1
    return m


class AnnStore(VectorStore):
    """Base of the ANN stores. Subclasses create ``self.index`` and describe their knob."""

    kind = "ann"
    knob = "ef"
    ladder: tuple[int, ...] = ()
    deletes_in_place = True
    # how many candidates, per wanted result, the compressed index proposes for re-ranking
    shortlist_factor = 2
    shortlist_extra = 10

    def __init__(
        self,
        dim: int,
        index: Any,
        params: dict[str, Any],
        rerank: Rerank | None = None,
        tombstones: np.ndarray | None = None,
    ) -> None:
        self.dim = dim
        self.index = index
        self.params = dict(params)
        self.rerank = rerank
        self._tomb: set[int] = set()
        self._selector: Any = None
        self._selectors = SelectorCache()
        if tombstones is not None and len(tombstones):
            self._tomb = {int(t) for t in tombstones}
        self.index_dirty = False

    # -- building ------------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self._tomb:
            back = self._tomb.intersection(int(i) for i in ids)
            if back:  # a slot is never reused by the catalog, but stay correct if it is
                raise ValueError("cannot re-add a removed id to an index with tombstones")
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        self.index_dirty = True

    def remove(self, ids: np.ndarray) -> None:
        if len(ids) == 0:
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.deletes_in_place:
            self.index.remove_ids(ids)
            self.index_dirty = True
        else:
            self._tomb.update(int(i) for i in ids)
            self._selector = None

    @property
    def tombstones(self) -> int:
        return len(self._tomb)

    def __len__(self) -> int:
        return int(self.index.ntotal) - len(self._tomb)

    # -- searching -----------------------------------------------------------------------

    def shortlist(self, k: int) -> int:
        return max(k, self.shortlist_factor * k + self.shortlist_extra)

    def _search_params(self, fetch: int, widen: float = 1.0) -> Any:
        """FAISS SearchParameters for one call (knob value times ``widen``, tombstones)."""
        raise NotImplementedError

    def _tomb_selector(self) -> Any:
        if not self._tomb:
            return None
        if self._selector is None:
            faiss = _faiss()
            batch = faiss.IDSelectorBatch(np.fromiter(self._tomb, dtype=np.int64))
            self._selector = (batch, faiss.IDSelectorNot(batch))  # keep both alive
        return self._selector[1]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._search(queries, k, None, 1.0)

    def search_selected(
        self, queries: np.ndarray, k: int, allowed: np.ndarray, fraction: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Search among the ids ``allowed`` only (a FAISS ``IDSelectorBatch``); the search
        knob widens by ``1 / fraction`` (capped) so about as many candidates pass as in an
        unfiltered search. The allowed ids replace the tombstone filter: they come from the
        catalog, where removed items no longer are."""
        sel = self._selectors.get(allowed)
        try:
            return self._search(queries, k, sel, min(1.0 / max(fraction, 1e-6), 64.0))
        except RuntimeError:  # an index type that takes no selector: scored directly
            return None

    def _search(
        self, queries: np.ndarray, k: int, sel: Any, widen: float
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        n = len(self)
        nq = len(queries)
        if n == 0 or k <= 0:
            shape = (nq, max(k, 0))
            return np.zeros(shape, dtype=np.float32), np.full(shape, -1, dtype=np.int64)
        fetch = min(self.shortlist(k), int(self.index.ntotal)) if self.rerank else min(k, n)
        params = self._search_params(fetch, widen)
        if sel is not None:
            params = params if params is not None else _faiss().SearchParameters()
            params.sel = sel
        scores, ids = self.index.search(queries, fetch, params=params)
        if self.rerank is not None:
            scores, ids = self._rerank(queries, ids, k)
        else:
            scores, ids = scores[:, :k], ids[:, :k]
        if ids.shape[1] < k:
            pad = k - ids.shape[1]
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=0.0)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.where(ids < 0, 0.0, scores)
        return scores.astype(np.float32), ids.astype(np.int64)

    def _rerank(
        self, queries: np.ndarray, cand: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact cosine scores for each query's candidates, best ``k`` first."""
        assert self.rerank is not None
        valid = cand >= 0
        flat = np.where(valid, cand, 0)
        uniq, inverse = np.unique(flat, return_inverse=True)
        rows = self.rerank(uniq)  # one gather from the memory-mapped vectors
        exact = np.einsum(
            "qcd,qd->qc", rows[inverse.reshape(cand.shape)], queries, dtype=np.float32
        )
        exact = np.where(valid, exact, -np.inf)
        kk = min(k, cand.shape[1])
        order = np.argsort(-exact, axis=1, kind="stable")[:, :kk]
        ids = np.take_along_axis(np.where(valid, cand, -1), order, axis=1)
        scores = np.take_along_axis(exact, order, axis=1)
        return np.where(np.isfinite(scores), scores, 0.0), ids

    # -- persistence ---------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the index (when it changed) and the tombstone list, each atomically."""
        faiss = _faiss()
        if self.index_dirty or not path.exists():
            tmp = path.with_name(path.name + ".tmp")
            faiss.write_index(self.index, str(tmp))
            _fsync_replace(tmp, path)
            self.index_dirty = False
        tomb_path = tombstone_path(path)
        if self._tomb or tomb_path.exists():
            tmp = tomb_path.with_name(tomb_path.name + ".tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, np.array(sorted(self._tomb), dtype=np.int64), allow_pickle=False)
            _fsync_replace(tmp, tomb_path)

    @classmethod
    def load(
        cls, path: Path, dim: int, params: dict[str, Any], rerank: Rerank | None, mmap: bool
    ) -> AnnStore:
        """Read a saved index; ``mmap`` maps its codes instead of copying them (read-only use)."""
        faiss = _faiss()
        flags = cls.mmap_flag() if mmap else 0
        index = faiss.read_index(str(path), flags) if flags else faiss.read_index(str(path))
        if index.d != dim:
            raise ValueError(f"index dimension {index.d} != collection dimension {dim}")
        tomb_path = tombstone_path(path)
        tomb = None
        if tomb_path.exists():
            tomb = np.load(tomb_path, allow_pickle=False)
        return cls(dim, index, params, rerank, tomb)

    @staticmethod
    def mmap_flag() -> int:
        """FAISS read flag that maps the index's codes (flat codes: HNSW storage, LSH)."""
        return int(_faiss().IO_FLAG_MMAP_IFC)

    def info(self) -> dict[str, Any]:
        return {"type": self.kind, "count": len(self), "exact": False, "params": self.params}


def tombstone_path(index_path: Path) -> Path:
    return index_path.with_name(index_path.stem + ".tombstones.npy")


class HnswStore(AnnStore):
    """FAISS HNSW graph over 8-bit scalar-quantised vectors, exact re-ranking.

    The graph cannot delete nodes, so removals are tombstones (see :class:`AnnStore`).
    """

    kind = "hnsw"
    knob = "ef"
    ladder = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
    deletes_in_place = False

    @classmethod
    def create(
        cls,
        dim: int,
        sample: np.ndarray,
        rerank: Rerank | None,
        m: int = 16,
        ef_construction: int = 80,
    ) -> HnswStore:
        faiss = _faiss()
        hnsw = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = ef_construction
        hnsw.train(np.ascontiguousarray(sample, dtype=np.float32))
        params = {"M": m, "ef_construction": ef_construction, "ef": 64, "storage": "SQ8"}
        return cls(dim, faiss.IndexIDMap(hnsw), params, rerank)

    def _search_params(self, fetch: int, widen: float = 1.0) -> Any:
        faiss = _faiss()
        ef = min(int(max(int(self.params["ef"]), fetch) * widen), max(4096, fetch))
        sel = self._tomb_selector()
        if sel is None:
            return faiss.SearchParametersHNSW(efSearch=ef)
        return faiss.SearchParametersHNSW(efSearch=ef, sel=sel)


class IvfStore(AnnStore):
    """FAISS inverted lists with 8-bit scalar quantisation (``ivf-sq8``) or product
    quantisation (``ivf-pq``), exact re-ranking. Deletes in place."""

    kind = "ivf-sq8"
    knob = "nprobe"
    ladder: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 64)
    ladder += (80, 96, 128, 160, 192, 256, 384, 512, 768, 1024, 2048, 4096)

    @classmethod
    def create(
        cls,
        dim: int,
        sample: np.ndarray,
        rerank: Rerank | None,
        n: int,
        pq: bool = False,
        nlist: int | None = None,
        pq_m: int | None = None,
    ) -> IvfStore:
        """``nlist`` (default: about 4*sqrt(n), at most one list per 40 training vectors)
        and ``pq_m`` (default: one byte per 8 dims) as given, at most one list per
        training vector."""
        faiss = _faiss()
        if nlist is None:
            nlist = min(default_nlist(n), max(1, len(sample) // 40))
        nlist = max(1, min(nlist, len(sample)))
        quantizer = faiss.IndexFlatIP(dim)
        params: dict[str, Any] = {"nlist": nlist, "nprobe": min(8, nlist)}
        if pq:
            m = pq_m or pq_subquantizers(dim)
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
            params["pq_m"] = m
        else:
            index = faiss.IndexIVFScalarQuantizer(
                quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
        index.cp.niter = 10
        # a given nlist may have fewer than FAISS's 39 training points per list: no warning
        index.cp.min_points_per_centroid = max(1, min(39, len(sample) // nlist))
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        store = cls(dim, index, params, rerank)
        store.kind = "ivf-pq" if pq else "ivf-sq8"
        return store

    def shortlist(self, k: int) -> int:
        if self.kind == "ivf-pq":  # PQ codes are coarse: re-rank a longer list
            return max(k, 5 * k + 20)
        return super().shortlist(k)

    def _search_params(self, fetch: int, widen: float = 1.0) -> Any:
        faiss = _faiss()
        nprobe = int(self.params["nprobe"])
        nprobe = min(max(nprobe, int(np.ceil(nprobe * widen))), int(self.index.nlist))
        return faiss.SearchParametersIVF(nprobe=nprobe)

    @staticmethod
    def mmap_flag() -> int:
        """Inverted lists are mapped from the file (``IO_FLAG_MMAP``)."""
        return int(_faiss().IO_FLAG_MMAP)

    @classmethod
    def load(
        cls, path: Path, dim: int, params: dict[str, Any], rerank: Rerank | None, mmap: bool
    ) -> AnnStore:
        store = super().load(path, dim, params, rerank, mmap)
        store.kind = "ivf-pq" if "pq_m" in params else "ivf-sq8"
        return store


class LshStore(AnnStore):
    """Random-hyperplane LSH: each vector becomes ``bits`` sign bits of random projections
    (FAISS ``IndexLSH`` with a random rotation); a Hamming scan of these codes proposes
    ``shortlist`` candidates per query, re-ranked exactly."""

    kind = "lsh"
    knob = "shortlist"
    ladder = (20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 4000)

    @classmethod
    def create(
        cls, dim: int, sample: np.ndarray, rerank: Rerank | None, bits: int | None = None
    ) -> LshStore:
        faiss = _faiss()
        nbits = bits or 2 * dim
        lsh = faiss.IndexLSH(dim, nbits, True, False)  # random rotation, sign thresholds
        lsh.train(np.ascontiguousarray(sample, dtype=np.float32))
        params = {"bits": nbits, "shortlist": 100}
        return cls(dim, faiss.IndexIDMap2(lsh), params, rerank)

    def shortlist(self, k: int) -> int:
        return max(k, int(self.params["shortlist"]) * max(k, 10) // 10)

    def _search_params(self, fetch: int, widen: float = 1.0) -> Any:
        return None

    def search_selected(
        self, queries: np.ndarray, k: int, allowed: np.ndarray, fraction: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """``IndexLSH`` takes no id selector: over-fetch (k / fraction, growing) and keep
        the allowed ids (``allowed`` is sorted, as the catalog lists slots)."""
        n = len(self)
        fetch = int(2 * k / max(fraction, 1e-6)) + 10
        while True:
            fetch = min(fetch, n)
            scores, ids = self.search(queries[:1], fetch)
            pos = np.searchsorted(allowed, ids[0]).clip(0, max(len(allowed) - 1, 0))
            keep = (ids[0] >= 0) & (allowed[pos] == ids[0]) if len(allowed) else ids[0] < -1
            if int(keep.sum()) >= k or fetch >= n:
                break
            fetch *= 4
        sc, ii = scores[0][keep][:k], ids[0][keep][:k]
        pad = k - len(ii)
        sc = np.pad(sc, (0, pad), constant_values=0.0)
        ii = np.pad(ii, (0, pad), constant_values=-1)
        return sc[None, :].astype(np.float32), ii[None, :].astype(np.int64)


STORE_CLASSES: dict[str, type[AnnStore]] = {
    "hnsw": HnswStore,
    "ivf-sq8": IvfStore,
    "ivf-pq": IvfStore,
    "lsh": LshStore,
}
