"""``lookalike import``: add the rows of a ``spark-index`` output to a collection, without
re-embedding anything.

The job's model record (``_lookalike.json``) must be the collection's model (same dims,
metric, ONNX and preprocessing sha256), else ``ModelMismatch``. Only the shards the record
lists are read. The import is incremental:

* an ``ok`` row whose item is already there (same id, or same path) with the same content
  hash is left alone (its label, metadata and place are refreshed);
* one whose content hash differs replaces that item (new vector, same id);
* a new row is added (an id taken by a file of another source becomes
  ``<source folder name>/<id>``, as ``index`` does);
* a ``skipped`` row is recorded as a skipped file (``info`` shows it), replacing the item of
  that file if there was one.

Vectors are written before the catalog rows that point at them, one transaction per batch,
as ``index`` does; rerunning an interrupted import finishes it and never duplicates an item.
"""

from __future__ import annotations

import json
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import InvalidInput, MissingDependency
from ..models.binding import bind
from ..store import layout
from ..store.catalog import Catalog, Item, Skipped
from ..store.indexes import IndexManager
from ..store.vectors import VectorFile
from . import shards


class ImportTarget(Protocol):
    """What the import writes to (a ``Collection`` is one)."""

    root: Path
    config: dict[str, Any]
    catalog: Catalog
    vectors: VectorFile
    index: IndexManager


@dataclass
class ImportReport:
    rows: int = 0
    added: int = 0
    replaced: int = 0
    unchanged: int = 0
    skipped: int = 0
    removed: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in vars(self).items()}


def check_job_model(coll: ImportTarget, job: dict[str, Any]) -> None:
    """``ModelMismatch`` (one line) unless the job's model is the collection's."""
    bind(coll.config["model"], job.get("model") or {}, str(coll.root))


def import_parquet(
    coll: ImportTarget,
    folder: str,
    *,
    batch_size: int = 5000,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Add the rows of the ``spark-index`` output ``folder`` to ``coll`` (see module doc)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependency("import needs pyarrow: pip install 'lookalike[parquet]'") from None
    started = time.monotonic()
    job = shards.read_job(folder)
    check_job_model(coll, job)
    total = int(job.get("ok", 0)) + int(job.get("skipped", 0))
    run = _Import(coll, coll.config["model"]["metric"] == "hamming")
    with layout.write_lock(coll.root):
        gen_before = coll.catalog.generation
        for name in job["shards"]:
            fs, base = shards.filesystem(folder)
            try:
                handle = fs.open_input_file(shards.join(base, name))
            except FileNotFoundError:
                raise InvalidInput(
                    f"shard {name} listed in {shards.JOB_FILE} is missing from {folder};"
                    " rerun the spark-index job"
                ) from None
            with handle:
                for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_size):
                    run.apply(batch)
                    if progress:
                        progress(run.report.rows, total)
        if coll.catalog.generation != gen_before or not coll.index.exists():
            coll.index.update(gen_before, run.added_slots, run.removed_slots)
    run.report.seconds = time.monotonic() - started
    return run.report


