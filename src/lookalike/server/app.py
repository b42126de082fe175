"""The FastAPI application: routes, error handling, auth, limits and metrics.

Build it with :func:`create_app`; ``lookalike serve`` runs it on uvicorn. Every error is a
JSON object ``{"error": "one line"}`` with a 4xx status (5xx only for real server faults,
which never show a traceback).
"""

import functools
import json
import logging
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..collection import Collection
from ..errors import (
    DownloadError,
    ImageRejected,
    InvalidInput,
    ItemNotFound,
    LookalikeError,
)
from .metrics import Metrics
from .security import check_api_key
from .service import Conflict, ServerSettings, Service, Upload, WouldBlock

log = logging.getLogger(__name__)

_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_SLACK = 64 * 1024  # multipart boundaries and form fields on top of the upload limit


class SearchRequest(BaseModel):
    """A JSON search: exactly one of ``id``, ``url`` or ``vector``."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="search by a stored item (excluded from the results)")
    url: str | None = Field(None, description="an image URL (only when URL fetching is on)")
    vector: list[float] | str | None = Field(
        None, description="floats for cosine models; packed bits as hex for hash models"
    )
    k: int = Field(10, ge=1, description="number of results")
    threshold: float | None = Field(None, ge=-1, le=1, description="minimum score")
    label: str | None = Field(None, description="only items with this label")


# -- errors ---------------------------------------------------------------------------


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _status_for(exc: LookalikeError) -> int:
    if isinstance(exc, ImageRejected):
        return {"too-large": 413, "not-an-image": 415}.get(exc.reason, 400)
    if isinstance(exc, ItemNotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, InvalidInput | DownloadError):
        return 400
    return 400


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "error"


def _install_error_handlers(app: FastAPI) -> None:
    async def lookalike_error(_req: Request, exc: Exception) -> Response:
        assert isinstance(exc, LookalikeError)
        return _error(_status_for(exc), _one_line(str(exc)))

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

    async def unexpected(_req: Request, exc: Exception) -> Response:
        log.error("unexpected server error", exc_info=exc)
        return _error(500, "internal server error")

    app.add_exception_handler(LookalikeError, lookalike_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)


# -- middleware ------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


async def _send_json(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
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


# -- the app ---------------------------------------------------------------------------


_SWAGGER_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}


@functools.lru_cache(maxsize=len(_SWAGGER_FILES))
def _swagger_file(name: str) -> bytes | None:
    """Swagger UI 5's files, as shipped by the ``fastapi-offline`` package (server extra)."""
    try:
        return resources.files("fastapi_offline").joinpath("static", name).read_bytes()
    except (ImportError, OSError):
        return None


def _static_bytes(name: str) -> bytes:
    return resources.files("lookalike.server").joinpath("static", name).read_bytes()


