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
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CollectionError, NotACollection
from .catalog import Catalog
from .planning import write_json_atomic

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


def new_config(
    model_info: dict[str, Any],
    vector_dtype: str,
    vector_width: int,
    hash_cache: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A new marker. ``hash_cache``: (path, size, mtime_ns, sha256) of the model's files."""
    return {
        "model_hash_cache": hash_cache or [],
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_info,
        "vector_dtype": vector_dtype,
        "vector_width": vector_width,
        "created_at": time.time(),
    }


def create_folder(root: Path, config: dict[str, Any]) -> None:
    """Create a complete collection folder at ``root`` (absent, empty, or holding only the
    lock file of its creator): it is built in a temporary sibling folder and renamed into
    place (or its parts moved in, the marker last), so a failure leaves no half collection."""
    if (root / MARKER).is_file():  # an empty collection adopting another model
        write_json_atomic(root / MARKER, config)
        return
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    try:
        os.chmod(tmp, 0o755)
        (tmp / "index").mkdir()
        Catalog(tmp / "catalog.sqlite").close()  # creates + migrates
        write_json_atomic(tmp / MARKER, config)
        if root.is_dir() and any(root.iterdir()):
            # The folder exists and holds the creators' lock file: move the parts in, the
            # marker last (it marks the folder complete).
            for part in ("index", "catalog.sqlite", MARKER):
                os.rename(tmp / part, root / part)
        else:
            os.rename(tmp, root)  # replaces an empty folder too
    except OSError as exc:
        raise CollectionError(f"could not create the collection {root}: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def update_model(root: Path, model: dict[str, Any], hash_cache: list[dict[str, Any]]) -> bool:
    """Rewrite the model record (and its file-hash cache) in the marker, atomically, under
    the writers' lock. False (nothing written) when another writer holds the lock."""
    with write_lock(root, wait=False) as got:
        if not got:
            return False
        config = read_config(root / MARKER)
        config["model"] = model
        config["model_hash_cache"] = hash_cache
        write_json_atomic(root / MARKER, config)
    return True


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


# The roots whose lock this thread holds, with how many nested holds: a nested
# write_lock(root) in the same thread (the server holding the lock around a library call
# that takes it again) is a no-op instead of a deadlock against its own other descriptor.
_held = threading.local()


@contextlib.contextmanager
def write_lock(root: Path, wait: bool = True) -> Iterator[bool]:
    """Hold the collection's exclusive writer lock; yields False if ``wait`` is off and
    another process holds it. While waiting, a warning says so (once). Re-entrant within
    a thread."""
    held: dict[str, int] = _held.__dict__.setdefault("roots", {})
    key = os.path.realpath(root)
    if held.get(key):
        held[key] += 1
        try:
            yield True
        finally:
            held[key] -= 1
        return
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
        held[key] = 1
        try:
            yield True
        finally:
            held.pop(key, None)
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


def write_config(root: Path, config: dict[str, Any]) -> None:
    """Rewrite the marker (call under the writers' lock)."""
    write_json_atomic(root / MARKER, config)
