"""Part 3 of backends.py: serving ``GET /items/{id}/similar`` through ``lookalike serve``.

C clients (threads, one keep-alive connection each) for T seconds, after a 2 s warm-up of
the same load: the embedded folder; then the folder published to the Milvus server and
Redis, once per index in ``SERVED``, served by one replica and by two sharing Milvus and
Redis (clients alternate between them). Each index is published with ``--redis-vectors``
and served twice: replicas reading vectors from Milvus (the default: two Milvus calls per
``/similar``, the item's vector read and the search, whose IVF_SQ8 shortlist comes back
with its raw vectors), and reading them from Redis (one Milvus call, answering ids and
scores only). Besides throughput and latency, each row gives the CPU milliseconds per
request of the server processes, Milvus, Redis and the clients.

This machine's speed drifts by up to 2x over minutes, so the embedded server stays up and
each distributed row is preceded by an embedded reference load (after Milvus has settled):
its ``vs emb`` column is the row's p99 over that reference's, measured seconds apart. The
two ways alternate ``--rounds`` times, and a summary ends the part: per setup, the median of
its rows' ratios and how many rows are within the 2x target. Before its rows, each index's
own latency is printed: one client's searches of 8 queries (a loaded replica's batch), one
after another, with no replica and no load; its p99 is the tail Milvus brings by itself.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from load import cpu_seconds, free_port, pct, run_clients

from lookalike import Collection
from lookalike.distributed.config import RemoteSpec
from lookalike.store.milvus import MilvusVectors
from lookalike.store.milvus_client import KeptVectors


def settle(pid: int | None, quiet: float = 0.15, most: float = 900.0) -> float:
    """Wait until the Milvus server's process uses under ``quiet`` cores in three 2 s
    windows in a row: after a bulk load it compacts segments and indexes the merged ones,
    and searches meanwhile measure that, not serving. Returns the seconds waited."""
    if pid is None:
        return 0.0
    t0 = time.perf_counter()
    calm = 0
    while calm < 3 and time.perf_counter() - t0 < most:
        before = cpu_seconds(pid)
        time.sleep(2.0)
        calm = calm + 1 if (cpu_seconds(pid) - before) / 2.0 < quiet else 0
    return time.perf_counter() - t0


def serve(args: list[str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    exe = Path(sys.executable).parent / "lookalike"
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), *args],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited: {log.read_text()[-2000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"serve did not start: {log.read_text()[-2000:]}")


def load(
    ports: list[int], ids: list[str], clients: int, seconds: float, pids: dict[str, list[int]],
    reference: Callable[[], float] | None = None, ratios: list[float] | None = None,
) -> str:  # fmt: skip
    """Measured after a 2 s warm-up of the same load (connections, caches, thread pools).
    Also printed: the CPU milliseconds per request of each group of processes in ``pids``
    and of the clients (this process). ``reference`` (the embedded load, returning its p99)
    runs once Milvus has settled, just before this load; the row then ends with the ratio,
    which is also appended to ``ratios``."""
    pids = {**pids, "clients": [os.getpid()]}
    settle(pids["milvus"][0] if pids.get("milvus") else None)  # no background work measured
    ref = reference() if reference is not None else None
    warm(ports, ids, clients, 2.0)
    before = {k: sum(cpu_seconds(p) for p in v) for k, v in pids.items()}
    row, done, p99 = warm(ports, ids, clients, seconds)
    spent = ", ".join(
        f"{k} {(sum(cpu_seconds(p) for p in v) - before[k]) * 1e3 / max(done, 1):.1f}"
        for k, v in pids.items()
    )
    versus = f"   vs emb {p99 / ref:.2f}x (emb p99 {ref:.1f} ms)" if ref else ""
    if ref and ratios is not None:
        ratios.append(p99 / ref)
    return f"{row}   {spent}{versus}"


def warm(ports: list[int], ids: list[str], clients: int, seconds: float) -> tuple[str, int, float]:
    """(the row, requests done, p99 ms) of ``clients`` threads calling ``/similar``."""
    lat: list[float] = []
    errors = [0]
    first_error: list[str] = []  # what the first failure was, printed under the row
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        rnd = random.Random(n)
        port = ports[n % len(ports)]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set():
            item = rnd.choice(ids)
            t0 = time.perf_counter()
            try:
                conn.request("GET", f"/items/{item}/similar?k=10")
                resp = conn.getresponse()
                body = resp.read()
                ok = resp.status == 200
                why = f"HTTP {resp.status}: {body[:200].decode(errors='replace')}"
            except (OSError, http.client.HTTPException) as exc:
                ok, why = False, f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with lock:
                lat.append(time.perf_counter() - t0)
                errors[0] += not ok
                if not ok and not first_error:
                    first_error.append(f"after {time.perf_counter() - t0:.1f} s, {why}")
        conn.close()

    elapsed = run_clients(client, clients, seconds, stop)
    return (f"{len(lat) / elapsed:>9.1f} {pct(lat, 50) * 1000:>8.2f} {pct(lat, 99) * 1000:>8.2f}"
            f" {errors[0]:>7}" + "".join(f"\n    first error {e}" for e in first_error),
            len(lat), pct(lat, 99) * 1000)  # fmt: skip


def part_serving(
    folder: Path, ids: list[str], tmp: Path, milvus_uri: str, redis_uri: str, a: argparse.Namespace,
    pids: dict[str, list[int]],
) -> None:  # fmt: skip
    """``pids``: the Milvus and Redis processes, whose CPU per request is printed."""
    print(f"\nserving GET /items/{{id}}/similar?k=10, {a.clients} clients, {a.seconds:g} s each")
    print(f"  {'setup':<44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
          "   CPU ms per request")  # fmt: skip
    proc, port = serve(["--collection", str(folder)], tmp / "embedded.log")
    try:

        def embedded() -> float:
            """The embedded server's load (a row, and its p99 in ms)."""
            warm([port], ids, a.clients, 2.0)
            row, _, p99 = warm([port], ids, a.clients, a.seconds)
            print(f"  {'  embedded reference':<44} {row}", flush=True)
            return p99

        done = load([port], ids, a.clients, a.seconds, {"server": [proc.pid]})
        print(f"  {'embedded folder (FAISS), 1 server':<44} {done}", flush=True)
        verdicts: dict[str, list[float]] = {}  # setup -> its rows' p99 over the reference's
        for db, (index, params) in enumerate(SERVED):
            if index not in a.served.split(","):
                continue
            served = tmp / f"served-{index}"  # a copy per index: a folder serves one store
            shutil.copytree(folder, served)
            uri = f"{redis_uri.rsplit('/', 1)[0]}/{db}"  # a Redis database per published copy
            serve_milvus(served, index, params, ids, tmp, milvus_uri, uri, a, pids, embedded,
                         verdicts)  # fmt: skip
        done = load([port], ids, a.clients, a.seconds, {"server": [proc.pid]})
        print(f"  {'embedded folder (FAISS), 1 server':<44} {done}", flush=True)
        summary(verdicts)
    finally:
        proc.terminate()
        proc.wait()


