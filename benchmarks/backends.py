"""Embedded FAISS store against Milvus Lite and a real Milvus server, side by side in one run.

Part 1, the same N x D vectors (a clustered Gaussian mixture, default 200k x 512) in:
  * the embedded store (``Collection.add_vectors``, index ``auto``: IVF-SQ8 tuned to recall 0.95),
  * Milvus Lite (``ivf-flat``, nlist 512, nprobe 16: Lite has no IVF_SQ8),
  * the Milvus standalone server (the replaced pipeline's ``ivf-sq8``, nlist 512, nprobe 16;
    and ``hnsw``),
reporting build time (on the server: inserting, merging the small segments, indexing and
loading), recall@10 against exact search (FAISS flat) on held-out queries, and single-query
p50/p99 in-process.

Part 2, the real MobileNetV2 collection of the clothing photos (``--model-path``,
``--photos``; skipped when absent): the same measurements on its 1280-d vectors.

Part 3, serving ``GET /items/{id}/similar`` with C clients for T seconds through
``lookalike serve``: the embedded folder; then the folder published to the Milvus server
and Redis (``index --store milvus --metadata``), once as IVF_SQ8 (the replaced pipeline's)
and once as HNSW (``--index auto`` on Milvus), each served by one stateless replica and by
two replicas sharing Milvus and Redis (clients alternate between them). Throughput and p99,
each after a 2 s warm-up of the same load.

Within minutes of a bulk load, Milvus merges small segments and indexes the merged ones, by
itself. Before serving, the benchmark asks for that compaction at once and waits for it and
for the index; every Milvus measurement then starts once the server's process has been
quiet (under 0.15 cores) for 6 s, so that serving is measured in the steady state.

Everything runs on 127.0.0.1: redis-server (Debian's) and the Milvus server (PyPI
``milvus==2.3.5``) are started here and stopped at the end.

    python benchmarks/backends.py [--items 200000] [--dim 512] [--clients 16] [--seconds 10]
        [--parts vectors,clothing,serving] [--served ivf-sq8,hnsw]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from backends_serving import part_serving, settle  # noqa: E402
from load import free_port, pct  # noqa: E402  (benchmarks/load.py)
from search_latency import mixture as clustered  # noqa: E402
from services_milvus import MilvusProcess  # noqa: E402  (the tests' server launcher)

from lookalike import Collection  # noqa: E402
from lookalike.distributed.tuning import RECALL_TARGET, tune_search  # noqa: E402
from lookalike.store.milvus import MilvusVectors  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODEL = SHARED / "models" / "mobilenet-v2-imagenet"
PHOTOS = SHARED / "datasets" / "clothing-small"


def mixture(n: int, dim: int) -> np.ndarray:
    """search_latency.py's clustered Gaussian mixture, as unit vectors."""
    out = clustered(n, dim)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


class LocalFence:
    """The last write's timestamp, kept in this process (``distributed/fences.py`` keeps it
    in Redis or the catalog, for every process)."""

    def __init__(self) -> None:
        self.ts = 0

    def read(self) -> int:
        return self.ts

    def advance(self, ts: int) -> None:
        self.ts = max(self.ts, ts)


