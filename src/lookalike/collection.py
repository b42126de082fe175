"""A collection: a folder holding the SQLite catalog, the stored vectors and the index.

Layout (see docs/architecture.md)::

    collection.json     format marker + model identity (written last at creation)
    catalog.sqlite      items, skipped files, metadata (schema-versioned)
    vectors.bin         raw vectors addressed by slot (float32 or packed bits)
    index/              derived ANN index + index.json (rebuilt from vectors when stale)
    cache/urls/         downloaded images, one file per id
    lock                writers take an exclusive lock on it
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import (
    CollectionError,
    CollectionNotFound,
    EmptyCollection,
    ImageRejected,
    InvalidInput,
    ItemNotFound,
    LookalikeError,
    ModelMismatch,
    NotACollection,
    QueryError,
)
from .ingest import pipeline
from .ingest.decode import DecodeLimits, decode_image
from .models.embedders.base import Embedder
from .store.catalog import Catalog, Item, Skipped
from .store.indexes import IndexManager, write_json_atomic
from .store.vectors import VectorFile

log = logging.getLogger(__name__)

# Items in the catalog already passed the megapixel limit they were indexed with.
_ANY_INDEXED_SIZE = DecodeLimits(max_megapixels=1000.0)

MARKER = "collection.json"
FORMAT = "lookalike-collection"
FORMAT_VERSION = 1
DEFAULT_DIR = ".lookalike"


def default_collection_dir() -> Path:
    return Path(os.environ.get("LOOKALIKE_COLLECTION") or DEFAULT_DIR)


@dataclass
class Hit:
    rank: int
    id: str
    score: float
    path: str | None
    label: str | None
    url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "id": self.id,
            "path": self.path,
            "score": round(float(self.score), 6),
            "label": self.label,
            "url": self.url,
            "metadata": self.metadata,
        }


@dataclass
class IndexReport:
    indexed: int = 0
    unchanged: int = 0
    renamed: int = 0
    removed: int = 0
    skipped: int = 0
    skipped_files: list[tuple[str, str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, int]:
        return {
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "renamed": self.renamed,
            "removed": self.removed,
            "skipped": self.skipped,
        }


def _embedder_from_config(model: dict[str, Any], threads: int | None) -> Embedder:
    from .models.loader import load_embedder

    if model.get("kind") == "external":
        from .models.embedders.external import ExternalEmbedder

        return ExternalEmbedder(model["name"], int(model["dim"]), model["metric"])

    if model.get("model_path"):
        return load_embedder(model_path=model["model_path"], threads=threads)
    return load_embedder(model["name"], threads=threads)


class Collection:
    """An image collection on disk. Open with :meth:`open`."""

    def __init__(
        self, root: Path, config: dict[str, Any], embedder: Embedder, readonly: bool
    ) -> None:
        self.root = root
        self.config = config
        self.embedder = embedder
        self.readonly = readonly
        self.catalog = Catalog(root / "catalog.sqlite", readonly=readonly)
        self.vectors = VectorFile(
            root / "vectors.bin", config["vector_dtype"], int(config["vector_width"])
        )
        self.index = IndexManager(
            root / "index",
            self.dim,
            self.binary,
            self.catalog,
            self.vectors,
            readonly,
            self._write_lock,
        )

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str] | None = None,
        model: str | None = None,
        *,
        model_path: str | os.PathLike[str] | None = None,
        create: bool = True,
        readonly: bool = False,
        threads: int | None = None,
    ) -> Collection:
        """Open (or create) the collection in ``directory``.

        ``model``/``model_path`` choose the model for a new collection; for an existing one
        they must match the model it was built with (else :class:`ModelMismatch`).
        """
        from .models.loader import load_embedder

        root = Path(directory) if directory is not None else default_collection_dir()
        marker = root / MARKER
        if marker.is_file():
            config = cls._read_config(marker)
            stored = config["model"]
            requested: Embedder | None = None
            if model is not None or model_path is not None:
                requested = load_embedder(model, model_path, threads=threads)
                want = requested.identity()
                have = {k: stored.get(k) for k in ("name", "dim", "metric")}
                if {k: want.get(k) for k in ("name", "dim", "metric")} != have:
                    if not readonly and cls._is_empty(root):
                        # Nothing stored yet (e.g. a first run whose model was unavailable):
                        # the empty collection adopts the requested model.
                        requested.load()
                        return cls._create(root, requested, model_path)
                    raise ModelMismatch(
                        f"collection {root} was built with model {stored['name']!r} "
                        f"({stored['dim']} dims); it cannot be queried or extended with "
                        f"{want['name']!r} ({want['dim']} dims). Use the same model, or a new --collection."
                    )
            embedder = requested or _embedder_from_config(stored, threads)
            return cls(root, config, embedder, readonly)
        if root.exists() and not root.is_dir():
            raise NotACollection(f"{root} is a file, not a lookalike collection")
        if root.is_dir() and any(root.iterdir()):
            raise NotACollection(
                f"{root} is not a lookalike collection (no {MARKER}); refusing to write into it"
            )
        if not create or readonly:
            raise CollectionNotFound(
                f"no collection at {root}: build one with `lookalike index SOURCE --collection {root}`"
            )
        embedder = load_embedder(model, model_path, threads=threads)
        embedder.load()  # fail before creating anything if the model is unavailable
        return cls._create(root, embedder, model_path)

    @classmethod
    def open_vectors(
        cls,
        directory: str | os.PathLike[str],
        dim: int,
        *,
        metric: str = "cosine",
        name: str = "external",
    ) -> Collection:
        """Open or create a collection for precomputed vectors (see :meth:`add_vectors`)."""
        from .models.embedders.external import ExternalEmbedder

        if metric not in ("cosine", "hamming"):
            raise InvalidInput(f"metric must be cosine or hamming, not {metric!r}")
        root = Path(directory)
        embedder = ExternalEmbedder(name, dim, metric)  # type: ignore[arg-type]
        if (root / MARKER).is_file():
            coll = cls.open(root)
            have = coll.config["model"]
            if (have["name"], have["dim"], have["metric"]) != (name, dim, metric):
                coll.close()
                raise ModelMismatch(
                    f"collection {root} holds {have['name']!r} ({have['dim']} dims, {have['metric']}), "
                    f"not {name!r} ({dim} dims, {metric})"
                )
            return coll
        if root.is_dir() and any(root.iterdir()):
            raise NotACollection(
                f"{root} is not a lookalike collection (no {MARKER}); refusing to write into it"
            )
        return cls._create(root, embedder, None)

    @staticmethod
    def _is_empty(root: Path) -> bool:
        catalog = Catalog(root / "catalog.sqlite")
        try:
            return catalog.count() == 0 and not catalog.skipped() and catalog.next_slot == 0
        finally:
            catalog.close()

    @staticmethod
    def _read_config(marker: Path) -> dict[str, Any]:
        try:
            config = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise NotACollection(f"{marker} is unreadable or not JSON: {exc}") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise NotACollection(
                f"{marker.parent} is not a lookalike collection ({marker} has no lookalike format)"
            )
        if int(config.get("format_version", 0)) > FORMAT_VERSION:
            raise CollectionError(
                f"{marker.parent} was written by a newer lookalike (format {config['format_version']})"
            )
        return config

    @classmethod
    def _create(
        cls, root: Path, embedder: Embedder, model_path: str | os.PathLike[str] | None
    ) -> Collection:
        root.mkdir(parents=True, exist_ok=True)
        (root / "index").mkdir(exist_ok=True)
        model_info = embedder.identity()
        model_info["model_path"] = str(Path(model_path).resolve()) if model_path else None
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": model_info,
            "vector_dtype": str(embedder.row_dtype),
            "vector_width": embedder.row_width,
            "created_at": time.time(),
        }
        Catalog(root / "catalog.sqlite").close()  # creates + migrates
        write_json_atomic(root / MARKER, config)  # written last: marks the folder complete
        return cls(root, config, embedder, readonly=False)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.catalog.count()

    @property
    def binary(self) -> bool:
        return bool(self.config["model"]["metric"] == "hamming")

    @property
    def dim(self) -> int:
        return int(self.config["model"]["dim"])

    # -- locking ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write_lock(self, wait: bool = True) -> Iterator[bool]:
        if self.readonly:
            raise CollectionError(f"collection {self.root} was opened read-only")
        fh = open(self.root / "lock", "a+")  # noqa: SIM115 - held across the yield
        try:
            flags = fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB
            try:
                fcntl.flock(fh.fileno(), flags)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            fh.close()

    # -- indexing -----------------------------------------------------------------------

    def add(
        self,
        sources: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
        *,
        limits: DecodeLimits | None = None,
        workers: int | None = None,
        batch_size: int = 32,
        progress: Callable[[int, int], None] | None = None,
        download_options: Any = None,
    ) -> IndexReport:
        """Index ``sources`` (folders, files, manifests) incrementally.

        New and changed files are embedded; unchanged ones (same size and mtime, or same
        content hash) are not; renamed files keep their vectors; files that disappeared
        from these sources are removed.
        """
        if isinstance(sources, (str, os.PathLike)):
            sources = [sources]
        limits = limits or DecodeLimits()
        if workers is None:
            workers = pipeline.default_workers(model_uses_cores=not self.embedder.binary)
        with self._write_lock():
            return _Indexer(self, limits, workers, batch_size, progress, download_options).run(
                sources
            )

    def add_vectors(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        *,
        labels: Sequence[str | None] | None = None,
        metadata: Sequence[dict[str, Any]] | None = None,
        source: str = "vectors",
        batch_size: int = 100_000,
        paths: Sequence[str | None] | None = None,
    ) -> int:
        """Add items from precomputed vectors (no image files), e.g. embeddings made elsewhere.

        Float vectors are L2-normalised; binary collections take packed uint8 rows.
        Ids must be new. Returns the number added. ``paths`` optionally gives each item's
        image file (the server stores uploads this way); the file must already be written.
        """
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.vectors.width or len(ids) != len(vectors):
            raise InvalidInput(
                f"expected {len(ids)} vectors of width {self.vectors.width}, got shape {vectors.shape}"
            )
        if len(set(ids)) != len(ids):
            raise InvalidInput("ids must be unique")
        if self.binary:
            rows = np.ascontiguousarray(vectors, dtype=np.uint8)
        else:
            rows = np.asarray(vectors, dtype=np.float32)
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            rows = np.ascontiguousarray(rows / norms, dtype=np.float32)
        with self._write_lock():
            clash = next((i for i in ids if self.catalog.id_exists(i)), None)
            if clash is not None:
                raise InvalidInput(f"an item with id {clash!r} already exists")
            gen_before = self.catalog.generation
            added: list[int] = []
            now = time.time()
            for start in range(0, len(ids), batch_size):
                chunk = slice(start, start + batch_size)
                first = self.catalog.next_slot
                self.vectors.write(first, rows[chunk])
                with self.catalog.transaction():
                    self.catalog.reserve_slots(len(rows[chunk]))
                    for offset, item_id in enumerate(ids[chunk]):
                        i = start + offset
                        self.catalog.insert(
                            Item(
                                id=item_id,
                                slot=first + offset,
                                source=source,
                                path=paths[i] if paths is not None else None,
                                url=None,
                                label=labels[i] if labels is not None else None,
                                metadata=dict(metadata[i]) if metadata is not None else {},
                                added_at=now,
                            )
                        )
                        added.append(first + offset)
                    self.catalog.bump_generation()
            self.index.update(gen_before, added=added, removed=[])
        return len(added)

    def remove(self, ids: Iterable[str]) -> int:
        ids = list(dict.fromkeys(ids))
        with self._write_lock():
            missing = [i for i in ids if not self.catalog.id_exists(i)]
            if missing:
                raise ItemNotFound(
                    f"no item with id {missing[0]!r} in {self.root}; nothing removed"
                )
            gen_before = self.catalog.generation
            with self.catalog.transaction():
                slots = self.catalog.delete(ids)
                self.catalog.bump_generation()
            self.index.update(gen_before, added=[], removed=slots)
        return len(slots)

    # -- search -------------------------------------------------------------------------

    def embed_image(self, data: bytes, limits: DecodeLimits | None = None) -> np.ndarray:
        """Embed one encoded image (bytes); raises ImageRejected for bad images."""
        limits = limits or DecodeLimits()
        preparer = self.embedder.preparer()
        draft = preparer.draft_size()
        decoded = decode_image(data, limits, draft=draft)
        return self.embedder.embed([preparer(decoded.image)])

    def query_vector(
        self, query: Any, *, allow_urls: bool = False, limits: DecodeLimits | None = None
    ) -> tuple[np.ndarray, int | None, str]:
        """Resolve a query to (vector row, slot to exclude or None, description)."""
        if isinstance(query, np.ndarray):
            vec = np.asarray(query, dtype=self.vectors.dtype).reshape(1, -1)
            if vec.shape[1] != self.vectors.width:
                raise QueryError(
                    f"query vector has {vec.shape[1]} values, expected {self.vectors.width}"
                )
            if not self.binary:
                norm = float(np.linalg.norm(vec))
                vec = vec / norm if norm > 0 else vec
            return vec, None, "vector"
        if isinstance(query, bytes):
            return self._embed_query(query, limits, "upload"), None, "upload"
        if isinstance(query, Path):
            query = str(query)
        if not isinstance(query, str):
            raise QueryError(f"unsupported query type {type(query).__name__}")
        if query.startswith("id:"):
            item_id = query[3:]
            item = self.catalog.get(item_id)
            if item is None:
                raise ItemNotFound(f"no item with id {item_id!r} in collection {self.root}")
            vec = self.vectors.read([item.slot], self.catalog.next_slot)
            return vec, item.slot, query
        if query.startswith(("http://", "https://")):
            if not allow_urls:
                raise QueryError(f"{query}: URL queries are off; pass --allow-urls to fetch it")
            from .errors import DownloadError
            from .ingest.download import fetch_url

            try:
                data = fetch_url(query)
            except DownloadError as exc:
                raise QueryError(f"{query}: {exc}") from None
            return self._embed_query(data, limits, query), None, query
        path = Path(query)
        if not path.is_file():
            raise QueryError(f"query image {query} does not exist or is not a file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise QueryError(f"query image {query} cannot be read: {exc.strerror}") from None
        return self._embed_query(data, limits, query), None, query

    def _embed_query(self, data: bytes, limits: DecodeLimits | None, name: str) -> np.ndarray:
        try:
            return self.embed_image(data, limits)
        except ImageRejected as exc:
            raise QueryError(f"query image {name} cannot be used: {exc}") from None

    def search(
        self,
        query: Any,
        k: int = 10,
        *,
        threshold: float | None = None,
        label: str | None = None,
        allow_urls: bool = False,
        limits: DecodeLimits | None = None,
    ) -> list[Hit]:
        """The ``k`` items most similar to ``query``: a file path, ``id:ITEM``, an http(s) URL
        (with ``allow_urls``), encoded image bytes, or a vector."""
        if k <= 0:
            raise InvalidInput("k must be a positive number")
        if len(self) == 0:
            raise EmptyCollection(
                f"collection {self.root} is empty: add images with `lookalike index`"
            )
        vec, exclude, _ = self.query_vector(query, allow_urls=allow_urls, limits=limits)
        return self.search_vector(vec, k, threshold=threshold, label=label, exclude_slot=exclude)

    def search_vector(
        self,
        vec: np.ndarray,
        k: int,
        *,
        threshold: float | None = None,
        label: str | None = None,
        exclude_slot: int | None = None,
    ) -> list[Hit]:
        store = self.index.store()
        total = len(store)
        fetch = k + (1 if exclude_slot is not None else 0)
        if label is not None:
            fetch = max(fetch * 4, 64)
        while True:
            fetch = min(fetch, total)
            scores, ids = store.search(vec, fetch)
            pairs = [
                (float(s), int(i))
                for s, i in zip(scores[0], ids[0], strict=True)
                if i >= 0 and i != exclude_slot and (threshold is None or s >= threshold)
            ]
            items = self.catalog.by_slots(i for _, i in pairs)
            hits: list[Hit] = []
            for score, slot in pairs:
                item = items.get(slot)
                if item is None or (label is not None and item.label != label):
                    continue
                hits.append(
                    Hit(
                        len(hits) + 1,
                        item.id,
                        score,
                        item.path,
                        item.label,
                        item.url,
                        item.metadata,
                    )
                )
                if len(hits) == k:
                    break
            # Stop when we have enough, the index is exhausted, or scores fell below threshold.
            below = threshold is not None and len(scores[0]) and scores[0][-1] < threshold
            if len(hits) >= k or fetch >= total or below:
                return hits
            fetch *= 4

    # -- inspection and export ---------------------------------------------------------

    def get(self, item_id: str) -> Item:
        item = self.catalog.get(item_id)
        if item is None:
            raise ItemNotFound(f"no item with id {item_id!r} in collection {self.root}")
        return item

    def pixel_hashes(self, items: Iterable[Item]) -> dict[str, bytes]:
        """Full-resolution pixel hashes of ``items``, by id.

        Items indexed from a drafted (reduced-scale) JPEG decode have none in the catalog;
        for them the file is read and fully decoded now, provided it still has the content
        hash recorded at indexing time, and the result is saved for next time (unless the
        collection is read-only or another writer holds it). Items whose file is gone,
        changed or unreadable are left out.
        """
        from .ingest.decode import pixel_hash
        from .ingest.pipeline import content_hash

        out: dict[str, bytes] = {}
        computed: dict[str, bytes] = {}
        for item in items:
            if item.pixel_hash is not None:
                out[item.id] = bytes(item.pixel_hash)
                continue
            if not item.path:
                continue
            try:
                data = Path(item.path).read_bytes()
            except OSError:
                continue
            if item.content_hash is not None and content_hash(data) != item.content_hash:
                continue
            try:
                value = pixel_hash(decode_image(data, _ANY_INDEXED_SIZE).image)
            except LookalikeError:
                continue
            out[item.id] = computed[item.id] = value
        if computed and not self.readonly:
            with self._write_lock(wait=False) as got:
                if got:
                    with self.catalog.transaction():
                        for item_id, value in computed.items():
                            self.catalog.set_pixel_hash(item_id, value)
        return out

    def info(self) -> dict[str, Any]:
        model = self.config["model"]
        return {
            "collection": str(self.root),
            "items": len(self),
            "model": model["name"],
            "model_path": model.get("model_path"),
            "dim": model["dim"],
            "metric": model["metric"],
            "schema_version": self.catalog.schema_version,
            "vectors": {
                "dtype": self.config["vector_dtype"],
                "slots": self.catalog.next_slot,
                "bytes": self.vectors.size_bytes(),
            },
            "index": self.index.info(),
            "skipped": [
                {"path": s.path, "reason": s.reason, "detail": s.detail}
                for s in self.catalog.skipped()
            ],
        }

    def items(self) -> Iterator[Item]:
        return self.catalog.items()

    def export(self, fmt: str, out: str | os.PathLike[str]) -> int:
        from .store.export import export_collection

        return export_collection(self, fmt, Path(out))

    def duplicates(
        self,
        level: str = "near",
        threshold: float | None = None,
        against: Collection | None = None,
        hashes: str = "all",
    ) -> list[Any]:
        """Duplicate groups (``lookalike.dedup.finder.Group``): level exact, near or similar."""
        from .dedup.finder import find_duplicates

        return find_duplicates(self, level, threshold, against, hashes)


class _Indexer:
    """One run of ``Collection.add``: scan, classify, embed, commit, update the index."""

    def __init__(
        self,
        coll: Collection,
        limits: DecodeLimits,
        workers: int,
        batch_size: int,
        progress: Callable[[int, int], None] | None,
        download_options: Any,
    ) -> None:
        self.coll = coll
        self.cat = coll.catalog
        self.limits = limits
        self.workers = workers
        self.batch_size = max(1, batch_size)
        self.progress = progress
        self.download_options = download_options
        self.report = IndexReport()
        self.reserved_ids: set[str] = set()
        self.added_slots: list[int] = []
        self.removed_slots: list[int] = []
        self.skipped_now: set[str] = set()

    # ids --------------------------------------------------------------------------------

    def _unique_id(self, wanted: str, source: str, path: str | None) -> str:
        def taken(candidate: str) -> bool:
            if candidate in self.reserved_ids:
                return True
            other = self.cat.get(candidate)
            return other is not None and other.path != path

        candidate = wanted
        if taken(candidate):
            candidate = f"{Path(source).name}/{wanted}"
        n = 2
        base = candidate
        while taken(candidate):
            candidate = f"{base}#{n}"
            n += 1
        self.reserved_ids.add(candidate)
        return candidate

    def _skip(
        self,
        path: str,
        source: str,
        reason: str,
        detail: str,
        size: int | None,
        mtime_ns: int | None,
    ) -> None:
        self.cat.record_skip(Skipped(path, source, reason, detail, size, mtime_ns))
        self.report.skipped += 1
        self.report.skipped_files.append((path, reason, detail))
        self.skipped_now.add(path)
        log.info("skipped %s: %s %s", path, reason, detail)

    # the run ----------------------------------------------------------------------------

    def run(self, sources: Sequence[str | os.PathLike[str]]) -> IndexReport:
        from .ingest.sources import iter_entries

        gen_before = self.cat.generation
        keys = {str(Path(s).resolve()) for s in sources}
        bad_rows: list[tuple[str, str]] = []
        entries = list(
            iter_entries(
                list(sources),
                exclude=[self.coll.root.resolve()],
                on_error=lambda where, why: bad_rows.append((where, why)),
            )
        )
        keys |= {e.source for e in entries}
        with self.cat.transaction():
            for where, why in bad_rows:
                self._skip(where, where.rsplit(":", 1)[0], "bad-manifest-row", why, None, None)
        entries = self._download(entries)

        new: list[tuple[Any, os.stat_result]] = []
        changed: list[tuple[Any, os.stat_result, Item]] = []
        seen_ids: set[str] = set()
        seen_paths: set[str] = set()
        with self.cat.transaction():
            for e in entries:
                path = str(e.path)
                seen_paths.add(path)
                try:
                    st = os.stat(path)
                except OSError as exc:
                    self._skip(path, e.source, "unreadable", exc.strerror or str(exc), None, None)
                    continue
                item = self.cat.by_path(path)
                if item is not None:
                    seen_ids.add(item.id)
                    self.reserved_ids.add(item.id)
                    if item.size == st.st_size and item.mtime_ns == st.st_mtime_ns:
                        self.report.unchanged += 1
                        self._refresh(item, e)
                    else:
                        changed.append((e, st, item))
                    continue
                skip = self.cat.get_skip(path)
                if skip is not None and skip.size == st.st_size and skip.mtime_ns == st.st_mtime_ns:
                    self.skipped_now.add(path)
                    self.report.skipped += 1
                    self.report.skipped_files.append((path, skip.reason, skip.detail))
                    continue
                new.append((e, st))

        vanished = [
            i
            for key in keys
            for i in self.cat.items(key)
            if i.id not in seen_ids and i.path not in seen_paths
        ]
        new = self._match_renames(new, vanished)
        vanished_ids = {i.id for i in vanished if i.id not in self._renamed_from}

        tasks: list[pipeline.Task] = []
        meta: dict[int, tuple[Any, Item | None]] = {}
        for e, _st in new:
            key = len(tasks)
            tasks.append(pipeline.Task(key, str(e.path)))
            meta[key] = (e, None)
        for e, _st, item in changed:
            key = len(tasks)
            tasks.append(pipeline.Task(key, str(e.path), expect_hash=item.content_hash))
            meta[key] = (e, item)
        self._embed_all(tasks, meta)

        if vanished_ids:
            with self.cat.transaction():
                self.removed_slots += self.cat.delete(vanished_ids)
                self.report.removed += len(vanished_ids)
                self.cat.bump_generation()
        with self.cat.transaction():
            for skip in self.cat.skipped():
                if (
                    skip.source in keys
                    and skip.path not in seen_paths
                    and skip.path not in self.skipped_now
                ):
                    self.cat.clear_skip(skip.path)  # the file is gone from its source
        if self.cat.generation != gen_before or not self.coll.index.exists():
            self.coll.index.update(gen_before, self.added_slots, self.removed_slots)
        return self.report

    _renamed_from: set[str]

    def _refresh(self, item: Item, e: Any) -> None:
        """Keep label/metadata in step with the source without re-embedding."""
        label = e.label
        if item.label != label or item.metadata != e.metadata or item.url != e.url:
            self.cat.update_location(
                item.id,
                new_id=item.id,
                path=item.path,
                source=e.source,
                label=label,
                metadata=e.metadata,
                size=item.size,
                mtime_ns=item.mtime_ns,
                url=e.url,
            )

    def _match_renames(
        self, new: list[tuple[Any, os.stat_result]], vanished: list[Item]
    ) -> list[tuple[Any, os.stat_result]]:
        self._renamed_from = set()
        if not vanished or not new:
            return new
        by_size: dict[int, list[Item]] = {}
        for item in vanished:
            if item.size is not None:
                by_size.setdefault(item.size, []).append(item)
        remaining: list[tuple[Any, os.stat_result]] = []
        with self.cat.transaction():
            for e, st in new:
                candidates = [
                    i for i in by_size.get(st.st_size, []) if i.id not in self._renamed_from
                ]
                if not candidates:
                    remaining.append((e, st))
                    continue
                try:
                    digest = pipeline.file_content_hash(str(e.path))
                except OSError:
                    remaining.append((e, st))
                    continue
                match = next((i for i in candidates if i.content_hash == digest), None)
                if match is None:
                    remaining.append((e, st))
                    continue
                self._renamed_from.add(match.id)
                self.reserved_ids.discard(match.id)
                new_id = self._unique_id(e.id or e.relpath, e.source, str(e.path))
                self.cat.update_location(
                    match.id,
                    new_id=new_id,
                    path=str(e.path),
                    source=e.source,
                    label=e.label,
                    metadata=e.metadata,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    url=e.url,
                )
                self.report.renamed += 1
            if self.report.renamed:
                self.cat.bump_generation()
        return remaining

    def _download(self, entries: list[Any]) -> list[Any]:
        url_entries = [e for e in entries if e.path is None and e.url]
        if not url_entries:
            return [e for e in entries if e.path is not None]
        from .ingest.download import Downloader, DownloadOptions

        opts = self.download_options or DownloadOptions()
        downloader = Downloader(self.coll.root / "cache" / "urls", opts)
        by_id: dict[str, Any] = {}
        for e in url_entries:
            if e.id is None:
                e.id = pipeline.content_hash(e.url.encode())[:16]
            by_id[e.id] = e
        with self.cat.transaction():
            for res in downloader.fetch_many((e.id, e.url) for e in url_entries):
                e = by_id[res.id]
                if res.path is None:
                    self._skip(e.url, e.source, "download-failed", res.error or "", None, None)
                else:
                    e.path = res.path
        return [e for e in entries if e.path is not None]

    def _embed_all(
        self, tasks: list[pipeline.Task], meta: dict[int, tuple[Any, Item | None]]
    ) -> None:
        total = len(tasks)
        if total == 0:
            if self.progress:
                self.progress(0, 0)
            return
        emb = self.coll.embedder
        preparer = emb.preparer()
        emb.load()
        window = max(4 * self.batch_size, 8 * max(self.workers, 1))
        pending: list[pipeline.Result] = []
        done = 0
        # Hash models only need a thumbnail: JPEGs are decoded at a reduced scale (DCT
        # scaling), several times faster; their full-resolution pixel hash is computed on
        # demand by the duplicate finder. Float models always see the fully decoded image.
        draft = preparer.draft_size() if emb.binary else None
        for res in pipeline.run(
            tasks, preparer, self.limits, workers=self.workers, max_in_flight=window, draft=draft
        ):
            e, old = meta[res.key]
            if res.status == "same":
                assert old is not None
                with self.cat.transaction():
                    self.cat.update_stat(old.id, res.size, res.mtime_ns)
                self.report.unchanged += 1
            elif res.status == "skipped":
                with self.cat.transaction():
                    if old is not None:  # the file changed into something unreadable
                        self.removed_slots += self.cat.delete([old.id])
                        self.cat.bump_generation()
                        self.report.removed += 1
                    self._skip(
                        str(e.path), e.source, res.reason, res.detail, res.size, res.mtime_ns
                    )
            else:
                pending.append(res)
                if len(pending) >= self.batch_size:
                    self._flush(pending, meta)
                    pending = []
            done += 1  # noqa: SIM113 - counts skipped and embedded alike
            if self.progress:
                self.progress(done, total)
        if pending:
            self._flush(pending, meta)

    def _flush(
        self, results: list[pipeline.Result], meta: dict[int, tuple[Any, Item | None]]
    ) -> None:
        emb = self.coll.embedder
        vecs = emb.embed(
            [r.prepared for r in results if r.prepared is not None], batch_size=self.batch_size
        )
        first = self.cat.next_slot
        # Vectors first (fsynced), then the catalog rows that point at them, in one transaction.
        self.coll.vectors.write(first, vecs)
        with self.cat.transaction():
            self.cat.reserve_slots(len(results))
            for offset, res in enumerate(results):
                e, old = meta[res.key]
                path = str(e.path)
                if old is not None:
                    self.removed_slots += self.cat.delete([old.id])
                    item_id = old.id
                else:
                    item_id = self._unique_id(e.id or e.relpath, e.source, path)
                self.cat.insert(
                    Item(
                        id=item_id,
                        slot=first + offset,
                        source=e.source,
                        path=path,
                        url=e.url,
                        label=e.label,
                        metadata=e.metadata,
                        size=res.size,
                        mtime_ns=res.mtime_ns,
                        content_hash=res.content_hash,
                        pixel_hash=res.pixel_hash,
                        phash=res.phash,
                        width=res.width,
                        height=res.height,
                    )
                )
                self.cat.clear_skip(path)
                self.added_slots.append(first + offset)
            self.cat.bump_generation()
        self.report.indexed += len(results)
