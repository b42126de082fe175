"""The client: the library's search, add, remove, embed and get, over a ``lookalike serve``."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import quote, urlencode

import numpy as np

from ..errors import InvalidInput, ItemNotFound, QueryError
from ..search.hits import Hit
from .transport import Part, Transport

__all__ = ["Client"]

Image: TypeAlias = bytes | str | os.PathLike[str]
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


class Client:
    """A ``lookalike serve`` server at ``url``: the methods mirror ``Collection``'s and raise
    the library's typed errors (see :mod:`lookalike.client`). ``api_key`` is sent as
    ``X-API-Key`` and never shown; every request gives up after ``timeout`` seconds."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        if timeout <= 0:
            raise InvalidInput("the timeout must be positive")
        self._http = Transport(url, api_key, timeout)
        self.url = self._http.shown
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Client({self.url!r}, timeout={self.timeout:g})"

    # -- searching -------------------------------------------------------------------

    def search(
        self,
        query: Any = None,
        *,
        k: int = 10,
        label: str | None = None,
        where: str | None = None,
        threshold: float | None = None,
        text: str | None = None,
    ) -> list[Hit]:
        """The ``k`` items most similar to ``query``: image bytes, a local file (uploaded),
        ``"id:ITEM"`` (left out of the results), an http(s) URL (the server fetches it, if
        it allows URLs), or a vector (numbers; packed bits as bytes' hex for hash models);
        or to ``text`` (models with a text tower). Hits carry no ``path``."""
        if (query is None) == (text is None):
            raise InvalidInput("give exactly one of a query or text=")
        options = {"k": k, "threshold": threshold, "label": label, "where": where}
        if text is not None:
            body: dict[str, Any] = {"text": text}
        elif isinstance(query, bytes | bytearray | memoryview | os.PathLike) or (
            isinstance(query, str) and _is_path(query)
        ):
            name, data = _image(query, "query image")
            parts = [Part("file", data, name)]
            parts += [Part(n, str(v)) for n, v in options.items() if v is not None]
            answer = self._http.request("POST", "/search", parts=parts, query_errors=True)
            return _hits(answer)
        elif isinstance(query, str):
            if query.startswith("id:"):
                body = {"id": query[3:]}
            elif query.lower().startswith(("http://", "https://")):
                body = {"url": query}
            else:
                body = {"vector": query}
        else:
            body = {"vector": _vector(query)}
        body |= {n: v for n, v in options.items() if v is not None}
        return _hits(self._http.request("POST", "/search", json_body=body, query_errors=True))

    def similar(
        self,
        item_id: str,
        k: int = 10,
        label: str | None = None,
        where: str | None = None,
        threshold: float | None = None,
    ) -> list[Hit]:
        """The stored item's most similar items (the item itself left out)."""
        params = {"k": k, "threshold": threshold, "label": label, "where": where}
        query = urlencode({n: v for n, v in params.items() if v is not None})
        path = f"{_item_path(item_id)}/similar?{query}"
        return _hits(self._http.request("GET", path, query_errors=True))

    def embed(self, image: Image) -> np.ndarray:
        """The image's vector as the server's model makes it: a float32 row, or a uint8 row
        of packed bits for hash models."""
        name, data = _image(image, "image")
        answer = self._http.request(
            "POST", "/embed", parts=[Part("files", data, name)], query_errors=True
        )
        (vector,) = answer["vectors"]
        if answer.get("encoding") == "packed-bits-hex":
            return np.frombuffer(bytes.fromhex(vector), dtype=np.uint8).copy()
        return np.asarray(vector, dtype=np.float32)

    # -- items -----------------------------------------------------------------------

    def add(
        self,
        images: Image | Sequence[Image],
        *,
        ids: str | Sequence[str] | None = None,
        labels: str | Sequence[str | None] | None = None,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> list[str]:
        """Upload images (bytes or local files; one or a list) and return their ids. ``ids``:
        one per image (the server makes them up otherwise); ``labels`` and ``metadata``: one
        for all, or one per image. All or nothing: a bad image or a stored id adds none
        (``ItemExists``)."""
        many = [images] if isinstance(images, bytes | str | os.PathLike) else list(images)
        if not many:
            raise InvalidInput("no images to add")
        parts = []
        for image in many:
            name, data = _image(image, "image")
            parts.append(Part("files", data, name))
        if ids is not None:
            id_list = [ids] if isinstance(ids, str) else list(ids)
            parts += [Part("ids", i) for i in id_list]
        if labels is not None:
            label_list = [labels] if isinstance(labels, str) else list(labels)
            parts += [Part("labels", lab or "") for lab in label_list]
        if metadata is not None:
            metas = [metadata] if isinstance(metadata, Mapping) else list(metadata)
            parts += [Part("metadata", json.dumps(dict(m))) for m in metas]
        answer = self._http.request("POST", "/items", parts=parts)
        return [str(i) for i in answer["ids"]]

    def remove(self, item_id: str) -> None:
        """Remove the item (``ItemNotFound`` when there is none)."""
        self._http.request("DELETE", _item_path(item_id))

    def get(self, item_id: str) -> dict[str, Any]:
        """The item: id, label, metadata, url, width, height and links to its image."""
        return dict(self._http.request("GET", _item_path(item_id)))

    # -- the service -----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Liveness and what the server offers (version, URL fetching, auth, limits...)."""
        return dict(self._http.request("GET", "/health"))

    def info(self) -> dict[str, Any]:
        """The collection: items, model, dim and metric (and the index, from a server with
        ``GET /info``; older servers tell these in ``/health``, unless reads need the key)."""
        try:
            return dict(self._http.request("GET", "/info"))
        except ItemNotFound:
            health = self.health()
        return {k: health[k] for k in ("items", "model", "dim", "metric") if k in health}


def _is_path(query: str) -> bool:
    """A string query that names a local file (not ``id:``, a URL or a hex vector)."""
    if query.startswith("id:") or query.lower().startswith(("http://", "https://")):
        return False
    return not _HEX.fullmatch(query) or os.path.exists(query)


def _image(image: Any, what: str) -> tuple[str, bytes]:
    """A file name and the bytes of an image given as bytes or a local path."""
    if isinstance(image, bytes | bytearray | memoryview):
        return "image", bytes(image)
    if not isinstance(image, str | os.PathLike):
        raise QueryError(f"unsupported {what} type {type(image).__name__}")
    path = Path(image)
    if not path.is_file():
        raise QueryError(f"{what} {path} does not exist or is not a file")
    try:
        return path.name, path.read_bytes()
    except OSError as exc:
        raise QueryError(f"{what} {path} cannot be read: {exc.strerror}") from None


def _vector(query: Any) -> list[float] | list[int]:
    """A vector query as JSON numbers (one row)."""
    try:
        row = np.asarray(query)
    except (TypeError, ValueError):
        raise QueryError(f"unsupported query type {type(query).__name__}") from None
    if row.dtype.kind not in "iuf" or row.ndim not in (1, 2) or (row.ndim == 2 and len(row) != 1):
        raise QueryError("a vector query must be one row of numbers")
    values: list[Any] = row.ravel().tolist()
    return values


def _item_path(item_id: str) -> str:
    return "/items/" + quote(item_id, safe="")


def _hits(answer: Any) -> list[Hit]:
    return [
        Hit(
            rank=int(h["rank"]),
            id=str(h["id"]),
            score=float(h["score"]),
            path=None,
            label=h.get("label"),
            url=h.get("url"),
            metadata=h.get("metadata") or {},
        )
        for h in answer["results"]
    ]
