"""The search index of a collection: derived data, kept in step with the catalog's generation.

The index records the catalog generation it reflects. When it is missing, damaged or stale
(for example after a crash between a catalog commit and the index save) it is rebuilt from
the stored vectors, which are the source of truth.

Which index: ``settings.json`` holds what the user asked for (``auto`` by default, an
optional memory budget, the recall target and explicit knobs: :mod:`.settings`);
:func:`plan_index` turns that and the collection's size into an index type. ``auto`` stays
exact (flat) up to :data:`AUTO_EXACT_MAX` items, then uses IVF-SQ8, or IVF-PQ when the memory
budget requires it (:data:`AUTO_ORDER`); HNSW is there on request. Every ANN index is tuned
after building (:mod:`.building`) to the smallest search setting whose recall@10 against
exact search, measured on a held-out sample of the collection's own vectors, is at least the
recall target (default :data:`RECALL_TARGET`), unless the user gave that knob; recall,
memory and latency are stored in ``index.json``, with the settings the index was built from
(changed settings rebuild it).

Adds and removes are applied incrementally. After enough changes recall is measured again;
when it is below target the search knob is raised, and when that is not enough (or
tombstones pile up) the index is rebuilt.
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

from .base import VectorStore
from .catalog import Catalog
from .flat import FlatStore
from .planning import (
    ANN_TYPES,
    MIN_ITEMS,
    NoIndexFits,
    plan_index,
    write_json_atomic,
)
from .settings import (
    build_key,
    built_from,
    describe_change,
    merge_settings,
    read_settings,
    target_of,
    write_settings,
)
from .vectors import RowReader, VectorFile

log = logging.getLogger(__name__)


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
        self._store: VectorStore | None = None
        self._store_generation = -1
        self._rows = RowReader(vectors, catalog)
        self.rebuilt = False

    # -- files -----------------------------------------------------------------------------

    def _file_for(self, kind: str) -> Path:
        return self.folder / f"{kind}.faiss"

    @property
    def _index_meta_path(self) -> Path:
        return self.folder / "index.json"

    @property
    def _settings_path(self) -> Path:
        return self.folder / "settings.json"

    def exists(self) -> bool:
        meta = self._index_meta()
        return meta is not None and self._file_for(str(meta.get("type", "flat"))).exists()

    def _index_meta(self) -> dict[str, Any] | None:
        try:
            meta = json.loads(self._index_meta_path.read_text(encoding="utf-8"))
            return meta if isinstance(meta, dict) else None
        except (OSError, ValueError):
            return None

    # -- settings --------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """``requested``, ``max_memory``, ``recall_target`` and explicit ``knobs``."""
        return read_settings(self._settings_path)

    def configure(
        self,
        requested: str | None = None,
        max_memory: int | None = None,
        *,
        recall_target: float | None = None,
        hnsw_m: int | str | None = None,
        ef_construction: int | str | None = None,
        ef_search: int | str | None = None,
        nlist: int | str | None = None,
        nprobe: int | str | None = None,
        pq_m: int | str | None = None,
    ) -> list[str]:
        """Record the wanted index type, memory budget, recall target and knobs (``None``
        keeps the stored one; ``"auto"`` forgets a knob). Returns notes for the user.

        Raises :class:`InvalidInput` (and stores nothing) for a knob that does not apply to
        the index type or is out of range, and :class:`NoIndexFits` when no index of the
        collection's current size fits ``max_memory``. The index itself is brought in step
        (rebuilt) by :meth:`ensure` or the next change.
        """
        old = self.settings()
        knobs = {
            "hnsw_m": hnsw_m,
            "ef_construction": ef_construction,
            "ef_search": ef_search,
            "nlist": nlist,
            "nprobe": nprobe,
            "pq_m": pq_m,
        }
        new, notes = merge_settings(old, requested, max_memory, recall_target, knobs, self.dim)
        n = self.catalog.count()
        plan_index(
            new["requested"], n, self.dim, self.binary, new["max_memory"], knobs=new["knobs"]
        )
        if new != old:
            write_settings(self._settings_path, new)
            change = describe_change(old, new)
            meta = self._index_meta()
            if change and meta is not None and built_from(meta) != build_key(new):
                notes.append(f"index settings changed ({change}): the index is rebuilt")
        return notes

    def _plan(self, n: int, current: str | None) -> tuple[str, str | None, str | None]:
        """(type, note, warning): like :func:`plan_index`, but when nothing fits the budget
        (the collection grew past it) it uses the smallest index and warns."""
        s = self.settings()
        try:
            kind, note = plan_index(
                s["requested"], n, self.dim, self.binary, s["max_memory"], current, s["knobs"]
            )
            return kind, note, None
        except NoIndexFits as exc:
            smallest = "ivf-pq" if not self.binary and n >= MIN_ITEMS["ivf-pq"] else "flat"
            log.warning("%s; using %s", exc, smallest)
            return smallest, None, f"{exc}; using {smallest}"

    # -- building ---------------------------------------------------------------------------

    def _live_slots(self) -> np.ndarray:
        return np.asarray(self.catalog.slots(), dtype=np.int64)

    def _build(self, kind: str) -> tuple[VectorStore, dict[str, Any]]:
        """A fresh index of every live vector, tuned and measured (measurements returned)."""
        from .building import build_index

        return build_index(
            kind,
            self.dim,
            self.binary,
            self._live_slots(),
            self._rows,
            lambda slots: self.vectors.read(slots, self.catalog.next_slot),
            self.settings(),
        )

    def _load(self, meta: dict[str, Any], mmap: bool) -> VectorStore:
        kind = str(meta.get("type", "flat"))
        path = self._file_for(kind)
        store: VectorStore
        if kind == "flat":
            store = FlatStore.load(path, self.dim, self.binary, mmap)
        else:
            from .ann import STORE_CLASSES

            if kind not in STORE_CLASSES or self.binary:
                raise ValueError(f"unknown index type {kind!r}")
            store = STORE_CLASSES[kind].load(
                path, self.dim, dict(meta.get("params") or {}), self._rows, mmap
            )
        if len(store) != meta.get("count"):
            raise ValueError("index size does not match its metadata")
        return store

    def _save(
        self,
        store: VectorStore,
        generation: int,
        meta: dict[str, Any],
    ) -> dict[str, Any]:
        self.folder.mkdir(exist_ok=True)
        kind = store.kind
        path = self._file_for(kind)
        store.save(path)
        settings = self.settings()
        meta = dict(meta)
        meta.update(
            {
                "type": kind,
                "requested": settings["requested"],
                "max_memory": settings["max_memory"],
                "recall_target": target_of(settings),
                "settings": build_key(settings),
                "generation": generation,
                "count": len(store),
                "metric": "hamming" if self.binary else "cosine",
                "tombstones": int(getattr(store, "tombstones", 0)),
                "params": dict(getattr(store, "params", {})),
            }
        )
        from .ann import tombstone_path

        size = path.stat().st_size
        if tombstone_path(path).exists():
            size += tombstone_path(path).stat().st_size
        meta["memory_bytes"] = size
        write_json_atomic(self._index_meta_path, meta)
        for other in self.folder.glob("*.faiss"):
            if other != path:  # an index of another type, replaced by this one
                other.unlink(missing_ok=True)
                tombstone_path(other).unlink(missing_ok=True)
        return meta

    def _full_build(
        self, generation: int, reason: str | None, old: dict[str, Any] | None
    ) -> tuple[VectorStore, dict[str, Any]]:
        kind, note, warning = self._plan(self.catalog.count(), (old or {}).get("type"))
        store, measured = self._build(kind)
        notes = [note] if note else []
        notes += measured.pop("notes", [])
        warnings = [warning] if warning else []
        warnings += measured.pop("warnings", [])
        note, warning = "; ".join(notes) or None, "; ".join(warnings) or None
        meta: dict[str, Any] = {
            "built_at": time.time(),
            "rebuilt_from_vectors": reason is not None,
            "rebuild_reason": reason,
            "rebuilds": int((old or {}).get("rebuilds", 0)) + (1 if reason else 0),
            "note": note,
            "warning": warning,
            "changes_since_measure": 0,
            "measured_at": time.time(),
            **measured,
        }
        return store, meta

    # -- public ---------------------------------------------------------------------------

    def store(self) -> VectorStore:
        """The index matching the catalog's current generation, rebuilt when stale or damaged."""
        generation = self.catalog.generation
        if self._store is not None and self._store_generation == generation:
            return self._store
        meta = self._index_meta()
        store: VectorStore | None = None
        if meta is not None and meta.get("generation") == generation:
            try:
                store = self._load(meta, mmap=True)
            except Exception as exc:
                log.warning(
                    "index in %s is damaged (%s); rebuilding from stored vectors",
                    self.folder,
                    exc,
                )
                store = None
        if store is None:
            reason = None
            if meta is not None or any(self.folder.glob("*.faiss")):
                reason = "index out of date, damaged or missing"
                log.warning(
                    "index in %s is out of date or damaged; rebuilt from stored vectors",
                    self.folder,
                )
            store, new_meta = self._full_build(generation, reason or "index missing", meta)
            self.rebuilt = True
            if not self.readonly:
                with self._lock(False) as got:
                    if got and self.catalog.generation == generation:
                        self._save(store, generation, new_meta)
        self._store, self._store_generation = store, generation
        return store

    def ensure(self) -> dict[str, Any]:
        """Bring the saved index in step with the settings (e.g. after ``configure``):
        rebuild it when its type or budget no longer matches. Returns the index info."""
        with self._lock(True):
            meta = self._index_meta()
            generation = self.catalog.generation
            settings = self.settings()
            kind, _note, _warning = self._plan(self.catalog.count(), (meta or {}).get("type"))
            stale = (
                meta is None
                or meta.get("generation") != generation
                or meta.get("type") != kind
                or built_from(meta) != build_key(settings)
                or not self._file_for(kind).exists()
            )
            if stale:
                store, new_meta = self._full_build(generation, None, meta)
                self._save(store, generation, new_meta)
                self._store, self._store_generation = store, generation
        return self.info()

    def update(self, gen_before: int, added: list[int], removed: list[int]) -> None:
        """Apply a committed change to the saved index, incrementally when it was current."""
        generation = self.catalog.generation
        meta = self._index_meta()
        n = self.catalog.count()
        kind, _note, _warning = self._plan(n, (meta or {}).get("type"))
        store: VectorStore | None = None
        reason: str | None = None
        if meta is not None and meta.get("generation") == gen_before:
            if meta.get("type") != kind:
                reason = f"the collection now has {n} items: {meta.get('type')} -> {kind}"
            elif built_from(meta) != build_key(self.settings()):
                reason = "the index settings changed"
            else:
                try:
                    store = self._load(meta, mmap=False)
                except Exception as exc:
                    log.warning("index damaged (%s); rebuilding from stored vectors", exc)
                    reason = f"index damaged ({exc})"
        elif meta is not None:
            reason = "index out of date"
        if store is not None and kind in ANN_TYPES and len(added) >= max(1, len(store)):
            store, reason = None, "more than doubled since it was built"
        if store is None:
            if reason and meta is not None and meta.get("type") == kind:
                log.warning("rebuilding the %s index: %s", kind, reason)
            store, new_meta = self._full_build(generation, reason, meta)
        else:
            assert meta is not None
            store.remove(np.asarray(removed, dtype=np.int64))
            if added:
                slots = np.asarray(added, dtype=np.int64)
                store.add(slots, self.vectors.read(slots, self.catalog.next_slot))
            new_meta = dict(meta)
            new_meta["rebuilt_from_vectors"] = False
            if kind in ANN_TYPES:
                checked = self._check_drift(store, new_meta, len(added) + len(removed), added)
                if checked is not None:
                    log.warning("rebuilding the %s index: %s", kind, checked)
                    store, new_meta = self._full_build(generation, checked, meta)
        self._save(store, generation, new_meta)
        self._store, self._store_generation = store, generation

    def _check_drift(
        self, store: Any, meta: dict[str, Any], changes: int, added: list[int]
    ) -> str | None:
        """Re-measure recall once enough changed; raise the knob, or say why to rebuild."""
        from .building import SEARCH_KNOB
        from .tuning import recheck_recall

        settings = self.settings()
        return recheck_recall(
            store,
            meta,
            changes,
            added,
            self._rows,
            self._live_slots,
            seed=int(self.catalog.generation),
            target=target_of(settings),
            fixed=SEARCH_KNOB.get(str(meta.get("type"))) in settings["knobs"],
        )

    def info(self) -> dict[str, Any]:
        meta = self._index_meta() or {}
        kind = str(meta.get("type", "flat"))
        path = self._file_for(kind)
        return {
            "type": kind,
            "requested": meta.get("requested", self.settings()["requested"]),
            "max_memory": meta.get("max_memory"),
            "count": meta.get("count", 0),
            "bytes": path.stat().st_size if path.exists() else 0,
            "memory_bytes": meta.get("memory_bytes"),
            "current": meta.get("generation") == self.catalog.generation,
            "rebuilt_from_vectors": bool(meta.get("rebuilt_from_vectors", False)),
            "rebuild_reason": meta.get("rebuild_reason"),
            "rebuilds": meta.get("rebuilds", 0),
            "note": meta.get("note"),
            "warning": meta.get("warning"),
            "params": meta.get("params", {}),
            "explicit": meta.get("explicit", []),
            "recall_at_10": meta.get("recall_at_10"),
            "recall_target": meta.get("recall_target", target_of(self.settings())),
            "knobs": self.settings()["knobs"],
            "recall_queries": meta.get("recall_queries"),
            "latency_ms": meta.get("latency_ms"),
            "build_seconds": meta.get("build_seconds"),
            "tombstones": meta.get("tombstones", 0),
            "changes_since_measure": meta.get("changes_since_measure", 0),
        }
