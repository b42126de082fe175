"""``lookalike spark-index`` (embed on Spark into Parquet shards) and ``lookalike import``
(add those rows to a collection).

Also a Spark application: ``python -m lookalike.cli.spark SOURCES --out DIR ...`` or
``spark-submit --py-files lookalike.zip "$(python -c 'import lookalike.cli.spark as m;
print(m.__file__)')" SOURCES --out DIR ...`` (imports here are absolute so that the file runs
as a script).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    from lookalike.cli.argtypes import add_filter_arguments, positive_int

    p = sub.add_parser(
        "spark-index",
        parents=[common],
        help="embed folders/manifests on Spark into Parquet shards (see `lookalike import`)",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="folder, file or manifest")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (path or URI)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model", metavar="NAME", help="registry model (default clip-vit-b32)")
    model.add_argument("--model-path", metavar="DIR", help="local model folder")
    add_filter_arguments(p, remembered=False)
    p.add_argument(
        "--fast-resize",
        action="store_true",
        help="resize as `index --fast-resize` does (import into a collection built so)",
    )
    p.add_argument(
        "--partitions",
        type=positive_int,
        metavar="N",
        help="number of shards (default: a power of two, ~256 files each; keep it the same"
        " across reruns)",
    )
    p.add_argument(
        "--master",
        metavar="URL",
        help="Spark master, e.g. local[2] (default: spark-submit's, else local[*])",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        metavar="N",
        help="images per model call on each executor (default 32)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="model threads per task (default: spark.task.cpus)",
    )
    p.add_argument("--json", action="store_true", help="print a one-line JSON summary")
    p.set_defaults(func=cmd_spark_index)

    p = sub.add_parser(
        "import",
        parents=[common],
        help="add the rows of a `spark-index` output to a collection (no re-embedding)",
    )
    p.add_argument("parquet_dir", metavar="PARQUET_DIR", help="the spark-index --out folder")
    p.add_argument(
        "--model-path",
        metavar="DIR",
        help="where the job's local model folder is on this machine (new collections)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=5000,
        metavar="N",
        help="rows committed per transaction (default 5000)",
    )
    p.add_argument("--json", action="store_true", help="print a one-line JSON summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import)


def cmd_spark_index(args: argparse.Namespace) -> int:
    from lookalike.ingest import spark
    from lookalike.ingest.decode import DecodeLimits

    limits = DecodeLimits(
        max_megapixels=args.max_megapixels, min_side=args.min_side, max_aspect=args.max_aspect
    )
    spark.require_pyspark()
    # Fail on a missing model before a JVM is even started.
    spark.check_model(args.model, args.model_path, args.threads or 1, args.fast_resize)
    session = spark.session(args.master)
    if not args.verbose:
        session.sparkContext.setLogLevel("ERROR")
    try:
        report = spark.run(
            session,
            args.sources,
            args.out,
            model=args.model,
            model_path=args.model_path,
            limits=limits,
            partitions=args.partitions,
            batch_size=args.batch_size,
            threads=args.threads,
            fast_resize=args.fast_resize,
        )
    finally:
        session.stop()
    d = report.to_dict()
    if args.json:
        print(json.dumps(d))
    else:
        print(
            f"{d['files']} files -> {d['ok']} rows, {d['skipped']} skipped; {d['shards']} shards"
            f" ({d['written']} written, {d['reused']} already there) in {d['out']}"
            f" ({d['seconds']:.1f} s)"
        )
        print(f"next: lookalike import {d['out']}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from lookalike.collection import Collection
    from lookalike.ingest.parquet_import import import_parquet
    from lookalike.ingest.shards import read_job
    from lookalike.models.identity import fast_resize_of
    from lookalike.store.layout import MARKER, default_collection_dir

    from .progress import Progress

    job = read_job(args.parquet_dir)
    model = job.get("model") or {}
    root = args.collection or default_collection_dir()
    if (Path(root) / MARKER).is_file():
        coll = Collection.open(root, model_path=args.model_path)
    else:  # a new collection takes the job's model
        path = args.model_path or model.get("model_path")
        fast = fast_resize_of(model)  # a new collection resizes as the job did
        coll = Collection.open(
            root, None if path else model.get("name"), model_path=path, fast_resize=fast
        )
    show = not args.no_progress and sys.stderr.isatty()
    progress = Progress("importing") if show else None
    try:
        report = import_parquet(
            coll, args.parquet_dir, batch_size=args.batch_size, progress=progress
        )
        coll.publish()  # into Milvus (and Redis) when the collection has a remote store
        idx = coll.index.ensure() if len(coll) else coll.index.info()
    finally:
        if progress:
            progress.close()
        coll.close()
    d = report.to_dict()
    if args.json:
        print(json.dumps(d))
    else:
        print(
            f"imported {d['rows']} rows: added {d['added']}, replaced {d['replaced']},"
            f" unchanged {d['unchanged']}, skipped {d['skipped']}, removed {d['removed']}"
            f" ({idx['count']} vectors in the index)"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lookalike.cli.spark`` / ``spark-submit .../lookalike/cli/spark.py``:
    the arguments of ``lookalike spark-index``."""
    from lookalike.cli.entry import main as entry_main

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["spark-index"]:
        args = args[1:]
    if not args:
        raise SystemExit(entry_main(["spark-index", "--help"]))
    return entry_main(["spark-index", *args])


__all__ = ["register", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
