"""Million-scale ANN search: lookalike's `auto` index against hnswlib, annoy and FAISS defaults.

One run, same vectors, same held-out queries. Data: a clustered Gaussian mixture (clusters
of different sizes and spreads, realistic neighbourhoods rather than iid noise), optionally
plus 512-d colour/layout features computed from the clothing photos (``--clothing``).

For each method: build seconds, index memory (bytes of its saved index: what it keeps in
RAM), and single-thread QPS at the best setting reaching recall@10 >= 0.90 / 0.95 / 0.99
(knob swept: ef, search_k, nprobe...). Then for lookalike: p50/p99 of ``id:`` searches through
the whole API, time to open a collection and answer a first search in a new process, and
``neighbors --all -k 10`` over every item.

    python benchmarks/ann.py [--n 1000000] [--dim 512] [--queries 1000] [--quick]
                             [--skip annoy,faiss] [--clothing] [--no-neighbors]

Needs the ``bench`` extra (hnswlib, annoy, psutil) and pyarrow.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lookalike import Collection
from lookalike.neighbors import write_neighbors_table

K = 10
TARGETS = (0.90, 0.95, 0.99)


def mixture(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors from a Gaussian mixture with Zipf-sized clusters of varying spread."""
    rng = np.random.default_rng(seed)
    clusters = max(10, n // 1000)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.7
    assign = rng.choice(clusters, n, p=weights / weights.sum())
    spread = rng.uniform(0.25, 0.6, clusters).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        a = assign[start : start + 100_000]
        noise = rng.standard_normal((len(a), dim)).astype(np.float32)
        out[start : start + len(a)] = centres[a] + spread[a, None] * noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def clothing_features(dim: int) -> np.ndarray:
    """512-d features of the clothing photos: an 8x8 RGB thumbnail (192 values) plus a
    colour histogram, projected to ``dim`` by a fixed random matrix, centred, unit length."""
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _data import dataset_files

    feats = []
    for path in dataset_files():
        with Image.open(path) as im:
            rgb = im.convert("RGB")
            thumb = np.asarray(rgb.resize((8, 8)), dtype=np.float32).ravel() / 255.0
            small = np.asarray(rgb.resize((64, 64)), dtype=np.int64).reshape(-1, 3) // 32
            hist = np.bincount(small[:, 0] * 64 + small[:, 1] * 8 + small[:, 2], minlength=512)
        feats.append(np.concatenate([thumb, hist / hist.sum() * 8.0]).astype(np.float32))
    x = np.stack(feats)
    proj = np.random.default_rng(5).standard_normal((x.shape[1], dim)).astype(np.float32)
    y = (x - x.mean(axis=0)) @ proj
    return (y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32)


def ground_truth(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    _, ids = index.search(queries, K)
    return ids


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(np.intersect1d(f, t)) / K for f, t in zip(found, truth, strict=True)])
    )


def sweep(
    search: Callable[[np.ndarray], np.ndarray],
    set_knob: Callable[[int], None],
    values: list[int],
    queries: np.ndarray,
    truth: np.ndarray,
) -> list[tuple[int, float, float]]:
    """(knob, recall, single-thread QPS) per value; stops once recall reaches 0.995."""
    out = []
    for v in values:
        set_knob(v)
        search(queries[:50])  # warm up
        t0 = time.perf_counter()
        ids = search(queries)
        qps = len(queries) / (time.perf_counter() - t0)
        r = recall(ids, truth)
        out.append((v, r, qps))
        if r >= 0.995:
            break
    return out


def qps_at(
    points: list[tuple[int, float, float]], target: float
) -> tuple[float | None, int | None]:
    ok = [(q, v) for v, r, q in points if r >= target]
    if not ok:
        return None, None
    q, v = max(ok)
    return q, v


def dir_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def single_thread() -> None:
    import faiss

    faiss.omp_set_num_threads(1)


def all_threads() -> None:
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)


