"""Turn what the user passes to ``lookalike index SOURCE...`` into :class:`Entry` objects.

A source is one of:

* a **folder**: walked recursively in a deterministic (sorted) order; only files with an
  :data:`IMAGE_EXTENSIONS` suffix are kept; hidden files and folders (name starting with ``.``)
  and folders listed in ``exclude`` (the collection folder) are skipped. Symlinked folders are
  followed, but a folder is never visited twice (no loops, no duplicates).
* a **single file** (any extension): always attempted; the label is its folder's name.
* a **manifest** (see :func:`is_manifest`): ``.csv``, ``.jsonl``/``.ndjson`` or ``.json``,
  optionally gzip-compressed (``.csv.gz``...). Each row has ``path`` or ``url``, optionally
  ``id`` and ``label``; every other column goes to ``metadata``. Relative paths resolve against
  the manifest's folder. JSON manifests hold one record per line (JSON, or a Python literal
  dict as in the Amazon product metadata dumps, where ``asin`` is the id and ``imUrl`` the URL);
  a ``.json`` file holding a single JSON array of records is accepted too.

Bad rows (unparseable line, no path/url, duplicate id...) never stop the run: they are
reported through ``on_error(location, reason)`` and skipped. ``location`` is
``"<absolute manifest path>:<line>"`` (``":item <n>"`` for a JSON array), so the text before
the last ``:`` is the manifest's ``Entry.source``; for an unreadable sub-folder it is the
folder's path. A source that cannot be used at all raises :class:`~lookalike.errors.SourceError`.

Python-literal lines are parsed with :func:`ast.literal_eval`, which evaluates literals only:
a line such as ``{'asin': __import__('os').system('...')}`` is rejected, never run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import InvalidInput, SourceError
from ..store.metadata import check_metadata
from .manifests import (
    _ID_KEYS,
    _LABEL_KEYS,
    _LOGGED_BAD_ROWS,
    _MANIFEST_READERS,
    _PATH_KEYS,
    _SNIFF_BYTES,
    _URL_KEYS,
    _URL_RE,
    ErrorHandler,
    _BadRow,
    _oserror_text,
    _Plan,
    _Reporter,
    _Row,
    _sniff_manifest,
)

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "MANIFEST_SUFFIXES",
    "Entry",
    "ErrorHandler",
    "is_manifest",
    "iter_entries",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
)
"""Suffixes (lowercase, with the dot) of the files picked up when walking a folder."""

MANIFEST_SUFFIXES: frozenset[str] = frozenset({".csv", ".jsonl", ".ndjson", ".json"})
"""Manifest suffixes; each may be followed by ``.gz``."""


@dataclass
class Entry:
    """One image to index.

    ``source`` is the canonical key of the source it came from (absolute, resolved folder,
    manifest or file path). ``path`` is an absolute local path (None for URL rows until they
    are downloaded); manifest rows may carry both ``path`` and ``url``. ``id`` is the explicit
    id from a manifest (``id`` column, or ``asin``), else None (the caller derives one).
    ``relpath`` is the posix path relative to the folder root for folder files, the file name
    for single files, and the path as written (or the URL) for manifest rows. ``label`` is the
    immediate parent folder's name for files, the ``label`` column for manifest rows.
    ``metadata`` holds the other manifest columns.
    """

    source: str
    path: Path | None
    url: str | None
    id: str | None
    relpath: str
    label: str | None
    metadata: dict[str, Any] = field(default_factory=dict)


def is_manifest(path: Path) -> bool:
    """True if ``path``'s name marks it as a manifest (``.csv``, ``.jsonl``, ``.ndjson``,
    ``.json``, each optionally followed by ``.gz``). Looks at the name only."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return os.path.splitext(name)[1] in MANIFEST_SUFFIXES


def iter_entries(
    sources: Sequence[str | os.PathLike[str]],
    *,
    exclude: Sequence[str | os.PathLike[str]] = (),
    on_error: ErrorHandler | None = None,
) -> Iterator[Entry]:
    """Yield the entries of every source, in order.

    Every source is checked before anything is yielded: a source that does not exist, a URL
    given as a source, and a manifest that cannot be read (not text, not CSV, no ``path`` or
    ``url`` column) raise :class:`SourceError` right away. A JSON manifest in which no line is
    a record, or no record has a path or url, raises :class:`SourceError` while iterating.

    ``exclude``: folders never entered while walking (typically the collection folder).
    ``on_error(location, reason)``: called for each skipped row and unreadable sub-folder;
    without it they are logged as warnings.
    """
    plans = [_plan(source) for source in sources]
    exclude_keys = _exclude_keys(exclude)
    return _iter_plans(plans, exclude_keys, on_error)


