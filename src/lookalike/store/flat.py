"""Exact search with FAISS: inner product on unit vectors (cosine), Hamming on binary codes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .base import SelectorCache, VectorStore


def _faiss() -> Any:
    import faiss

    return faiss


class FlatStore(VectorStore):
    """``IndexIDMap2(IndexFlatIP)`` or ``IndexBinaryIDMap2(IndexBinaryFlat)``."""

    kind = "flat"

    def __init__(self, dim: int, binary: bool, index: Any | None = None) -> None:
        faiss = _faiss()
        self.dim = dim
        self.binary = binary
        if index is None:
            if binary:
                index = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(dim))
            else:
                index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.index = index
        self._selectors = SelectorCache()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        dtype = np.uint8 if self.binary else np.float32
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=dtype), ids)

    def remove(self, ids: np.ndarray) -> None:
        if len(ids) == 0:
            return
        self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self)
        if n == 0 or k <= 0:
            shape = (len(queries), max(k, 0))
            return np.zeros(shape, dtype=np.float32), np.full(shape, -1, dtype=np.int64)
        kk = min(k, n)
        if self.binary:
            dist, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.uint8), kk)
            scores = 1.0 - dist.astype(np.float32) / float(self.dim)
        else:
            scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), kk)
        if kk < k:
            pad = k - kk
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=0.0)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        scores[ids < 0] = 0.0
        return scores.astype(np.float32), ids.astype(np.int64)

    def search_selected(
        self, queries: np.ndarray, k: int, allowed: np.ndarray, fraction: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Exact search among ``allowed`` (an ``IDSelectorBatch``); binary codes: ``None``."""
        if self.binary:
            return None
        faiss = _faiss()
        sel = self._selectors.get(allowed)
        kk = min(k, len(allowed), len(self))
        if kk <= 0:
            shape = (len(queries), max(k, 0))
            return np.zeros(shape, dtype=np.float32), np.full(shape, -1, dtype=np.int64)
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        scores, ids = self.index.search(q, kk, params=faiss.SearchParameters(sel=sel))
        if kk < k:
            scores = np.pad(scores, ((0, 0), (0, k - kk)), constant_values=0.0)
            ids = np.pad(ids, ((0, 0), (0, k - kk)), constant_values=-1)
        scores[ids < 0] = 0.0
        return scores.astype(np.float32), ids.astype(np.int64)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def save(self, path: Path) -> None:
        faiss = _faiss()
        tmp = path.with_name(path.name + ".tmp")
        if self.binary:
            faiss.write_index_binary(self.index, str(tmp))
        else:
            faiss.write_index(self.index, str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, dim: int, binary: bool, mmap: bool = False) -> FlatStore:
        """Read a saved index; ``mmap`` maps its vectors instead of copying them (read-only)."""
        faiss = _faiss()
        flags = faiss.IO_FLAG_MMAP_IFC if mmap else 0
        if binary:
            index = faiss.read_index_binary(str(path), flags)
        else:
            index = faiss.read_index(str(path), flags)
        if index.d != dim:
            raise ValueError(f"index dimension {index.d} != collection dimension {dim}")
        return cls(dim, binary, index)

    def info(self) -> dict[str, Any]:
        return {"type": self.kind, "count": len(self), "exact": True}
