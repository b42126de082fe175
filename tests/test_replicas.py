"""Two stateless replicas (real `lookalike serve` processes) sharing a real Milvus server and
a real Redis: what one writes, the other sees at once; an id is claimed only once; when a
service goes down the replicas answer 503 + Retry-After and recover by themselves."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tiny_models import make_pooling_model, write_local_model

pytest.importorskip("pymilvus", reason="distributed mode needs the milvus extra")
pytest.importorskip("redis", reason="distributed mode needs the redis extra")
pytest.importorskip("fastapi", reason="the replicas need the server extra")

from lookalike.distributed.config import RemoteSpec  # noqa: E402
from lookalike.distributed.served import ServedCollection  # noqa: E402
from lookalike.store.milvus_index import SHORTLIST_STEPS  # noqa: E402
from lookalike.store.redis_meta import RedisMetadata  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(args: list[str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    script = Path(sys.executable).parent / "lookalike"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [str(script), "serve", "--port", str(port), *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {log.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"serve did not start: {log.read_text()}")


@pytest.fixture(params=[False, True], ids=["vectors-in-milvus", "redis-vectors"])
def replicas(
    request: pytest.FixtureRequest,
    cli: Callable[..., Any],
    photos: Path,
    tmp_path: Path,
    milvus_server: Any,
    redis_server: Any,
) -> Iterator[tuple[str, str, dict[str, str]]]:
    """Photos indexed into the Milvus server + Redis, and two replicas serving them; with
    ``--redis-vectors`` too (the item vectors /similar needs are read from Redis)."""
    model = write_local_model(tmp_path / "model", make_pooling_model(dim=16))
    name = "r" + uuid.uuid4().hex[:12]
    redis_uri = redis_server.uri.rsplit("/", 1)[0] + "/6"
    RedisMetadata(redis_uri).flush_namespace()
    flags = [
        "--milvus-uri",
        milvus_server.uri,
        "--milvus-collection",
        name,
        "--metadata",
        redis_uri,
    ]
    r = cli(
        "index", str(photos), "--collection", str(tmp_path / "coll"), "--model-path", str(model),
        "--store", "milvus", "--index", "ivf-sq8", "--nlist", "8", "--nprobe", "8", *flags,
        *(["--redis-vectors"] if request.param else []), timeout=300,
    )  # fmt: skip
    assert r.code == 0, r.err
    shared = ["--uploads", str(tmp_path / "shared"), *flags]
    a, url_a = _serve(shared, tmp_path / "a.log")
    b, url_b = _serve(shared, tmp_path / "b.log")
    try:
        yield url_a, url_b, {"redis": redis_uri, "collection": name}
    finally:
        for proc in (a, b):
            proc.terminate()
            proc.wait(timeout=20)


def test_two_replicas_share_adds_removals_and_id_claims(
    replicas: tuple[str, str, dict[str, str]], photos: Path, milvus_server: Any
) -> None:
    url_a, url_b, names = replicas
    # a replica searches with the knobs the indexer tuned: nprobe and the re-rank's shortlist
    tuned = RedisMetadata(names["redis"]).info()["recall"]["search"]
    assert tuned["nprobe"] == 8 and tuned["shortlist"] in SHORTLIST_STEPS
    served = ServedCollection(
        RemoteSpec.parse(milvus_server.uri, names["collection"], metadata_uri=names["redis"])
    )
    try:
        assert served.milvus.plan.search == tuned
    finally:
        served.close()
    data = (photos / "dress" / "1000.jpg").read_bytes()
    files = {"files": ("n.jpg", data)}
    added = httpx.post(url_a + "/items", files=files, data={"ids": ["new/1"]}, timeout=30)
    assert added.status_code == 201, added.text
    found = httpx.post(url_b + "/search", files={"file": ("q.jpg", data)}, timeout=30).json()
    assert "new/1" in [h["id"] for h in found["results"][:2]]
    assert httpx.get(url_b + "/items/new/1", timeout=10).status_code == 200
    similar = httpx.get(url_b + "/items/new/1/similar", params={"k": 2}, timeout=30)
    assert similar.status_code == 200, similar.text
    assert similar.json()["results"][0]["id"] == "dress/1000.jpg"  # its photo, added as new/1
    assert httpx.delete(url_b + "/items/new/1", timeout=30).status_code == 200
    for url in (url_a, url_b):
        assert httpx.get(url + "/items/new/1", timeout=10).status_code == 404
        assert httpx.get(url + "/items/new/1/similar", timeout=10).status_code == 404
        again = httpx.post(url + "/search", files={"file": ("q.jpg", data)}, timeout=30).json()
        assert "new/1" not in [h["id"] for h in again["results"]]

    statuses: list[int] = []

    def add(url: str) -> None:
        r = httpx.post(url + "/items", files=files, data={"ids": ["race"]}, timeout=30)
        statuses.append(r.status_code)

    threads = [threading.Thread(target=add, args=(u,)) for u in (url_a, url_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201, 409]
    assert httpx.get(url_a + "/health", timeout=10).json()["items"] == 61


def _down_then_back(
    service: Any, name: str, other: str, urls: tuple[str, str], check: str, wait: float
) -> None:
    """Stop ``service``: a search through one replica is a 503 naming it, /health through
    the other says which dependency is down; start it: both replicas answer ``check``
    again by themselves within ``wait`` seconds."""
    url_a, url_b = urls
    service.stop()
    try:
        r = httpx.get(url_a + "/items/hat/1006.jpg/similar", timeout=wait)
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert name in r.json()["error"]
        health = httpx.get(url_b + "/health", timeout=wait)
        assert health.status_code == 503
        deps = health.json()["dependencies"]
        assert deps[name.lower()].startswith("down") and deps[other] == "ok"
    finally:
        service.start()
    for url in urls:
        deadline = time.monotonic() + wait
        while httpx.get(url + check, timeout=30).status_code != 200:
            assert time.monotonic() < deadline, "the replica did not recover"
            time.sleep(0.5)


def test_redis_down_gives_503_then_the_replicas_recover_by_themselves(
    replicas: tuple[str, str, dict[str, str]], redis_server: Any
) -> None:
    url_a, url_b, _ = replicas
    # The test Redis keeps its data in memory only (no persistence): recovery is /health.
    _down_then_back(redis_server, "Redis", "milvus", (url_a, url_b), "/health", 30)


def test_milvus_down_gives_503_naming_it_then_the_replicas_recover(
    replicas: tuple[str, str, dict[str, str]], milvus_server: Any
) -> None:
    if not getattr(milvus_server, "can_restart", False):
        pytest.skip("the Milvus server is not this session's own: it cannot be restarted")
    url_a, url_b, _ = replicas
    similar = "/items/hat/1006.jpg/similar"
    _down_then_back(milvus_server, "Milvus", "redis", (url_a, url_b), similar, 60)
