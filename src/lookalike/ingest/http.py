"""HTTP transfers for the downloader: one attempt (streamed to a .part file, resumed with Range), retries with backoff, a watchdog that enforces the timeouts, and classification of failures."""

from __future__ import annotations

import io
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from ..errors import InvalidInput
from .connection import _Cancel, _open, _Watchdog

if TYPE_CHECKING:
    import http.client
    from email.message import Message


# --------------------------------------------------------------------------- retries


logger = logging.getLogger(__name__)

T = TypeVar("T")

_CHUNK = 64 * 1024
_MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is shortened to this
_RETRY_STATUS = frozenset({408, 425, 429})


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
