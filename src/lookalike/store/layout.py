"""A collection's folder: its marker file (format and model identity), where it lives by
default, and the writers' lock.

See docs/architecture.md for the files a collection folder holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CollectionError, NotACollection
from .catalog import Catalog

if TYPE_CHECKING:
    from .indexes import IndexManager
    from .vectors import VectorFile

MARKER = "collection.json"
FORMAT = "lookalike-collection"
FORMAT_VERSION = 1
DEFAULT_DIR = ".lookalike"
LOCK = "lock"

log = logging.getLogger(__name__)


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


def check_creatable(root: Path, *, locked: bool = True) -> None:
    """Raise ``NotACollection`` unless a collection may be created at ``root`` (no marker
    yet): the folder must be missing or empty but for the lock file. Without the lock
    (``locked=False``) a folder that has the lock file may be another process's collection
    in the making and passes; check again once the lock is held."""
    if root.exists() and not root.is_dir():
        raise NotACollection(f"{root} is a file, not a lookalike collection")
    if not locked and (root / LOCK).exists():
        return
    if root.is_dir() and any(p.name != LOCK for p in root.iterdir()):
        raise NotACollection(
            f"{root} is not a lookalike collection (no {MARKER}); refusing to write into it"
        )


@contextlib.contextmanager
def write_lock(root: Path, wait: bool = True) -> Iterator[bool]:
    """Hold the collection's exclusive writer lock; yields False if ``wait`` is off and
    another process holds it. While waiting, a warning says so (once)."""
    fh = open(root / LOCK, "a+")  # noqa: SIM115 - held across the yield
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            log.warning("waiting for another lookalike process to finish with %s…", root)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield True
    finally:
        fh.close()


def describe(
    root: Path, config: dict[str, Any], catalog: Catalog, vectors: VectorFile, index: IndexManager
) -> dict[str, Any]:
    """What ``lookalike info`` shows about a collection (``Collection.info``)."""
    model = config["model"]
    return {
        "collection": str(root),
        "items": catalog.count(),
        "model": model["name"],
        "model_path": model.get("model_path"),
        "dim": model["dim"],
        "metric": model["metric"],
        "schema_version": catalog.schema_version,
        "vectors": {
            "dtype": config["vector_dtype"],
            "slots": catalog.next_slot,
            "bytes": vectors.size_bytes(),
        },
        "index": index.info(),
        "skipped": [
            {"path": s.path, "reason": s.reason, "detail": s.detail} for s in catalog.skipped()
        ],
    }
