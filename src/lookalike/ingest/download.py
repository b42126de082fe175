"""Download the images that manifests list by URL into a local cache folder, one file per id.

* Only ``http`` and ``https`` URLs are fetched (redirects are followed, to http/https only);
  the usual ``*_proxy`` environment variables are honoured.
* Resumable: a complete file already in the cache is never fetched again
  (``DownloadResult.cached``). A download is written to ``<target>.part`` and renamed into
  place only once complete (checked against ``Content-Length`` / ``Content-Range`` when the
  server sends them). An existing ``.part`` (from an interrupted run, or from a connection that
  dropped mid-body in this run) is resumed with ``Range: bytes=N-``; if the server answers
  ``200`` instead of ``206``, the download starts over.
* Retries with exponential backoff (and jitter) on connection errors, timeouts, ``5xx``,
  ``408`` and ``429`` (``Retry-After`` is honoured, capped); other ``4xx`` fail at once with
  ``"HTTP <code> <reason>"``.
* Each attempt is bounded in wall time by ``DownloadOptions.timeout``: a watchdog shuts the
  socket down when it expires, so a server that trickles bytes (even headers) cannot hang a
  run. ``max_bytes`` is enforced both on ``Content-Length`` and while streaming.
* :meth:`Downloader.fetch_many` never raises for a single URL: every failure is a
  :class:`DownloadResult` with a one-line ``error``.

The cache keeps one file per id: if the URL of an id changes but its extension does not, the
cached file is reused. On case-insensitive file systems, ids differing only in case share a
file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import os
import random
import re
import socket
import threading
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from ..errors import DownloadError, InvalidInput
from .sources import IMAGE_EXTENSIONS

if TYPE_CHECKING:
    import http.client
    import ssl
    import urllib.request
    from concurrent.futures import Future
    from email.message import Message

logger = logging.getLogger(__name__)

__all__ = ["DownloadOptions", "DownloadResult", "Downloader", "fetch_url"]

_CHUNK = 64 * 1024
_MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is shortened to this
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"}
    | {f"com{i}" for i in range(1, 10)}
    | {f"lpt{i}" for i in range(1, 10)}
)
_SCHEMES = ("http", "https")
_RETRY_STATUS = frozenset({408, 425, 429})

T = TypeVar("T")


@dataclass(frozen=True)
class DownloadOptions:
    """How :class:`Downloader` fetches.

    ``workers``: parallel downloads. ``timeout``: seconds of wall time for one attempt at one
    file (connect, headers and body). ``retries``: extra attempts after a retryable failure;
    ``backoff``: the first retry waits about this long, doubling each time. ``max_bytes``:
    larger files fail with "too large". ``user_agent``: sent with every request.
    """

    workers: int = 16
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.5
    max_bytes: int = 50 * 2**20
    user_agent: str = "lookalike/0.1"

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise InvalidInput(f"download workers must be at least 1, not {self.workers}")
        if not self.timeout > 0:
            raise InvalidInput(f"download timeout must be positive, not {self.timeout}")
        if self.retries < 0:
            raise InvalidInput(f"download retries must be 0 or more, not {self.retries}")
        if self.backoff < 0:
            raise InvalidInput(f"download backoff must be 0 or more, not {self.backoff}")
        if self.max_bytes < 1:
            raise InvalidInput(f"download max_bytes must be positive, not {self.max_bytes}")


_DEFAULT_OPTIONS = DownloadOptions()


@dataclass
class DownloadResult:
    """The outcome for one (id, url). ``path`` is set on success, ``error`` (one line) on
    failure; ``cached``: the file was already complete on disk and no request was made."""

    id: str
    url: str
    path: Path | None
    error: str | None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.path is not None


class Downloader:
    """Downloads URLs into ``cache_dir``, one file per id (see the module docstring)."""

    def __init__(self, cache_dir: Path, options: DownloadOptions = _DEFAULT_OPTIONS) -> None:
        self.cache_dir = Path(os.path.abspath(cache_dir))
        self.options = options

    def target_path(self, id: str, url: str) -> Path:
        """Where the file for ``id`` lives: ``cache_dir / <safe name><extension>``.

        Ids made of letters, digits, ``.``, ``_`` and ``-`` (starting with a letter or digit,
        at most 100 characters) are used as they are; any other id is cleaned up and given a
        hash suffix, deterministically, so the result is always a plain file name directly
        inside ``cache_dir``. The extension comes from the URL path when it is an image
        extension, else ``.img``.
        """
        path = self.cache_dir / (_safe_stem(id) + _url_extension(url))
        if path.parent != self.cache_dir:  # cannot happen; belt and braces
            raise DownloadError(f"unsafe cache file name for id {id!r}")
        return path

    def fetch_many(self, items: Iterable[tuple[str, str]]) -> Generator[DownloadResult, None, None]:
        """Download every ``(id, url)``; yield one result per item, in completion order.

        Items whose file is already complete in the cache are yielded at once (``cached``)
        without a request. At most ``2 * workers`` downloads are queued at a time, so
        ``items`` may be a lazy iterator over a huge manifest. Items sharing a target file
        (a repeated id) are fetched once. Closing the iterator early (``close()``, or dropping
        it) cancels what is queued and aborts the downloads in progress (their ``.part`` files
        stay, to be resumed next time).

        Raises DownloadError only if the cache folder cannot be created.
        """
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DownloadError(
                f"cannot create download cache {self.cache_dir}: {exc.strerror or exc}"
            ) from None

        max_in_flight = 2 * self.options.workers
        stop = _Cancel()
        running: dict[Future[DownloadResult], Path] = {}
        # target -> items waiting for the running download of the same target
        waiting: dict[Path, list[tuple[str, str]]] = {}
        source = iter(items)
        exhausted = False
        executor = ThreadPoolExecutor(
            max_workers=self.options.workers, thread_name_prefix="lookalike-download"
        )

        def submit(id: str, url: str, target: Path) -> None:
            running[executor.submit(self._fetch_one, id, url, target, stop)] = target

        try:
            while True:
                while not exhausted and len(running) < max_in_flight:
                    try:
                        id, url = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    early = self._precheck(id, url)
                    if isinstance(early, DownloadResult):
                        yield early
                        continue
                    if early in waiting:
                        waiting[early].append((id, url))
                        continue
                    if early.is_file():
                        yield DownloadResult(id, url, early, None, cached=True)
                        continue
                    waiting[early] = []
                    submit(id, url, early)
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    target = running.pop(future)
                    result = future.result()
                    yield result
                    queue = waiting.pop(target)
                    while queue:
                        id, url = queue.pop(0)
                        if result.path is not None:
                            yield DownloadResult(id, url, result.path, None, cached=True)
                        elif url == result.url:
                            yield DownloadResult(id, url, None, result.error, cached=False)
                        else:  # same id, another URL: worth a try
                            waiting[target] = queue
                            submit(id, url, target)
                            break
        finally:
            stop.set()
            executor.shutdown(wait=False, cancel_futures=True)

    def _precheck(self, id: str, url: str) -> DownloadResult | Path:
        """The target path, or an immediate failure for an unusable id or URL."""
        if not id:
            return DownloadResult(id, url, None, "empty id", cached=False)
        problem = _url_problem(url)
        if problem:
            return DownloadResult(id, url, None, problem, cached=False)
        try:
            return self.target_path(id, url)
        except DownloadError as exc:
            return DownloadResult(id, url, None, str(exc), cached=False)

    def _fetch_one(self, id: str, url: str, target: Path, stop: _Cancel) -> DownloadResult:
        part = target.with_name(target.name + ".part")

        def discard() -> None:
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)

        def attempt() -> None:
            _transfer(url, self.options, part=part, stop=stop)
            try:
                os.replace(part, target)
            except OSError as exc:
                raise _Fail(f"cannot write {target}: {_os_text(exc)}", retry=False) from None

        try:
            _with_retries(attempt, self.options, stop, discard, what=url)
        except _Fail as fail:
            return DownloadResult(id, url, None, fail.message, cached=False)
        except Exception as exc:  # a bug: still one result per item
            logger.debug("unexpected error downloading %s", url, exc_info=True)
            message = _one_line(f"unexpected error: {type(exc).__name__}: {exc}")
            return DownloadResult(id, url, None, message, cached=False)
        return DownloadResult(id, url, target, None, cached=False)


def fetch_url(
    url: str,
    *,
    timeout: float = 30.0,
    max_bytes: int = 50 * 2**20,
    retries: int = 1,
    user_agent: str = "lookalike/0.1",
) -> bytes:
    """Fetch one URL into memory (for queries such as ``search https://...``).

    Same rules as :class:`Downloader` (http/https only, ``timeout`` per attempt, ``max_bytes``,
    ``retries`` on transient failures). Raises :class:`DownloadError` with a one-line message
    such as ``"download failed: HTTP 404 Not Found"`` (the URL is left for the caller to add).
    """
    problem = _url_problem(url)
    if problem:
        raise DownloadError(f"download failed: {problem}")
    options = DownloadOptions(
        workers=1, timeout=timeout, retries=retries, max_bytes=max_bytes, user_agent=user_agent
    )
    stop = _Cancel()
    try:
        data = _with_retries(
            lambda: _transfer(url, options, part=None, stop=stop),
            options,
            stop,
            lambda: None,
            what=url,
        )
    except _Fail as fail:
        raise DownloadError(f"download failed: {fail.message}") from None
    assert data is not None
    return data


# --------------------------------------------------------------------------- naming


def _safe_stem(id: str) -> str:
    if (
        _SAFE_ID.fullmatch(id)
        and not id.endswith(".")
        and id.split(".")[0].lower() not in _WINDOWS_RESERVED
    ):
        return id
    digest = hashlib.sha256(id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    cleaned = _UNSAFE_CHARS.sub("_", id).strip("._-")[:80]
    return f"{cleaned}-{digest}" if cleaned else digest


def _url_extension(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    try:
        path = unquote(urlsplit(url).path)
    except ValueError:
        return ".img"
    ext = os.path.splitext(path)[1].lower()
    return ext if ext in IMAGE_EXTENSIONS else ".img"


def _url_problem(url: str) -> str | None:
    """None if ``url`` can be fetched, else a one-line reason."""
    from urllib.parse import urlsplit

    if not url:
        return "empty URL"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return _one_line(f"invalid URL: {exc}")
    if parts.scheme.lower() not in _SCHEMES:
        shown = f" {parts.scheme!r}" if parts.scheme else ""
        return f"unsupported URL scheme{shown} (only http and https)"
    if not parts.hostname:
        return "invalid URL: no host"
    return None


# --------------------------------------------------------------------------- retries


class _Fail(Exception):
    """A failed attempt. ``retry``: worth another attempt; ``discard``: the ``.part`` file is
    useless; ``restart``: start over from byte 0 at once (once, not counted as an attempt)."""

    def __init__(
        self,
        message: str,
        *,
        retry: bool,
        discard: bool = False,
        restart: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = _one_line(message)
        self.retry = retry
        self.discard = discard or restart
        self.restart = restart
        self.retry_after = retry_after


def _with_retries(
    attempt: Callable[[], T],
    options: DownloadOptions,
    stop: _Cancel,
    discard: Callable[[], None],
    *,
    what: str,
) -> T:
    attempts = options.retries + 1
    failures = 0
    restarted = False
    while True:
        if stop.is_set():
            raise _Fail("cancelled", retry=False)
        try:
            return attempt()
        except _Fail as fail:
            if fail.discard:
                discard()
            if fail.restart and not restarted:
                restarted = True
                logger.debug("restarting %s from the beginning: %s", what, fail.message)
                continue
            failures += 1
            if not fail.retry or failures >= attempts:
                if failures > 1:
                    fail.message += f" (after {failures} attempts)"
                raise
            delay = options.backoff * 2 ** (failures - 1) * (0.5 + random.random() / 2)
            if fail.retry_after is not None:
                delay = max(delay, min(fail.retry_after, _MAX_RETRY_AFTER))
            logger.debug("retrying %s in %.2fs: %s", what, delay, fail.message)
            if stop.wait(delay):
                raise _Fail("cancelled", retry=False) from None


# --------------------------------------------------------------------------- one attempt


def _transfer(
    url: str, options: DownloadOptions, *, part: Path | None, stop: _Cancel
) -> bytes | None:
    """One attempt. With ``part``: append to / resume that file (the caller renames it) and
    return None; without: return the body. Raises _Fail."""
    import urllib.error

    offset = 0
    if part is not None:
        try:
            offset = part.stat().st_size
        except FileNotFoundError:
            offset = 0
        except OSError as exc:
            raise _Fail(f"cannot read {part}: {_os_text(exc)}", retry=False) from None
    headers = {
        "User-Agent": options.user_agent,
        "Accept": "image/*,*/*;q=0.8",
        "Accept-Encoding": "identity",
    }
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"

    watchdog = _Watchdog(options.timeout)
    watchdog.start()
    stop.track(watchdog)
    try:
        try:
            response = _open(url, headers, options.timeout, watchdog)
        except urllib.error.HTTPError as exc:
            response_headers = exc.headers
            exc.close()
            if exc.code == 416 and offset > 0:
                if _content_range(response_headers.get("Content-Range"))[1] == offset:
                    return None  # the .part was already complete
                raise _Fail("HTTP 416 for the resume range", retry=True, restart=True) from None
            retry = exc.code in _RETRY_STATUS or exc.code >= 500
            raise _Fail(
                f"HTTP {exc.code} {exc.reason}".strip(),
                retry=retry,
                discard=not retry,
                retry_after=_retry_after(response_headers) if retry else None,
            ) from None
        with response:
            return _read_body(response, options, part, offset, stop, watchdog)
    except _Fail:
        raise
    except Exception as exc:
        if stop.is_set():
            raise _Fail("cancelled", retry=False) from None
        raise _classify(exc, watchdog, options.timeout) from None
    finally:
        watchdog.cancel()
        stop.untrack(watchdog)


def _read_body(
    response: http.client.HTTPResponse,
    options: DownloadOptions,
    part: Path | None,
    offset: int,
    stop: _Cancel,
    watchdog: _Watchdog,
) -> bytes | None:
    length = _int_or_none(response.headers.get("Content-Length"))
    if response.status == 206 and offset > 0:
        start, total = _content_range(response.headers.get("Content-Range"))
        if start != offset:
            raise _Fail(
                f"resume answered with Content-Range starting at {start}, not {offset}",
                retry=True,
                restart=True,
            )
        expected = total if total is not None else None if length is None else offset + length
        append = True
    else:
        if offset > 0:
            logger.debug("%s: server ignored the Range request, starting over", response.url)
        offset, append = 0, False
        expected = length
    if expected is not None and expected > options.max_bytes:
        raise _Fail(
            f"too large: {expected} bytes (limit {options.max_bytes})", retry=False, discard=True
        )

    sink: BinaryIO
    if part is None:
        sink = io.BytesIO()
    else:
        try:
            sink = open(part, "ab" if append else "wb")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise _Fail(f"cannot write {part}: {_os_text(exc)}", retry=False) from None
    size = offset
    try:
        while True:
            if stop.is_set():
                raise _Fail("cancelled", retry=False)
            chunk = response.read1(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > options.max_bytes:
                raise _Fail(
                    f"too large: more than {options.max_bytes} bytes", retry=False, discard=True
                )
            try:
                sink.write(chunk)
            except OSError as exc:
                raise _Fail(f"cannot write {part}: {_os_text(exc)}", retry=False) from None
        if stop.is_set():
            raise _Fail("cancelled", retry=False)
        if watchdog.fired:  # the watchdog's shutdown looks like the end of the body
            raise _Fail(f"timed out after {options.timeout:g}s", retry=True)
        if expected is not None and size != expected:
            if size > expected:
                raise _Fail(f"got {size} bytes, expected {expected}", retry=True, discard=True)
            raise _Fail(f"incomplete: got {size} of {expected} bytes", retry=True)
        if size == 0:
            raise _Fail("empty response", retry=False, discard=True)
        return sink.getvalue() if isinstance(sink, io.BytesIO) else None
    finally:
        sink.close()


def _classify(exc: BaseException, watchdog: _Watchdog, timeout: float) -> _Fail:
    """Turn an exception from urllib/http.client/socket into a _Fail."""
    import http.client
    import ssl
    import urllib.error

    if watchdog.fired:
        return _Fail(f"timed out after {timeout:g}s", retry=True)
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if not isinstance(reason, BaseException):
            return _Fail(f"cannot fetch: {reason}", retry=False)  # e.g. redirect to ftp://
        exc = reason
    if isinstance(exc, TimeoutError):
        return _Fail(f"timed out after {timeout:g}s", retry=True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _Fail(f"SSL certificate error: {exc.verify_message or exc}", retry=False)
    if isinstance(exc, (http.client.InvalidURL, ValueError)):
        return _Fail(f"invalid URL: {exc}", retry=False)
    if isinstance(exc, (http.client.HTTPException, OSError)):
        detail = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        name = type(exc).__name__
        return _Fail(f"connection error: {name}: {detail}" if detail else name, retry=True)
    return _Fail(f"unexpected error: {type(exc).__name__}: {exc}", retry=False)


# --------------------------------------------------------------------------- HTTP plumbing


class _Watchdog:
    """Shuts down the socket of one attempt when its wall-time budget runs out.

    Connections register their socket as soon as it exists (and again after TLS wrapping);
    shutting a socket down wakes up a blocked ``recv`` in the downloading thread.
    """

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    def register(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            fired = self.fired
        if fired:
            _shutdown(sock)

    def fire(self) -> None:
        """Shut the socket down now (also used to cancel)."""
        self._timer.cancel()
        self._fire()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sock = self._sock
        if sock is not None:
            _shutdown(sock)


class _Cancel:
    """A stop flag for the downloads of one call; setting it also shuts down the sockets of
    the attempts in progress, so that cancelling does not wait for slow servers."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._active: set[_Watchdog] = set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    def set(self) -> None:
        with self._lock:
            self._event.set()
            active = list(self._active)
        for watchdog in active:
            watchdog.fire()

    def track(self, watchdog: _Watchdog) -> None:
        with self._lock:
            self._active.add(watchdog)
            cancelled = self._event.is_set()
        if cancelled:
            watchdog.fire()

    def untrack(self, watchdog: _Watchdog) -> None:
        with self._lock:
            self._active.discard(watchdog)


def _shutdown(sock: socket.socket) -> None:
    # The base class method: SSLSocket.shutdown would also drop its SSL object.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _open(
    url: str, headers: dict[str, str], timeout: float, watchdog: _Watchdog
) -> http.client.HTTPResponse:
    import urllib.request

    http_handler, https_handler = _handler_classes()
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        http_handler(watchdog),
        https_handler(watchdog, _ssl_context()),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    response: http.client.HTTPResponse = opener.open(
        urllib.request.Request(url, headers=headers), timeout=timeout
    )
    return response


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    import ssl

    return ssl.create_default_context()


