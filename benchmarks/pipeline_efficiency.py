"""Pipeline efficiency: end-to-end `index` images/s divided by model-only images/s.

Same ONNX model, batch size and thread count for both; model-only runs on tensors decoded
and prepared beforehand. The model is the ResNet-18-shaped one built here (random
weights) unless ``--model-path`` names a model folder (e.g.
``../shared/models/mobilenet-v2-imagenet``). Data: ../shared/datasets/clothing-small.

Also printed: the CPU time of one forward pass (process CPU time of the model-only run
per image) and of one photo's decode-side work (read, sha256, decode, pixel hash, phash,
model input; measured in this thread on a sample), and the bound they give when model and
decoding share the same cores: model CPU / (model CPU + per-photo CPU). Where decoding has
cores of its own (``--threads`` below the core count, ``--workers`` on the rest) the
bound is 1.

``--resize exact,fast`` also runs ``index --fast-resize`` (OpenCV's resize instead of the
reference filter; opt-in, its retrieval effect is in docs/preprocessing.md) side by side.

``--repeat N`` alternates model-only and end-to-end runs N times (the machine may be
shared: compare the ratios of one run, not absolute rates across runs); ``--decode``
lists decode modes to compare side by side (``threads``, ``processes``).

    python benchmarks/pipeline_efficiency.py [--model-path DIR] [--limit N] [--repeat 3]
        [--batch-size 32] [--threads 2] [--workers N] [--decode threads,processes]
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _data import dataset_files
from resnet18_onnx import write_model_folder

from lookalike import Collection
from lookalike.ingest import pipeline
from lookalike.ingest.decode import DecodeLimits, decode_image, pixel_hash
from lookalike.models.loader import load_embedder
from lookalike.models.phash import phash_int


def per_photo_cpu(paths: list[Path], prep: Any) -> dict[str, float]:
    """CPU ms per photo of the decode-side work, in this thread (best of 3 passes)."""
    limits = DecodeLimits()
    draft = pipeline.index_draft(prep, False)  # --fast-resize collections draft JPEGs
    best: dict[str, float] = {}
    datas = [p.read_bytes() for p in paths]
    for _ in range(3):
        t: dict[str, float] = {}
        c0 = time.thread_time()
        images = [decode_image(d, draft=draft).image for d in datas]
        t["decode"] = time.thread_time() - c0
        c0 = time.thread_time()
        for im in images:
            prep(im)
        t["model input"] = time.thread_time() - c0
        c0 = time.thread_time()
        for im in images:
            pixel_hash(im)
        t["pixel hash"] = time.thread_time() - c0
        c0 = time.thread_time()
        for im in images:
            phash_int(im)
        t["phash"] = time.thread_time() - c0
        del images
        c0 = time.thread_time()
        for i, p in enumerate(paths):
            pipeline.process(pipeline.Task(i, str(p)), prep, limits, draft)
        t["process() total"] = time.thread_time() - c0
        for k, v in t.items():
            best[k] = min(best.get(k, float("inf")), v * 1e3 / len(paths))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None, help="use the first N images")
    ap.add_argument("--model-path", type=Path, default=None, help="a model folder")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument(
        "--workers", type=int, default=None, help="decode workers for index (default: library's)"
    )
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--decode", default="", help="decode modes to compare, comma-separated")
    ap.add_argument(
        "--resize", default="exact", help="exact (the reference's), fast (--fast-resize) or both"
    )
    ap.add_argument("--sample", type=int, default=200, help="photos for the per-photo CPU")
    ap.add_argument(
        "--data", type=Path, default=None, help="photos as split/label/x.jpg (default: clothing)"
    )
    args = ap.parse_args()

    files = dataset_files(args.limit, args.data)
    decodes = [m for m in args.decode.split(",") if m] or [""]
    resizes = [r for r in args.resize.split(",") if r]
    modes = [
        f"{d}/{r}" if r != "exact" or len(resizes) > 1 else d for r in resizes for d in decodes
    ]
    has_decode = "decode" in inspect.signature(Collection.add).parameters
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        data = tmpdir / "data"
        for f in files:
            dest = data / f.parent.name / f"{f.parent.parent.name}-{f.name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
        model_dir = args.model_path or write_model_folder(tmpdir / "resnet18")
        label = args.model_path.name if args.model_path else "resnet18-shaped (random weights)"

        emb = load_embedder(model_path=model_dir, threads=args.threads)
        prep = emb.preparer()
        staged = sorted(data.rglob("*.jpg"))
        photos = {
            r: per_photo_cpu(
                staged[: args.sample],
                load_embedder(model_path=model_dir, fast_resize=r == "fast").preparer(),
            )
            for r in resizes
        }
        tensors = [prep(decode_image(p.read_bytes()).image) for p in staged]
        emb.load()
        emb.embed(tensors[: args.batch_size], batch_size=args.batch_size)  # warm-up

        model_rates: list[float] = []
        model_cpu: list[float] = []
        e2e: dict[str, list[float]] = {m: [] for m in modes}
        ratios: dict[str, list[float]] = {m: [] for m in modes}
        for r in range(args.repeat):
            w0, c0 = time.perf_counter(), time.process_time()
            emb.embed(tensors, batch_size=args.batch_size)
            model_s, cpu_s = time.perf_counter() - w0, time.process_time() - c0
            model_rates.append(len(tensors) / model_s)
            model_cpu.append(cpu_s * 1e3 / len(tensors))
            print(f"[{r}] model only : {model_rates[-1]:7.1f} img/s ({model_s:.1f} s)", flush=True)
            for mode in modes:
                kwargs: dict[str, Any] = {"batch_size": args.batch_size, "workers": args.workers}
                decode, _, resize = mode.partition("/")
                if decode and has_decode:
                    kwargs["decode"] = decode
                coll = Collection.open(
                    tmpdir / f"coll-{r}-{mode.replace('/', '-')}",
                    model_path=model_dir,
                    threads=args.threads,
                    fast_resize=resize == "fast",
                )
                t0 = time.perf_counter()
                report = coll.add(data, **kwargs)
                e2e_s = time.perf_counter() - t0
                coll.close()
                rate = report.indexed / e2e_s
                e2e[mode].append(rate)
                ratios[mode].append(rate / model_rates[-1])
                print(
                    f"[{r}] end to end {mode or 'default':<9}: {rate:7.1f} img/s ({e2e_s:.1f} s, "
                    f"indexed {report.indexed}, skipped {report.skipped})  "
                    f"ratio {ratios[mode][-1]:.3f}",
                    flush=True,
                )

    m = statistics.median(model_cpu)
    print(
        f"\nimages={len(files)} batch={args.batch_size} threads={args.threads} "
        f"workers={args.workers if args.workers is not None else 'default'} "
        f"cores={os.cpu_count()} model={label} load={os.getloadavg()[0]:.1f}"
    )
    print(f"model CPU per image: {m:.2f} ms")
    for resize, photo in photos.items():
        p = photo["process() total"]
        print(
            f"{resize} resize: per-photo CPU (decode side) {p:.2f} ms ("
            + ", ".join(f"{k} {v:.2f}" for k, v in photo.items() if k != "process() total")
            + f"); bound when model and decoding share the cores m / (m + p) = {m / (m + p):.3f}"
        )
    print(f"model only : median {statistics.median(model_rates):7.1f} img/s")
    for mode in modes:
        print(
            f"end to end {mode or 'default':<9}: median {statistics.median(e2e[mode]):7.1f} img/s"
            f"  pipeline efficiency (end-to-end / model-only): median "
            f"{statistics.median(ratios[mode]):.3f}  runs "
            + " ".join(f"{x:.3f}" for x in ratios[mode])
        )
    assert all(np.isfinite(x) for v in e2e.values() for x in v)


if __name__ == "__main__":
    main()
