"""Turn a query into a vector: a vector, encoded image bytes, a file path, ``id:ITEM`` or
an http(s) URL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DownloadError, ImageRejected, ItemNotFound, QueryError
from ..ingest.decode import DecodeLimits, decode_image
from ..models.embedders.base import Embedder
from ..store.catalog import Catalog
from ..store.vectors import VectorFile


def embed_image(embedder: Embedder, data: bytes, limits: DecodeLimits | None = None) -> np.ndarray:
    """Embed one encoded image (bytes); raises ImageRejected for bad images."""
    limits = limits or DecodeLimits()
    preparer = embedder.preparer()
    decoded = decode_image(data, limits, draft=preparer.draft_size())
    return embedder.embed([preparer(decoded.image)])


class QueryResolver:
    """Resolves queries against one collection's model, catalog and stored vectors."""

    def __init__(
        self,
        embedder: Callable[[], Embedder],
        catalog: Catalog,
        vectors: VectorFile,
        binary: bool,
        root: Path,
    ) -> None:
        # Called only for queries that need embedding (not vectors nor id:ITEM), so a
        # collection whose model is unavailable still answers those.
        self.embedder = embedder
        self.catalog = catalog
        self.vectors = vectors
        self.binary = binary
        self.root = root

    def resolve(
        self, query: Any, *, allow_urls: bool = False, limits: DecodeLimits | None = None
    ) -> tuple[np.ndarray, int | None, str]:
        """(vector row, slot to exclude or None, description) for ``query``."""
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
            return self._embed(query, limits, "upload"), None, "upload"
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
            from ..ingest.download import fetch_url

            try:
                data = fetch_url(query)
            except DownloadError as exc:
                raise QueryError(f"{query}: {exc}") from None
            return self._embed(data, limits, query), None, query
        path = Path(query)
        if not path.is_file():
            raise QueryError(f"query image {query} does not exist or is not a file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise QueryError(f"query image {query} cannot be read: {exc.strerror}") from None
        return self._embed(data, limits, query), None, query

    def _embed(self, data: bytes, limits: DecodeLimits | None, name: str) -> np.ndarray:
        try:
            return embed_image(self.embedder(), data, limits)
        except ImageRejected as exc:
            raise QueryError(f"query image {name} cannot be used: {exc}") from None