def create_app(
    collection_dir: str | Path | Collection, settings: ServerSettings | None = None
) -> FastAPI:
    """The app serving the collection in ``collection_dir`` (or an open, writable Collection).

    The collection is opened once, for reading and writing; the server is its writer.
    """
    settings = settings or ServerSettings()
    if isinstance(collection_dir, Collection):
        coll = collection_dir
    else:
        coll = Collection.open(collection_dir, create=False)
    service = Service(coll, settings)
    metrics = Metrics()
    page = _static_bytes("index.html")
    assets = {name: _static_bytes(name) for name in _STATIC}

    app = FastAPI(
        docs_url=None,  # served below from local files: no CDN anywhere
        redoc_url=None,
        title="lookalike",
        version=__version__,
        description=(
            "Visual similarity search over a lookalike collection. Write endpoints "
            + (
                "and, on this server, every API endpoint need"
                if settings.api_key_all
                else "need"
                if settings.api_key
                else "would need"
            )
            + " an API key in the `X-API-Key` header when the server runs with `--api-key`."
        ),
    )
    app.state.service = service
    app.state.metrics = metrics
    _install_error_handlers(app)

    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + _SLACK)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )
    app.add_middleware(Observe, metrics=metrics)

    key_header = APIKeyHeader(
        name="X-API-Key", auto_error=False, description="the server's --api-key"
    )

    def _check(request: Request, needed: bool) -> None:
        if not needed or settings.api_key is None:
            return
        headers = {
            "x-api-key": request.headers.get("x-api-key"),
            "authorization": request.headers.get("authorization"),
        }
        present = {k: v for k, v in headers.items() if v is not None}
        if not check_api_key(settings.api_key, present):
            raise HTTPException(
                401,
                "missing or wrong API key (send it as X-API-Key)",
                {"WWW-Authenticate": "ApiKey"},
            )

    async def read_access(request: Request, _key: str | None = Depends(key_header)) -> None:
        _check(request, settings.api_key_all)

    async def write_access(request: Request, _key: str | None = Depends(key_header)) -> None:
        _check(request, True)

    async def read_now(fn: Callable[..., Any], *args: Any) -> Any:
        """Run a short read on the event loop when no writer holds or awaits the lock
        (no thread hop: searches take ~1 ms), else in the threadpool, where it may wait."""
        try:
            return fn(*args, blocking=False)
        except WouldBlock:
            return await run_in_threadpool(fn, *args)

    # Open reads carry no auth dependency at all (it would cost every search a little).
    read_dep = [Depends(read_access)] if settings.api_key_all else []
    write_dep = [Depends(write_access)]
    max_k = settings.max_k

    async def _read_files(files: list[UploadFile]) -> list[bytes]:
        if len(files) > settings.max_files:
            raise InvalidInput(f"at most {settings.max_files} files per request")
        out = []
        for f in files:
            data = await f.read()
            if len(data) > settings.max_upload_bytes:
                raise ImageRejected(
                    "too-large", f"{f.filename or 'upload'} is over the upload size limit"
                )
            out.append(data)
        return out

    # -- page and assets -------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return HTMLResponse(page, headers={**_PAGE_HEADERS, "Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in assets:
            raise HTTPException(404, "not found")
        return Response(
            assets[name], media_type=_STATIC[name], headers={"Cache-Control": "no-cache"}
        )

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="lookalike API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )

    @app.get("/docs-assets/{name}", include_in_schema=False)
    def docs_asset(name: str) -> Response:
        if name not in _SWAGGER_FILES:
            raise HTTPException(404, "not found")
        data = _swagger_file(name)
        if data is None:
            raise HTTPException(404, "fastapi-offline (Swagger UI files) is not installed")
        return Response(
            data, media_type=_SWAGGER_FILES[name], headers={"Cache-Control": "max-age=86400"}
        )

    # -- service ---------------------------------------------------------------------

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness and what this server offers (the web page reads it)."""
        info = service.info() if not settings.api_key_all else {}
        return {
            "status": "ok",
            "version": __version__,
            "url_fetching": settings.allow_urls,
            "auth": "all" if settings.api_key_all else "writes" if settings.api_key else "off",
            "max_upload_bytes": settings.max_upload_bytes,
            **{k: info[k] for k in ("items", "model", "dim", "metric") if k in info},
        }

    @app.get("/metrics", tags=["service"], dependencies=read_dep, response_class=PlainTextResponse)
    def prometheus() -> Response:
        """Prometheus text: request counts and latency per route, items, index size."""
        info = service.info()

        def gauges() -> dict[str, tuple[str, float]]:
            return {
                "lookalike_items": ("Items in the collection.", info["items"]),
                "lookalike_index_vectors": ("Vectors in the search index.", info["index"]["count"]),
                "lookalike_index_bytes": ("Size of the index file.", info["index"]["bytes"]),
            }

        return PlainTextResponse(
            metrics.render(gauges), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    # -- encoding and search ---------------------------------------------------------

    @app.post("/embed", tags=["search"], dependencies=read_dep)
    async def embed(
        files: Annotated[list[UploadFile], File(description="one or more images")],
    ) -> dict[str, Any]:
        """The encoding service: images in, vectors out."""
        blobs = await _read_files(files)
        vectors = []
        for n, data in enumerate(blobs, 1):
            try:
                vec = await run_in_threadpool(service.embed, data)
            except ImageRejected as exc:
                raise ImageRejected(exc.reason, f"file {n}: {exc.detail or exc.reason}") from None
            vectors.append(service.vector_json(vec))
        model = coll.config["model"]
        return {
            "model": model["name"],
            "dim": model["dim"],
            "metric": model["metric"],
            "encoding": "packed-bits-hex" if coll.binary else "float32",
            "vectors": vectors,
        }

    search_body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": SearchRequest.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "k": {"type": "integer", "default": 10},
                            "threshold": {"type": "number"},
                            "label": {"type": "string"},
                        },
                    }
                },
            },
        }
    }

    @app.post("/search", tags=["search"], dependencies=read_dep, openapi_extra=search_body)
    async def search(request: Request) -> Response:
        """Search by an uploaded image (multipart ``file``) or by JSON ``id``/``url``/``vector``."""
        start = time.perf_counter()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            async with request.form(max_files=1, max_fields=10) as form:
                upload = form.get("file")
                if upload is None or isinstance(upload, str):
                    raise InvalidInput("multipart search needs an image in the 'file' field")
                fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
                params = SearchRequest.model_validate(
                    {
                        k: v
                        for k, v in fields.items()
                        if k in ("k", "threshold", "label") and v != ""
                    }
                )
                (data,) = await _read_files([upload])  # type: ignore[list-item]
                query: dict[str, Any] = {"upload": upload.filename or "upload"}
            vec = await run_in_threadpool(service.embed, data)
            results = await read_now(
                service.search_vector, vec, params.k, params.threshold, params.label
            )
        elif ctype == "application/json":
            try:
                params = SearchRequest.model_validate_json(await request.body())
            except ValidationError as exc:
                raise RequestValidationError(exc.errors()) from None
            given = [n for n in ("id", "url", "vector") if getattr(params, n) is not None]
            if len(given) != 1:
                raise InvalidInput("give exactly one of 'id', 'url' or 'vector'")
            if params.id is not None:
                query = {"id": params.id}
                results = await read_now(
                    service.similar, params.id, params.k, params.threshold, params.label
                )
            else:
                if params.url is not None:
                    query = {"url": params.url}
                    data = await run_in_threadpool(service.fetch, params.url)
                    vec = await run_in_threadpool(service.embed, data)
                else:
                    query = {"vector": True}
                    vec = service.parse_vector(params.vector)
                results = await read_now(
                    service.search_vector, vec, params.k, params.threshold, params.label
                )
        else:
            raise HTTPException(415, "send multipart/form-data with a 'file', or a JSON object")
        return JSONResponse(
            {
                "query": query,
                "results": results,
                "took_ms": round((time.perf_counter() - start) * 1000, 2),
            }
        )

    # -- items -----------------------------------------------------------------------
    # Ids may contain "/" (folder-relative paths), so the sub-resources come first.

    @app.get("/items/{item_id:path}/similar", tags=["items"], dependencies=read_dep)
    async def similar(
        item_id: str,
        k: Annotated[int, Query(ge=1, le=max_k)] = 10,
        threshold: Annotated[float | None, Query(ge=-1, le=1)] = None,
        label: str | None = None,
    ) -> Response:
        """The item's most similar items (the item itself excluded)."""
        start = time.perf_counter()
        results = await read_now(service.similar, item_id, k, threshold, label)
        return JSONResponse(
            {
                "query": {"id": item_id},
                "results": results,
                "took_ms": round((time.perf_counter() - start) * 1000, 2),
            }
        )

    @app.get("/items/{item_id:path}/image", tags=["items"], dependencies=read_dep)
    def image(item_id: str) -> Response:
        """The original image (catalog items only)."""
        data, media = service.image(item_id)
        return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=300"})

    @app.get("/items/{item_id:path}/thumbnail", tags=["items"], dependencies=read_dep)
    def thumbnail(item_id: str, request: Request) -> Response:
        """A small JPEG (WebP when the client accepts it), cached on disk."""
        webp = "image/webp" in request.headers.get("accept", "")
        data, media = service.thumbnail(item_id, webp=webp)
        return Response(
            data,
            media_type=media,
            headers={"Cache-Control": "private, max-age=300", "Vary": "Accept"},
        )

    @app.get("/items/{item_id:path}", tags=["items"], dependencies=read_dep)
    def get_item(item_id: str) -> dict[str, Any]:
        """One item: id, label, metadata, size and links to its image."""
        return service.get(item_id)

    @app.delete("/items/{item_id:path}", tags=["items"], dependencies=write_dep)
    async def delete_item(item_id: str) -> dict[str, Any]:
        """Remove the item (and its uploaded image file)."""
        await run_in_threadpool(service.remove, item_id)
        return {"removed": item_id}

    @app.post("/items", tags=["items"], dependencies=write_dep, status_code=201)
    async def add_items(
        files: Annotated[list[UploadFile], File(description="images to add")],
        ids: Annotated[list[str] | None, Form(description="one id per file")] = None,
        labels: Annotated[list[str] | None, Form(description="one label, or one per file")] = None,
        metadata: Annotated[
            list[str] | None, Form(description="a JSON object, or one per file")
        ] = None,
    ) -> dict[str, Any]:
        """Upload images to add; returns their ids. All or nothing."""
        blobs = await _read_files(files)
        n = len(blobs)

        def per_file(values: list[str] | None, name: str) -> list[str | None]:
            if not values:
                return [None] * n
            if len(values) == 1 and name != "ids":
                return [values[0]] * n
            if len(values) != n:
                raise InvalidInput(f"{len(values)} {name} for {n} files")
            return list(values)

        metas: list[dict[str, Any]] = []
        for text in per_file(metadata, "metadata"):
            if text is None:
                metas.append({})
                continue
            try:
                value = json.loads(text)
            except ValueError:
                raise InvalidInput("metadata must be a JSON object") from None
            if not isinstance(value, dict):
                raise InvalidInput("metadata must be a JSON object")
            metas.append(value)
        uploads = [
            Upload(data, i, lab or None, m)
            for data, i, lab, m in zip(
                blobs, per_file(ids, "ids"), per_file(labels, "labels"), metas, strict=True
            )
        ]
        added = await run_in_threadpool(service.add, uploads)
        return {"added": len(added), "ids": added}

    return app
