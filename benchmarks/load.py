"""Load test of ``lookalike serve``: concurrent clients against a 100k-item collection.

Builds a collection of N items (random 64-bit codes of the weight-free ``phash`` model,
added with ``Collection.add_vectors``; so upload searches run the real decode + hash), starts
the server in a subprocess on 127.0.0.1, and runs three phases, each bounded in time and in
request count, talking only to loopback:

1. ``similar``: C clients call ``GET /items/{id}/similar`` on random ids for T seconds.
   Target: p99 <= 50 ms at 100k items and 16 clients.
2. ``mixed``: C clients mix id searches, upload searches and adds (POST /items).
3. upload overhead: one client sends upload searches; the overhead is the server's round
   trip minus the model-only time (decode + embed, measured in this process on the same
   images). Target: <= 15 ms.

Every phase prints requests, errors (must be 0), throughput, p50 and p99 per request type.

    python benchmarks/load.py [--items 100000] [--clients 16] [--seconds 10]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from lookalike import Collection

HOST = "127.0.0.1"  # loopback only
KEY = "bench-key"
DATASET = Path(__file__).resolve().parents[1].parent / "shared/datasets/clothing-small"


def query_images(n: int) -> list[bytes]:
    """Real photos from the shared dataset when present, else synthetic JPEGs."""
    files = sorted(DATASET.rglob("*.jpg"))[:n] if DATASET.is_dir() else []
    if files:
        return [f.read_bytes() for f in files]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((400, 300), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def build(root: Path, items: int) -> list[str]:
    coll = Collection.open(root, "phash")
    rng = np.random.default_rng(1)
    ids = [f"item-{i:06d}" for i in range(items)]
    labels = [f"label-{i % 10}" for i in range(items)]
    coll.add_vectors(ids, rng.integers(0, 256, (items, 8), dtype=np.uint8), labels=labels)
    coll.close()
    return ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to report server CPU per request."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.samples: list[str] = []

    def add(self, kind: str, seconds: float, ok: bool, detail: str = "") -> None:
        with self.lock:
            self.latency.setdefault(kind, []).append(seconds)
            self.errors.setdefault(kind, 0)
            if not ok:
                self.errors[kind] += 1
                if len(self.samples) < 5:
                    self.samples.append(f"{kind}: {detail[:200]}")

    def total(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.latency.values())


class Client:
    """A lean keep-alive HTTP client (http.client): the load generator shares the machine's
    two cores with the server, so it must cost as little CPU per request as possible."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection(HOST, port, timeout=30)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


BOUNDARY = "lookalike-load-boundary"


def multipart(file_field: str, data: bytes, fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{file_field}"; '
        f'filename="q.jpg"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        + data
        + b"\r\n"
    ]
    for name, value in fields.items():
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def results_ok(status: int, body: bytes, n: int) -> bool:
    return status == 200 and len(json.loads(body)["results"]) == n


def run_phase(
    port: int,
    clients: int,
    seconds: float,
    max_requests: int,
    pick: Callable[[random.Random], str],
    ids: list[str],
    images: list[bytes],
) -> tuple[Recorder, float]:
    rec = Recorder()
    stop = threading.Event()
    added = iter(range(10**9))
    added_lock = threading.Lock()
    uploads = [multipart("file", data, {"k": "10"}) for data in images]
    auth = {"X-API-Key": KEY}

    def client(n: int) -> None:
        rnd = random.Random(n)
        c = Client(port)
        try:
            while not stop.is_set():
                if rec.total() >= max_requests:
                    stop.set()
                    break
                kind = pick(rnd)
                t0 = time.perf_counter()
                try:
                    if kind == "similar":
                        status, body = c.request("GET", f"/items/{rnd.choice(ids)}/similar?k=10")
                        ok = results_ok(status, body, 10)
                    elif kind == "upload":
                        payload, headers = rnd.choice(uploads)
                        status, body = c.request("POST", "/search", payload, headers)
                        ok = results_ok(status, body, 10)
                    else:
                        with added_lock:
                            serial = next(added)
                        payload, headers = multipart(
                            "files", rnd.choice(images), {"ids": f"load-{os.getpid()}-{n}-{serial}"}
                        )
                        status, body = c.request("POST", "/items", payload, {**headers, **auth})
                        ok = status == 201
                    rec.add(kind, time.perf_counter() - t0, ok, "" if ok else body.decode()[:200])
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    rec.add(kind, time.perf_counter() - t0, False, repr(exc))
                    c.close()
                    c = Client(port)
        finally:
            c.close()

    return rec, run_clients(client, clients, seconds, stop)


