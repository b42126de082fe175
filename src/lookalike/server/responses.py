"""JSON that always encodes: :class:`SafeJSONResponse` writes NaN and Infinity as ``null``
and cuts nesting below :data:`MAX_DEPTH` levels, so an odd value stored by an older version
or a hand edit never turns a search into a 500 (input is checked by
:func:`lookalike.store.metadata.check_metadata`; this is the second line)."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi.responses import JSONResponse

__all__ = ["MAX_DEPTH", "SafeJSONResponse", "json_safe"]

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
