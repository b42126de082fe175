"""Spark ingest throughput: `lookalike spark-index` on local[1] and local[2] against the
single-process `lookalike index`, and the rate of `lookalike import` into a collection.

One run over the first N photos of ../shared/datasets/clothing-small/train (copied to a
temporary folder) with a real model folder (default ../shared/models/mobilenet-v2-imagenet):

    python benchmarks/spark_ingest.py [--limit 2000] [--model-path DIR] [--masters local[1] local[2]]

Spark times are those of the job (`run`: planning, tasks, shards) in an already started
session; the session start-up is printed apart. Spark tasks run one onnxruntime thread each
(spark.task.cpus = 1); `index` uses its defaults (all cores for the model, decode workers).
Also checks that the vectors of the imported Spark rows equal those of `index` (min cosine).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _data import REPO

from lookalike import Collection
from lookalike.ingest.parquet_import import import_parquet
from lookalike.ingest.spark import run, session

TRAIN = REPO.parent / "shared" / "datasets" / "clothing-small" / "train"
MODEL = REPO.parent / "shared" / "models" / "mobilenet-v2-imagenet"


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--data", type=Path, default=TRAIN)
    ap.add_argument("--model-path", type=Path, default=MODEL)
    ap.add_argument("--masters", nargs="+", default=["local[1]", "local[2]"])
    args = ap.parse_args()
    if not args.data.is_dir() or not args.model_path.is_dir():
        sys.exit(f"benchmark data not found: {args.data} / {args.model_path}")
    files = sorted(args.data.rglob("*.jpg"))[: args.limit]
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    print(f"{len(files)} photos from {args.data}, model {args.model_path.name}; {_load()}")

    with tempfile.TemporaryDirectory(prefix="spark-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data"
        for f in files:
            dest = data / f.parent.name / f.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)

        started = time.perf_counter()
        cmd = [sys.executable, "-m", "lookalike", "index", str(data)]
        cmd += ["--model-path", str(args.model_path), "--collection", str(tmp / "local")]
        subprocess.run(cmd + ["--no-progress"], check=True, stdout=subprocess.DEVNULL)
        local_s = time.perf_counter() - started
        local_rate = len(files) / local_s
        print(f"lookalike index (single process): {local_s:7.1f} s  {local_rate:6.1f} images/s")

        outs: dict[str, Path] = {}
        for master in args.masters:
            started = time.perf_counter()
            spark = session(master, "lookalike benchmark")
            spark.sparkContext.setLogLevel("ERROR")
            startup = time.perf_counter() - started
            out = tmp / f"out-{len(outs)}"
            try:
                report = run(spark, [str(data)], str(out), model_path=str(args.model_path))
            finally:
                spark.stop()
            outs[master] = out
            rate = report.ok / report.seconds
            print(
                f"spark-index {master:<9} {report.seconds:7.1f} s  {rate:6.1f} images/s"
                f"  ratio to index {rate / local_rate:.2f}  ({report.shards} shards,"
                f" {report.skipped} skipped; session start {startup:.1f} s)"
            )

        last = outs[args.masters[-1]]
        with (
            Collection.open(tmp / "imported", model_path=args.model_path) as coll,
            Collection.open(tmp / "local") as local,
        ):
            imp = import_parquet(coll, str(last))
            print(
                f"import into a collection:  {imp.seconds:7.2f} s  {imp.rows / imp.seconds:8.0f}"
                f" rows/s ({imp.added} added)"
            )
            again = import_parquet(coll, str(last))
            print(
                f"import again (no change):  {again.seconds:7.2f} s  "
                f"{again.rows / again.seconds:8.0f} rows/s ({again.unchanged} unchanged)"
            )
            n = coll.catalog.next_slot
            cosines = []
            for item in local.items():
                other = coll.get(item.id)
                a = np.asarray(local.vectors.read([item.slot], local.catalog.next_slot)[0])
                b = np.asarray(coll.vectors.read([other.slot], n)[0])
                cosines.append(float(a @ b))
            print(f"vectors vs index: {len(cosines)} items, min cosine {min(cosines):.6f}")
    print(_load())


if __name__ == "__main__":
    main()
