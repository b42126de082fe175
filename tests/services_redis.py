"""A real Redis for the tests: ``redis_server`` (one per session) and ``redis_namespace``
(a fresh namespace per test, flushed afterwards).

The server is /usr/bin/redis-server on 127.0.0.1 and a free port, without persistence, in a
temporary folder; or the one LOOKALIKE_TEST_REDIS_URI names (then it cannot be stopped, and
the tests that stop it skip). Without redis-server the tests skip, except in CI (CI=true),
where they fail. Use them from a test module with
``from services_redis import redis_namespace, redis_server  # noqa: F401``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(host: str, port: int) -> bool:
    """A raw PING (no client library needed)."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisService:
    """A Redis server the tests can stop and start again on the same port."""

    def __init__(self, folder: Path | None, port: int, uri: str | None = None) -> None:
        self.folder = folder
        self.port = port
        self.uri = uri or f"redis://127.0.0.1:{port}/0"
        self.owned = uri is None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        if not self.owned:
            pytest.skip("LOOKALIKE_TEST_REDIS_URI names a server the tests cannot restart")
        assert self.folder is not None and self.proc is None
        command = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port)]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        command += ["--logfile", str(self.folder / "redis.log")]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not _ping("127.0.0.1", self.port):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.proc = None
                raise RuntimeError(f"redis-server exited at start: {err.strip()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING within {timeout} s")
            time.sleep(0.02)

    def stop(self) -> None:
        if not self.owned:
            pytest.skip("LOOKALIKE_TEST_REDIS_URI names a server the tests cannot stop")
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisService]:
    external = os.environ.get("LOOKALIKE_TEST_REDIS_URI")
    if external:
        yield RedisService(None, 0, uri=external)
        return
    if not os.path.exists(REDIS_SERVER):
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    service = RedisService(tmp_path_factory.mktemp("redis"), _free_port())
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def redis_namespace(redis_server: RedisService) -> Iterator[str]:
    """A namespace of its own for this test; its keys are deleted afterwards (if the server
    is up then)."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    yield namespace
    if redis_server.owned and not redis_server.running:
        redis_server.start()
    from lookalike.store.redis_meta import RedisMetadata

    store = RedisMetadata(redis_server.uri, namespace=namespace, timeout=5)
    try:
        store.flush_namespace()
    finally:
        store.close()
