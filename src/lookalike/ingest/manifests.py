"""Manifests: sniffing a file's kind (CSV, JSON Lines, JSON array, optionally gzipped), reading its rows one by one, and reporting bad rows with their line numbers."""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import SourceError

logger = logging.getLogger(__name__)

ErrorHandler = Callable[[str, str], None]
"""``on_error(location, reason)``: called once per skipped row or unreadable sub-folder."""

# Column names (compared lowercase) for each role, in order of preference.
_PATH_KEYS = ("path",)
_URL_KEYS = ("url", "imurl")
_ID_KEYS = ("id", "asin")
_LABEL_KEYS = ("label",)

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SNIFF_BYTES = 64 * 1024
# Without an on_error callback, bad rows are logged: this many per manifest, then a summary.
_LOGGED_BAD_ROWS = 10
# JSON Lines: bad-row reports are held back until the first usable row, so that a file that is
# not a manifest at all raises one SourceError instead of one report per line. A file whose
# first _HOLD_BACK non-blank lines hold no usable row is not a manifest.
_HOLD_BACK = 1000


@dataclass
class _Plan:
    kind: Literal["folder", "file", "csv", "jsonl", "json-array"]
    path: Path
    delimiter: str = ","
    records: list[Any] | None = None  # json-array: the records, loaded while planning


def _sniff_manifest(path: Path, kind: Literal["csv", "json"] | None = None) -> _Plan:
    """Check that a manifest is readable text in the expected format (``kind``, by default
    told by the file name); raises SourceError."""
    try:
        with _open_binary(path) as fh:
            head = fh.read(_SNIFF_BYTES)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise SourceError(f"cannot read manifest {path}: {_oserror_text(exc)}") from None
    if b"\x00" in head:
        raise SourceError(f"cannot read manifest {path}: binary data, not a text file")
    lines = head.splitlines()
    if len(head) == _SNIFF_BYTES and len(lines) > 1:
        lines.pop()  # possibly cut by the sniff boundary
    invalid = 0
    for i, line in enumerate(lines):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            if i == 0:
                invalid = len(lines)
                break
            invalid += 1
    # A few bad lines are reported one by one while reading; mostly bad means wrong encoding.
    if lines and invalid * 2 > len(lines):
        raise SourceError(f"cannot read manifest {path}: not UTF-8 text")
    text = head.decode("utf-8", "replace").removeprefix("\ufeff")

    kind = kind or _manifest_kind(path)
    if kind == "csv":
        first_line = text.splitlines()[0] if text.strip() else ""
        delimiter = _guess_delimiter(first_line)
        header = _parse_header(first_line, delimiter) if first_line else []
        if not header:
            raise SourceError(f"cannot read manifest {path}: empty file, expected a CSV header")
        lowered = {name.lower() for name in header}
        if not lowered.intersection(_PATH_KEYS + _URL_KEYS):
            shown = ", ".join(repr(name) for name in header[:8])
            more = ", ..." if len(header) > 8 else ""
            raise SourceError(
                f"manifest {path} has no 'path' or 'url' column (columns: {shown}{more})"
            )
        return _Plan("csv", path, delimiter=delimiter)
    if text.lstrip().startswith("["):
        return _Plan("json-array", path, records=_load_json_array(path))
    return _Plan("jsonl", path)


def _manifest_kind(path: Path) -> Literal["csv", "json"]:
    name = path.name.lower().removesuffix(".gz")
    return "csv" if name.endswith(".csv") else "json"


def _guess_delimiter(header_line: str) -> str:
    if "," not in header_line:
        if "\t" in header_line:
            return "\t"
        if ";" in header_line:
            return ";"
    return ","


def _parse_header(line: str, delimiter: str) -> list[str]:
    try:
        row = next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return []
    return _header_names(row)


def _header_names(row: list[str]) -> list[str]:
    """Column names: stripped, empty ones named ``columnN``, duplicates suffixed ``_2``..."""
    names: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(row):
        name = raw.strip() or f"column{i + 1}"
        unique, n = name, 2
        while unique in seen:
            unique, n = f"{name}_{n}", n + 1
        seen.add(unique)
        names.append(unique)
    return names


class _Reporter:
    """Sends bad rows to ``on_error`` or, without one, to the log (capped)."""

    def __init__(self, on_error: ErrorHandler | None) -> None:
        self.on_error = on_error
        self.count = 0

    def __call__(self, location: str, reason: str) -> None:
        self.count += 1
        if self.on_error is not None:
            self.on_error(location, reason)
        elif self.count <= _LOGGED_BAD_ROWS:
            logger.warning("skipped %s: %s", location, reason)
        else:
            logger.debug("skipped %s: %s", location, reason)


class _BadRow(Exception):
    """A row that is skipped and reported; the message is the reason."""


# A row as read from a manifest: (location, record or the reason it could not be parsed).
_Row = tuple[str, Mapping[str, Any] | _BadRow]


def _open_binary(path: Path) -> io.BufferedIOBase:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _decoded_lines(
    path: Path, bad_lines: set[int], report: _Reporter, stop_note: list[str]
) -> Iterator[str]:
    """Lines of a manifest as text (line endings kept). Lines that are not valid UTF-8 are
    decoded with replacement characters and their numbers added to ``bad_lines``. A read
    error part-way (truncated gzip...) is reported and ends the iteration."""
    lineno = 0
    try:
        with _open_binary(path) as fh:
            for raw in fh:
                lineno += 1
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    bad_lines.add(lineno)
                    line = raw.decode("utf-8", "replace")
                if lineno == 1:
                    line = line.removeprefix("\ufeff")
                yield line
    except (OSError, EOFError) as exc:
        reason = f"cannot read further, rest of the file skipped: {_oserror_text(exc)}"
        stop_note.append(reason)
        report(f"{path}:{lineno + 1}", reason)


