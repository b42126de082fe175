"""Near-duplicate groups at scale: 1M 64-bit hashes, Hamming distance <= 8, time and peak RSS.

Synthetic data: N random 64-bit hashes, of which P are planted copies of other hashes with
0-8 random bits flipped (a few chained copies of copies too). Each measurement runs in a
fresh process so its peak RSS (``resource.getrusage``) is its own:

* ``core``: multi-index hashing join + connected components on the numpy array
  (``lookalike.dedup.hamming``), the algorithm behind ``duplicates --level near``;
* ``collection``: end to end through a collection (``Collection.open_vectors`` with 64-bit
  binary vectors, then ``coll.duplicates("near", 8, hashes="phash")``: reads the catalog,
  joins, builds groups with keepers and scores);
* ``naive``: the brute-force baseline (FAISS ``IndexBinaryFlat.range_search``, every pair
  compared, no N x N matrix kept) on a subset, against ours on the same subset, and
  extrapolated quadratically to N.

Recall = planted pairs that end up in one group / planted pairs (must be 1.0: the join is
exact).

    python benchmarks/dedup_scale.py [--n 1000000] [--planted 100000] [--subset 100000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RADIUS = 8


def synthetic(n: int, planted: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes, and the planted (source, copy) index pairs."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**63, size=n, dtype=np.int64).view(np.uint64)
    codes ^= rng.integers(0, 2, size=n, dtype=np.uint64) << np.uint64(63)
    copies = rng.choice(n, size=planted, replace=False)
    copy_set = np.zeros(n, dtype=bool)
    copy_set[copies] = True
    pool = np.flatnonzero(~copy_set)
    sources = pool[rng.integers(0, len(pool), size=planted)]
    # one copy in ten copies a copy of an original (chains of two edits)
    chain = rng.random(planted) < 0.1
    first_copies = copies[~chain]
    sources[chain] = first_copies[rng.integers(0, len(first_copies), size=int(chain.sum()))]
    order = np.argsort(chain, kind="stable")  # copies of originals first, then of copies
    for k in order:
        src, dst = int(sources[k]), int(copies[k])
        if src == dst:
            continue
        bits = rng.choice(64, size=int(rng.integers(0, RADIUS + 1)), replace=False)
        mask = np.uint64(sum(1 << int(b) for b in bits))
        codes[dst] = codes[src] ^ mask
    keep = sources != copies
    return codes, sources[keep], copies[keep]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_core(n: int, planted: int) -> dict[str, float]:
    from lookalike.dedup.hamming import components, near_edges

    codes, src, dst = synthetic(n, planted)
    t0 = time.perf_counter()
    a, b = near_edges(codes, RADIUS)
    labels = components(n, a, b)
    elapsed = time.perf_counter() - t0
    grouped = labels != np.arange(n)
    n_groups = len(np.unique(labels[grouped | np.isin(np.arange(n), labels[grouped])]))
    recall = float((labels[src] == labels[dst]).mean())
    return {"seconds": elapsed, "peak_mb": peak_mb(), "recall": recall, "groups": n_groups}


def run_collection(n: int, planted: int) -> dict[str, float]:
    from lookalike import Collection

    codes, src, dst = synthetic(n, planted)
    rows = np.frombuffer(codes.astype(">u8").tobytes(), dtype=np.uint8).reshape(n, 8)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        coll = Collection.open_vectors(Path(tmp) / "c", 64, metric="hamming", name="phash-synth")
        coll.add_vectors([f"h{i}" for i in range(n)], rows)
        build = time.perf_counter() - t0
        coll.close()
        del rows
        coll = Collection.open(Path(tmp) / "c")
        t0 = time.perf_counter()
        groups = coll.duplicates("near", RADIUS, hashes="phash")
        elapsed = time.perf_counter() - t0
        group_of: dict[str, int] = {}
        for g in groups:
            for m in g.members:
                group_of[m.id] = g.number
        found = sum(
            1
            for s, d in zip(src.tolist(), dst.tolist(), strict=True)
            if f"h{s}" in group_of and group_of.get(f"h{s}") == group_of.get(f"h{d}")
        )
        coll.close()
    return {
        "seconds": elapsed,
        "build_seconds": build,
        "peak_mb": peak_mb(),
        "recall": found / len(src),
        "groups": len(groups),
    }


def run_naive(n: int, planted: int, subset: int) -> dict[str, float]:
    import faiss

    from lookalike.dedup.hamming import hamming_pairs

    codes, _, _ = synthetic(n, planted)
    sub = np.ascontiguousarray(codes[:subset])
    rows = np.frombuffer(sub.astype(">u8").tobytes(), dtype=np.uint8).reshape(subset, 8)
    index = faiss.IndexBinaryFlat(64)
    index.add(rows)
    t0 = time.perf_counter()
    lims, dist, ids = index.range_search(rows, RADIUS + 1)  # strict: distance < radius + 1
    naive = time.perf_counter() - t0
    q = np.repeat(np.arange(subset), np.diff(lims).astype(np.int64))
    naive_pairs = {(int(x), int(y)) for x, y in zip(q, ids, strict=True) if x < y}
    t0 = time.perf_counter()
    i, j, _ = hamming_pairs(sub, RADIUS)
    ours = time.perf_counter() - t0
    same = naive_pairs == set(zip(i.tolist(), j.tolist(), strict=True))
    return {
        "subset": subset,
        "naive_seconds": naive,
        "ours_seconds": ours,
        "same_pairs": float(same),
        "naive_extrapolated_seconds": naive * (n / subset) ** 2,
        "pairs": len(naive_pairs),
    }


def child(part: str, args: argparse.Namespace) -> dict[str, float]:
    cmd = [
        sys.executable,
        __file__,
        "--part",
        part,
        "--n",
        str(args.n),
        "--planted",
        str(args.planted),
    ]
    cmd += ["--subset", str(args.subset)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--planted", type=int, default=100_000)
    ap.add_argument("--subset", type=int, default=100_000)
    ap.add_argument("--part", choices=["core", "collection", "naive"])
    args = ap.parse_args()
    if args.part:
        fn = {"core": run_core, "collection": run_collection}.get(args.part)
        res = fn(args.n, args.planted) if fn else run_naive(args.n, args.planted, args.subset)
        print(json.dumps(res))
        return
    print(f"{args.n:,} random 64-bit hashes, {args.planted:,} planted copies at Hamming 0-{RADIUS}")
    core = child("core", args)
    print(
        f"core join + components: {core['seconds']:.1f} s, peak RSS {core['peak_mb']:.0f} MB, "
        f"{core['groups']:,.0f} groups, planted pairs found {core['recall']:.4f}"
    )
    coll = child("collection", args)
    print(
        f"through a collection:   {coll['seconds']:.1f} s, peak RSS {coll['peak_mb']:.0f} MB, "
        f"{coll['groups']:,.0f} groups, planted pairs found {coll['recall']:.4f} "
        f"(building the collection: {coll['build_seconds']:.0f} s, not counted)"
    )
    naive = child("naive", args)
    print(
        f"brute force (faiss IndexBinaryFlat range_search) on {naive['subset']:,.0f} hashes: "
        f"{naive['naive_seconds']:.1f} s vs ours {naive['ours_seconds']:.1f} s "
        f"({naive['naive_seconds'] / naive['ours_seconds']:.1f}x), same pairs: "
        f"{bool(naive['same_pairs'])}; brute force extrapolated to {args.n:,}: "
        f"{naive['naive_extrapolated_seconds']:.0f} s"
    )
    target = core["seconds"] <= 120 and core["peak_mb"] <= 2048 and core["recall"] == 1.0
    print(f"target (<= 120 s, <= 2 GB, all planted pairs found): {'met' if target else 'NOT met'}")


if __name__ == "__main__":
    main()
