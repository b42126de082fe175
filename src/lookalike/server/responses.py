"""JSON that always encodes: :class:`SafeJSONResponse` writes NaN and Infinity as ``null``
and cuts nesting below :data:`MAX_DEPTH` levels, so an odd value stored by an older version
or a hand edit never turns a search into a 500 (input is checked by
:func:`lookalike.store.metadata.check_metadata`; this is the second line)."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

__all__ = [
    "IMAGE_200",
    "MAX_DEPTH",
    "THUMBNAIL_200",
    "Error",
    "SafeJSONResponse",
    "errors",
    "image_upload_encoding",
    "json_safe",
]

MAX_DEPTH = 64  # deeper values become null (stored metadata is at most 16 levels)


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` with non-finite floats as None and anything deeper than MAX_DEPTH as None."""
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, depth + 1) for v in value]
    return value


class SafeJSONResponse(JSONResponse):
    """Strict JSON (no NaN), encoded directly; the fast path is one ``json.dumps``."""

    def render(self, content: Any) -> bytes:
        try:
            text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (ValueError, RecursionError):
            text = json.dumps(
                json_safe(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")
            )
        return text.encode("utf-8")


# -- the OpenAPI description of errors and images ----------------------------------------


class Error(BaseModel):
    """Every error the server answers: one line, no traceback."""

    error: str = Field(description="what went wrong, in one line")


_ERROR_TEXT = {
    400: "Bad input (a bad image, id, vector, URL or parameter).",
    401: "Missing or wrong API key (send it as X-API-Key).",
    404: "No such item, or the item has no image.",
    409: "An item with this id already exists.",
    413: "The upload is over the size or megapixel limit.",
    415: "Not an image of an accepted format, or the wrong request content type.",
    422: "Invalid request parameters or body.",
    502: "Milvus failed the request on its side (distributed mode).",
    503: "The server is at a concurrency limit; retry after the Retry-After seconds.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for these error codes, each ``{"error": "..."}``."""
    return {code: {"model": Error, "description": _ERROR_TEXT[code]} for code in codes}


_BINARY = {"schema": {"type": "string", "format": "binary"}}
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff")
IMAGE_200: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The image file as stored; its type is sniffed from its bytes.",
        "content": {media: _BINARY for media in (*IMAGE_TYPES, "image/x-icon")},
    }
}
THUMBNAIL_200: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A JPEG, or WebP when the request accepts image/webp.",
        "content": {"image/jpeg": _BINARY, "image/webp": _BINARY},
    }
}


def image_upload_encoding(field: str) -> dict[str, Any]:
    """``openapi_extra`` saying the multipart ``field`` holds images (``image/*``)."""
    return {
        "requestBody": {
            "content": {"multipart/form-data": {"encoding": {field: {"contentType": "image/*"}}}}
        }
    }
