"""HTTP plumbing around the routes: JSON error handlers (every error is ``{"error": "one
line"}``, never a traceback), the request body limit, and per-route metrics."""

import json
import logging
import os
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import (
    DownloadError,
    ImageRejected,
    InvalidInput,
    ItemExists,
    ItemNotFound,
    LookalikeError,
    ServiceFailed,
    ServiceUnavailable,
)
from .limits import Busy
from .metrics import Metrics
from .security import check_api_key
from .service import Conflict
from .settings import ServerSettings

RETRY_AFTER_S = 5  # a dependency (Milvus, Redis) is down: what 503 answers suggest

__all__ = ["BodyLimit", "KeyGate", "Observe", "install_error_handlers"]

log = logging.getLogger(__name__)

# -- errors ---------------------------------------------------------------------------


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _status_for(exc: LookalikeError) -> int:
    if isinstance(exc, ImageRejected):
        return {"too-large": 413, "not-an-image": 415}.get(exc.reason, 400)
    if isinstance(exc, ItemNotFound):
        return 404
    if isinstance(exc, Conflict | ItemExists):
        return 409
    if isinstance(exc, InvalidInput | DownloadError):
        return 400
    if isinstance(exc, ServiceFailed):  # Milvus failed on its side: not the client's fault
        return 502
    return 400


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "error"


def _without_paths(message: str, root: Path | None) -> str:
    """The library's messages name the collection folder; a client never sees it."""
    if root is None:
        return message
    for folder in dict.fromkeys((str(root), os.path.realpath(root))):
        message = message.replace(f" in collection {folder}", "").replace(f" in {folder}", "")
        message = message.replace(folder, "<collection>")
    return message


def install_error_handlers(app: FastAPI, root: Path | None = None) -> None:
    """JSON error handlers; messages are cleaned of the collection folder ``root``."""

    async def lookalike_error(_req: Request, exc: Exception) -> Response:
        assert isinstance(exc, LookalikeError)
        message = _one_line(_without_paths(str(exc), root))
        if isinstance(exc, Busy):
            return _error(503, message, {"Retry-After": str(exc.retry_after)})
        if isinstance(exc, ServiceUnavailable):  # Milvus or Redis down: try again soon
            return _error(503, message, {"Retry-After": str(RETRY_AFTER_S)})
        return _error(_status_for(exc), message)

    async def http_error(_req: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return _error(exc.status_code, _one_line(detail), dict(exc.headers or {}))

    async def validation_error(_req: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError | ValidationError)
        parts = []
        for err in exc.errors()[:3]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return _error(422, _one_line("invalid request: " + "; ".join(parts)))

    async def client_gone(_req: Request, _exc: Exception) -> Response:
        # nobody reads this answer; it only keeps a hung-up client out of the error log
        return _error(400, "the client closed the connection before sending the whole body")

    async def unexpected(_req: Request, exc: Exception) -> Response:
        log.error("unexpected server error", exc_info=exc)
        return _error(500, "internal server error")

    app.add_exception_handler(LookalikeError, lookalike_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ValidationError, validation_error)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(Exception, unexpected)


# -- middleware ------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


async def _send_json(
    send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with a 413, whether or not they declare a
    Content-Length, before the body is buffered or parsed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body over the {self.limit // 2**20} MB limit"
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 400, "invalid Content-Length")
                    return
                if declared > self.limit:
                    await _send_json(send, 413, message)
                    return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    raise _TooLarge
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the app made of the aborted body, the answer is 413
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await _send_json(send, 413, message)


# Paths that hold no collection data: open even with --api-key-all.
_OPEN_PATHS = frozenset({"/", "/health", "/favicon.ico", "/docs", "/openapi.json"})
_OPEN_PREFIXES = ("/static/", "/docs-assets/")
KEY_ERROR = "missing or wrong API key (send it as X-API-Key)"


def needs_key(settings: ServerSettings, method: str, path: str) -> bool:
    """Whether a request must carry the API key: writes (POST /items, DELETE /items/...),
    and with ``api_key_all`` everything but the page, its assets, the docs and /health."""
    if settings.api_key is None:
        return False
    if settings.api_key_all:
        return path not in _OPEN_PATHS and not path.startswith(_OPEN_PREFIXES)
    return (method == "POST" and path == "/items") or (
        method == "DELETE" and path.startswith("/items/")
    )


class KeyGate:
    """Checks the API key from the request headers alone, before any body is read: a
    client without the key cannot make the server receive and parse a 20 MB upload. (The
    routes' own key dependencies stay, and describe the key in the OpenAPI schema.)"""

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        expected = self.settings.api_key
        if (
            scope["type"] == "http"
            and expected is not None
            and needs_key(self.settings, scope["method"], scope["path"])
        ):
            headers = {
                name.decode("latin-1"): value.decode("latin-1")
                for name, value in scope["headers"]
                if name in (b"x-api-key", b"authorization")
            }
            if not check_api_key(expected, headers):
                await _send_json(send, 401, KEY_ERROR, [(b"www-authenticate", b"ApiKey")])
                return
        await self.app(scope, receive, send)


class Observe:
    """Counts requests and their latency per route template, and adds safety headers."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def wrapped_send(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
                headers = list(msg.get("headers", []))
                if not any(k == b"x-content-type-options" for k, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                msg = {**msg, "headers": headers}
            await send(msg)

        try:
            await self.app(scope, receive, wrapped_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(
                scope.get("method", "?"), template, status, time.perf_counter() - start
            )
