"""Hits as a flat table: one row per (query, hit), written as CSV, JSON Lines or Parquet.

The columns are ``query`` followed by the hit shape (:data:`HIT_KEYS`): the same for
``search --out`` and ``neighbors --all --out``. The format is named by the file's extension.
``metadata`` is a JSON object in JSON Lines, and JSON text in CSV and Parquet (which have no
nested type that fits arbitrary metadata). Files are written to a temporary name, fsynced and
renamed, so a failed run leaves no half-written table.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import InvalidInput, MissingDependency
from .hits import HIT_KEYS, Hit

TABLE_COLUMNS = ("query", *HIT_KEYS)
TABLE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}


def table_format(
    out: str | os.PathLike[str], allowed: Sequence[str] = ("csv", "jsonl", "parquet")
) -> str:
    """The format named by ``out``'s extension; :class:`InvalidInput` for any other."""
    path = Path(out)
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None or fmt not in allowed:
        raise InvalidInput(
            f"{path}: unknown extension {path.suffix or '(none)'!r}; use {names_of(allowed)}"
        )
    if path.is_dir():
        raise InvalidInput(f"{path} is a folder; give a file name ending in {names_of(allowed)}")
    if not path.parent.is_dir():
        raise InvalidInput(f"folder {path.parent} does not exist")
    return fmt


def names_of(allowed: Sequence[str]) -> str:
    """ ".a, .b or .c" for the formats allowed, Parquet first."""
    names = ["." + f for f in sorted(allowed, key=lambda f: (f != "parquet", f))]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def hit_rows(query: str, hits: Sequence[Hit]) -> dict[str, list[Any]]:
    """Columns of the table for one query's hits."""
    dicts = [h.to_dict() for h in hits]
    cols: dict[str, list[Any]] = {"query": [query] * len(dicts)}
    for key in HIT_KEYS:
        cols[key] = [d[key] for d in dicts]
    return cols


class HitTable:
    """A table being written: add columns with :meth:`write`, then :meth:`close` (or use it
    as a context manager; an exception discards the file)."""

    def __init__(
        self,
        out: str | os.PathLike[str],
        allowed: Sequence[str] = ("csv", "jsonl", "parquet"),
    ) -> None:
        self.path = Path(out)
        self.format = table_format(self.path, allowed)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.rows = 0
        self._fh: IO[str] | None = None
        self._csv: Any = None
        self._parquet: Any = None
        self._schema: Any = None
        if self.format == "parquet":
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                raise MissingDependency(
                    "writing Parquet needs pyarrow: pip install 'lookalike[parquet]'"
                ) from None
            self._schema = pa.schema(
                [
                    ("query", pa.string()),
                    ("rank", pa.int32()),
                    ("id", pa.string()),
                    ("score", pa.float64()),
                    ("label", pa.string()),
                    ("metadata", pa.string()),
                    ("url", pa.string()),
                    ("path", pa.string()),
                ]
            )
            self._parquet = pq.ParquetWriter(str(self.tmp), self._schema)
        else:
            self._fh = open(self.tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed by close)
            if self.format == "csv":
                self._csv = csv.writer(self._fh, lineterminator="\n")
                self._csv.writerow(TABLE_COLUMNS)

    def write(self, columns: Mapping[str, Sequence[Any]]) -> None:
        """Append rows given as columns (every key of :data:`TABLE_COLUMNS`). ``metadata``
        values are dicts, or JSON text already encoded."""
        n = len(columns["query"])
        if n == 0:
            return
        meta = [
            m if isinstance(m, str) else json.dumps(m, ensure_ascii=False)
            for m in columns["metadata"]
        ]
        if self._parquet is not None:
            import pyarrow as pa

            data = {k: list(columns[k]) for k in TABLE_COLUMNS}
            data["metadata"] = meta
            data["score"] = [round(float(s), 6) for s in columns["score"]]
            self._parquet.write_table(pa.table(data, schema=self._schema))
        elif self._csv is not None:
            for i in range(n):
                row = [columns[k][i] for k in TABLE_COLUMNS]
                row[TABLE_COLUMNS.index("metadata")] = meta[i]
                self._csv.writerow(["" if v is None else v for v in row])
        else:
            assert self._fh is not None
            for i in range(n):
                rec = {k: columns[k][i] for k in TABLE_COLUMNS}
                rec["metadata"] = json.loads(meta[i])
                self._fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.rows += n

    def write_hits(self, query: str, hits: Sequence[Hit]) -> None:
        self.write(hit_rows(query, hits))

    def close(self) -> None:
        """Finish the file: fsync and rename into place."""
        if self._parquet is not None:
            self._parquet.close()
            with open(self.tmp, "rb") as fh:
                os.fsync(fh.fileno())
        elif self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        elif self._fh is not None:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> HitTable:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
