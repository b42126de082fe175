"""What the server does, without HTTP: searches, adds, removals, images and thumbnails over
one :class:`~lookalike.collection.Collection`, safe to call from many threads.

Concurrency: one readers-writer lock (:class:`RWLock`). Searches and item reads share it;
adds and removals take it alone, so a search never sees a half-applied change and writes
are serialised. Slow work (decoding and embedding uploads, writing upload files, making
thumbnails) happens outside the lock. The collection's own file lock still guards against
writers in other processes, and its crash-safety rules (vectors fsynced before the catalog
commit, index rebuilt from vectors when stale) keep the folder consistent if the server is
killed. Upload files are written and fsynced before the commit that refers to them; a crash
in between leaves at most an unreferenced file in ``uploads/``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..collection import Hit
from ..errors import ImageRejected, InvalidInput, ItemNotFound, QueryError
from ..ingest.decode import DecodeLimits, decode_image
from ..models.loader import text_embedder_for_record
from ..search.compose import as_terms, embed_texts
from ..search.where import Where, both, label_where, parse_where
from ..store.metadata import check_metadata
from .cleanup import sweep
from .limits import MemoryBudget, Slots, decode_cost
from .locking import RWLock, exclusive_write, read_now
from .security import EXTENSIONS, IMAGE_MEDIA_TYPES, FetchLimits, safe_fetch, sniff, sniff_image
from .settings import ServerSettings as ServerSettings  # re-exported
from .uploads import (
    THUMBS,
    UPLOADS,
    Upload,
    cache_thumbnail,
    digest,
    item_links,
    public_item,
    render_thumbnail,
    thumbnail_cache_path,
    write_durably,
)

if TYPE_CHECKING:
    from ..collection import Collection


class Conflict(InvalidInput):
    """The request clashes with what is stored (e.g. an id that already exists)."""


class NoImage(ItemNotFound):
    """The item exists but has no image file the server can serve."""


class Service:
    def __init__(self, coll: Collection, settings: ServerSettings) -> None:
        self.coll = coll
        self._setup(settings, coll.root, coll.config["model"], coll.binary, coll.vectors.width)
        self.browse_source: Any = coll.catalog  # GET /items and /labels (server/browse.py)
        coll.embedder.load()
        _single_threaded_faiss()
        with self.lock.write():
            coll.index.store()  # load (or rebuild) the index before the first request
        sweep(coll, settings.thumbnail_px)  # leftovers of crashes and removals

    def _setup(
        self, settings: ServerSettings, root: Path, model: dict[str, Any], binary: bool, width: int
    ) -> None:
        """What every service has: limits, locks, the upload and thumbnail folders."""
        self.model, self.binary, self.width = model, binary, width
        self.settings = settings
        self.lock = RWLock()
        self.limits = DecodeLimits(max_megapixels=settings.max_megapixels)
        self.fetch_limits = FetchLimits(
            timeout=settings.fetch_timeout, max_bytes=settings.max_upload_bytes
        )
        # URL fetches at once: the excess is refused at once (each may hold a thread for
        # up to fetch_timeout seconds, and the threads are shared with every other request)
        self.fetches = Slots(
            settings.max_fetches, "URL fetches", retry_after=int(settings.fetch_timeout / 2)
        )
        # Decodes at once, by estimated peak memory (a 50-megapixel upload needs ~800 MB):
        # over the budget a decode waits up to busy_wait seconds, then gets a 503.
        self.decodes = MemoryBudget(
            int(settings.decode_memory_mb * 2**20), "decoding images", wait=settings.busy_wait
        )
        self._writer = threading.Lock()  # one server write at a time
        self.uploads = root / UPLOADS
        self.thumbs = root / THUMBS

    # -- reading ---------------------------------------------------------------------

    def dependencies(self) -> dict[str, str]:
        """Services this server depends on and their state (none for a collection folder)."""
        return {}

    def info(self) -> dict[str, Any]:
        model = self.coll.config["model"]
        with self.lock.read():
            items = len(self.coll)
            index = self.coll.index.info()
        return {
            "items": items,
            "model": model["name"],
            "dim": model["dim"],
            "metric": model["metric"],
            "index": {"type": index["type"], "count": index["count"], "bytes": index["bytes"]},
        }

    def get(self, item_id: str) -> dict[str, Any]:
        with self.lock.read():
            return public_item(self.coll.get(item_id))

    def _hits(self, hits: Sequence[Hit]) -> list[dict[str, Any]]:
        return [h.to_dict(include_path=False) | item_links(h.id) for h in hits]

    def search_vector(
        self,
        vec: np.ndarray,
        k: int,
        threshold: float | None = None,
        label: str | None = None,
        where: str | None = None,
        exclude_slot: int | None = None,
        *,
        blocking: bool = True,
    ) -> list[dict[str, Any]]:
        self._check_k(k)
        flt = self._filter(label, where)
        with self.lock.read(blocking):
            return self._search(vec, k, threshold, flt, exclude_slot)

    def similar(
        self,
        item_id: str,
        k: int,
        threshold: float | None = None,
        label: str | None = None,
        where: str | None = None,
        *,
        blocking: bool = True,
    ) -> list[dict[str, Any]]:
        self._check_k(k)
        flt = self._filter(label, where)
        with self.lock.read(blocking):
            vec, slot, _ = self.coll.query_vector("id:" + item_id)
            return self._search(vec, k, threshold, flt, slot)

    async def similar_async(self, *args: Any) -> list[dict[str, Any]]:
        """:meth:`similar` for the event loop (the route's): here as :func:`read_now`."""
        return await read_now(self.similar, *args)  # type: ignore[no-any-return]

    @staticmethod
    def _filter(label: str | None, where: str | None) -> Where | None:
        """``label`` and ``where`` as one filter (a bad expression: ``WhereError``, a 400)."""
        parsed = parse_where(where) if where is not None else None
        return both(label_where(label) if label is not None else None, parsed)

    def search_terms(
        self,
        terms: Sequence[Any],
        k: int,
        threshold: float | None = None,
        label: str | None = None,
        where: str | None = None,
    ) -> list[dict[str, Any]]:
        """A composed query (texts, ids, vectors; see ``lookalike.search.compose``): the
        items a positive ``id`` term names are left out of the results."""
        self._check_k(k)
        flt = self._filter(label, where)
        model = self.coll.config["model"]
        parts = embed_texts(as_terms(terms), partial(text_embedder_for_record, model))
        with self.lock.read(True):  # texts were embedded outside the lock
            found = self.coll.compose(parts)
            if len(found.exclude) <= 1:
                slot = found.exclude[0] if found.exclude else None
                return self._search(found.vector, k, threshold, flt, slot)
            drop = {item.id for item in self.coll.catalog.by_slots(found.exclude).values()}
            hits = self._search(found.vector, k + len(drop), threshold, flt, None)
            kept = [hit for hit in hits if hit["id"] not in drop][:k]
            return [{**hit, "rank": n} for n, hit in enumerate(kept, 1)]

    def _search(
        self,
        vec: np.ndarray,
        k: int,
        threshold: float | None,
        where: Where | None,
        exclude_slot: int | None,
    ) -> list[dict[str, Any]]:
        """Call with the read lock held. A filter is answered with exactly its best ``k``
        items whatever its selectivity (:mod:`lookalike.search.filtered`): a rare or unknown
        label is scored directly instead of widening an unfiltered search up to every item
        (seconds per request at 100k items: a cheap way to load a public server)."""
        hits = self.coll.search_vector(
            vec, k, threshold=threshold, where=where, exclude_slot=exclude_slot
        )
        return self._hits(hits)

    def _check_k(self, k: int) -> None:
        if not 1 <= k <= self.settings.max_k:
            raise InvalidInput(f"k must be between 1 and {self.settings.max_k}")

    def parse_vector(self, value: Any) -> np.ndarray:
        """A query vector from JSON: floats for cosine models, a hex string (or a list of
        byte values) of packed bits for Hamming models."""
        if self.binary:
            if isinstance(value, str):
                try:
                    raw = bytes.fromhex(value)
                except ValueError:
                    raise QueryError("vector must be a hex string of packed bits") from None
                row = np.frombuffer(raw, dtype=np.uint8)
            elif isinstance(value, list) and all(
                isinstance(v, int | float)
                and not isinstance(v, bool)
                and float(v).is_integer()
                and 0 <= v <= 255
                for v in value
            ):
                row = np.asarray(value, dtype=np.float64).astype(np.uint8)
            else:
                raise QueryError("vector must be a hex string or a list of byte values (0-255)")
        else:
            if not isinstance(value, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value
            ):
                raise QueryError("vector must be a list of numbers")
            row = np.asarray(value, dtype=np.float64)
            if not np.all(np.isfinite(row)):
                raise QueryError("vector values must be finite numbers")
        if row.size != self.width:
            unit = "bytes" if self.binary else "values"
            raise QueryError(f"vector has {row.size} {unit}, expected {self.width}")
        return self._as_query(row)

    def _as_query(self, row: np.ndarray) -> np.ndarray:
        vec, _, _ = self.coll.query_vector(row.astype(self.coll.vectors.dtype))
        return vec

    # -- embedding -------------------------------------------------------------------

    def embed(self, data: bytes) -> np.ndarray:
        """One image's vector (1 row); the content is sniffed and checked against the limits.
        Runs outside the lock: the embedder is thread-safe and never touches the catalog."""
        if len(data) > self.settings.max_upload_bytes:
            raise ImageRejected("too-large", f"upload over {self.settings.max_upload_bytes} bytes")
        _, pixels = sniff(data)
        with self.decodes.hold(decode_cost(pixels)):
            return self._embed_image(data)

    def _embed_image(self, data: bytes) -> np.ndarray:
        return self.coll.embed_image(data, self.limits)

    def fetch(self, url: str) -> bytes:
        if not self.settings.allow_urls:
            raise QueryError("URL fetching is off on this server (start it with --allow-urls)")
        with self.fetches.hold():
            if self.settings.allow_private_for_tests:
                return safe_fetch(url, self.fetch_limits, allow_address=lambda _a: True)
            return safe_fetch(url, self.fetch_limits)

    def vector_json(self, vec: np.ndarray) -> list[float] | str:
        row = vec[0]
        if self.binary:
            return bytes(np.asarray(row, dtype=np.uint8)).hex()
        return [float(x) for x in row]

    # -- writing ---------------------------------------------------------------------

    def add(self, uploads: Sequence[Upload]) -> list[str]:
        """Add images; returns their ids. All or nothing: a bad image or an id clash adds none."""
        if not uploads:
            raise InvalidInput("no images to add")
        ids: list[str] = []
        vecs: list[np.ndarray] = []
        formats: list[str] = []
        for n, up in enumerate(uploads, 1):
            check_metadata(up.metadata)
            try:
                fmt = sniff_image(up.data)
                vecs.append(self.embed(up.data))
            except ImageRejected as exc:
                raise ImageRejected(exc.reason, f"file {n}: {exc.detail or exc.reason}") from None
            formats.append(fmt)
            item_id = up.id if up.id is not None else "upload-" + digest(up.data)[:16]
            if not item_id.strip() or len(item_id) > 512 or "\x00" in item_id:
                raise InvalidInput(f"file {n}: ids must be 1-512 characters without NUL")
            ids.append(item_id)
        if len(set(ids)) != len(ids):
            raise InvalidInput("the same id appears twice in this request")
        self.uploads.mkdir(parents=True, exist_ok=True)
        paths = [
            self.uploads / (uuid.uuid4().hex + EXTENSIONS[fmt]) for fmt in formats
        ]  # fresh names: never overwrite a stored image
        try:
            for path, up in zip(paths, uploads, strict=True):
                write_durably(path, up.data)
            with self.writing():
                clash = next((i for i in ids if self.coll.catalog.id_exists(i)), None)
                if clash is not None:
                    raise Conflict(f"an item with id {clash!r} already exists")
                self.coll.add_vectors(
                    ids,
                    np.concatenate(vecs, axis=0),
                    labels=[u.label for u in uploads],
                    metadata=[u.metadata for u in uploads],
                    source=UPLOADS,
                    paths=[str(p) for p in paths],
                )
        except BaseException:
            for item_id, path in zip(ids, paths, strict=True):
                if not self._refers_to(item_id, path):  # never delete a committed item's image
                    with contextlib.suppress(OSError):
                        path.unlink(missing_ok=True)
            raise
        return ids

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """Hold what a write needs (see :func:`.locking.exclusive_write`); Busy (503) when
        another write holds it too long."""
        return exclusive_write(self.coll.root, self.lock, self._writer, self.settings.busy_wait)

    def _refers_to(self, item_id: str, path: Path) -> bool:
        try:
            item = self.coll.catalog.get(item_id)
        except Exception:  # noqa: BLE001 - unsure: keep the file
            return True
        return item is not None and item.path == str(path)

    def remove(self, item_id: str) -> None:
        with self.writing():
            item = self.coll.get(item_id)
            self.coll.remove([item_id])
        if not item.path:
            return
        # Its thumbnails and an uploaded image belong to the item: delete them after the commit.
        path = Path(item.path)
        doomed = []
        with contextlib.suppress(OSError):
            st = path.stat()
            px = self.settings.thumbnail_px
            doomed = [
                thumbnail_cache_path(self.thumbs, item_id, path, st, px, w) for w in (False, True)
            ]
        if item.source == UPLOADS and path.parent == self.uploads:
            doomed.append(path)
        for doomed_path in doomed:
            with contextlib.suppress(OSError):
                doomed_path.unlink(missing_ok=True)

    # -- images ----------------------------------------------------------------------

    def _image_file(self, item_id: str) -> tuple[Path, os.stat_result]:
        with self.lock.read():
            item = self.coll.get(item_id)
        if not item.path:
            raise NoImage(f"item {item_id!r} has no stored image")
        path = Path(item.path)
        try:
            return path, path.stat()
        except OSError:
            raise NoImage(f"the image of item {item_id!r} is missing on the server") from None

    def image(self, item_id: str) -> tuple[bytes, str]:
        """The item's original image bytes and media type (sniffed, not guessed)."""
        path, _ = self._image_file(item_id)
        try:
            data = path.read_bytes()
        except OSError:
            raise NoImage(f"the image of item {item_id!r} cannot be read") from None
        try:
            fmt = sniff_image(data)
        except ImageRejected:
            raise NoImage(f"the stored file of item {item_id!r} is not a servable image") from None
        return data, IMAGE_MEDIA_TYPES[fmt]

    def thumbnail(self, item_id: str, webp: bool = False) -> tuple[bytes, str]:
        """A small JPEG (or WebP) of the item, cached on disk under ``cache/thumbs``."""
        path, st = self._image_file(item_id)
        px = self.settings.thumbnail_px
        cached = thumbnail_cache_path(self.thumbs, item_id, path, st, px, webp)
        media = "image/webp" if webp else "image/jpeg"
        with contextlib.suppress(OSError):
            return cached.read_bytes(), media
        try:
            data = path.read_bytes()
            _, pixels = sniff(data)
            with self.decodes.hold(decode_cost(pixels)):
                decoded = decode_image(data, self.limits, draft=(px, px))
                out = render_thumbnail(decoded.image, px, webp)
        except (OSError, ImageRejected):
            raise NoImage(f"the image of item {item_id!r} cannot be decoded") from None
        cache_thumbnail(self.thumbs, cached, out)
        return out, media


def _single_threaded_faiss() -> None:
    """The server runs searches in parallel threads, one query each; FAISS's own OpenMP
    threads only add contention there (measured: ~20x slower per query on 2 cores, as idle
    OpenMP workers spin). This sets the process-wide FAISS thread count to 1."""
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss is a core dependency
        return
    faiss.omp_set_num_threads(1)