def run_clients(
    client: Callable[[int], None], clients: int, seconds: float, stop: threading.Event
) -> float:
    """Run ``client(n)`` in ``clients`` threads; after ``seconds`` (or once a client sets
    ``stop``) set ``stop`` and wait for them. Returns the seconds they ran."""
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def report(title: str, rec: Recorder, elapsed: float, cpu: float) -> None:
    print(title)
    print(f"  {'type':<9} {'requests':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    all_lat: list[float] = []
    for kind, lat in sorted(rec.latency.items()):
        all_lat += lat
        print(
            f"  {kind:<9} {len(lat):>8} {rec.errors[kind]:>6} {len(lat) / elapsed:>8.1f} "
            f"{pct(lat, 50) * 1000:>8.2f} {pct(lat, 99) * 1000:>8.2f}"
        )
    errors = sum(rec.errors.values())
    print(
        f"  {'all':<9} {len(all_lat):>8} {errors:>6} {len(all_lat) / elapsed:>8.1f} "
        f"{pct(all_lat, 50) * 1000:>8.2f} {pct(all_lat, 99) * 1000:>8.2f}"
        f"   ({elapsed:.1f} s)"
    )
    print(
        f"  server CPU {cpu * 1000 / max(1, len(all_lat)):.2f} ms per request; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    for s in rec.samples:
        print(f"  error sample: {s}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0, help="per phase")
    ap.add_argument("--max-requests", type=int, default=50_000, help="per phase")
    ap.add_argument("--upload-requests", type=int, default=200)
    args = ap.parse_args()

    images = query_images(20)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "coll"
        t0 = time.perf_counter()
        ids = build(root, args.items)
        print(
            f"collection: {args.items} items (phash, exact flat index), built in "
            f"{time.perf_counter() - t0:.1f} s; query images: "
            f"{'clothing-small photos' if DATASET.is_dir() else 'synthetic JPEGs'}; "
            f"{os.cpu_count()} CPUs"
        )
        port = free_port()
        base = f"http://{HOST}:{port}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "lookalike", "serve", "--collection", str(root)]
            + ["--host", HOST, "--port", str(port), "--api-key", KEY],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    print("server did not start", proc.stderr.read() if proc.stderr else "")
                    return 1
                time.sleep(0.2)
            # warm up (thumbnail-free paths only)
            with httpx.Client(base_url=base) as c:
                for i in range(50):
                    c.get(f"/items/{ids[i]}/similar")

            cpu0 = cpu_seconds(proc.pid)
            rec, el = run_phase(
                port, args.clients, args.seconds, args.max_requests, lambda r: "similar", ids, []
            )
            report(
                f"phase 1: GET /items/{{id}}/similar, k=10, {args.clients} clients",
                rec,
                el,
                cpu_seconds(proc.pid) - cpu0,
            )
            p99 = pct(rec.latency["similar"], 99) * 1000
            print(f"  target p99 <= 50 ms: {'met' if p99 <= 50 else 'NOT met'} ({p99:.2f} ms)")
            errors = sum(rec.errors.values())

            def mix(r: random.Random) -> str:
                x = r.random()
                return "similar" if x < 0.8 else "upload" if x < 0.97 else "add"

            cpu0 = cpu_seconds(proc.pid)
            rec, el = run_phase(
                port, args.clients, args.seconds, args.max_requests, mix, ids, images
            )
            report(
                f"phase 2: mixed (80% similar, 17% upload search, 3% add), {args.clients} clients",
                rec,
                el,
                cpu_seconds(proc.pid) - cpu0,
            )
            errors += sum(rec.errors.values())

            # phase 3: upload-search overhead against model-only time, same images
            coll = Collection.open(root, readonly=True)
            from lookalike.ingest.decode import DecodeLimits

            limits = DecodeLimits(max_megapixels=50.0)
            model_times: list[float] = []
            server_times: list[float] = []
            c = Client(port)
            for i in range(args.upload_requests):
                data = images[i % len(images)]
                t = time.perf_counter()
                coll.embed_image(data, limits)
                model_times.append(time.perf_counter() - t)
                payload, headers = multipart("file", data, {"k": "10"})
                t = time.perf_counter()
                status, body = c.request("POST", "/search", payload, headers)
                server_times.append(time.perf_counter() - t)
                if not results_ok(status, body, 10):
                    errors += 1
            c.close()
            coll.close()
            m50, s50 = pct(model_times, 50) * 1000, pct(server_times, 50) * 1000
            overhead = s50 - m50
            print(f"phase 3: upload-search overhead, 1 client, {args.upload_requests} requests")
            print(
                f"  model only (decode + phash) p50 {m50:.2f} ms; server round trip p50 "
                f"{s50:.2f} ms (p99 {pct(server_times, 99) * 1000:.2f} ms; mean model "
                f"{statistics.mean(model_times) * 1000:.2f} ms)"
            )
            print(
                f"  overhead {overhead:.2f} ms (target <= 15 ms: "
                f"{'met' if overhead <= 15 else 'NOT met'})"
            )
            print(f"total errors: {errors}")
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
