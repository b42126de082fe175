"""A small local HTTP server for tests (no network beyond 127.0.0.1).

Usage::

    from http_server import LocalHTTPServer

    @pytest.fixture
    def http_server():
        with LocalHTTPServer({"a.jpg": b"..."}) as server:
            yield server

    def test_something(http_server):
        url = http_server.url("a.jpg")            # http://127.0.0.1:<port>/a.jpg
        ...
        assert http_server.count("a.jpg") == 1    # requests made for that path
        assert http_server.requests_for("a.jpg")[0].headers.get("Range") is None

It runs ``http.server.ThreadingHTTPServer`` in a daemon thread on an ephemeral port. Files come
from the ``files`` dict (name -> bytes; mutable, ``server.files["b.png"] = ...`` works while
it runs) and then from the ``root`` folder if given. Every response closes the connection.

Paths (``<name>`` is a file name as above; query parameters are optional):

``/<name>``
    The file, with ``Range: bytes=...`` support (206 + ``Content-Range``; 416 when the range
    cannot be satisfied). Unknown names answer 404.
``/status/<code>``
    Answers that status code with a short body, e.g. ``/status/404``, ``/status/503``.
``/flaky/<n>/<name>?status=500&retry_after=S``
    The first ``n`` requests for this path answer ``status`` (default 500, with a
    ``Retry-After`` header when ``retry_after`` is given); later ones serve the file.
``/slow/<name>?delay=0.2``
    Sends the headers (with the full ``Content-Length``) and then one byte every ``delay``
    seconds: for timeout tests.
``/slowheaders?delay=0.2``
    Sends a status line and then a header one byte every ``delay`` seconds, never finishing
    the headers.
``/drop/<name>?after=N&times=1``
    For the first ``times`` requests of this path: sends the headers with the full
    ``Content-Length``, then only the first ``after`` bytes of the body (default: half, or the
    first half of the requested range), then closes the connection. Later requests behave
    like ``/<name>`` (Range supported): for resume tests.
``/norange/<name>``
    The file, always ``200`` with the whole body: ignores ``Range``.
``/nolength/<name>``
    The file without ``Content-Length`` (the body ends when the connection closes).
``/huge?length=10737418240``
    Claims that ``Content-Length`` and streams zero bytes until the client goes away.
``/redirect/<path>``
    ``302`` to ``/<path>`` with the same query string (``<path>`` may be any path above).

Every request is recorded (:attr:`LocalHTTPServer.requests`, :meth:`count`,
:meth:`requests_for`) by its path without the query string and without the leading ``/``.
"""

from __future__ import annotations

import contextlib
import mimetypes
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["LocalHTTPServer", "RecordedRequest"]