def bench_ours(
    tmp: Path,
    base: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    kind: str = "auto",
) -> dict[str, Any]:
    root = tmp / f"coll-{kind}"
    coll = Collection.open_vectors(root, base.shape[1])
    coll.index.configure(kind)
    ids = [f"item{i}" for i in range(len(base))]
    t0 = time.perf_counter()
    coll.add_vectors(ids, base)
    total_build = time.perf_counter() - t0
    info = coll.index.info()
    store: Any = coll.index.store()
    single_thread()
    row: dict[str, Any] = {
        "method": f"lookalike {kind}",
        "params": f"{info['type']} "
        + ",".join(f"{k}={v}" for k, v in sorted(info["params"].items()) if k != "storage"),
        "build_s": info["build_seconds"],
        "memory": info["memory_bytes"],
        "extra": {"info": info, "total_add_s": total_build},
    }
    if hasattr(store, "knob"):
        tuned = store.params[store.knob]
        points = sweep(
            lambda q: store.search(q, K)[1],
            lambda v: store.params.__setitem__(store.knob, v),
            list(store.ladder),
            queries,
            truth,
        )
        store.params[store.knob] = tuned
    else:
        points = sweep(lambda q: store.search(q, K)[1], lambda v: None, [0], queries, truth)
    row["points"] = points
    # id: searches through the whole API (catalog lookup, vector read, index, hits)
    rng = np.random.default_rng(3)
    lat = []
    for i in rng.integers(0, len(base), 1000):
        t = time.perf_counter()
        coll.search(f"id:item{i}", k=K)
        lat.append((time.perf_counter() - t) * 1000)
    row["extra"]["id_p50_ms"] = float(np.percentile(lat, 50))
    row["extra"]["id_p99_ms"] = float(np.percentile(lat, 99))
    all_threads()
    coll.close()
    # a new process: import, open, first `id:` search
    code = (
        "import time; t=time.perf_counter(); from lookalike import Collection; "
        f"c=Collection.open({str(root)!r}); c.search('id:item1', k=10); "
        "print(time.perf_counter()-t)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    row["extra"]["cold_open_search_s"] = float(proc.stdout.strip().splitlines()[-1])
    row["extra"]["root"] = root
    return row


def bench_neighbors(root: Path, out: Path) -> tuple[float, int]:
    """``neighbors --all -k 10`` over the whole collection (all cores)."""
    all_threads()
    coll = Collection.open(root)
    t0 = time.perf_counter()
    n_rows = write_neighbors_table(coll, K, out)
    coll.close()
    return time.perf_counter() - t0, n_rows


def bench_hnswlib(base: np.ndarray, queries: np.ndarray, truth: np.ndarray, tmp: Path) -> Any:
    import hnswlib

    index = hnswlib.Index(space="ip", dim=base.shape[1])
    t0 = time.perf_counter()
    index.init_index(max_elements=len(base), M=16, ef_construction=200)
    index.set_num_threads(os.cpu_count() or 1)
    index.add_items(base, np.arange(len(base)))
    build = time.perf_counter() - t0
    index.save_index(str(tmp / "hnswlib.bin"))
    mem = dir_bytes(tmp / "hnswlib.bin")
    index.set_num_threads(1)
    points = sweep(
        lambda q: index.knn_query(q, k=K)[0],
        index.set_ef,
        [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024],
        queries,
        truth,
    )
    (tmp / "hnswlib.bin").unlink()
    return {
        "method": "hnswlib",
        "params": "M=16,ef_construction=200",
        "build_s": build,
        "memory": mem,
        "points": points,
    }


def bench_faiss(base: np.ndarray, queries: np.ndarray, truth: np.ndarray, tmp: Path) -> Any:
    import faiss

    all_threads()
    index = faiss.index_factory(base.shape[1], "HNSW32", faiss.METRIC_INNER_PRODUCT)
    t0 = time.perf_counter()
    index.add(base)
    build = time.perf_counter() - t0
    faiss.write_index(index, str(tmp / "faiss.index"))
    mem = dir_bytes(tmp / "faiss.index")
    (tmp / "faiss.index").unlink()
    single_thread()

    def set_ef(v: int) -> None:
        index.hnsw.efSearch = v

    points = sweep(
        lambda q: index.search(q, K)[1],
        set_ef,
        [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024],
        queries,
        truth,
    )
    all_threads()
    return {
        "method": "faiss HNSW32 (defaults)",
        "params": "M=32,efConstruction=40",
        "build_s": build,
        "memory": mem,
        "points": points,
    }


def bench_annoy(base: np.ndarray, queries: np.ndarray, truth: np.ndarray, tmp: Path) -> Any:
    from annoy import AnnoyIndex

    trees = 50
    index = AnnoyIndex(base.shape[1], "angular")
    t0 = time.perf_counter()
    for i, v in enumerate(base):
        index.add_item(i, v)
    index.build(trees, n_jobs=-1)
    build = time.perf_counter() - t0
    index.save(str(tmp / "annoy.ann"))
    mem = dir_bytes(tmp / "annoy.ann")
    knob = {"search_k": -1}

    def search(q: np.ndarray) -> np.ndarray:
        return np.array([index.get_nns_by_vector(row, K, search_k=knob["search_k"]) for row in q])

    points = sweep(
        search,
        lambda v: knob.__setitem__("search_k", v),
        [k * trees * K for k in (1, 2, 4, 8, 16, 32, 64)],
        queries,
        truth,
    )
    index.unload()
    (tmp / "annoy.ann").unlink()
    return {
        "method": "annoy",
        "params": f"n_trees={trees}",
        "build_s": build,
        "memory": mem,
        "points": points,
    }


def fmt(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    ref = next((r for r in rows if r["method"] == "hnswlib"), None)
    print(f"\n{title}")
    head = (
        f"{'method':<24} {'params':<38} {'build s':>8} {'memory MB':>10} "
        f"{'QPS@0.90':>9} {'QPS@0.95':>9} {'QPS@0.99':>9} {'QPS/hnswlib@0.95':>17} "
        f"{'mem/hnswlib':>12}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        qps = [qps_at(r["points"], t)[0] for t in TARGETS]
        ratio_q = ratio_m = "-"
        if ref is not None:
            ref_q = qps_at(ref["points"], 0.95)[0]
            if qps[1] is not None and ref_q:
                ratio_q = f"{qps[1] / ref_q:.2f}x"
            ratio_m = f"{r['memory'] / ref['memory']:.2f}x"
        print(
            f"{r['method']:<24} {r['params'][:38]:<38} {r['build_s']:>8.1f} "
            f"{r['memory'] / 2**20:>10.1f} {fmt(qps[0]):>9} {fmt(qps[1]):>9} {fmt(qps[2]):>9} "
            f"{ratio_q:>17} {ratio_m:>12}"
        )


def run(args: argparse.Namespace, base: np.ndarray, queries: np.ndarray, title: str) -> None:
    skip = set(filter(None, args.skip.split(",")))
    print(f"\n== {title}: {len(base):,} vectors x {base.shape[1]} dims, {len(queries)} queries")
    t0 = time.perf_counter()
    truth = ground_truth(base, queries)
    print(f"exact ground truth: {time.perf_counter() - t0:.1f} s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp_name:
        tmp = Path(tmp_name)
        for i, kind in enumerate(args.ours.split(",")):
            row = bench_ours(tmp, base, queries, truth, kind)
            rows.append(row)
            print(f"lookalike {kind} done ({row['build_s']:.1f} s build)", flush=True)
            if i == 0:
                ours = row
        for name, fn in (
            ("hnswlib", bench_hnswlib),
            ("faiss", bench_faiss),
            ("annoy", bench_annoy),
        ):
            if name in skip:
                continue
            rows.append(fn(base, queries, truth, tmp))
            print(f"{name} done ({rows[-1]['build_s']:.1f} s build)", flush=True)
            gc.collect()
        report(rows, ours, base, title)
        if not args.no_neighbors:
            secs, n_rows = bench_neighbors(ours["extra"]["root"], tmp / "neighbors.parquet")
            print(
                f"neighbors --all -k {K}: {secs:.1f} s for {len(base):,} items ({n_rows:,} rows)",
                flush=True,
            )


def report(rows: list[dict[str, Any]], ours: dict[str, Any], base: np.ndarray, title: str) -> None:
    print_table(rows, f"{title}: N={len(base):,}, d={base.shape[1]}, k={K}, single-thread QPS")
    for r in rows:
        pts = ", ".join(f"{v}:{rc:.3f}/{q:,.0f}" for v, rc, q in r["points"])
        print(f"  {r['method']} sweep (knob:recall/QPS): {pts}")
    e = ours["extra"]
    info = e["info"]
    lat = info.get("latency_ms") or {}
    print(
        f"lookalike index: {info['type']} params {info['params']}; build-time measured "
        f"recall@10 {info['recall_at_10']} on {info.get('recall_queries')} held-out items, "
        f"p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, memory {info['memory_bytes'] / 2**20:.1f} MB"
    )
    print(
        f"lookalike add_vectors total (vectors.bin + catalog + index + tuning): "
        f"{e['total_add_s']:.1f} s"
    )
    print(f"id: search through the API: p50 {e['id_p50_ms']:.2f} ms, p99 {e['id_p99_ms']:.2f} ms")
    print(f"new process: import + open + first search: {e['cold_open_search_s']:.2f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="20k vectors, 200 queries")
    ap.add_argument("--skip", default="", help="comma list of peers to skip: hnswlib,faiss,annoy")
    ap.add_argument(
        "--ours", default="auto", help="lookalike index types to run, e.g. auto,ivf-sq8"
    )
    ap.add_argument("--clothing", action="store_true", help="also the clothing-photo features")
    ap.add_argument("--no-neighbors", action="store_true", help="skip neighbors --all")
    ap.add_argument("--tmp", default=None, help="folder for temporary collections")
    args = ap.parse_args()
    if args.quick:
        args.n, args.queries = 20_000, 200
    import lookalike.store.planning as indexes

    print(f"cores: {os.cpu_count()}, auto exact threshold: {indexes.AUTO_EXACT_MAX:,} items")
    data = mixture(args.n + args.queries, args.dim)
    run(args, data[: args.n], data[args.n :], "Gaussian mixture")
    del data
    gc.collect()
    if args.clothing:
        feats = clothing_features(args.dim)
        rng = np.random.default_rng(9)
        q = rng.choice(len(feats), 200, replace=False)
        rest = np.setdiff1d(np.arange(len(feats)), q)
        # a small set: lower the exact threshold and IVF minimum to compare the ANN path
        indexes.AUTO_EXACT_MAX = 1_000
        indexes.MIN_ITEMS["ivf-sq8"] = 1_000
        run(args, feats[rest], feats[q], "clothing photos (auto threshold lowered to 1,000)")


if __name__ == "__main__":
    main()