# --------------------------------------------------------------------------- planning


def _plan(source: str | os.PathLike[str]) -> _Plan:
    text = os.fspath(source)
    if not text:
        raise SourceError("empty source path")
    if _URL_RE.match(text) and not text.lower().startswith("file://"):
        raise SourceError(
            f"{text}: URLs cannot be indexed directly; list them in a manifest "
            "(a CSV or JSON Lines file with a 'url' column)"
        )
    if text.lower().startswith("file://"):
        text = _file_url_to_path(text)
    given = Path(text).expanduser()
    try:
        path = given.resolve(strict=True)
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SourceError(f"source not found: {text}") from None
    except (OSError, RuntimeError) as exc:
        raise SourceError(f"cannot read source {text}: {_oserror_text(exc)}") from None
    if stat.S_ISDIR(mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise SourceError(f"cannot read folder {text}: permission denied")
        return _Plan("folder", path)
    if not stat.S_ISREG(mode):
        raise SourceError(f"{text} is neither a file nor a folder")
    if is_manifest(path):
        return _sniff_manifest(path)
    if os.path.splitext(path.name)[1].lower() in IMAGE_EXTENSIONS or not _is_text(path):
        return _Plan("file", path)
    # Text under another name (list.txt...): a manifest if it reads as one, else an error
    # (it is no image either).
    try:
        return _sniff_manifest(path, kind=_guess_kind(path))
    except SourceError as exc:
        raise SourceError(
            f"{text} is not an image, and not a manifest (a CSV file with a 'path' or 'url' "
            f"column, or JSON Lines): {str(exc).split(': ', 1)[-1]}"
        ) from None


def _is_text(path: Path) -> bool:
    """True when the file's start is non-empty UTF-8 text (images hold NUL bytes early)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError:
        return False
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # only a character cut at the end
    return True


def _guess_kind(path: Path) -> Literal["csv", "json"]:
    with open(path, "rb") as fh:
        start = fh.read(_SNIFF_BYTES).decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    return "json" if start[:1] in ("{", "[") else "csv"


def _exclude_keys(exclude: Sequence[str | os.PathLike[str]]) -> set[tuple[int, int]]:
    keys: set[tuple[int, int]] = set()
    for item in exclude:
        try:
            st = os.stat(item)
        except OSError:
            continue
        keys.add((st.st_dev, st.st_ino))
    return keys


# --------------------------------------------------------------------------- iteration


def _iter_plans(
    plans: list[_Plan], exclude_keys: set[tuple[int, int]], on_error: ErrorHandler | None
) -> Iterator[Entry]:
    for plan in plans:
        report = _Reporter(on_error)
        if plan.kind == "folder":
            yield from _iter_folder(plan.path, exclude_keys, report)
        elif plan.kind == "file":
            yield Entry(
                source=str(plan.path),
                path=plan.path,
                url=None,
                id=None,
                relpath=plan.path.name,
                label=plan.path.parent.name or None,
                metadata={},
            )
        else:
            rows = _MANIFEST_READERS[plan.kind](plan, report)
            yield from _entries_from_rows(plan.path, rows, report)
        if on_error is None and report.count > _LOGGED_BAD_ROWS:
            logger.warning("%s: %d bad rows skipped in total", plan.path, report.count)


def _iter_folder(
    root: Path, exclude_keys: set[tuple[int, int]], report: _Reporter
) -> Iterator[Entry]:
    source = str(root)
    visited: set[tuple[int, int]] = set()

    def walk(directory: Path, rel: str) -> Iterator[Entry]:
        try:
            st = directory.stat()
        except OSError as exc:
            report(str(directory), f"cannot read folder: {_oserror_text(exc)}")
            return
        key = (st.st_dev, st.st_ino)
        if key in exclude_keys:
            logger.debug("not entering excluded folder %s", directory)
            return
        if key in visited:
            logger.debug("not entering %s again (symlink to a folder already walked)", directory)
            return
        visited.add(key)
        try:
            with os.scandir(directory) as it:
                items = sorted(it, key=lambda item: item.name)
        except OSError as exc:
            report(str(directory), f"cannot read folder: {_oserror_text(exc)}")
            return
        label = directory.name or None
        for item in items:
            if item.name.startswith("."):
                continue
            try:
                is_dir = item.is_dir()
                # Special files (FIFOs, devices...) and broken symlinks are yielded too: the
                # indexer skips them with a reason instead of leaving them out unsaid.
                usable = not is_dir and (item.is_file() or not item.is_symlink())
            except OSError:  # a symlink loop
                is_dir, usable = False, False
            if is_dir:
                yield from walk(Path(item.path), f"{rel}{item.name}/")
            elif not usable or os.path.splitext(item.name)[1].lower() in IMAGE_EXTENSIONS:
                yield Entry(
                    source=source,
                    path=Path(item.path),
                    url=None,
                    id=None,
                    relpath=f"{rel}{item.name}",
                    label=label,
                    metadata={},
                )

    yield from walk(root, "")


def _entries_from_rows(manifest: Path, rows: Iterable[_Row], report: _Reporter) -> Iterator[Entry]:
    source = str(manifest)
    first_seen: dict[str, str] = {}
    for location, record in rows:
        if isinstance(record, _BadRow):
            report(location, str(record))
            continue
        try:
            entry = _row_to_entry(record, manifest, source)
        except _BadRow as exc:
            report(location, str(exc))
            continue
        if entry.id is not None:
            first = first_seen.setdefault(entry.id, location)
            if first != location:
                report(location, f"duplicate id {entry.id!r} (first seen at {first})")
                continue
        yield entry


def _row_to_entry(record: Mapping[str, Any], manifest: Path, source: str) -> Entry:
    roles: dict[str, str] = {}  # role -> original key
    lowered: dict[str, str] = {}
    for key in record:
        lowered.setdefault(str(key).strip().lower(), key)
    for role, aliases in (
        ("path", _PATH_KEYS),
        ("url", _URL_KEYS),
        ("id", _ID_KEYS),
        ("label", _LABEL_KEYS),
    ):
        for alias in aliases:
            if alias in lowered:
                roles[role] = lowered[alias]
                break

    values = {role: _scalar(record[key], role) for role, key in roles.items()}
    path_text, url = values.get("path"), values.get("url")
    if path_text is None and url is None:
        raise _BadRow("no path or url")
    path: Path | None = None
    if path_text is not None:
        path = _resolve_row_path(path_text, manifest)
    elif url is not None and url.lower().startswith("file://"):
        path = _resolve_row_path(_file_url_to_path(url), manifest)
    used = set(roles.values())
    metadata = {str(key): value for key, value in record.items() if key not in used}
    try:
        check_metadata(metadata)
    except InvalidInput as exc:
        raise _BadRow(str(exc)) from None
    return Entry(
        source=source,
        path=path,
        url=url,
        id=values.get("id"),
        relpath=(
            _row_relpath(
                path, manifest, path_text is None or Path(path_text).expanduser().is_absolute()
            )
            if path is not None
            else url or ""
        ),
        label=values.get("label"),
        metadata=metadata,
    )


def _scalar(value: Any, role: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _BadRow(f"{role!r} must be a string, not {type(value).__name__}")


def _resolve_row_path(text: str, manifest: Path) -> Path:
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = manifest.parent / path
    return Path(os.path.normpath(path))


def _row_relpath(path: Path, manifest: Path, written_absolute: bool) -> str:
    """What a row's id defaults to: its path relative to the manifest's folder (``../x``
    when the row wrote it so), or, for a file outside that folder written as an absolute
    path or file URL, a short hash of its path and its name (never the absolute
    path, which would show the server's folders in ids and URLs)."""
    folder = os.path.normpath(manifest.parent)
    text = os.fspath(path)
    if text.startswith(folder.rstrip(os.sep) + os.sep) or not written_absolute:
        return Path(os.path.relpath(text, folder)).as_posix()
    digest = hashlib.sha256(os.fsencode(text)).hexdigest()[:12]
    return f"{digest}/{path.name}"


def _file_url_to_path(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(url).path)


# --------------------------------------------------------------------------- manifest readers
