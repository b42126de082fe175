"""Search latency of `id:` queries on a 100k-item collection: the auto index, then exact.

Vectors are a clustered Gaussian mixture (realistic neighbourhoods, not iid noise), added
through the public ``Collection.add_vectors``. Each query goes through the whole API path:
catalog lookup, stored-vector read, index search, hit assembly.

    python benchmarks/search_latency.py [--items 100000] [--dim 512] [--queries 500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from lookalike import Collection


def mixture(n: int, dim: int, clusters: int = 1000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    assign = rng.integers(0, clusters, n)
    out = centres[assign] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("-k", type=int, default=10)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "coll"
        coll = Collection.open_vectors(root, args.dim)
        vecs = mixture(args.items, args.dim)
        ids = [f"item{i}" for i in range(args.items)]
        t0 = time.perf_counter()
        coll.add_vectors(ids, vecs)
        build = time.perf_counter() - t0
        coll.close()

        print(f"items={args.items} dim={args.dim} k={args.k} queries={args.queries}")
        print(f"add_vectors (vectors, catalog, auto index + its tuning): {build:.1f} s")
        rng = np.random.default_rng(1)
        picks = rng.integers(0, args.items, args.queries)
        for requested in ("auto", "flat"):
            if requested != "auto":
                with Collection.open(root) as c:
                    c.index.configure(requested)
                    c.index.ensure()
            t0 = time.perf_counter()
            coll = Collection.open(root)
            coll.search("id:item0", k=args.k)  # first query loads the index
            first = time.perf_counter() - t0
            lat = []
            for q in picks:
                t = time.perf_counter()
                hits = coll.search(f"id:item{q}", k=args.k)
                lat.append(time.perf_counter() - t)
                assert len(hits) == args.k
            kind = coll.info()["index"]["type"]
            coll.close()
            ms = np.array(lat) * 1000
            print(
                f"{requested:>4} -> {kind:<8} open + first query {first * 1000:6.0f} ms   "
                f"id: search p50={np.percentile(ms, 50):.2f} ms  p99={np.percentile(ms, 99):.2f} ms  "
                f"mean={ms.mean():.2f} ms"
            )


if __name__ == "__main__":
    main()
