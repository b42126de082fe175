"""The server's bounds under real concurrency (uvicorn in a thread, real sockets): one total
deadline per URL fetch, a bound on fetches and on decodes at once, writes that fail fast
while another process writes, the API key checked before the body is read, and JSON errors
for the malformed requests the app sees."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

import httpx  # noqa: E402
import imagegen  # noqa: E402
from http_server import LocalHTTPServer  # noqa: E402
from server_util import live_server, make_collection  # noqa: E402

from lookalike.collection import Collection  # noqa: E402
from lookalike.errors import DownloadError  # noqa: E402
from lookalike.server import ServerSettings, create_app  # noqa: E402
from lookalike.server.security import FetchLimits, safe_fetch  # noqa: E402

KEY = "k3y"


@pytest.fixture
def coll(tmp_path: Path) -> Iterator[Collection]:
    c = make_collection(tmp_path)
    yield c
    c.close()


def _jpeg(seed: int) -> bytes:
    return imagegen.encode(imagegen.photo_like(seed, (120, 90)), "JPEG", quality=90)


def _in_thread(fn: Any, *args: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            out["error"] = exc
        out["seconds"] = time.monotonic() - start

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _any(_address: str) -> bool:
    return True


# -- URL fetches: one total deadline, a bound on how many at once ------------------------


@pytest.mark.parametrize("path", ["slowheaders?delay=0.2", "slow/a.jpg?delay=0.2"])
def test_a_dripping_host_cannot_hold_a_fetch_past_its_deadline(path: str) -> None:
    with LocalHTTPServer({"a.jpg": _jpeg(1)}) as srv:
        t, out = _in_thread(
            lambda: safe_fetch(srv.url(path), FetchLimits(timeout=1.0), allow_address=_any)
        )
        t.join(5)
        assert not t.is_alive(), "the fetch outlived its 1 s deadline by 4 s"
    assert isinstance(out.get("error"), DownloadError) and "timed out" in str(out["error"])
    assert out["seconds"] < 2.0


def test_fetches_are_bounded_and_health_answers_while_they_hang(coll: Collection) -> None:
    settings = ServerSettings(
        allow_urls=True, allow_private_for_tests=True, fetch_timeout=2.0, max_fetches=2
    )
    with LocalHTTPServer() as srv, live_server(create_app(coll, settings)) as base:
        drip = {"url": srv.url("slowheaders?delay=0.2")}

        def search() -> httpx.Response:
            return httpx.post(base + "/search", json=drip, timeout=10)

        stuck = [_in_thread(search) for _ in range(2)]
        deadline = time.monotonic() + 5
        while srv.total_requests < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        r = httpx.post(base + "/search", json=drip, timeout=5)
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert "fetch" in r.json()["error"]
        start = time.monotonic()
        assert httpx.get(base + "/health", timeout=5).status_code == 200
        assert time.monotonic() - start < 1.0
        for t, out in stuck:
            t.join(10)
            assert out["value"].status_code == 400 and "timed out" in out["value"].json()["error"]
            assert out["seconds"] < 4.0
        # the slots are free again
        assert httpx.post(base + "/search", json=drip, timeout=10).status_code == 400


# -- decodes: a memory budget ----------------------------------------------------------


def test_decodes_over_the_memory_budget_wait_briefly_then_get_503(
    coll: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    real = coll.embed_image

    def held_embed(data: bytes, limits: Any = None) -> Any:
        if not entered.is_set():
            entered.set()
            release.wait(20)
        return real(data, limits)

    monkeypatch.setattr(coll, "embed_image", held_embed)
    # 1 MB: one decode of any size fills it (a decode is let through alone, whatever its size)
    settings = ServerSettings(api_key=KEY, decode_memory_mb=1, busy_wait=0.3)
    image = _jpeg(5)
    with live_server(create_app(coll, settings)) as base:
        first, out = _in_thread(
            lambda: httpx.post(base + "/search", files={"file": ("a.jpg", image)}, timeout=30)
        )
        assert entered.wait(10)
        start = time.monotonic()
        r = httpx.post(base + "/search", files={"file": ("b.jpg", image)}, timeout=10)
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
        assert 0.25 < time.monotonic() - start < 3
        add = httpx.post(
            base + "/items",
            files={"files": ("c.jpg", _jpeg(6))},
            headers={"X-API-Key": KEY},
            timeout=10,
        )
        assert add.status_code == 503 and "retry-after" in add.headers
        assert httpx.post(base + "/embed", files={"files": ("d.jpg", image)}).status_code == 503
        # searches by id decode nothing and go on
        assert httpx.get(base + "/items/red/1.jpg/similar", timeout=5).status_code == 200
        release.set()
        first.join(20)
        assert out["value"].status_code == 200
        # the budget is free again
        r = httpx.post(base + "/search", files={"file": ("b.jpg", image)}, timeout=10)
        assert r.status_code == 200
    assert len(coll) == 8


# -- writes while another process holds the collection's lock ---------------------------


def test_writes_fail_fast_while_another_process_writes_and_searches_go_on(
    coll: Collection,
) -> None:
    import subprocess
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            f"fh = open({str(coll.root / 'lock')!r}, 'a+')\n"
            "fcntl.flock(fh.fileno(), fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        settings = ServerSettings(api_key=KEY)
        with live_server(create_app(coll, settings)) as base:
            h = {"X-API-Key": KEY}
            assert httpx.get(base + "/items/red/1.jpg/similar", timeout=5).status_code == 200
            add, out = _in_thread(
                lambda: httpx.post(
                    base + "/items", files={"files": ("n.jpg", _jpeg(9))}, headers=h, timeout=10
                )
            )
            # searches keep answering, fast, while the add is refused
            for _ in range(10):
                start = time.monotonic()
                r = httpx.get(base + "/items/red/1.jpg/similar", params={"k": 3}, timeout=5)
                assert r.status_code == 200 and time.monotonic() - start < 0.5
            add.join(10)
            r = out["value"]
            assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
            assert "another process" in r.json()["error"]
            assert out["seconds"] < 2.0
            r = httpx.delete(base + "/items/red/1.jpg", headers=h, timeout=10)
            assert r.status_code == 503
            holder.kill()
            holder.wait(10)
            r = httpx.post(
                base + "/items", files={"files": ("n.jpg", _jpeg(9))}, headers=h, timeout=10
            )
            assert r.status_code == 201, r.text
            assert httpx.delete(base + "/items/red/1.jpg", headers=h).status_code == 200
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert len(coll) == 8


# -- the API key is checked before the body is read ------------------------------------


def _raw(base: str, head: bytes, body: bytes = b"", timeout: float = 5.0) -> bytes:
    """Send ``head`` and ``body`` on a fresh connection; the whole answer (until close)."""
    import socket

    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head + body)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
        return b"".join(chunks)


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


@pytest.mark.parametrize(
    ("settings", "method", "path"),
    [
        ({"api_key": KEY}, "POST", "/items"),
        ({"api_key": KEY}, "DELETE", "/items/red/1.jpg"),
        ({"api_key": KEY, "api_key_all": True}, "POST", "/search"),
        ({"api_key": KEY, "api_key_all": True}, "POST", "/embed"),
    ],
)
def test_a_wrong_api_key_is_refused_before_the_body_is_read(
    coll: Collection, settings: dict[str, Any], method: str, path: str
) -> None:
    app = create_app(coll, ServerSettings(**settings))
    with live_server(app) as base:
        # 8 MB announced, 1 KB sent: the answer must come without waiting for the rest
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: wrong\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {8 * 2**20}\r\n\r\n"
        ).encode()
        start = time.monotonic()
        answer = _raw(base, head, b"--b\r\n" + b"x" * 1024, timeout=3)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert time.monotonic() - start < 2.5
        assert b'"error"' in answer and b"API key" in answer
        assert b"www-authenticate: ApiKey" in answer.lower().replace(b"apikey", b"ApiKey")
    assert len(coll) == 8


# -- every error is JSON, on the wire --------------------------------------------------

_JSON = "application/json"
WIRE_ERRORS = [
    (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"PUT /items HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
    (b"GET /items/%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"GET /items/red/1.jpg/similar?k=abc HTTP/1.1\r\nHost: x\r\n\r\n", 422),
    (
        b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5\r\n\r\n{bad}",
        422,
    ),
    (
        b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 3\r\n\r\nabc",
        415,
    ),
    (
        b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=z\r\n"
        b"Content-Length: 10\r\n\r\n0123456789",
        400,
    ),
    (b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413),
    # refused by the HTTP parser before the app sees anything
    (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
    (b"HELLO\r\n\r\n", 400),
    (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    (b"GET /items/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 400),
    (
        b"POST /search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    ),
]


def _check_json_error(answer: bytes, status: int) -> None:
    import json

    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} "), answer[:300]
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    assert headers["content-type"].startswith(_JSON), answer[:300]
    error = json.loads(body)["error"]
    assert isinstance(error, str) and error and "\n" not in error


def test_every_error_on_the_wire_is_json(coll: Collection) -> None:
    with live_server(create_app(coll, ServerSettings())) as base:
        for request, status in WIRE_ERRORS:
            _check_json_error(_raw(base, request, timeout=5), status)


def test_the_serve_command_answers_malformed_http_in_json(coll: Collection) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "lookalike", "serve", "--collection", str(coll.root)]
    proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        for request, status in WIRE_ERRORS[-4:]:
            _check_json_error(_raw(base, request, timeout=5), status)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
