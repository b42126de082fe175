"""phash ingest: `lookalike index --model phash` images/s against imagehash.phash, same files, one run.

Ours is the whole ingest (read, sha256, full decode, pixel hash, phash, catalog, index);
imagehash is a plain loop of imagehash.phash(Image.open(path)) in this process.

    python benchmarks/phash_ingest.py [--limit N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import imagehash
from _data import dataset_files
from PIL import Image

from lookalike import Collection


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    files = dataset_files(args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        for f in files:
            dest = data / f.parent.name / f"{f.parent.parent.name}-{f.name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
        paths = sorted(data.rglob("*.jpg"))
        for p in paths:  # warm the page cache for both contenders
            p.read_bytes()

        t0 = time.perf_counter()
        for p in paths:
            with Image.open(p) as im:
                imagehash.phash(im)
        ih_s = time.perf_counter() - t0

        results = {}
        for label, workers in (
            ("lookalike (default workers)", None),
            ("lookalike (in-process, 1 core)", 0),
        ):
            coll = Collection.open(Path(tmp) / f"coll-{workers}", "phash")
            t0 = time.perf_counter()
            report = coll.add(data, workers=workers)
            results[label] = (time.perf_counter() - t0, report.indexed)
            coll.close()

    n = len(paths)
    ih_rate = n / ih_s
    print(f"images={n} cores={os.cpu_count()}")
    print(f"imagehash.phash loop           : {ih_rate:7.1f} img/s ({ih_s:.2f} s)")
    for label, (secs, indexed) in results.items():
        rate = indexed / secs
        print(f"{label:<31}: {rate:7.1f} img/s ({secs:.2f} s)  ratio {rate / ih_rate:.2f}x")
    print("target: default-workers ratio >= 4x")


if __name__ == "__main__":
    main()
