"""The ANN index of a collection: derived data, kept in step with the catalog's generation.

The index records the catalog generation it reflects. When it is missing, damaged or stale
(for example after a crash between a catalog commit and the index save) it is rebuilt from
the stored vectors, which are the source of truth.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import Catalog
from .store.flat import FlatStore
from .vectors import VectorFile

log = logging.getLogger(__name__)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    import os

    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class IndexManager:
    def __init__(
        self,
        folder: Path,
        dim: int,
        binary: bool,
        catalog: Catalog,
        vectors: VectorFile,
        readonly: bool,
        lock: Callable[[bool], AbstractContextManager[bool]],
    ) -> None:
        self.folder = folder
        self.dim = dim
        self.binary = binary
        self.catalog = catalog
        self.vectors = vectors
        self.readonly = readonly
        self._lock = lock
        self._store: FlatStore | None = None
        self._store_generation = -1
        self.rebuilt = False

    @property
    def _index_path(self) -> Path:
        return self.folder / "flat.faiss"

    @property
    def _index_meta_path(self) -> Path:
        return self.folder / "index.json"

    def exists(self) -> bool:
        return self._index_path.exists()

    def _index_meta(self) -> dict[str, Any] | None:
        try:
            meta = json.loads(self._index_meta_path.read_text(encoding="utf-8"))
            return meta if isinstance(meta, dict) else None
        except (OSError, ValueError):
            return None

    def _live_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        slots = np.asarray(self.catalog.slots(), dtype=np.int64)
        return slots, self.vectors.read(slots, self.catalog.next_slot)

    def _build_store(self) -> FlatStore:
        store = FlatStore(self.dim, self.binary)
        slots, mat = self._live_matrix()
        store.add(slots, mat)
        return store

    def _save_store(self, store: FlatStore, generation: int, rebuilt: bool) -> None:
        self.folder.mkdir(exist_ok=True)
        store.save(self._index_path)
        meta = {
            "type": store.kind,
            "generation": generation,
            "count": len(store),
            "metric": "hamming" if self.binary else "cosine",
            "built_at": time.time(),
            "rebuilt_from_vectors": rebuilt,
        }
        write_json_atomic(self._index_meta_path, meta)

    def store(self) -> FlatStore:
        """The index matching the catalog's current generation, rebuilt when stale or damaged."""
        generation = self.catalog.generation
        if self._store is not None and self._store_generation == generation:
            return self._store
        meta = self._index_meta()
        store: FlatStore | None = None
        if meta is not None and meta.get("generation") == generation and self._index_path.exists():
            try:
                store = FlatStore.load(self._index_path, self.dim, self.binary)
                if len(store) != meta.get("count"):
                    raise ValueError("index size does not match its metadata")
            except Exception as exc:
                log.warning(
                    "index %s is damaged (%s); rebuilding from stored vectors",
                    self._index_path,
                    exc,
                )
                store = None
        if store is None:
            if meta is not None or self._index_path.exists():
                log.warning(
                    "index in %s is out of date or damaged; rebuilt from stored vectors",
                    self.folder,
                )
            store = self._build_store()
            self.rebuilt = True
            if not self.readonly:
                with self._lock(False) as got:
                    if got and self.catalog.generation == generation:
                        self._save_store(store, generation, rebuilt=True)
        self._store, self._store_generation = store, generation
        return store

    def update(self, gen_before: int, added: list[int], removed: list[int]) -> None:
        """Apply a committed change to the saved index, incrementally when it was current."""
        generation = self.catalog.generation
        meta = self._index_meta()
        store: FlatStore | None = None
        if meta is not None and meta.get("generation") == gen_before and self._index_path.exists():
            try:
                store = FlatStore.load(self._index_path, self.dim, self.binary)
            except Exception as exc:
                log.warning("index damaged (%s); rebuilding from stored vectors", exc)
                store = None
        if store is None:
            store = self._build_store()
            rebuilt = meta is not None
        else:
            store.remove(np.asarray(removed, dtype=np.int64))
            if added:
                slots = np.asarray(added, dtype=np.int64)
                store.add(slots, self.vectors.read(slots, self.catalog.next_slot))
            rebuilt = False
        self._save_store(store, generation, rebuilt)
        self._store, self._store_generation = store, generation

    def info(self) -> dict[str, Any]:
        meta = self._index_meta() or {}
        return {
            "type": meta.get("type", "flat"),
            "count": meta.get("count", 0),
            "bytes": self._index_path.stat().st_size if self._index_path.exists() else 0,
            "current": meta.get("generation") == self.catalog.generation,
            "rebuilt_from_vectors": bool(meta.get("rebuilt_from_vectors", False)),
        }
