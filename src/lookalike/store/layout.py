"""A collection's folder: its marker file (format and model identity), where it lives by
default, and the writers' lock.

See docs/architecture.md for the files a collection folder holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import CollectionError, NotACollection
from .catalog import Catalog

MARKER = "collection.json"
FORMAT = "lookalike-collection"
FORMAT_VERSION = 1
DEFAULT_DIR = ".lookalike"


def default_collection_dir() -> Path:
    return Path(os.environ.get("LOOKALIKE_COLLECTION") or DEFAULT_DIR)


def read_config(marker: Path) -> dict[str, Any]:
    """The parsed marker file; ``NotACollection`` when it is not lookalike's."""
    try:
        config = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NotACollection(f"{marker} is unreadable or not JSON: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise NotACollection(
            f"{marker.parent} is not a lookalike collection ({marker} has no lookalike format)"
        )
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise CollectionError(
            f"{marker.parent} was written by a newer lookalike (format {config['format_version']})"
        )
    return config


def new_config(model_info: dict[str, Any], vector_dtype: str, vector_width: int) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_info,
        "vector_dtype": vector_dtype,
        "vector_width": vector_width,
        "created_at": time.time(),
    }


def is_empty(root: Path) -> bool:
    """True when the collection holds no item, no skip and never used a slot."""
    catalog = Catalog(root / "catalog.sqlite")
    try:
        return catalog.count() == 0 and not catalog.skipped() and catalog.next_slot == 0
    finally:
        catalog.close()


# The roots whose lock this thread holds, with how many nested holds: a nested
# write_lock(root) in the same thread (the server holding the lock around a library call
# that takes it again) is a no-op instead of a deadlock against its own other descriptor.
_held = threading.local()


@contextlib.contextmanager
def write_lock(root: Path, wait: bool = True) -> Iterator[bool]:
    """Hold the collection's exclusive writer lock; yields False if ``wait`` is off and
    another process holds it. Re-entrant within a thread."""
    held: dict[str, int] = _held.__dict__.setdefault("roots", {})
    key = os.path.realpath(root)
    if held.get(key):
        held[key] += 1
        try:
            yield True
        finally:
            held[key] -= 1
        return
    fh = open(root / "lock", "a+")  # noqa: SIM115 - held across the yield
    try:
        flags = fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.flock(fh.fileno(), flags)
        except BlockingIOError:
            yield False
            return
        held[key] = 1
        try:
            yield True
        finally:
            held.pop(key, None)
    finally:
        fh.close()
