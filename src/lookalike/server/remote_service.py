"""What a stateless replica does: the :class:`~.service.Service` API over a
:class:`~lookalike.distributed.served.ServedCollection` (Milvus + Redis + a shared uploads
folder) instead of a collection folder.

Nothing is kept on the replica: adds and removals are visible through every replica at
once (Milvus with Strong consistency, Redis), ids are claimed atomically in Redis, and
uploads are written to the shared folder before the metadata that points at them. When
Milvus or Redis is down a request gets 503 with ``Retry-After``; the replica reconnects by
itself once the service is back.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..distributed.served import NewItem, ServedCollection
from ..errors import ImageRejected, InvalidInput, QueryError
from ..search.compose import as_terms, combine, embed_texts
from ..store.catalog import Item
from ..store.metadata import check_metadata
from .locking import RemoteReads
from .security import EXTENSIONS, sniff_image
from .service import NoImage, ServerSettings, Service
from .uploads import UPLOADS, Upload, digest, thumbnail_cache_path, write_durably


class RemoteService(Service):
    def __init__(self, served: ServedCollection, settings: ServerSettings, uploads: Path) -> None:
        self.served = served
        # uploads/ (shared by the replicas) and a thumbnail cache in the same folder
        self._setup(settings, uploads, served.model, served.binary, served.width)
        self.lock: Any = RemoteReads()  # searches inherited from Service run in the threadpool
        self.uploads = uploads
        self.thumbs = uploads / ".thumbs"
        self.browse_source: Any = RedisBrowse(served)
        served.embedder.load()

    # -- reading ---------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        info = self.served.info()
        idx = info["index"]
        return {
            **{k: info[k] for k in ("items", "model", "dim", "metric")},
            "index": {"type": idx.get("type"), "count": idx.get("count"), "bytes": None},
        }

    def dependencies(self) -> dict[str, str]:
        return self.served.dependencies()

    def get(self, item_id: str) -> dict[str, Any]:
        from .uploads import public_item

        return public_item(self.served.get(item_id))

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
        with self.lock.read(blocking):  # never on the event loop: see RemoteReads
            hits = self.served.similar(item_id, k, threshold=threshold, where=flt)
        return self._hits(hits)

    async def similar_async(
        self,
        item_id: str,
        k: int,
        threshold: float | None = None,
        label: str | None = None,
        where: str | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`similar` on the event loop: the request waits for its batch of concurrent
        ``/similar`` requests without a thread of the threadpool (``AsyncCoalescer``), where
        the embedded service's reads run on the loop or in the threadpool."""
        self._check_k(k)
        flt = self._filter(label, where)
        return self._hits(
            await self.served.similar_async(item_id, k, threshold=threshold, where=flt)
        )

    def search_terms(
        self,
        terms: Sequence[Any],
        k: int,
        threshold: float | None = None,
        label: str | None = None,
        where: str | None = None,
    ) -> list[dict[str, Any]]:
        """Composed queries of texts, vectors and ``id`` terms (the items a positive id
        term names are left out)."""
        from ..models.loader import text_embedder_for_record

        self._check_k(k)
        flt = self._filter(label, where)
        parts = embed_texts(as_terms(terms), lambda: text_embedder_for_record(self.model))
        if self.binary and (len(parts) > 1 or parts[0].weight != 1):
            raise QueryError("a hash model (phash) answers one query at a time")
        rows, drop = [], []
        for term in parts:
            if term.kind == "id":
                rows.append(self.served.item_vector(str(term.value)))
                if term.weight > 0:
                    drop.append(str(term.value))
            elif term.kind == "vector":
                rows.append(self.parse_vector(list(np.asarray(term.value).ravel().tolist())))
            else:
                raise QueryError(
                    f"a {term.kind} term is not supported here: give texts, ids or vectors"
                )
        vec = rows[0] if self.binary else combine(rows, [t.weight for t in parts])
        hits = self.served.search_vector(vec, k, threshold=threshold, where=flt, exclude=drop)
        return self._hits(hits)

    def _search(
        self, vec: np.ndarray, k: int, threshold: float | None, where: Any, exclude_slot: int | None
    ) -> list[dict[str, Any]]:
        return self._hits(self.served.search_vector(vec, k, threshold=threshold, where=where))

    def _as_query(self, row: np.ndarray) -> np.ndarray:
        return self.served.unit(row)

    def _embed_image(self, data: bytes) -> np.ndarray:
        from ..search.query import embed_image

        return embed_image(self.served.embedder, data, self.limits)

    # -- writing ---------------------------------------------------------------------

    def add(self, uploads: Sequence[Upload]) -> list[str]:
        """Add images (all or nothing); the files are written to the shared folder first."""
        if not uploads:
            raise InvalidInput("no images to add")
        items, vecs, paths = [], [], []
        for n, up in enumerate(uploads, 1):
            check_metadata(up.metadata)
            try:
                fmt = sniff_image(up.data)
                vecs.append(self.embed(up.data))
            except ImageRejected as exc:
                raise ImageRejected(exc.reason, f"file {n}: {exc.detail or exc.reason}") from None
            item_id = up.id if up.id is not None else "upload-" + digest(up.data)[:16]
            if not item_id.strip() or len(item_id) > 512 or "\x00" in item_id:
                raise InvalidInput(f"file {n}: ids must be 1-512 characters without NUL")
            path = self.uploads / (uuid.uuid4().hex + EXTENSIONS[fmt])
            paths.append(path)
            items.append(NewItem(item_id, up.label, up.metadata, str(path), UPLOADS, len(up.data)))
        ids = [it.id for it in items]
        if len(set(ids)) != len(ids):
            raise InvalidInput("the same id appears twice in this request")
        self.uploads.mkdir(parents=True, exist_ok=True)
        try:
            for path, up in zip(paths, uploads, strict=True):
                write_durably(path, up.data)
            self.served.add(items, np.concatenate(vecs, axis=0))
        except BaseException:
            for path in paths:  # never committed: nothing points at them
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            raise
        return ids

    def remove(self, item_id: str) -> None:
        item = self.served.remove(item_id)
        if item.path and item.source == UPLOADS and Path(item.path).parent == self.uploads:
            path = Path(item.path)
            with contextlib.suppress(OSError):
                st = path.stat()
                for webp in (False, True):
                    thumbnail_cache_path(
                        self.thumbs, item_id, path, st, self.settings.thumbnail_px, webp
                    ).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    def _image_file(self, item_id: str) -> tuple[Path, Any]:
        item = self.served.get(item_id)
        if not item.path:
            raise NoImage(f"item {item_id!r} has no stored image")
        path = Path(item.path)
        try:
            return path, path.stat()
        except OSError:
            raise NoImage(f"the image of item {item_id!r} is missing on the server") from None


class RedisBrowse:
    """``GET /items`` and ``/labels`` over Redis, in the shape ``server/browse.py`` reads."""

    def __init__(self, served: ServedCollection) -> None:
        self.served = served

    @property
    def generation(self) -> float:
        return time.monotonic()  # never cached: other replicas change it

    def label_counts(self) -> dict[str | None, int]:
        labels: dict[str | None, int] = {k: v for k, v in self.served.redis.labels().items()}
        unlabelled = len(self.served) - sum(v for v in labels.values() if v)
        if unlabelled > 0:
            labels[None] = unlabelled
        return labels

    def page(self, offset: int, limit: int, label: str | None = None) -> list[Item]:
        redis = self.served.redis
        if label is None:
            return redis.page_at(offset, limit)
        if offset >= redis.labels().get(label, 0):
            return []
        return redis.page(None, offset + limit, label)[offset:]  # scans: labels are rarer