@dataclass
class RecordedRequest:
    """One request as the server saw it. ``path`` has no query string and no leading ``/``."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """A request header, by case-insensitive name."""
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


class LocalHTTPServer:
    """A threaded HTTP server on 127.0.0.1 with behaviours for download tests.

    See the module docstring for the special paths. Use it as a context manager, or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(self, files: Mapping[str, bytes] | None = None, root: Path | None = None) -> None:
        self.files: dict[str, bytes] = dict(files or {})
        self.root = root
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalHTTPServer:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalHTTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # addresses and bookkeeping ---------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (with or without a leading ``/``)."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def count(self, path: str) -> int:
        """How many requests were made for ``path`` (query string ignored)."""
        return len(self.requests_for(path))

    def requests_for(self, path: str) -> list[RecordedRequest]:
        path = urlsplit(path).path.lstrip("/")
        with self._lock:
            return [r for r in self.requests if r.path == path]

    @property
    def total_requests(self) -> int:
        with self._lock:
            return len(self.requests)

    def reset(self) -> None:
        """Forget the recorded requests (and so the state of flaky and drop paths)."""
        with self._lock:
            self.requests.clear()

    # used by the handler ---------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> int:
        """Record a request; returns how many requests this path had before it."""
        with self._lock:
            before = sum(1 for r in self.requests if r.path == request.path)
            self.requests.append(request)
            return before

    def _lookup(self, name: str) -> bytes | None:
        if name in self.files:
            return self.files[name]
        if self.root is not None and name:
            root = self.root.resolve()
            candidate = (root / name).resolve()
            if candidate.is_relative_to(root) and candidate.is_file():
                return candidate.read_bytes()
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: LocalHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # keep test output clean

    def do_GET(self) -> None:
        self.close_connection = True
        owner = self.server.owner
        split = urlsplit(self.path)
        path = unquote(split.path).lstrip("/")
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        before = owner._record(
            RecordedRequest("GET", path, query, {k: v for k, v in self.headers.items()})
        )
        # The client going away is expected in timeout and max_bytes tests.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self._dispatch(owner, path, query, before)

    # dispatch --------------------------------------------------------------------------

    def _dispatch(
        self, owner: LocalHTTPServer, path: str, query: dict[str, str], before: int
    ) -> None:
        head, _, rest = path.partition("/")
        if head == "status" and rest.isdigit():
            self._simple(int(rest))
        elif head == "flaky":
            count, _, name = rest.partition("/")
            if before < int(count or "1"):
                extra = {}
                if "retry_after" in query:
                    extra["Retry-After"] = query["retry_after"]
                self._simple(int(query.get("status", "500")), extra)
            else:
                self._serve_file(owner, name, ranges=True)
        elif head == "slow":
            self._slow(owner, rest, float(query.get("delay", "0.2")))
        elif head == "slowheaders":
            self._slow_headers(owner, float(query.get("delay", "0.2")))
        elif head == "drop":
            if before < int(query.get("times", "1")):
                self._drop(owner, rest, query.get("after"))
            else:
                self._serve_file(owner, rest, ranges=True)
        elif head == "norange":
            self._serve_file(owner, rest, ranges=False)
        elif head == "nolength":
            self._serve_file(owner, rest, ranges=False, length=False)
        elif head == "huge":
            self._huge(owner, int(query.get("length", str(10 * 2**30))))
        elif head == "redirect":
            self.send_response(302)
            raw_query = urlsplit(self.path).query
            self.send_header("Location", "/" + rest + (f"?{raw_query}" if raw_query else ""))
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
        else:
            self._serve_file(owner, path, ranges=True)

    # behaviours ------------------------------------------------------------------------

    def _simple(self, status: int, extra: dict[str, str] | None = None) -> None:
        body = f"status {status}\n".encode()
        self.send_response(status)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _content_type(self, name: str) -> str:
        return mimetypes.guess_type(name)[0] or "application/octet-stream"

    def _serve_file(
        self, owner: LocalHTTPServer, name: str, *, ranges: bool, length: bool = True
    ) -> None:
        data = owner._lookup(name)
        if data is None:
            self._simple(404)
            return
        start, end = 0, len(data) - 1
        status = 200
        range_header = self.headers.get("Range") if ranges else None
        if range_header:
            parsed = _parse_range(range_header, len(data))
            if parsed is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                return
            start, end = parsed
            status = 206
        body = data[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Type", self._content_type(name))
        if ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _slow(self, owner: LocalHTTPServer, name: str, delay: float) -> None:
        data = owner._lookup(name)
        if data is None:
            self._simple(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", self._content_type(name))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        for i in range(len(data)):
            if owner._stopping.wait(delay):
                return
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()

    def _slow_headers(self, owner: LocalHTTPServer, delay: float) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        self.wfile.flush()
        while not owner._stopping.wait(delay):
            self.wfile.write(b"a")
            self.wfile.flush()

    def _drop(self, owner: LocalHTTPServer, name: str, after: str | None) -> None:
        data = owner._lookup(name)
        if data is None:
            self._simple(404)
            return
        start, end, status = 0, len(data) - 1, 200
        range_header = self.headers.get("Range")
        if range_header and (parsed := _parse_range(range_header, len(data))) is not None:
            (start, end), status = parsed, 206
        body = data[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Type", self._content_type(name))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        cut = int(after) if after is not None else len(body) // 2
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    def _huge(self, owner: LocalHTTPServer, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = bytes(64 * 1024)
        sent = 0
        while sent < length and not owner._stopping.is_set():
            piece = chunk[: min(len(chunk), length - sent)]
            self.wfile.write(piece)
            sent += len(piece)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for a single ``bytes=`` range, None if unsatisfiable/invalid."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if not first:  # suffix range: the last N bytes
            n = int(last)
            if n <= 0 or size == 0:
                return None
            return max(0, size - n), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)
