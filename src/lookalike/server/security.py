"""The server's safety checks: API keys, upload sniffing and SSRF-safe URL fetching.

Nothing here imports FastAPI, so it is usable (and testable) on its own.

URL fetching (:func:`safe_fetch`) only ever connects to addresses it has vetted:

* only ``http`` and ``https``; no credentials in the URL; ports are allowed;
* the host name is resolved once with :func:`socket.getaddrinfo`; if *any* address is
  private, loopback, link-local, multicast, reserved, unspecified or otherwise not globally
  routable (including IPv4-mapped IPv6 forms), the URL is refused;
* the connection goes to the vetted IP itself (no second DNS lookup, so DNS rebinding
  cannot swap the address); TLS still checks the certificate against the host name;
* redirects are followed by hand, at most ``max_redirects``, and every hop is checked again;
* environment proxies are ignored; the body is capped at ``max_bytes`` and the whole fetch
  (all hops) at ``timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import hmac
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, quote, urljoin, urlsplit

from ..errors import DownloadError, ImageRejected, InvalidInput

__all__ = [
    "FetchLimits",
    "UrlRefused",
    "address_allowed",
    "check_api_key",
    "safe_fetch",
    "sniff_image",
]

# Raster formats the server accepts and serves, with their media types.
IMAGE_MEDIA_TYPES: dict[str, str] = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "ICO": "image/x-icon",
}
EXTENSIONS: dict[str, str] = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "GIF": ".gif",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "ICO": ".ico",
}


class UrlRefused(InvalidInput):
    """A URL the server will not fetch (scheme, address, size, redirects...)."""


# -- API keys ------------------------------------------------------------------------


def check_api_key(expected: str, headers: dict[str, str]) -> bool:
    """True when the request ``headers`` (lower-case names) carry ``expected``, as
    ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``; compared in constant time."""
    given = headers.get("x-api-key")
    if given is None:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer":
            given = token.strip()
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


# -- upload sniffing -----------------------------------------------------------------


def sniff_image(data: bytes) -> str:
    """The image format of ``data`` found from its bytes (never from a file name or a
    declared content type), e.g. ``"JPEG"``; raises :class:`ImageRejected` otherwise."""
    return sniff(data)[0]


def sniff(data: bytes) -> tuple[str, int]:
    """The format (as :func:`sniff_image`) and the pixel count of ``data``, from its header
    only (nothing is decoded)."""
    import io

    from PIL import Image

    if not data:
        raise ImageRejected("empty", "the upload has zero bytes")
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or ""
            width, height = im.size
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too-large", str(exc)) from None
    except Exception:  # noqa: BLE001 - anything Pillow cannot identify
        raise ImageRejected("not-an-image", "unrecognised file format") from None
    if fmt not in IMAGE_MEDIA_TYPES:
        raise ImageRejected("not-an-image", f"{fmt or 'unknown'} files are not accepted")
    return fmt, int(width) * int(height)


# -- SSRF-safe fetching --------------------------------------------------------------


@dataclass(frozen=True)
class FetchLimits:
    timeout: float = 10.0
    max_bytes: int = 20 * 2**20
    max_redirects: int = 5
    user_agent: str = "lookalike-server/0.1"


def address_allowed(address: str) -> bool:
    """True only for globally routable unicast addresses (IPv4 or IPv6); IPv6 forms that
    embed an IPv4 address (mapped, 6to4) are judged by that address, Teredo is refused."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None or ip.is_site_local:
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return address_allowed(str(embedded))
    if (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    ):
        return False
    return ip.is_global