@functools.cache
def _handler_classes() -> tuple[Callable[[_Watchdog], Any], Callable[[_Watchdog, Any], Any]]:
    """urllib handlers whose connections register their sockets with a _Watchdog.

    Built on first use so that importing this module does not import urllib.request/ssl.
    """
    import http.client
    import urllib.request

    def watch_create_connection(conn: Any, watchdog: _Watchdog) -> None:
        create = conn._create_connection

        def create_and_register(*args: Any, **kwargs: Any) -> socket.socket:
            sock: socket.socket = create(*args, **kwargs)
            watchdog.register(sock)
            return sock

        conn._create_connection = create_and_register

    class WatchedHTTPConnection(http.client.HTTPConnection):
        def __init__(self, *args: Any, watchdog: _Watchdog, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._watchdog = watchdog
            watch_create_connection(self, watchdog)

        def connect(self) -> None:
            super().connect()
            self._watchdog.register(self.sock)

    class WatchedHTTPSConnection(http.client.HTTPSConnection):
        def __init__(self, *args: Any, watchdog: _Watchdog, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._watchdog = watchdog
            watch_create_connection(self, watchdog)

        def connect(self) -> None:
            super().connect()
            self._watchdog.register(self.sock)

    class WatchedHTTPHandler(urllib.request.HTTPHandler):
        def __init__(self, watchdog: _Watchdog) -> None:
            super().__init__()
            self._watchdog = watchdog

        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            factory = functools.partial(WatchedHTTPConnection, watchdog=self._watchdog)
            return self.do_open(factory, req)  # type: ignore[arg-type]

    class WatchedHTTPSHandler(urllib.request.HTTPSHandler):
        def __init__(self, watchdog: _Watchdog, context: ssl.SSLContext) -> None:
            super().__init__(context=context)
            self._watchdog = watchdog
            self._ssl_context = context

        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            factory = functools.partial(WatchedHTTPSConnection, watchdog=self._watchdog)
            return self.do_open(factory, req, context=self._ssl_context)  # type: ignore[arg-type]

    return WatchedHTTPHandler, WatchedHTTPSHandler


# --------------------------------------------------------------------------- small helpers


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) from ``bytes START-END/TOTAL`` or ``bytes */TOTAL``."""
    if not value:
        return None, None
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value)
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def _retry_after(headers: Message | None) -> float | None:
    if headers is None:
        return None
    value = _int_or_none(headers.get("Retry-After"))
    return float(value) if value is not None else None


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() else None


def _os_text(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."