def _read_csv(plan: _Plan, report: _Reporter) -> Iterator[_Row]:
    """One row per line: a quoted field never runs on to the next line, so a stray quote
    spoils its own row only (reported with its line number) instead of swallowing every
    row up to the next quote."""
    name = str(plan.path)
    bad_lines: set[int] = set()
    stop_note: list[str] = []
    header: list[str] | None = None
    width = 0
    for lineno, line in enumerate(_decoded_lines(plan.path, bad_lines, report, stop_note), 1):
        if header is None:
            try:
                header = _header_names(_csv_line(line, plan.delimiter))
            except _BadRow:
                return
            width = len(header)
            continue
        location = f"{name}:{lineno}"
        if lineno in bad_lines:
            yield location, _BadRow("not valid UTF-8")
            continue
        if not line.strip():
            continue  # blank line
        try:
            row = _csv_line(line, plan.delimiter)
        except _BadRow as exc:
            yield location, exc
            continue
        if len(row) > width:
            yield location, _BadRow(f"{len(row)} fields, but the header has {width}")
            continue
        record: dict[str, Any] = dict(zip(header, row, strict=False))
        for missing in header[len(row) :]:
            record[missing] = None
        yield location, record


def _csv_line(line: str, delimiter: str) -> list[str]:
    try:
        rows = list(csv.reader([line], delimiter=delimiter, strict=True))
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise _BadRow(
                "malformed CSV: a quote is never closed on this line (a stray quote? "
                "quoted fields cannot span lines)"
            ) from None
        raise _BadRow(f"malformed CSV: {exc}") from None
    return rows[0] if rows else []


def _read_jsonl(plan: _Plan, report: _Reporter) -> Iterator[_Row]:
    """One record per line (JSON or Python literal). Holds bad rows back until the first good
    row so that a file that is not a manifest at all raises SourceError instead."""
    name = str(plan.path)
    bad_lines: set[int] = set()
    stop_note: list[str] = []
    held: list[_Row] | None = []  # None once a usable row was seen
    parsed_any = False
    first_reason = ""

    def not_a_manifest() -> SourceError:
        if not parsed_any:
            return SourceError(
                f"cannot read manifest {plan.path}: expected one JSON object per line "
                f"({first_reason or 'no records'})"
            )
        rows = (
            "any row" if held is None or len(held) < _HOLD_BACK else f"its first {_HOLD_BACK} rows"
        )
        return SourceError(f"manifest {plan.path} has no 'path' or 'url' field in {rows}")

    lineno = 0
    for line in _decoded_lines(plan.path, bad_lines, report, stop_note):
        lineno += 1
        text = line.strip()
        if not text:
            continue
        location = f"{name}:{lineno}"
        record: Mapping[str, Any] | _BadRow
        if lineno in bad_lines:
            record = _BadRow("not valid UTF-8")
        else:
            try:
                record = _parse_record(text)
            except _BadRow as exc:
                record = exc
        if not isinstance(record, _BadRow):
            parsed_any = True
        elif not first_reason:
            first_reason = str(record)
        if held is None:
            yield location, record
            continue
        held.append((location, record))
        if not isinstance(record, _BadRow) and _has_source_key(record):
            pending, held = held, None
            yield from pending
        elif len(held) >= _HOLD_BACK:
            raise not_a_manifest()
    if held:  # no usable row at all
        if not stop_note:
            raise not_a_manifest()
        yield from held


def _load_json_array(path: Path) -> list[Any]:
    """A ``.json`` manifest holding one JSON array of records, loaded (and checked) at once."""
    try:
        with _open_binary(path) as fh:
            data = json.loads(fh.read().decode("utf-8-sig"))
    except (OSError, EOFError) as exc:
        raise SourceError(f"cannot read manifest {path}: {_oserror_text(exc)}") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise SourceError(f"cannot read manifest {path}: invalid JSON: {exc}") from None
    if not isinstance(data, list):
        raise SourceError(f"cannot read manifest {path}: expected a list of records")
    if data and not any(isinstance(r, dict) and _has_source_key(r) for r in data):
        raise SourceError(f"manifest {path} has no 'path' or 'url' field in any row")
    return data


def _read_json_array(plan: _Plan, report: _Reporter) -> Iterator[_Row]:
    name = str(plan.path)
    records, plan.records = plan.records or [], None
    for i, item in enumerate(records):
        location = f"{name}:item {i + 1}"
        if isinstance(item, dict):
            yield location, item
        else:
            yield location, _BadRow(f"not an object but {type(item).__name__}")


_MANIFEST_READERS: dict[str, Callable[[_Plan, _Reporter], Iterator[_Row]]] = {
    "csv": _read_csv,
    "jsonl": _read_jsonl,
    "json-array": _read_json_array,
}


def _has_source_key(record: Mapping[str, Any]) -> bool:
    return any(str(key).strip().lower() in _PATH_KEYS + _URL_KEYS for key in record)


def _parse_record(text: str) -> dict[str, Any]:
    """Parse one manifest line: JSON first, then a Python literal (never ``eval``)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = _literal(text)
    if not isinstance(value, dict):
        raise _BadRow(f"not an object but {type(value).__name__}")
    return value


def _literal(text: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning for odd escapes
            value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise _BadRow("not valid JSON or a Python literal") from None
    return _jsonable(value)


def _jsonable(value: Any) -> Any:
    """Make a Python literal JSON-friendly (tuples, sets, bytes... become lists/strings)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _oserror_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text