Resolver = Callable[[str, int], list[str]]


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlRefused(f"cannot resolve host {host!r}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = sock  # visible to the watchdog during the TLS handshake
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def safe_fetch(
    url: str,
    limits: FetchLimits | None = None,
    *,
    allow_address: Callable[[str], bool] = address_allowed,
    resolver: Resolver = _resolve,
) -> bytes:
    """Fetch ``url`` with the SSRF rules of the module docstring.

    Raises :class:`UrlRefused` (a 4xx for the client) for URLs or addresses that are not
    allowed, and :class:`DownloadError` when an allowed fetch fails (HTTP error, timeout,
    too large). ``allow_address`` is injectable for tests only.
    """
    limits = limits or FetchLimits()
    deadline = time.monotonic() + limits.timeout
    with _Watchdog(limits.timeout) as watchdog:
        try:
            return _fetch(url, limits, deadline, watchdog, allow_address, resolver)
        except (OSError, http.client.HTTPException) as exc:
            if watchdog.fired or isinstance(exc, TimeoutError | socket.timeout):
                raise DownloadError("download timed out") from None
            raise DownloadError(f"download failed: {type(exc).__name__}: {exc}") from None


class _Watchdog:
    """Shuts the current connection's socket down when the fetch's one total deadline
    passes: a socket timeout alone bounds each read, and a host that drips a byte before
    every timeout could hold the fetch (and a server thread) for ever."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()

    def watch(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._conn = conn

    def connected(self, sock: socket.socket) -> None:
        """Called once the socket exists (it may be after the deadline)."""
        with self._lock:
            if self.fired:
                _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sock = self._conn.sock if self._conn is not None else None
            if sock is not None:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _fetch(
    url: str,
    limits: FetchLimits,
    deadline: float,
    watchdog: _Watchdog,
    allow_address: Callable[[str], bool],
    resolver: Resolver,
) -> bytes:
    current = url
    for _hop in range(limits.max_redirects + 1):
        parts = _check_url(current)
        current = parts.geturl()
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = resolver(host, port)
        if not addresses:
            raise UrlRefused(f"host {host!r} has no address")
        refused = [a for a in addresses if not allow_address(a)]
        if refused:
            raise UrlRefused(
                f"refusing to fetch {host!r}: it resolves to a non-public address ({refused[0]})"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0 or watchdog.fired:
            raise DownloadError("download timed out")
        cls = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
        conn = cls(host, port, addresses[0], timeout=remaining)
        watchdog.watch(conn)
        try:
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            conn.connect()
            if conn.sock is not None:
                watchdog.connected(conn.sock)
            conn.request(
                "GET",
                target,
                headers={
                    "User-Agent": limits.user_agent,
                    "Accept": "image/*",
                    "Host": parts.netloc,
                },
            )
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location")
                if not location:
                    raise DownloadError(f"HTTP {resp.status} redirect without a Location")
                current = urljoin(current, location)
                continue
            if resp.status != 200:
                raise DownloadError(f"HTTP {resp.status} {resp.reason}")
            length = resp.getheader("Content-Length")
            if length and length.isdigit() and int(length) > limits.max_bytes:
                raise UrlRefused(f"the image is larger than {limits.max_bytes} bytes")
            data = _read_capped(resp, limits.max_bytes, deadline, conn)
            if watchdog.fired:  # a body without a length ends at the shut-down socket
                raise DownloadError("download timed out")
            return data
        finally:
            conn.close()
    raise UrlRefused(f"more than {limits.max_redirects} redirects")


def _check_url(url: str) -> SplitResult:
    """The parts of ``url``, refused unless fetchable, in ASCII: an international host name
    in IDNA (``xn--``) form, the path and query percent-encoded as UTF-8 (existing ``%XX``
    escapes are kept), the fragment dropped."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise UrlRefused(f"invalid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("only http and https URLs can be fetched")
    if not parts.hostname:
        raise UrlRefused("invalid URL: no host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("URLs with credentials are not fetched")
    host = parts.hostname
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise UrlRefused(f"invalid host name in URL: {parts.hostname!r}") from None
    if any(c <= " " or c in "\x7f/\\?#@" for c in host):
        raise UrlRefused(f"invalid host name in URL: {parts.hostname!r}")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return parts._replace(
        netloc=netloc,
        path=quote(parts.path, safe=_URL_SAFE),
        query=quote(parts.query, safe=_URL_SAFE + "?"),
        fragment="",
    )


# Characters left as they are in a path or query (RFC 3986 sub-delims, ":", "@", "/", and "%"
# so that escapes already present survive).
_URL_SAFE = "/%:@!$&'()*+,;=-._~"


def _read_capped(
    resp: http.client.HTTPResponse,
    max_bytes: int,
    deadline: float,
    conn: http.client.HTTPConnection,
) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DownloadError("download timed out")
        if conn.sock is not None:
            conn.sock.settimeout(remaining)
        chunk = resp.read1(64 * 1024) if hasattr(resp, "read1") else resp.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise UrlRefused(f"the image is larger than {max_bytes} bytes")
        chunks.append(chunk)