# Published for serving: the replaced pipeline's IVF_SQ8 (nprobe not given: tuned to
# recall@10 >= 0.95, as `index --store milvus` does; re-ranked exactly), and HNSW, the
# index `--index auto` gives on Milvus.
SERVED: tuple[tuple[str, dict[str, int | None]], ...] = (("ivf-sq8", {"nlist": 512}), ("hnsw", {}))


def serve_milvus(
    folder: Path, index: str, params: dict[str, int | None], ids: list[str], tmp: Path,
    milvus_uri: str, redis_uri: str, a: argparse.Namespace, pids: dict[str, list[int]],
    reference: Callable[[], float], verdicts: dict[str, list[float]],
) -> None:  # fmt: skip
    name = "served_" + index.replace("-", "_")
    spec = RemoteSpec.parse(milvus_uri, name, index, params, redis_uri, redis_vectors=True)
    t0 = time.perf_counter()
    with Collection.open(folder) as coll:
        coll.use_store(spec)
        coll.publish()
        assert coll.remote is not None and coll.remote.redis is not None
        # as the embedded server's index was built before serving: the Milvus index too, on
        # the segments Milvus merges small ones into within minutes of a bulk load, by itself
        coll.remote.milvus.wait_indexed(timeout=1800, reload=True, compact=True)
        recall = coll.remote.measure_recall(force=True)
        redis = coll.remote.redis
        published = time.perf_counter() - t0
        quiet = settle(pids["milvus"][0] if pids["milvus"] else None)
        print(f"  (published {len(ids)} items to Milvus {index} + Redis, merged and indexed, in"
              f" {published:.1f} s, quiet after {quiet:.0f} s;"
              f" recall@10 {recall and recall['recall_at_10']},"
              f" knobs {recall and recall['search']})")  # fmt: skip
        if not coll.remote.milvus.plan.reranks:
            print(f"  (Milvus alone, {alone(coll.remote.milvus, None)})")
        for kept in (False, True) if coll.remote.milvus.plan.reranks else ():
            print(f"  (Milvus alone, {alone(coll.remote.milvus, redis if kept else None)},"
                  f" shortlists' vectors {'from Redis' if kept else 'from Milvus'})")  # fmt: skip
        flags = ["--milvus-uri", milvus_uri, "--milvus-collection", name, "--metadata", redis_uri,
                 "--uploads", str(tmp / "uploads")]  # fmt: skip
        # replicas read the setting when they start; the two ways alternate, --rounds times,
        # as this machine's speed drifts over minutes
        for kept in (False, True) * a.rounds:
            redis.set_info("redis_vectors", kept)
            what = f"Milvus {index} + Redis{' vectors' if kept else ''}"
            replicas(flags, what, ids, tmp / f"{name}-{kept}", a, pids, reference, verdicts)


