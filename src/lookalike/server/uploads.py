"""Image files on the server's disk: uploads (written durably before the commit that refers
to them), the thumbnail cache, and the links and fields the API shows for an item."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from PIL import Image

    from ..store.catalog import Item

log = logging.getLogger(__name__)

UPLOADS = "uploads"
THUMBS = Path("cache") / "thumbs"


@dataclass
class Upload:
    """One image to add: its bytes, and optionally an id, a label and metadata."""

    data: bytes
    id: str | None = None
    label: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def item_links(item_id: str) -> dict[str, str]:
    q = quote(item_id, safe="")
    return {"image_url": f"/items/{q}/image", "thumbnail_url": f"/items/{q}/thumbnail"}


def public_item(item: Item) -> dict[str, Any]:
    """An item as the API shows it: no server file paths."""
    return {
        "id": item.id,
        "label": item.label,
        "metadata": item.metadata,
        "url": item.url,
        "width": item.width,
        "height": item.height,
        **item_links(item.id),
    }


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def thumbnail_cache_path(
    thumbs: Path, item_id: str, path: Path, st: os.stat_result, px: int, webp: bool
) -> Path:
    """Where the thumbnail of this version of the image file is cached:
    ``<hash of the id>-<hash of the version>.<ext>``, so that the start-up sweep can tell
    the thumbnails of items that are gone (see :mod:`.cleanup`)."""
    ext = "webp" if webp else "jpg"
    key = f"{item_id}\0{path}\0{st.st_size}\0{st.st_mtime_ns}\0{px}"
    version = digest(key.encode("utf-8", "surrogatepass"))[:16]
    return thumbs / f"{thumbnail_prefix(item_id)}-{version}.{ext}"


def thumbnail_prefix(item_id: str) -> str:
    return digest(item_id.encode("utf-8", "surrogatepass"))[:16]


def render_thumbnail(im: Image.Image, px: int, webp: bool) -> bytes:
    """A decoded image shrunk in place to at most ``px`` a side, as JPEG (or WebP) bytes."""
    im.thumbnail((px, px))
    buf = io.BytesIO()
    if webp:
        im.save(buf, format="WEBP", quality=80)
    else:
        im.save(buf, format="JPEG", quality=82, optimize=True)
    return buf.getvalue()


def cache_thumbnail(thumbs: Path, cached: Path, out: bytes) -> None:
    """Store a thumbnail atomically; a read-only folder only costs the cache."""
    try:
        thumbs.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(out)
        os.replace(tmp, cached)
    except OSError as exc:
        log.debug("cannot cache thumbnail %s: %s", cached, exc)