def exact_top(base: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    return index.search(queries, k)[1]


def measure(
    search: Callable[[np.ndarray], list[str]], queries: np.ndarray, truth: list[set[str]]
) -> tuple[float, float, float]:
    """(recall@10, p50 ms, p99 ms) of single-query searches."""
    for q in queries[:5]:
        search(q)  # warm up
    hits, lat = 0, []
    for q, want in zip(queries, truth, strict=True):
        t0 = time.perf_counter()
        got = search(q)
        lat.append((time.perf_counter() - t0) * 1000)
        hits += len(set(got[:10]) & want)
    return hits / (10 * len(queries)), pct(lat, 50), pct(lat, 99)


def row(name: str, build: float, result: tuple[float, float, float]) -> str:
    recall, p50, p99 = result
    return f"  {name:<34} {build:>9.1f} {recall:>9.3f} {p50:>8.2f} {p99:>8.2f}"


HEADER = f"  {'store':<34} {'build s':>9} {'recall@10':>9} {'p50 ms':>8} {'p99 ms':>8}"


def knobs_of(store: MilvusVectors) -> str:
    """The index's knobs and the search's (a re-rank's shortlist included), for a row."""
    return ", ".join(
        f"{k}={v}" for k, v in sorted({**store.plan.build, **store.plan.search}.items())
    )


def bench_milvus(
    uri: str, name: str, index: str, params: dict[str, int], ids: list[str],
    base: np.ndarray, queries: np.ndarray, truth: list[set[str]],
    tuning: tuple[np.ndarray, list[set[str]]] | None = None, pid: int | None = None,
) -> str:  # fmt: skip
    if "nlist" in params:  # IVF training wants ~39 points per list: small sets get fewer
        params = {**params, "nlist": max(1, min(params["nlist"], len(ids) // 39))}
        params["nprobe"] = min(params["nprobe"], params["nlist"])
    store = MilvusVectors(
        uri, name, dim=base.shape[1], binary=False, index=index, params=params, timeout=300
    )
    store.fence = LocalFence()  # as a folder or Redis keeps it: reads see the writes made
    store.open(create=True)
    t0 = time.perf_counter()
    for start in range(0, len(ids), 20_000):
        end = start + 20_000
        store.upsert(ids[start:end], base[start:end], [None] * len(ids[start:end]),
                     [{}] * len(ids[start:end]))  # fmt: skip
    # built = inserted, then the small segments merged (as Milvus does by itself within
    # minutes of a bulk load; asked for at once here), indexed and loaded: searches are then
    # measured in the steady state, not while Milvus rebuilds or hands segments over
    store.wait_indexed(timeout=1800, reload=True, compact=True)
    build = time.perf_counter() - t0
    settle(None if store.lite else pid)  # not counted in the build: the index answers already
    result = measure(lambda q: [i for i, _ in store.search(q[None], 10)[0]], queries, truth)
    knobs = knobs_of(store)
    where = "Milvus Lite" if store.lite else "Milvus server"
    line = row(f"{where} {index} ({knobs})", build, result)
    if store.plan.reranks:  # the same index, answering from its 8-bit codes alone
        store.plan.rerank = False
        codes = measure(lambda q: [i for i, _ in store.search(q[None], 10)[0]], queries, truth)
        line += "\n" + row(f"{where} {index} without the exact re-rank", build, codes)
        store.plan.rerank = None
    if tuning is not None and (result[0] < RECALL_TARGET or store.plan.reranks):
        # what `lookalike index --store milvus` does when the knob is not given: raise it
        # until recall@10 on held-out queries (not the measured ones) reaches the target,
        # and cut a re-rank's shortlist to the fewest candidates that still reach it
        tq, tt = tuning

        def tuning_recall() -> float:
            got = store.search(tq, 10)
            return sum(len(t & {i for i, _ in g}) for t, g in zip(tt, got, strict=True)) / (
                10 * len(tq)
            )

        tune_search(store.plan, tuning_recall, RECALL_TARGET, pinned=())
        tuned = measure(lambda q: [i for i, _ in store.search(q[None], 10)[0]], queries, truth)
        knobs = knobs_of(store)
        line += "\n" + row(f"{where} {index} tuned ({knobs})", build, tuned)
    store.drop()
    store.close()
    return line


def part_vectors(
    title: str, ids: list[str], base: np.ndarray, queries: np.ndarray, tmp: Path, milvus_uri: str,
    pid: int | None,
) -> Path:  # fmt: skip
    """Part 1 and 2; returns the embedded collection folder. The first half of ``queries``
    is measured, the second half only tunes the Milvus search knob."""
    queries, held = queries[: len(queries) // 2], queries[len(queries) // 2 :]
    truth = [{ids[j] for j in r} for r in exact_top(base, queries)]
    tuning = (held, [{ids[j] for j in r} for r in exact_top(base, held)])
    print(f"\n{title}\n{HEADER}")
    folder = tmp / f"emb-{len(ids)}-{base.shape[1]}"
    t0 = time.perf_counter()
    coll = Collection.open_vectors(folder, base.shape[1])
    coll.add_vectors(ids, base)
    info = coll.index.ensure()
    build = time.perf_counter() - t0
    result = measure(lambda q: [h.id for h in coll.search_vector(q[None], 10)], queries, truth)
    knobs = ", ".join(f"{k}={v}" for k, v in sorted((info.get("params") or {}).items()))
    print(row(f"embedded FAISS {info['type']} ({knobs})", build, result), flush=True)
    coll.close()
    lite = str(tmp / f"lite-{len(ids)}.db")
    params = {"nlist": 512, "nprobe": 16}
    print(bench_milvus(lite, "bench", "ivf-flat", params, ids, base, queries, truth), flush=True)
    for index, knobs2 in (("ivf-sq8", params), ("hnsw", {})):
        line = bench_milvus(
            milvus_uri, "bench", index, knobs2, ids, base, queries, truth, tuning, pid
        )
        print(line, flush=True)
    return folder


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--model-path", type=Path, default=MODEL)
    ap.add_argument("--photos", type=Path, default=PHOTOS)
    ap.add_argument(
        "--parts",
        default="vectors,clothing,serving",
        help="which parts to run (serving still builds the embedded folder of the vectors)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="how many times the serving part alternates vectors from Milvus and from Redis",
    )
    ap.add_argument(
        "--served",
        default="ivf-sq8,hnsw",
        help="the Milvus indexes the serving part publishes and serves",
    )
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    print(f"backends benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="lookalike-backends-") as name:
        tmp = Path(name)
        redis, redis_uri = start_redis(tmp)
        (tmp / "milvus").mkdir()
        bins = Path(tempfile.gettempdir()) / "lookalike-tests-milvus-2.3.5-bin"  # the tests' cache
        milvus = MilvusProcess(tmp / "milvus", bins)
        milvus.start()
        pid = milvus.proc.pid if milvus.proc is not None else None
        try:
            data = mixture(a.items + 2 * a.queries, a.dim)
            base, queries = data[: a.items], data[a.items :]
            ids = [f"v{i:07d}" for i in range(a.items)]
            title = (
                f"{a.items:,} x {a.dim} vectors (clustered mixture), {a.queries} held-out queries"
            )
            if "vectors" in parts:
                folder = part_vectors(title, ids, base, queries, tmp, milvus.uri, pid)
            else:
                folder = tmp / "emb-serving"
                with Collection.open_vectors(folder, a.dim) as coll:
                    coll.add_vectors(ids, base)
                    coll.index.ensure()
            if "clothing" not in parts:
                pass
            elif (a.model_path / "model.onnx").exists() and a.photos.is_dir():
                real = tmp / "clothing"
                with Collection.open(real, model_path=a.model_path) as coll:
                    coll.add([str(a.photos)])
                    items = list(coll.items())
                    vecs = coll.vectors.read([it.slot for it in items], coll.catalog.next_slot)
                rng = np.random.default_rng(1)
                pick = rng.choice(len(items), size=min(2 * a.queries, len(items)), replace=False)
                part_vectors(
                    f"MobileNetV2 clothing photos ({len(items)} x {vecs.shape[1]}), "
                    f"{len(pick)} stored items as queries",
                    [it.id for it in items], np.ascontiguousarray(vecs, dtype=np.float32),
                    np.ascontiguousarray(vecs[pick], dtype=np.float32), tmp, milvus.uri, pid,
                )  # fmt: skip
            else:
                print(f"\n(no {a.model_path} or {a.photos}: the MobileNetV2 part is skipped)")
            if "serving" in parts:
                served = {"milvus": [pid] if pid else [], "redis": [redis.pid]}
                part_serving(folder, ids, tmp, milvus.uri, redis_uri, a, served)
        finally:
            milvus.stop()
            redis.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
