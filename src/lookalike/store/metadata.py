"""The limits on an item's metadata, checked wherever metadata comes in (manifests,
``POST /items``, ``Collection.add_vectors``) so that nothing stored can break a later read.

Metadata is a JSON object of at most :data:`MAX_DEPTH` levels and :data:`MAX_BYTES` bytes
when serialised, with string keys and finite numbers (no NaN or Infinity: strict JSON has
none, and a stored one would make every response that carries the item invalid).
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..errors import InvalidInput

MAX_DEPTH = 16
MAX_BYTES = 64 * 1024


def check_metadata(value: Any) -> dict[str, Any]:
    """Return ``value`` if it is acceptable metadata, else raise a one-line ``InvalidInput``."""
    if not isinstance(value, dict):
        raise InvalidInput(f"metadata must be a JSON object, not {type(value).__name__}")
    _walk(value, 1, "metadata")
    size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    if size > MAX_BYTES:
        raise InvalidInput(f"metadata is {size:,} bytes as JSON; the limit is {MAX_BYTES:,}")
    return value


def _walk(value: Any, depth: int, where: str) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"metadata is nested deeper than {MAX_DEPTH} levels (at {where})")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"metadata holds {value} at {where}; only finite numbers are allowed")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"metadata keys must be strings (at {where})")
            _walk(item, depth + 1, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _walk(item, depth + 1, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (str, bool, int, float))):
        raise InvalidInput(f"metadata holds a {type(value).__name__} at {where}")
