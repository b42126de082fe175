"""HTTP for the client: requests with the standard library, hand-made multipart bodies, and
the server's JSON errors as the library's typed errors."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import (
    ImageRejected,
    InvalidInput,
    ItemExists,
    ItemNotFound,
    LookalikeError,
    QueryError,
    ServiceUnavailable,
)

__all__ = [
    "ItemExists",
    "Part",
    "ServerError",
    "ServerUnavailable",
    "Transport",
    "Unauthorized",
    "multipart",
    "public_url",
]

SERVICE = "lookalike server"


class Unauthorized(LookalikeError):
    """The server wants an API key, or another one (HTTP 401/403)."""

    exit_code = 2


class ServerUnavailable(ServiceUnavailable):
    """The server is down, unreachable, too slow, or busy (HTTP 503); ``retry_after`` is the
    server's ``Retry-After`` in seconds when it sent one."""

    def __init__(self, uri: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(SERVICE, uri, detail)
        self.retry_after = retry_after


class ServerError(LookalikeError):
    """The server failed on its side (HTTP 5xx other than 503) or answered something else
    than the API's JSON."""


@dataclass(frozen=True)
class Part:
    """One multipart form field: a text value, or a file when ``filename`` is given."""

    name: str
    value: bytes | str
    filename: str | None = None


def multipart(parts: Sequence[Part]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body and its Content-Type (with a fresh boundary)."""
    boundary = "lookalike-" + uuid.uuid4().hex
    out = bytearray()
    for part in parts:
        name = _quoted(part.name)
        out += f"--{boundary}\r\n".encode()
        if part.filename is not None:
            out += (
                f'Content-Disposition: form-data; name="{name}"; '
                f'filename="{_quoted(part.filename)}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
        else:
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        value = part.value
        out += value.encode() if isinstance(value, str) else value
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def _quoted(text: str) -> str:
    """A header parameter value: quotes and line breaks percent-encoded (as browsers do)."""
    return text.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


def public_url(url: str) -> str:
    """``url`` without user:password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class Transport:
    """Sends requests to one server. Every call has the timeout; the key goes in X-API-Key."""

    def __init__(self, url: str, api_key: str | None, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"the server URL must be http(s)://host[:port]: {public_url(url)}")
        if parts.username is not None or parts.password is not None:
            raise InvalidInput("give the API key as api_key=, not in the server URL")
        self.base = url.rstrip("/")
        self.shown = public_url(self.base)
        self._key = api_key
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Transport({self.shown!r})"

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        parts: Sequence[Part] | None = None,
        query_errors: bool = False,
    ) -> Any:
        """The decoded JSON answer. ``query_errors``: a 400/422 is a ``QueryError``."""
        headers = {"Accept": "application/json"}
        data: bytes | None = None
        if parts is not None:
            data, headers["Content-Type"] = multipart(parts)
        elif json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        if self._key is not None:
            headers["X-API-Key"] = self._key
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                raise self._error(exc.code, exc.read(), exc.headers, query_errors) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise ServerUnavailable(self.shown, _reason(exc, self.timeout)) from None
        try:
            return json.loads(body)
        except ValueError:
            raise ServerError(f"{self.shown}{path} did not answer JSON") from None

    def _error(self, status: int, body: bytes, headers: Any, query_errors: bool) -> LookalikeError:
        try:
            message = str(json.loads(body)["error"])
        except (ValueError, KeyError, TypeError):
            message = body.decode("utf-8", "replace").strip()[:200] or f"HTTP {status}"
        if status == 503:
            return ServerUnavailable(self.shown, message, _retry_after(headers.get("Retry-After")))
        if status in (401, 403):
            return Unauthorized(message)
        if status == 404:
            return ItemNotFound(message)
        if status == 409:
            return ItemExists(message)
        if status == 413:
            return ImageRejected("too-large", message)
        if status == 415:
            return ImageRejected("not-an-image", message)
        if status in (400, 422):
            return QueryError(message) if query_errors else InvalidInput(message)
        return ServerError(f"{self.shown} answered HTTP {status}: {message}")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (an HTTP date is not worth parsing here)."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _reason(exc: BaseException, timeout: float) -> str:
    reason: Any = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError | socket.timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "unknown host"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__
