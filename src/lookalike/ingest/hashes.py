"""Content and pixel hashes of files: the SHA-256 of the bytes (what the catalog keys
unchanged files by), and the full-resolution pixel hash of exact duplicates, computed on
demand for items indexed without one (drafted or GPU decodes)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import LookalikeError
from .decode import DEFAULT_PIXEL_HASH, DecodeLimits, decode_image, pixel_hash


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Items in the catalog already passed the megapixel limit they were indexed with.
_ANY_INDEXED_SIZE = DecodeLimits(max_megapixels=1000.0)


def full_pixel_hash(
    path: str, expect_content_hash: str | None, kind: str = DEFAULT_PIXEL_HASH
) -> bytes | None:
    """The full-resolution pixel hash (of ``kind``) of the file at ``path``, or None when it
    is gone, changed since indexing (``expect_content_hash`` differs) or cannot be decoded."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if expect_content_hash is not None and content_hash(data) != expect_content_hash:
        return None
    try:
        return pixel_hash(decode_image(data, _ANY_INDEXED_SIZE).image, kind)
    except LookalikeError:
        return None


def pixel_hashes(
    items: Iterable[Any], kind: str = DEFAULT_PIXEL_HASH
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(the full-resolution pixel hash of every item that has or can get one, by id; those
    of them computed now). Items indexed from a drafted decode have none stored: their file
    is decoded in full now, if it still has the content hash recorded at indexing."""
    out: dict[str, bytes] = {}
    computed: dict[str, bytes] = {}
    for item in items:
        if item.pixel_hash is not None:
            out[item.id] = bytes(item.pixel_hash)
        elif item.path:
            value = full_pixel_hash(item.path, item.content_hash, kind)
            if value is not None:
                out[item.id] = computed[item.id] = value
    return out, computed