def replicas(
    flags: list[str], what: str, ids: list[str], logs: Path, a: argparse.Namespace,
    pids: dict[str, list[int]], reference: Callable[[], float], verdicts: dict[str, list[float]],
) -> None:  # fmt: skip
    """One replica, then two, serving the load; a row each, after an embedded reference."""
    first, port1 = serve(flags, logs.with_suffix(".1.log"))
    try:
        done = load([port1], ids, a.clients, a.seconds, {"replicas": [first.pid], **pids},
                    reference, verdicts.setdefault(f"{what}, 1 replica", []))  # fmt: skip
        print(f"  {what + ', 1 replica':<44} {done}", flush=True)
        second, port2 = serve(flags, logs.with_suffix(".2.log"))
        try:
            both = load([port1, port2], ids, a.clients, a.seconds,
                        {"replicas": [first.pid, second.pid], **pids}, reference,
                        verdicts.setdefault(f"{what}, 2 replicas", []))  # fmt: skip
            print(f"  {what + ', 2 replicas':<44} {both}", flush=True)
        finally:
            second.terminate()
            second.wait()
    finally:
        first.terminate()
        first.wait()


def alone(milvus: MilvusVectors, kept: KeptVectors | None, calls: int = 1000) -> str:
    """Milvus' own latency, without the replicas: one client's searches of 8 queries (about a
    loaded replica's batch) one after another, as ``/similar`` makes them (the re-rank's
    vectors from ``kept``, else from Milvus). Its tail is Milvus' own, not the load's."""
    rng = np.random.default_rng(7)
    queries = rng.standard_normal((8, milvus.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    before, milvus.kept = milvus.kept, kept
    try:
        milvus.search(queries, 11)  # k=10 plus the item itself, as /similar asks
        lat = []
        for _ in range(calls):
            t0 = time.perf_counter()
            milvus.search(queries, 11)
            lat.append(time.perf_counter() - t0)
    finally:
        milvus.kept = before
    return f"one client, 8 queries per search: p50 {pct(lat, 50) * 1e3:.1f} ms, p99 {pct(lat, 99) * 1e3:.1f} ms"


def summary(verdicts: dict[str, list[float]]) -> None:
    """Each setup's rows against the target (p99 within 2x of the embedded reference's)."""
    print("\n  p99 over the embedded reference's, per setup (target: within 2x)")
    for what, ratios in verdicts.items():
        if ratios:
            within = sum(r <= 2.0 for r in ratios)
            shown = ", ".join(f"{r:.2f}x" for r in ratios)
            print(f"  {what:<44} median {statistics.median(ratios):.2f}x   rows {shown}"
                  f"   within 2x: {within} of {len(ratios)}")  # fmt: skip
