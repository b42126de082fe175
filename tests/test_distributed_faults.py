"""Distributed mode when things go wrong: services down (one line naming the service and
URI, exit 3), missing extras (one line naming the extra), kill -9 mid-run (a re-run
completes; nothing lost, duplicated or half-visible)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tiny_models import make_pooling_model, write_local_model

pytest.importorskip("pymilvus", reason="distributed mode needs the milvus extra")
pytest.importorskip("redis", reason="distributed mode needs the redis extra")

from lookalike.store.catalog import Catalog  # noqa: E402
from lookalike.store.milvus import MilvusVectors  # noqa: E402
from lookalike.store.redis_meta import RedisMetadata  # noqa: E402


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_local_model(tmp_path / "model", make_pooling_model(dim=16))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_milvus_unreachable_is_one_line_naming_it_and_exit_3(
    cli: Callable[..., Any], photos: Path, model: Path, tmp_path: Path
) -> None:
    uri = f"http://127.0.0.1:{_closed_port()}"
    coll = ("--collection", str(tmp_path / "c"))
    start = time.monotonic()
    r = cli("index", str(photos / "hat"), *coll, "--model-path", str(model),
            "--store", "milvus", "--milvus-uri", uri)  # fmt: skip
    assert r.code == 3, r.err
    assert r.err.strip().count("\n") == 0 and "Milvus" in r.err and uri in r.err
    assert time.monotonic() - start < 60
    s = cli("search", str(photos / "hat" / "1006.jpg"), *coll)
    assert s.code == 3 and "Milvus" in s.err and s.err.strip().count("\n") == 0


def test_redis_down_is_one_line_naming_it_and_a_rerun_publishes_everything(
    cli: Callable[..., Any], photos: Path, model: Path, tmp_path: Path, redis_server: Any
) -> None:
    uri = redis_server.uri.rsplit("/", 1)[0] + "/7"
    RedisMetadata(uri).flush_namespace()
    flags = ("--collection", str(tmp_path / "c"), "--model-path", str(model), "--store", "milvus",
             "--milvus-uri", str(tmp_path / "v.db"), "--metadata", uri)  # fmt: skip
    redis_server.stop()
    try:
        r = cli("index", str(photos), *flags)
        assert r.code == 3 and "Redis" in r.err and r.err.strip().count("\n") == 0, r.err
    finally:
        redis_server.start()
    again = cli("index", str(photos), "--collection", str(tmp_path / "c"))
    assert again.code == 0, again.err
    _assert_consistent(tmp_path / "c", str(tmp_path / "v.db"), uri, 60)


def _assert_consistent(coll: Path, milvus_uri: str, redis_uri: str, n: int) -> None:
    """The catalog, Milvus and Redis hold the same n items, none half-visible."""
    catalog = Catalog(coll / "catalog.sqlite", readonly=True)
    try:
        local = {item.id for item in catalog.items()}
        queued = catalog.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    finally:
        catalog.close()
    milvus = MilvusVectors(milvus_uri, "lookalike", dim=16, binary=False)
    milvus.open(create=False)
    try:
        in_milvus = set(milvus.vectors_of(sorted(local)))
        count = milvus.count()
    finally:
        milvus.close()
    meta = RedisMetadata(redis_uri)
    ready = {item.id for item in meta.get(sorted(local)) if item is not None}
    assert queued == 0
    assert len(local) == n and in_milvus == local and ready == local
    assert count == n and meta.count() == n


@pytest.mark.parametrize("delay", [1.0, 2.5, 4.0])
def test_kill_9_mid_run_then_a_rerun_leaves_nothing_lost_or_half_visible(
    photos: Path, model: Path, tmp_path: Path, redis_server: Any, delay: float
) -> None:
    uri = redis_server.uri.rsplit("/", 1)[0] + "/8"
    RedisMetadata(uri).flush_namespace()
    script = Path(sys.executable).parent / "lookalike"
    args = [str(script), "index", str(photos), "--collection", str(tmp_path / "c"),
            "--model-path", str(model), "--store", "milvus", "--milvus-uri",
            str(tmp_path / "v.db"), "--metadata", uri, "--batch-size", "2", "--workers", "1"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rerun = subprocess.run(args[:5], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    _assert_consistent(tmp_path / "c", str(tmp_path / "v.db"), uri, 60)


def test_without_the_extras_the_flags_name_the_extra(
    photos: Path, model: Path, tmp_path: Path
) -> None:
    for blocked, flags, extra in (
        ("pymilvus", ["--milvus-uri", str(tmp_path / "v.db")], "lookalike[milvus]"),
        (
            "redis",
            ["--milvus-uri", str(tmp_path / "w.db"), "--metadata", "redis://127.0.0.1:1/0"],
            "lookalike[redis]",
        ),
    ):
        code = (
            f"import sys; sys.modules[{blocked!r}] = None\n"
            "from lookalike.cli.entry import main\n"
            f"sys.exit(main({['index', str(photos / 'hat'), '--collection', str(tmp_path / blocked), '--model-path', str(model), '--store', 'milvus', *flags]!r}))"
        )
        r = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 3, r.stderr
        assert extra in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


def test_milvus_restarted_mid_run_then_a_rerun_completes(
    photos: Path, model: Path, tmp_path: Path, redis_server: Any, milvus_server: Any
) -> None:
    if not getattr(milvus_server, "can_restart", False):
        pytest.skip("the Milvus server is not this session's own: it cannot be restarted")
    uri = redis_server.uri.rsplit("/", 1)[0] + "/9"
    RedisMetadata(uri).flush_namespace()
    name = "restart_" + str(os.getpid())
    script = Path(sys.executable).parent / "lookalike"
    args = [str(script), "index", str(photos), "--collection", str(tmp_path / "c"),
            "--model-path", str(model), "--store", "milvus", "--milvus-uri", milvus_server.uri,
            "--milvus-collection", name, "--metadata", uri, "--batch-size", "2"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(2.0)
    milvus_server.stop()
    milvus_server.start()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, 3), err  # finished, or stopped with one line naming Milvus
    rerun = subprocess.run(args[:5], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    catalog = Catalog(tmp_path / "c" / "catalog.sqlite", readonly=True)
    local = {item.id for item in catalog.items()}
    catalog.close()
    milvus = MilvusVectors(milvus_server.uri, name, dim=16, binary=False)
    milvus.open(create=False)
    try:
        assert set(milvus.vectors_of(sorted(local))) == local and milvus.count() == 60
    finally:
        milvus.drop()
        milvus.close()
    meta = RedisMetadata(uri)
    assert meta.count() == 60 and all(meta.get(sorted(local)))
