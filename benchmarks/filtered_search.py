"""Filtered search (``--where``) latency and recall at several selectivities.

100k items x 512-d clustered vectors (a Gaussian mixture of clusters of different sizes and
spreads) with metadata: ``label`` among 1,000 values, ``price`` uniform in [0, 100). An
IVF-SQ8 collection (``Collection.open_vectors`` + ``add_vectors``). For each filter:
single-thread p50/p99 of ``Collection.search_vector(vec, 10, where=...)`` over held-out
queries (near the data, not stored), the path taken (matching items scored directly, or the
index with a FAISS id selector), the first call's time (the SQL scan that lists the matching
items; later calls reuse it), and recall@10 against exact filtered search (brute force over
the matching items).

    python benchmarks/filtered_search.py [--n 100000] [--dim 512] [--queries 200]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

from lookalike import Collection  # noqa: E402
from lookalike.search import filtered  # noqa: E402
from lookalike.search.where import parse_where  # noqa: E402

K = 10


def mixture(n: int, dim: int, seed: int, clusters: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors (cluster sizes Zipf-like, spreads varied) and held-out seeds."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.7
    which = rng.choice(clusters, n, p=weights / weights.sum())
    spread = rng.uniform(0.5, 1.2, clusters).astype(np.float32)[which, None]
    x = centres[which] + spread * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), which


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dir", default=None, help="where to build the collection (temporary)")
    args = ap.parse_args()

    rng = np.random.default_rng(7)
    vecs, _ = mixture(args.n, args.dim, seed=1)
    labels = [f"l{int(v)}" for v in rng.integers(0, 1000, args.n)]
    prices = rng.uniform(0, 100, args.n)
    meta = [{"price": round(float(p), 2)} for p in prices]
    prices = np.array([m["price"] for m in meta])
    pick = rng.choice(args.n, args.queries, replace=False)
    q = vecs[pick] + 0.4 / np.sqrt(args.dim) * rng.standard_normal((args.queries, args.dim)).astype(
        np.float32
    )
    queries = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        t0 = time.perf_counter()
        coll = Collection.open_vectors(Path(tmp) / "c", args.dim)
        coll.index.configure("ivf-sq8")
        coll.add_vectors([f"i{i}" for i in range(args.n)], vecs, labels=labels, metadata=meta)
        info = coll.index.info()
        print(
            f"{args.n} items x {args.dim} dims, {info['type']} {info.get('params')}, "
            f"built in {time.perf_counter() - t0:.0f} s; queries: {args.queries}; "
            f"SCAN_MAX {filtered.SCAN_MAX}"
        )
        label_arr = np.array(labels)
        cases = [
            ("none (unfiltered)", None, np.ones(args.n, dtype=bool)),
            ("0.1 %", "label = 'l7'", label_arr == "l7"),
            ("1 %", "price < 1", prices < 1),
            ("10 %", "price < 10", prices < 10),
            ("50 %", "price < 50", prices < 50),
            (
                "5 % (and/in)",
                "label in ('l1', 'l2', 'l3', 'l4', 'l5') or (price >= 20 and price < 24.5)",
                np.isin(label_arr, ["l1", "l2", "l3", "l4", "l5"])
                | ((prices >= 20) & (prices < 24.5)),
            ),
        ]
        print(
            "| selectivity | filter | matching | path | first call ms | p50 ms | p99 ms "
            "| exact p50 ms | recall@10 |"
        )
        print("|---|---|---:|---|---:|---:|---:|---:|---:|")
        for name, expr, mask in cases:
            where = parse_where(expr) if expr else None
            if where is not None:  # the SQL and Python evaluations agree with the mask
                rows = zip(labels, meta, strict=True)
                assert np.array_equal(mask, np.array([where.matches(lab, m) for lab, m in rows]))
            ok = np.nonzero(mask)[0]
            t = time.perf_counter()
            coll.search_vector(queries[0], K, where=where)
            first = (time.perf_counter() - t) * 1000
            lat, exact_lat, found = [], [], 0
            for qv in queries:
                t = time.perf_counter()
                hits = coll.search_vector(qv, K, where=where)
                lat.append(time.perf_counter() - t)
                t = time.perf_counter()
                scores = vecs[ok] @ qv
                top = ok[np.argsort(-scores, kind="stable")[:K]]
                exact_lat.append(time.perf_counter() - t)
                found += len({int(h.id[1:]) for h in hits} & {int(i) for i in top})
            path = "index" if where is None or len(ok) > filtered.SCAN_MAX else "scan"
            if where is not None and path == "index":
                path = "index + id selector"
            ms = np.array(lat) * 1000
            print(
                f"| {name} | `{expr or '-'}` | {len(ok)} | {path} | {first:.1f} "
                f"| {np.percentile(ms, 50):.2f} | {np.percentile(ms, 99):.2f} "
                f"| {np.percentile(np.array(exact_lat) * 1000, 50):.2f} "
                f"| {found / (min(K, len(ok)) * len(queries)):.3f} |"
            )
        coll.close()


if __name__ == "__main__":
    main()
