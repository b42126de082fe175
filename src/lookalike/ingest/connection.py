"""Connections for the downloader: urllib openers whose sockets a watchdog can shut down, so a stalled peer never holds a worker past its deadline; a cancel flag shared by the workers."""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import http.client
    import ssl
    import urllib.request


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

    class Watched:
        """Mixed into an HTTP(S) connection: its sockets are registered with the watchdog."""

        sock: Any

        def __init__(self, *args: Any, watchdog: _Watchdog, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[call-arg]
            self._watchdog = watchdog
            watch_create_connection(self, watchdog)

        def connect(self) -> None:
            super().connect()  # type: ignore[misc]
            self._watchdog.register(self.sock)

    class WatchedHTTPConnection(Watched, http.client.HTTPConnection):
        pass

    class WatchedHTTPSConnection(Watched, http.client.HTTPSConnection):
        pass

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
