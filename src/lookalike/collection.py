"""``Collection``: the facade over one collection folder.

It wires the parts together (``store/`` for the catalog, vectors and index, ``models/`` for
the embedder, ``ingest/`` for indexing, ``search/`` for queries) and holds no algorithm of
its own. See docs/architecture.md for the folder's files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .creation import create, create_new
from .distributed.attached import attach, attached
from .errors import (
    CollectionError,
    CollectionNotFound,
    EmptyCollection,
    InvalidInput,
    ItemNotFound,
    ModelMismatch,
)
from .ingest import hashes, pipeline
from .ingest.decode import DecodeLimits
from .ingest.filters import stored_filters
from .ingest.indexer import Indexer
from .ingest.report import IndexReport
from .models.binding import bind_requested, check_fast_resize, model_summary, stored_embedder
from .models.embedders.base import Embedder
from .models.loader import load_embedder, text_embedder_for_record
from .search.hits import Hit
from .search.query import QueryResolver, embed_image
from .search.rank import check_label
from .store import layout
from .store.catalog import Catalog, Item
from .store.indexes import IndexManager
from .store.layout import MARKER, default_collection_dir
from .store.rows import commit_rows, unit_rows
from .store.vectors import VectorFile

if TYPE_CHECKING:
    from .distributed.config import (
        RemoteSpec,
    )  # queries by text, terms and filters load their modules when used
    from .search.compose import ComposedQuery
    from .search.where import Where

__all__ = ["Collection", "Hit", "IndexReport", "default_collection_dir"]


class Collection:
    """An image collection on disk. Open with :meth:`open`."""

    def __init__(
        self,
        root: Path,
        config: dict[str, Any],
        embedder: Embedder | None,
        readonly: bool,
        threads: int | None = None,
    ) -> None:
        self.root, self.config, self.readonly = root, config, readonly
        self._embedder, self._threads = embedder, threads  # None: resolved on first use
        self.notes: list[str] = []  # for the user, e.g. "the model folder moved"
        self._slot_cache: Any = None  # the matching slots of recent filters (SlotCache)
        self.catalog = Catalog(root / "catalog.sqlite", readonly=readonly)
        self.vectors = VectorFile(
            root / "vectors.bin", config["vector_dtype"], int(config["vector_width"])
        )
        self.remote = attached(config, self.catalog, self.vectors)  # Milvus/Redis, or None
        self.index = IndexManager(
            root / "index", self.dim, self.binary, self.catalog, self.vectors, readonly,
            self._write_lock,
        )  # fmt: skip

    @property
    def embedder(self) -> Embedder:
        """The model, resolved and checked against the recorded identity on first use."""
        if self._embedder is None:
            self._embedder = stored_embedder(self.config, str(self.root), self._threads, self._save)
        return self._embedder

    @embedder.setter
    def embedder(self, value: Embedder) -> None:
        self._embedder = value

    def _save(self, model: dict[str, Any], hash_cache: list[Any]) -> bool:
        return self.readonly or layout.update_model(self.root, model, hash_cache)

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
        fast_resize: bool = False,
    ) -> Collection:
        """Open (or create) the collection in ``directory``. ``model``/``model_path`` choose
        the model for a new collection; for an existing one they must be the model it was
        built with, by content (else :class:`ModelMismatch`); a moved local model folder is
        recorded at its new place (see ``notes``). Without them the model is only resolved
        when something needs embedding (``fast_resize``: ``load_embedder``'s, for a new
        collection; remembered)."""
        root = Path(directory) if directory is not None else default_collection_dir()
        marker = root / MARKER
        if not marker.is_file() and create and not readonly and not root.is_file():
            layout.check_creatable(root, locked=False)
            embedder = load_embedder(model, model_path, threads=threads, fast_resize=fast_resize)
            created = cls._create_new(root, embedder, model_path, threads)
            if created is not None:
                return created
        if marker.is_file():
            coll = cls(root, layout.read_config(marker), None, readonly, threads)
            fast_resize = check_fast_resize(coll.config["model"], fast_resize, root)
            if model is None and model_path is None:
                return coll
            try:
                coll._embedder, note = bind_requested(
                    coll.config, model, model_path, threads, str(root), coll._save, fast_resize
                )
            except ModelMismatch as exc:
                coll.close()
                if readonly or not isinstance(exc.requested, Embedder) or not layout.is_empty(root):
                    raise
                # Nothing stored yet: the empty collection adopts the requested model.
                return cls._create(root, exc.requested, model_path, threads)
            coll.notes += [note] if note else []
            return coll
        layout.check_creatable(root)
        raise CollectionNotFound(
            f"no collection at {root}: build one with `lookalike index SOURCE --collection {root}`"
        )

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
        layout.check_creatable(root, locked=False)
        created = cls._create_new(root, embedder, None)
        return created or cls.open_vectors(root, dim, metric=metric, name=name)

    @classmethod
    def _create_new(
        cls, root: Path, embedder: Embedder, model_path: Any, threads: int | None = None
    ) -> Collection | None:
        config = create_new(root, embedder, model_path)  # None: another process created it
        return None if config is None else cls(root, config, embedder, False, threads)

    @classmethod
    def _create(
        cls, root: Path, embedder: Embedder, model_path: Any, threads: int | None = None
    ) -> Collection:
        return cls(root, create(root, embedder, model_path), embedder, False, threads)

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

    @contextlib.contextmanager
    def _write_lock(self, wait: bool = True) -> Iterator[bool]:
        if self.readonly:
            raise CollectionError(f"collection {self.root} was opened read-only")
        with layout.write_lock(self.root, wait) as got:
            yield got

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
        decode: pipeline.DecodeMode | None = None,
    ) -> IndexReport:
        """Index ``sources`` (folders, files, manifests) incrementally.

        New and changed files are embedded, unchanged ones (same size and mtime, or content
        hash) not; renamed files keep their vectors; files gone from these sources are
        removed. ``decode``: "threads", "processes" (default: threads, processes when the
        model runs on a GPU) or "gpu" (JPEGs decoded on the GPU, see docs/gpu.md). The
        filters of ``limits``
        (``min_side``, ``max_aspect``) are collection settings: other values than the stored
        ones are stored and re-applied to every item and filtered file.
        """
        if isinstance(sources, (str, os.PathLike)):
            sources = [sources]
        limits = limits or DecodeLimits(**self.filters())
        self.embedder  # noqa: B018 - resolved and checked before the lock (it may record)
        with self._write_lock():
            report = Indexer(
                self, limits, workers, batch_size, progress, download_options, decode
            ).run(sources)
            self.publish()
            return report

    def filters(self) -> dict[str, Any]:
        """The stored content filters: ``{"min_side": ..., "max_aspect": ...}`` (None = off)."""
        return stored_filters(self.catalog)

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
        """Add items from precomputed vectors (no image files): float rows are L2-normalised,
        binary collections take packed uint8 rows; new ids only. Returns the number added.
        ``paths``: each item's image file, already written (the server's uploads)."""
        rows = unit_rows(vectors, len(ids), self.vectors.width, self.binary)
        if len(set(ids)) != len(ids):
            raise InvalidInput("ids must be unique")
        with self._write_lock():
            added = commit_rows(
                self.catalog, self.vectors, self.index, ids, rows, labels, metadata, source,
                batch_size, paths,
            )  # fmt: skip
            self.publish()
            return added

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
            self.publish()
        return len(slots)

    def use_store(self, spec: RemoteSpec) -> None:
        """Publish to Milvus (and Redis) from now on (another store than the stored one is
        refused); the stored items are queued."""
        with self._write_lock():
            config = attach(layout.read_config(self.root / MARKER), self.catalog, spec)
            if config is not None:
                layout.write_config(self.root, config)
                self.config = config
                self.remote = attached(config, self.catalog, self.vectors)

    def publish(self) -> tuple[int, int]:
        """Publish committed changes not yet in the remote store: (put, removed)."""
        if self.remote is None:
            return 0, 0
        with self._write_lock():
            return self.remote.publish()

    # -- search -------------------------------------------------------------------------

    def embed_image(self, data: bytes, limits: DecodeLimits | None = None) -> np.ndarray:
        """Embed one encoded image (bytes); raises ImageRejected for bad images."""
        return embed_image(self.embedder, data, limits)

    def _queries(self) -> QueryResolver:
        return QueryResolver(
            lambda: self.embedder, self.catalog, self.vectors, self.binary, self.root
        )

    def query_vector(
        self, query: Any, *, allow_urls: bool = False, limits: DecodeLimits | None = None
    ) -> tuple[np.ndarray, int | None, str]:
        """Resolve a query to (vector row, slot to exclude or None, description)."""
        return self._queries().resolve(query, allow_urls=allow_urls, limits=limits)

    def compose(
        self, terms: Sequence[Any], *, allow_urls: bool = False, limits: DecodeLimits | None = None
    ) -> ComposedQuery:
        """Weighted terms (see :mod:`lookalike.search.compose`) as one unit query vector."""
        from .search.compose import TermResolver, as_terms

        texts = TermResolver(
            self._queries(), partial(text_embedder_for_record, self.config["model"])
        )
        return texts.resolve(as_terms(terms), allow_urls=allow_urls, limits=limits)

    def search(
        self, query: Any = None, k: int = 10, *, text: str | None = None,
        terms: Sequence[Any] | None = None, threshold: float | None = None,
        label: str | None = None, where: str | Where | None = None, allow_urls: bool = False,
        limits: DecodeLimits | None = None,
    ) -> list[Hit]:  # fmt: skip
        """The ``k`` items most similar to ``query`` (a path, ``id:ITEM``, a URL with
        ``allow_urls``, image bytes or a vector), ``text`` or ``terms`` (see search/compose.py);
        only items of ``label`` (known, else ``UnknownLabel``) that ``where`` accepts."""
        if sum(x is not None for x in (query, text, terms)) != 1:
            raise InvalidInput("give exactly one of a query, text= or terms=")
        if k <= 0:
            raise InvalidInput("k must be a positive number")
        from .search.compose import Term, ranked_without
        from .search.where import as_where

        where = as_where(where)
        if len(self) == 0:
            raise EmptyCollection(
                f"collection {self.root} is empty: add images with `lookalike index`"
            )
        if label is not None:
            check_label(self.catalog, label)
        parts = (
            [query] if query is not None else [Term("text", text)] if text is not None else terms
        )
        found = self.compose(parts or [], allow_urls=allow_urls, limits=limits)
        search = partial(self.search_vector, where=where)
        return ranked_without(search, found, k, threshold, label, self.catalog)

    def search_vector(
        self, vec: np.ndarray, k: int, *, threshold: float | None = None,
        label: str | None = None, where: str | Where | None = None, exclude_slot: int | None = None,
    ) -> list[Hit]:  # fmt: skip
        from .search.filtered import SlotCache, search_hits
        from .search.where import as_where

        if self.remote is not None:
            return self.remote.search(vec, k, threshold, label, as_where(where), exclude_slot)
        if self._slot_cache is None:
            self._slot_cache = SlotCache()
        parts = (self.index.store(), self.catalog, self.vectors, self._slot_cache)
        return search_hits(parts, vec, k, threshold, label, where, exclude_slot)

    def get(self, item_id: str) -> Item:
        item = self.catalog.get(item_id)
        if item is None:
            raise ItemNotFound(f"no item with id {item_id!r} in collection {self.root}")
        return item

    def pixel_hashes(self, items: Iterable[Item]) -> dict[str, bytes]:
        """Full-resolution pixel hashes of ``items`` by id: those drafted JPEG decodes lack are
        computed now and saved unless another writer holds the collection."""
        out, computed = hashes.pixel_hashes(items, self.catalog.pixel_hash_kind)
        if computed and not self.readonly:
            with self._write_lock(wait=False) as got:
                if got:
                    self.catalog.set_pixel_hashes(computed)
        return out

    def info(self) -> dict[str, Any]:
        info = layout.describe(self.root, self.config, self.catalog, self.vectors, self.index)
        remote = {"remote": self.remote.info()} if self.remote is not None else {}
        return {**info, **model_summary(self.config["model"]), **remote}

    def items(self) -> Iterator[Item]:
        return self.catalog.items()

    def export(self, fmt: str, out: str | os.PathLike[str]) -> int:
        from .store.export import export_collection

        return export_collection(self.catalog, self.vectors, self.binary, fmt, Path(out))

    def duplicates(
        self, level: str = "near", threshold: float | None = None,
        against: Collection | None = None, hashes: str = "all",
    ) -> list[Any]:  # fmt: skip
        """Duplicate groups (``lookalike.dedup.finder.Group``): level exact, near or similar."""
        from .dedup.finder import find_duplicates

        return find_duplicates(self, level, threshold, against, hashes)
