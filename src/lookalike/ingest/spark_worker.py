"""What a Spark executor runs for ``spark-index``: one shard per partition, in
``mapInPandas``.

Each Python worker keeps ONE embedder (one onnxruntime session) in a module-level cache and
reuses it for every batch and every task it runs (Spark reuses Python workers by default).
Files are read, hashed, decoded, filtered and prepared by :func:`pipeline.process`, the very
function ``lookalike index`` uses, so the vectors are the same. A file that cannot be used
becomes a skip row with its reason; only an unwritable output fails a task.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models.embedders.base import Embedder
from . import pipeline, shards
from .decode import DecodeLimits

#: The summary row each partition yields back to the driver.
SUMMARY_SCHEMA = "shard string, ok long, skipped long, seconds double"


@dataclass(frozen=True)
class WorkerConfig:
    """Everything an executor needs, sent with the task (small and picklable)."""

    out: str
    model: str | None
    model_path: str | None
    threads: int | None
    limits: DecodeLimits
    batch_size: int
    record: dict[str, Any]  # the model record, for the shards' schema metadata
    fast_resize: bool = False  # index --fast-resize's OpenCV resize


_EMBEDDERS: dict[tuple[str | None, str | None, int | None, bool], Embedder] = {}


def embedder_for(config: WorkerConfig) -> Embedder:
    """This worker's embedder for the job's model: made and loaded once, then reused."""
    key = (config.model, config.model_path, config.threads, config.fast_resize)
    emb = _EMBEDDERS.get(key)
    if emb is None:
        from ..models.loader import load_embedder

        emb = load_embedder(
            config.model, config.model_path, threads=config.threads, fast_resize=config.fast_resize
        )
        emb.load()
        _EMBEDDERS.clear()  # one model per worker
        _EMBEDDERS[key] = emb
    return emb


def process_partition(config: WorkerConfig, batches: Iterator[Any]) -> Iterator[Any]:
    """``mapInPandas`` function: task rows in (one shard per partition), one summary row out
    per shard written."""
    import pandas as pd

    emb = embedder_for(config)
    schema = shards.schema(emb.binary, config.record)
    writers: dict[str, _ShardJob] = {}
    started = time.monotonic()
    try:
        for frame in batches:
            for row in frame.to_dict("records"):
                name = row["shard"]
                job = writers.get(name)
                if job is None:
                    job = writers[name] = _ShardJob(
                        shards.ShardWriter(config.out, name, schema), emb, config
                    )
                job.add(row)
        for job in writers.values():
            job.flush()
            job.writer.commit()
    except BaseException:
        for job in writers.values():
            job.writer.abort()
        raise
    seconds = time.monotonic() - started
    yield pd.DataFrame(
        {
            "shard": list(writers),
            "ok": [j.writer.ok for j in writers.values()],
            "skipped": [j.writer.skipped for j in writers.values()],
            "seconds": [seconds] * len(writers),
        }
    )


def _clean(value: Any) -> Any:
    """pandas gives NaN/None for missing cells and numpy scalars for numbers."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


class _ShardJob:
    """Processes the rows of one shard and writes them in row groups of ``batch_size``."""

    def __init__(self, writer: shards.ShardWriter, emb: Embedder, config: WorkerConfig) -> None:
        self.writer, self.emb, self.config = writer, emb, config
        self.preparer = emb.preparer()
        self.draft = pipeline.index_draft(self.preparer, emb.binary)
        self.pending: list[tuple[dict[str, Any], pipeline.Result]] = []
        self.skips: list[tuple[dict[str, Any], pipeline.Result]] = []

    def add(self, raw: dict[str, Any]) -> None:
        row = {k: _clean(v) for k, v in raw.items()}
        for key in ("size", "mtime_ns"):
            row[key] = int(row[key]) if row.get(key) else None
        if row.get("reason"):
            result = pipeline.Result(0, "skipped", reason=row["reason"], detail=row["detail"] or "")
            result.size, result.mtime_ns = row.get("size"), row.get("mtime_ns")
        else:
            result = self._process(row)
        if result.status == "ok":
            self.pending.append((row, result))
        else:
            self.skips.append((row, result))
        if len(self.pending) >= self.config.batch_size or len(self.skips) >= 1000:
            self.flush()

    def _process(self, row: dict[str, Any]) -> pipeline.Result:
        local = shards.local_path(row["location"])
        if local is not None:
            return pipeline.process(
                pipeline.Task(0, local), self.preparer, self.config.limits, self.draft
            )
        # Another filesystem: fetched to a temporary file, then the same function.
        try:
            data = shards.read_bytes(row["location"])
        except Exception as exc:  # any filesystem error is this file's problem only
            return pipeline.Result(0, "skipped", reason="unreadable", detail=str(exc)[:300])
        fd, tmp = tempfile.mkstemp(prefix="lookalike-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            result = pipeline.process(
                pipeline.Task(0, tmp), self.preparer, self.config.limits, self.draft
            )
        finally:
            os.unlink(tmp)
        result.size, result.mtime_ns = row.get("size") or result.size, row.get("mtime_ns")
        return result

    def flush(self) -> None:
        rows = self.pending + self.skips
        if not rows:
            return
        prepared = [r.prepared for _, r in self.pending if r.prepared is not None]
        vectors = self.emb.embed(prepared, batch_size=self.config.batch_size)
        out: dict[str, list[Any]] = {name: [] for name, _ in shards.COLUMNS}
        out["vector"] = []
        for i, (row, res) in enumerate(rows):
            ok = res.status == "ok"
            for name in ("id", "path", "url", "source", "label", "metadata"):
                out[name].append(row.get(name))
            out["status"].append("ok" if ok else "skipped")
            out["reason"].append(res.reason or None)
            out["detail"].append(res.detail or None)
            out["size"].append(res.size)
            out["mtime_ns"].append(res.mtime_ns)
            out["content_hash"].append(res.content_hash)
            out["pixel_hash"].append(res.pixel_hash)
            out["phash"].append(res.phash)
            out["width"].append(res.width)
            out["height"].append(res.height)
            if not ok:
                out["vector"].append(None)
            elif self.emb.binary:
                out["vector"].append(vectors[i].tobytes())
            else:
                out["vector"].append(vectors[i])
        self.writer.write(out)
        self.pending, self.skips = [], []
