"""The web page and its static files, the offline Swagger UI at ``/docs``, ``/health`` and
the Prometheus ``/metrics``."""

import functools
from importlib import resources
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from ... import __version__
from ...models.loader import has_text_tower
from ..middleware import RETRY_AFTER_S
from ..responses import SafeJSONResponse, errors
from .common import Wiring

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


@functools.lru_cache(maxsize=1)
def favicon() -> bytes:
    """A 32x32 icon drawn here (two overlapping discs, "alike"), as ICO bytes."""
    import io

    from PIL import Image, ImageDraw

    im = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    draw = ImageDraw.Draw(im)
    draw.rounded_rectangle((0, 0, 31, 31), radius=7, fill=(47, 111, 223, 255))
    draw.ellipse((4, 8, 20, 24), fill=(255, 255, 255, 255))
    draw.ellipse((12, 8, 28, 24), outline=(255, 255, 255, 255), width=2)
    buf = io.BytesIO()
    im.save(buf, format="ICO", sizes=[(32, 32)])
    return buf.getvalue()


def _static_bytes(name: str) -> bytes:
    return resources.files("lookalike.server").joinpath("static", name).read_bytes()


def add_page_routes(app: FastAPI, wiring: Wiring) -> None:
    """``/``, ``/static/{name}``, ``/favicon.ico``, ``/docs``, ``/docs-assets/{name}``, ``/health``, ``/metrics``."""
    service, settings, metrics = wiring.service, wiring.settings, wiring.metrics
    page = _static_bytes("index.html")
    assets = {name: _static_bytes(name) for name in _STATIC}

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

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon_ico() -> Response:
        return Response(
            favicon(), media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"}
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

    @app.get("/health", tags=["service"], responses=errors(503))
    def health() -> Any:
        """Liveness and what this server offers (the web page reads it). A replica serving
        from Milvus and Redis lists them under ``dependencies``: 503 when one is down."""
        deps = service.dependencies()
        if any(state != "ok" for state in deps.values()):
            return SafeJSONResponse(
                {"status": "unavailable", "version": __version__, "dependencies": deps},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        info = service.info() if not settings.api_key_all else {}
        text_search = has_text_tower(service.model)  # a file check at most
        return {
            "status": "ok",
            "version": __version__,
            "url_fetching": settings.allow_urls,
            "auth": "all" if settings.api_key_all else "writes" if settings.api_key else "off",
            "max_upload_bytes": settings.max_upload_bytes,
            "max_k": settings.max_k,
            **{k: info[k] for k in ("items", "model", "dim", "metric") if k in info},
            # the page enables its text box by this (with --api-key-all: not told, tried)
            **({"text_search": text_search} if info else {}),
            **({"dependencies": deps} if deps else {}),
        }

    @app.get(
        "/metrics", tags=["service"], dependencies=wiring.read_dep, response_class=PlainTextResponse
    )
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
