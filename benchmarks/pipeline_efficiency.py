"""Pipeline efficiency: end-to-end `index` images/s divided by model-only images/s.

Same ONNX model (ResNet-18 shaped, random weights), batch size and thread count for both;
model-only runs on tensors decoded and prepared beforehand. Data: ../shared/datasets/clothing-small.

    python benchmarks/pipeline_efficiency.py [--limit N] [--batch-size 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _data import dataset_files
from resnet18_onnx import write_model_folder

from lookalike import Collection
from lookalike.ingest.decode import decode_image
from lookalike.models.loader import load_embedder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None, help="use the first N images")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument(
        "--workers", type=int, default=None, help="decode workers for index (default: CPU count)"
    )
    args = ap.parse_args()

    files = dataset_files(args.limit)
    # Stage the files in a temporary folder so the run sees exactly these files.
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        data = tmpdir / "data"
        for f in files:
            dest = data / f.parent.name / f"{f.parent.parent.name}-{f.name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
        model_dir = write_model_folder(tmpdir / "resnet18")

        # Model only, on pre-decoded tensors.
        emb = load_embedder(model_path=model_dir, threads=args.threads)
        prep = emb.preparer()
        tensors = [prep(decode_image(p.read_bytes()).image) for p in sorted(data.rglob("*.jpg"))]
        emb.load()
        emb.embed(tensors[: args.batch_size], batch_size=args.batch_size)  # warm-up
        t0 = time.perf_counter()
        emb.embed(tensors, batch_size=args.batch_size)
        model_s = time.perf_counter() - t0
        model_rate = len(tensors) / model_s
        del tensors

        # End to end: `index` (read, hash, decode, pixel hash, phash, preprocess, embed, store, index).
        coll = Collection.open(tmpdir / "coll", model_path=model_dir, threads=args.threads)
        t0 = time.perf_counter()
        report = coll.add(data, batch_size=args.batch_size, workers=args.workers)
        e2e_s = time.perf_counter() - t0
        coll.close()
        e2e_rate = report.indexed / e2e_s

    n = len(files)
    print(
        f"images={n} batch={args.batch_size} threads={args.threads} cores={os.cpu_count()} model=resnet18-shaped ONNX"
    )
    print(f"model only : {model_rate:7.1f} img/s ({model_s:.1f} s)")
    print(
        f"end to end : {e2e_rate:7.1f} img/s ({e2e_s:.1f} s, indexed {report.indexed}, skipped {report.skipped})"
    )
    print(
        f"pipeline efficiency (end-to-end / model-only): {e2e_rate / model_rate:.3f}  (target >= 0.9)"
    )
    assert np.isfinite(e2e_rate)


if __name__ == "__main__":
    main()