class _Import:
    def __init__(self, coll: ImportTarget, binary: bool) -> None:
        self.coll, self.cat, self.binary = coll, coll.catalog, binary
        self.width = coll.vectors.width
        self.report = ImportReport()
        self.added_slots: list[int] = []
        self.removed_slots: list[int] = []

    def _vectors(self, batch: Any, ok: list[int]) -> np.ndarray:
        import pyarrow as pa

        column = batch.column("vector").take(pa.array(ok, type=pa.int64()))
        if self.binary:
            data = b"".join(column.to_pylist())
            rows = np.frombuffer(data, dtype=np.uint8)
        else:
            rows = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        if rows.size != len(ok) * self.width:
            raise InvalidInput(
                f"vectors in the Parquet rows do not have the collection's width {self.width}"
            )
        return rows.reshape(len(ok), self.width)

    def apply(self, batch: Any) -> None:
        cols = {n: batch.column(n).to_pylist() for n in batch.schema.names if n != "vector"}
        n = batch.num_rows
        rows = [{k: v[i] for k, v in cols.items()} for i in range(n)]
        ok = [i for i, r in enumerate(rows) if r["status"] == "ok"]
        vecs = self._vectors(batch, ok) if ok else np.zeros((0, self.width))
        write: list[tuple[dict[str, Any], np.ndarray, Item | None]] = []
        with self.cat.transaction():
            for k, i in enumerate(ok):
                row = rows[i]
                old = self._existing(row)
                if old is not None and old.content_hash and old.content_hash == row["content_hash"]:
                    self._refresh(old, row)
                    self.report.unchanged += 1
                else:
                    write.append((row, vecs[k], old))
            for row in rows:
                if row["status"] != "ok":
                    self._skip(row)
        self.report.rows += n
        if write:
            self._write(write)

    def _existing(self, row: dict[str, Any]) -> Item | None:
        """The item this row is: same id from the same file or source, else same path."""
        item = self.cat.get(row["id"])
        if item is not None and (item.path != row["path"] and item.source != row["source"]):
            item = None  # another source's file with the same id: a new item
        if item is None and row["path"]:
            item = self.cat.by_path(row["path"])
        return item

    def _free_path(self, path: str | None, keep: str | None) -> None:
        """Remove an item at ``path`` that is not ``keep`` (the file is being replaced)."""
        other = self.cat.by_path(path) if path else None
        if other is not None and other.id != keep:
            self.removed_slots += self.cat.delete([other.id])
            self.report.removed += 1

    def _refresh(self, old: Item, row: dict[str, Any]) -> None:
        metadata = json.loads(row["metadata"] or "{}")
        if (old.path, old.label, old.metadata, old.url, old.source) != (
            row["path"],
            row["label"],
            metadata,
            row["url"],
            row["source"],
        ):
            self._free_path(row["path"], old.id)
            self.cat.update_location(
                old.id,
                new_id=old.id,
                path=row["path"],
                source=row["source"],
                label=row["label"],
                metadata=metadata,
                size=row["size"],
                mtime_ns=row["mtime_ns"],
                url=row["url"],
            )
            self.cat.bump_generation()
        self.cat.clear_skip(row["path"] or row["url"] or row["id"])

    def _skip(self, row: dict[str, Any]) -> None:
        where = row["path"] or row["url"] or row["id"]
        old = self._existing(row)
        if old is not None:  # the file changed into something unusable
            self.removed_slots += self.cat.delete([old.id])
            self.cat.bump_generation()
            self.report.removed += 1
        self.cat.record_skip(
            Skipped(
                where,
                row["source"],
                row["reason"] or "error",
                row["detail"] or "",
                row["size"],
                row["mtime_ns"],
            )
        )
        self.report.skipped += 1

    def _unique_id(self, wanted: str, source: str) -> str:
        candidate = wanted
        if self.cat.id_exists(candidate):
            candidate = f"{posixpath.basename(source.rstrip('/'))}/{wanted}"
        base, n = candidate, 2
        while self.cat.id_exists(candidate):
            candidate = f"{base}#{n}"
            n += 1
        return candidate

    def _write(self, write: list[tuple[dict[str, Any], np.ndarray, Item | None]]) -> None:
        dtype = np.uint8 if self.binary else np.float32
        block = np.ascontiguousarray(np.stack([v for _, v, _ in write]), dtype=dtype)
        first = self.cat.next_slot
        self.coll.vectors.write(first, block)  # vectors first (fsynced), then the catalog
        now = time.time()
        with self.cat.transaction():
            self.cat.reserve_slots(len(write))
            for offset, (row, _, old) in enumerate(write):
                if old is not None:
                    self.removed_slots += self.cat.delete([old.id])
                    item_id = old.id
                    self.report.replaced += 1
                else:
                    item_id = self._unique_id(row["id"], row["source"])
                    self.report.added += 1
                self._free_path(row["path"], None)
                self.cat.insert(
                    Item(
                        id=item_id,
                        slot=first + offset,
                        source=row["source"],
                        path=row["path"],
                        url=row["url"],
                        label=row["label"],
                        metadata=json.loads(row["metadata"] or "{}"),
                        size=row["size"],
                        mtime_ns=row["mtime_ns"],
                        content_hash=row["content_hash"],
                        pixel_hash=row["pixel_hash"],
                        phash=row["phash"],
                        width=row["width"],
                        height=row["height"],
                        added_at=now,
                    )
                )
                self.cat.clear_skip(row["path"] or row["url"] or item_id)
                self.added_slots.append(first + offset)
            self.cat.bump_generation()
