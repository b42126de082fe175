"""The vector-store interface: every ANN backend (FAISS flat/HNSW/IVF, Milvus...) implements it.

Ids are int64 vector slots from the catalog. Scores are "higher is more similar": cosine
similarity for float vectors, ``1 - hamming / bits`` for binary codes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np


class SelectorCache:
    """The FAISS id selector of the last allowed-id array searched, reused while the caller
    passes the same array again (a repeated filter): building one costs about as much as
    the search."""

    def __init__(self) -> None:
        self._last: tuple[np.ndarray, Any] | None = None

    def get(self, allowed: np.ndarray) -> Any:
        last = self._last
        if last is not None and last[0] is allowed:
            return last[1]
        import faiss

        sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        self._last = (allowed, sel)
        return sel


class VectorStore(ABC):
    kind: str = "abstract"

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under int64 ids."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> None:
        """Remove ids (unknown ids are ignored)."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids), each (n_queries, k); missing neighbours have id -1."""

    def search_selected(
        self, queries: np.ndarray, k: int, allowed: np.ndarray, fraction: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Like :meth:`search` among the ids ``allowed`` only (``fraction`` of the store);
        ``None`` when this store cannot restrict a search (the caller scores them itself)."""
        return None

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write to ``path`` atomically (temporary file + rename)."""

    def info(self) -> dict[str, Any]:
        return {"type": self.kind, "count": len(self)}
