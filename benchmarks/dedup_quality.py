"""Duplicate-finder quality per edit type: ours (exact, near at several thresholds, similar)
against imagehash's phash, dhash and whash, on one generated test set, in one run.

The test set is made by ``lookalike.dedup.testset.make_duplicate_set`` from the clothing dataset:
N originals, one copy per edit (copy, lossless, resize, recompress, crop 5-20 %, flip,
rotate 1-5 degrees, brightness/contrast, text, logo, pad, border) and M distractors.

Thresholds: for every hash method, the table shows the largest Hamming threshold whose
overall pair precision is >= 0.99 (the sweep is printed too), so all methods are compared
at the same precision. ``ours near`` is the default (phash + dHash bits, 0-128, smallest
over the image, its mirror and its trimmed content); ``ours near phash-only`` is
``--hashes phash`` (the stored 64-bit phash). ``similar`` uses colour-histogram vectors (512-bin RGB histogram,
Hellinger / square-root normalised) because no pretrained embedding model can be
downloaded on this machine: it is a weak, honestly labelled stand-in.

``--model-path DIR`` indexes the collection "ours" reads with that model instead of
``phash``: its stored phash then comes from the float-model pipeline (taken from the image
resized for the model) and its pixel hashes from full decoding. ``--set-dir DIR`` keeps the
generated test set there and reuses it on the next run (same arguments, same set).

    python benchmarks/dedup_quality.py [--originals 300] [--distractors 600]
        [--model-path DIR [--fast-resize]] [--set-dir DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from _data import DATASET
from PIL import Image

from lookalike import Collection
from lookalike.dedup.evaluate import PRF, Truth, evaluate, groups_from_finder, read_ground_truth
from lookalike.dedup.hamming import components, near_edges
from lookalike.dedup.testset import make_duplicate_set

THRESHOLDS = list(range(0, 17))
TARGET_PRECISION = 0.99


def _imagehashes(path: str) -> tuple[int, int, int]:
    with Image.open(path) as im:
        return tuple(  # type: ignore[return-value]
            int(str(fn(im)), 16) for fn in (imagehash.phash, imagehash.dhash, imagehash.whash)
        )


def _histogram(path: str) -> np.ndarray:
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB").resize((128, 128)), dtype=np.int64) // 32
    bins = rgb[..., 0] * 64 + rgb[..., 1] * 8 + rgb[..., 2]
    h = np.bincount(bins.ravel(), minlength=512).astype(np.float32)
    return np.sqrt(h / h.sum())


def groups_from_codes(paths: list[str], codes: np.ndarray, t: int) -> list[list[str]]:
    a, b = near_edges(codes, t)
    labels = components(len(paths), a, b)
    by: dict[int, list[str]] = {}
    for i, lab in enumerate(labels.tolist()):
        by.setdefault(lab, []).append(paths[i])
    return [g for g in by.values() if len(g) > 1]


def sweep(
    name: str, make: Callable[[Any], list[list[str]]], values: list[Any], truth: Truth
) -> tuple[Any, dict[str, Any]]:
    """Evaluate every value; return the largest one with precision >= target (or the most
    precise one when none reaches it)."""
    line = []
    chosen: tuple[Any, dict[str, Any]] | None = None
    best_p: tuple[float, Any, dict[str, Any]] | None = None
    for v in values:
        res = evaluate(make(v), truth)
        p = res["pairs"].precision
        p = 1.0 if p is None else p
        line.append(f"{v}:{p:.3f}/{res['pairs'].recall or 0:.3f}")
        if p >= TARGET_PRECISION:
            chosen = (v, res)
        if best_p is None or p > best_p[0]:
            best_p = (p, v, res)
    print(f"  {name:<16} threshold:precision/recall  " + "  ".join(line))
    if chosen is None:
        assert best_p is not None
        chosen = (best_p[1], best_p[2])
    return chosen


def fmt(x: float | None) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--originals", type=int, default=300)
    ap.add_argument("--distractors", type=int, default=600)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model-path", type=Path, default=None, help="index with this model")
    ap.add_argument("--set-dir", type=Path, default=None, help="keep/reuse the test set here")
    ap.add_argument(
        "--fast-resize", action="store_true", help="index with --fast-resize (needs --model-path)"
    )
    args = ap.parse_args()
    if not DATASET.is_dir():
        raise SystemExit(f"benchmark data not found: {DATASET}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = args.set_dir or Path(tmp) / "set"
        gt = out / "ground_truth.csv"
        if not gt.is_file():
            gt = make_duplicate_set(
                DATASET, out, originals=args.originals, distractors=args.distractors, seed=0
            )
        truth = read_ground_truth(gt)
        paths = sorted(truth.group)
        print(
            f"test set: {args.originals} originals x {len(set(truth.edit.values())) - 2} edits "
            f"+ {args.distractors} distractors = {len(paths)} images "
            f"({time.perf_counter() - t0:.0f} s)"
        )

        t0 = time.perf_counter()
        if args.model_path is not None:
            coll = Collection.open(
                Path(tmp) / "c", model_path=args.model_path, fast_resize=args.fast_resize
            )
        else:
            coll = Collection.open(Path(tmp) / "c", "phash")
        coll.add(out, workers=args.workers)
        print(f"indexed with {coll.embedder.name} in {time.perf_counter() - t0:.0f} s")

        t0 = time.perf_counter()
        with multiprocessing.Pool(args.workers) as pool:
            ih = np.array(pool.map(_imagehashes, paths, chunksize=32), dtype=np.uint64)
            hist = np.stack(pool.map(_histogram, paths, chunksize=32))
        print(
            f"imagehash phash/dhash/whash + colour histograms in {time.perf_counter() - t0:.0f} s"
        )

        hc = Collection.open_vectors(Path(tmp) / "h", 512, name="colour-histogram")
        hc.add_vectors(paths, hist)
        truth_by_id = truth  # ids of the histogram collection are the resolved paths

        results: dict[str, tuple[Any, dict[str, Any]]] = {}
        t0 = time.perf_counter()
        coll.duplicates("near")  # computes the extra hashes once (cached)
        print(
            "extra hashes (dHash; phash + dHash of the mirror and of the trimmed image) "
            f"computed in {time.perf_counter() - t0:.1f} s"
        )
        print("\nthreshold sweeps (pair precision/recall):")
        results["ours exact"] = (
            "-",
            evaluate(groups_from_finder(coll.duplicates("exact"), "path"), truth),
        )
        results["ours near"] = sweep(
            "ours near",
            lambda t: groups_from_finder(coll.duplicates("near", t), "path"),
            list(range(0, 25, 2)),
            truth,
        )
        results["ours near phash-only"] = sweep(
            "near phash-only",
            lambda t: groups_from_finder(coll.duplicates("near", t, hashes="phash"), "path"),
            THRESHOLDS,
            truth,
        )
        for k, name in enumerate(("imagehash phash", "imagehash dhash", "imagehash whash")):
            codes = np.ascontiguousarray(ih[:, k])
            results[name] = sweep(
                name, lambda t, c=codes: groups_from_codes(paths, c, t), THRESHOLDS, truth
            )
        results["similar (colour hist)"] = sweep(
            "similar/hist",
            lambda t: [[m.id for m in g.members] for g in hc.duplicates("similar", t)],
            [0.90, 0.95, 0.97, 0.98, 0.99, 0.995],
            truth_by_id,
        )

        names = list(results)
        print("\nper edit type, each method at its threshold (precision / recall / F1):")
        header = f"{'edit':<20}" + "".join(f"{n + ' @' + str(results[n][0]):>24}" for n in names)
        print(header)
        edits = list(next(iter(results.values()))[1]["per_edit"])
        rows: list[tuple[str, list[PRF]]] = [
            ("ALL PAIRS", [results[n][1]["pairs"] for n in names]),
            ("GROUPS (exact)", [results[n][1]["groups"] for n in names]),
        ] + [(e, [results[n][1]["per_edit"][e] for n in names]) for e in edits]
        for label, prfs in rows:
            print(
                f"{label:<20}"
                + "".join(
                    f"{fmt(p.precision) + ' / ' + fmt(p.recall) + ' / ' + fmt(p.f1):>24}"
                    for p in prfs
                )
            )

        print("\nrecall at precision >= 0.99: ours near vs the best imagehash method")
        ih_names = [n for n in names if n.startswith("imagehash")]
        for e in edits:
            if e == "distractor":
                continue
            ours = results["ours near"][1]["per_edit"][e].recall or 0.0
            best = max(ih_names, key=lambda n: results[n][1]["per_edit"][e].recall or 0.0)
            theirs = results[best][1]["per_edit"][e].recall or 0.0
            verdict = "ok" if ours >= theirs - 1e-9 else "BEHIND"
            print(f"  {e:<20} ours {ours:.3f}   best imagehash {theirs:.3f} ({best})  {verdict}")
        coll.close()
        hc.close()


if __name__ == "__main__":
    main()
