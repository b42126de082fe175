"""The FastAPI application: :func:`create_app` wires the service, middleware and routes.

``lookalike serve`` runs it on uvicorn. Every error is a JSON object ``{"error": "one
line"}`` with a 4xx status (5xx only for real server faults, which never show a traceback).
Where things live: :mod:`.middleware` (error handlers, body limit, metrics), :mod:`.routes`
(one module per resource), :mod:`.service` (what the server does, without HTTP).
"""

from pathlib import Path

from fastapi import FastAPI

from .. import __version__
from ..collection import Collection
from ..distributed.served import ServedCollection
from ..errors import InvalidInput
from .metrics import Metrics
from .middleware import BodyLimit, KeyGate, Observe, install_error_handlers
from .remote_service import RemoteService
from .routes.browse import add_browse_routes
from .routes.common import Wiring, access_dependencies
from .routes.items import add_item_routes
from .routes.pages import add_page_routes
from .routes.search import add_search_routes
from .service import ServerSettings, Service

_SLACK = 64 * 1024  # multipart boundaries and form fields on top of the upload limit


def create_app(
    collection_dir: str | Path | Collection | ServedCollection,
    settings: ServerSettings | None = None,
    *,
    uploads: Path | None = None,
) -> FastAPI:
    """The app serving the collection in ``collection_dir`` (or an open, writable Collection),
    opened once for reading and writing (the server is its writer); or, stateless, a
    :class:`ServedCollection` (Milvus + Redis) with the shared ``uploads`` folder."""
    settings = settings or ServerSettings()
    service: Service
    root: Path | None = None
    if isinstance(collection_dir, ServedCollection):
        if uploads is None:
            raise InvalidInput("a replica serving from Milvus needs --uploads DIR (shared)")
        service = RemoteService(collection_dir, settings, uploads)
    else:
        if isinstance(collection_dir, Collection):
            coll = collection_dir
        else:
            coll = Collection.open(collection_dir, create=False)
        service, root = Service(coll, settings), coll.root
    metrics = Metrics()

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
    install_error_handlers(app, root)

    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + _SLACK)
    app.add_middleware(KeyGate, settings=settings)  # outside BodyLimit: 401 before 413
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )
    app.add_middleware(Observe, metrics=metrics)

    read_dep, write_dep = access_dependencies(settings)
    wiring = Wiring(service, settings, metrics, read_dep, write_dep)
    # The order is the route order: search before items, whose /items/{id} would match
    # /items/{id}/similar (ids may contain "/").
    add_page_routes(app, wiring)
    add_search_routes(app, wiring)
    add_browse_routes(app, wiring)
    add_item_routes(app, wiring)
    return app
