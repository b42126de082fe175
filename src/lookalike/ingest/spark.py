"""Distributed ingest on Spark: ``lookalike spark-index`` and :func:`run`.

The driver checks the model (resolved and probed here, so a missing model fails the job at
once, not after every task was retried), plans the files into deterministic shards
(:mod:`.spark_plan`) and runs the shards not written yet, one per partition, through
``mapInPandas`` (:mod:`.spark_worker`): each executor's Python worker decodes and embeds with
one onnxruntime session it keeps for every batch. When every shard exists, ``_lookalike.json``
is written (:mod:`.shards`); ``lookalike import`` adds the rows to a collection.

A killed job is simply rerun: shards are named by their content and written atomically, so
the rerun redoes only the missing ones.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..errors import InvalidInput, MissingDependency, SparkJobError
from . import shards
from .decode import DecodeLimits
from .spark_plan import TASK_COLUMNS, plan_shards, plan_tasks
from .spark_worker import SUMMARY_SCHEMA, WorkerConfig, process_partition

INSTALL_HINT = "pip install 'lookalike[spark]'"


@dataclass
class JobReport:
    out: str
    shards: int = 0
    written: int = 0  # shards written by this run
    reused: int = 0  # shards found complete from an earlier run
    files: int = 0
    ok: int = 0
    skipped: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "shards": self.shards,
            "written": self.written,
            "reused": self.reused,
            "files": self.files,
            "ok": self.ok,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
        }


def require_pyspark() -> None:
    """Raise ``MissingDependency`` (one line) unless pyspark, pandas and pyarrow import."""
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise MissingDependency(
            f"spark-index needs pyspark ({exc.name} is missing): {INSTALL_HINT}"
        ) from None


def session(master: str | None = None, app_name: str = "lookalike spark-index") -> Any:
    """A SparkSession (the active one, or a new one on ``master``) whose Python workers run
    this interpreter unless ``PYSPARK_PYTHON`` says otherwise."""
    require_pyspark()
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    try:
        return builder.getOrCreate()
    except Exception as exc:  # JAVA_GATEWAY_EXITED and friends
        text = " ".join(str(exc).split())[:200]
        raise MissingDependency(
            f"could not start Spark (needs Java 17+ on PATH or JAVA_HOME): {text}"
        ) from None


def check_model(
    model: str | None, model_path: str | None, threads: int | None, fast_resize: bool = False
) -> tuple[dict[str, Any], bool]:
    """Resolve and probe the job's model on the driver: (its identity record, binary?).

    Raises the library's ``ModelUnavailable`` / ``InvalidInput`` before any task starts.
    """
    from ..models.binding import new_record
    from ..models.loader import load_embedder

    embedder = load_embedder(model, model_path, threads=threads, fast_resize=fast_resize)
    record, _ = new_record(embedder, model_path)
    return record, embedder.binary


def run(
    spark: Any,
    sources: Sequence[str],
    out: str,
    *,
    model: str | None = None,
    model_path: str | None = None,
    limits: DecodeLimits | None = None,
    partitions: int | None = None,
    batch_size: int = 32,
    threads: int | None = None,
    fast_resize: bool = False,
) -> JobReport:
    """Embed ``sources`` on ``spark`` into Parquet shards under ``out`` (see module doc).

    ``threads``: onnxruntime threads per task (default: ``spark.task.cpus``); ``fast_resize``
    as ``index --fast-resize``. Rerunning the same job writes only the missing shards.
    """
    if not sources:
        raise InvalidInput("give at least one SOURCE")
    if partitions is not None and partitions < 1:
        raise InvalidInput(f"partitions must be at least 1, got {partitions}")
    started = time.monotonic()
    limits = limits or DecodeLimits()
    if threads is None:
        threads = int(spark.conf.get("spark.task.cpus", "1"))
    model_path = str(os.path.abspath(model_path)) if model_path else None
    record, _ = check_model(model, model_path, threads, fast_resize)
    # What makes a shard's rows: the model (by content, wherever it lies) and the limits.
    model_key = {k: v for k, v in record.items() if k not in ("resolved", "model_path")}
    key = {"model": model_key, "limits": _limits_dict(limits)}

    tasks = plan_tasks(spark, [os.fspath(s) for s in sources])
    planned = plan_shards(tasks, key, partitions)
    shards.make_dirs(out)
    existing = set(shards.list_names(out))
    todo = [s for s in planned if s.name not in existing]
    report = JobReport(out, shards=len(planned), files=len(tasks))
    report.reused = len(planned) - len(todo)
    for s in planned:
        if s.name in existing:
            counts = shards.shard_counts(out, s.name)
            report.ok += counts["ok"]
            report.skipped += counts["skipped"]
    if todo:
        config = WorkerConfig(
            out, model, model_path, threads, limits, batch_size, record, fast_resize
        )
        rows = _run_shards(spark, todo, config)
        report.written = len(rows)
        report.ok += sum(int(r["ok"]) for r in rows)
        report.skipped += sum(int(r["skipped"]) for r in rows)
    missing = [s.name for s in planned if s.name not in set(shards.list_names(out))]
    if missing:
        raise SparkJobError(f"{len(missing)} shards were not written to {out}; rerun the job")
    shards.write_job(
        out,
        {
            "model": record,
            "limits": _limits_dict(limits),
            "sources": [os.fspath(s) for s in sources],
            "shards": [s.name for s in planned],
            "files": report.files,
            "ok": report.ok,
            "skipped": report.skipped,
        },
    )
    _remove_leftovers(out, {s.name for s in planned})
    report.seconds = time.monotonic() - started
    return report


def _run_shards(spark: Any, todo: list[Any], config: WorkerConfig) -> list[Any]:
    """One partition per shard (``parallelize`` with one group per slice keeps them apart)."""
    from pyspark.sql.types import StringType, StructField, StructType

    schema = StructType([StructField(name, StringType(), True) for name in TASK_COLUMNS])
    groups = [[t.row(s.name) for t in s.tasks] for s in todo]
    rdd = spark.sparkContext.parallelize(groups, len(groups)).flatMap(lambda group: group)
    frame = spark.createDataFrame(rdd, schema)
    try:
        return list(frame.mapInPandas(partial(process_partition, config), SUMMARY_SCHEMA).collect())
    except Exception as exc:
        if type(exc).__module__.startswith(("pyspark", "py4j")):
            text = " ".join(str(exc).split())
            raise SparkJobError(f"the Spark job failed: {text[:500]}") from exc
        raise


def _limits_dict(limits: DecodeLimits) -> dict[str, Any]:
    return {
        "max_megapixels": limits.max_megapixels,
        "min_side": limits.min_side,
        "max_aspect": limits.max_aspect,
    }


def _remove_leftovers(out: str, keep: set[str]) -> None:
    """Shards of older runs (other files, model or settings) and temporary files."""
    for name in shards.list_names(out):
        stale = name.startswith(shards.SHARD_PREFIX) and name not in keep
        if stale or shards.TMP_MARK in name:
            with contextlib.suppress(OSError):
                shards.delete(shards.join(out, name))
