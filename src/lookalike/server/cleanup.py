"""Leftover files, removed when the server starts (:func:`sweep`).

* ``uploads/``: an upload is written (fsynced) *before* the commit that refers to it, so a
  crash in between leaves a file no item refers to. At start the sweep holds the
  collection's file lock, so no commit can happen meanwhile, and removes the upload files
  no item refers to that are older than ``grace`` seconds: a newer one may be another
  server's write that is about to commit (a write waits at most a second for the lock).
  Only names the server writes (32 hex digits, an image extension, maybe ``.tmp``) are
  touched; anything else in the folder is left alone. Files are matched by name, so a
  collection folder that was moved keeps its uploads.
* ``cache/thumbs/``: thumbnails are named ``<hash of id>-<hash of version>.<ext>``; those of
  items that are gone, of older image versions or sizes, of the old naming, and temporary
  files older than ``grace`` are removed (derived data: a needed one is made again).

When another process holds the lock (a CLI ``index`` run) the sweep is skipped until the
next start.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..store.layout import write_lock
from .uploads import THUMBS, UPLOADS, thumbnail_cache_path, thumbnail_prefix

if TYPE_CHECKING:
    from ..collection import Collection

log = logging.getLogger(__name__)

GRACE = 600.0  # seconds: younger leftovers may belong to a write in progress
_UPLOAD_NAME = re.compile(r"^[0-9a-f]{32}\.[a-z]{3,4}(\.tmp)?$")
_THUMB_NAME = re.compile(r"^([0-9a-f]{16})-[0-9a-f]{16}\.(jpg|webp)$")


def sweep(coll: Collection, thumbnail_px: int, grace: float = GRACE) -> tuple[int, int]:
    """Remove orphaned uploads and stale thumbnails; returns how many of each."""
    with write_lock(coll.root, wait=False) as got:
        if not got:
            log.info("another process writes to %s: leftovers are left until next start", coll)
            return 0, 0
        cutoff = time.time() - grace
        return _uploads(coll, cutoff), _thumbnails(coll, thumbnail_px, cutoff)


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except OSError as exc:
        log.debug("cannot remove %s: %s", path, exc)
        return False
    return True


def _old(entry: os.DirEntry[str], cutoff: float) -> bool:
    try:
        return entry.stat(follow_symlinks=False).st_mtime < cutoff
    except OSError:
        return False


def _uploads(coll: Collection, cutoff: float) -> int:
    folder = coll.root / UPLOADS
    if not folder.is_dir():
        return 0
    candidates = [
        e
        for e in os.scandir(folder)
        if e.is_file(follow_symlinks=False) and _UPLOAD_NAME.match(e.name) and _old(e, cutoff)
    ]
    if not candidates:
        return 0
    referenced = {Path(i.path).name for i in coll.catalog.items(source=UPLOADS) if i.path}
    return sum(_remove(Path(e.path)) for e in candidates if e.name not in referenced)


def _thumbnails(coll: Collection, px: int, cutoff: float) -> int:
    folder = coll.root / THUMBS
    if not folder.is_dir():
        return 0
    by_prefix: dict[str, list[str]] = {}
    removed = 0
    for e in os.scandir(folder):
        if not e.is_file(follow_symlinks=False):
            continue
        m = _THUMB_NAME.match(e.name)
        if m:
            by_prefix.setdefault(m.group(1), []).append(e.name)
        elif not e.name.endswith(".tmp") or _old(e, cutoff):
            removed += _remove(Path(e.path))
    if not by_prefix:
        return removed
    live: set[str] = set()
    for item in coll.catalog.items():
        if not item.path or thumbnail_prefix(item.id) not in by_prefix:
            continue
        path = Path(item.path)
        try:
            st = path.stat()
        except OSError:
            continue
        for webp in (False, True):
            live.add(thumbnail_cache_path(folder, item.id, path, st, px, webp).name)
    for names in by_prefix.values():
        removed += sum(_remove(folder / n) for n in names if n not in live)
    return removed
