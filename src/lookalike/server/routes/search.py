"""Searching: ``/embed`` (images to vectors), ``/search`` (by upload, id, URL or vector) and
``/items/{id}/similar``."""

import time
from typing import Annotated, Any

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...errors import ImageRejected, InvalidInput
from ..responses import SafeJSONResponse, errors, image_upload_encoding
from .common import Wiring, read_files, read_now


class SearchTerm(BaseModel):
    """One weighted term of a composed search: exactly one of ``text``, ``id``, ``vector``."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, description="a text (models with a text tower)")
    id: str | None = Field(None, description="a stored item (left out of the results)")
    vector: list[float] | None = Field(None, description="a vector (cosine models)")
    weight: float = Field(1.0, description="the term's weight; negative: away from it")


class SearchRequest(BaseModel):
    """A JSON search: exactly one of ``id``, ``url``, ``vector``, ``text`` or ``terms``."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="search by a stored item (excluded from the results)")
    url: str | None = Field(None, description="an image URL (only when URL fetching is on)")
    vector: list[float] | str | None = Field(
        None, description="floats for cosine models; packed bits as hex for hash models"
    )
    text: str | None = Field(
        None, description="search by a text (models with a text tower, e.g. clip-vit-b32)"
    )
    terms: list[SearchTerm] | None = Field(
        None,
        description="a composed search: the weighted sum of the terms' unit vectors",
        max_length=64,
    )
    k: int = Field(10, ge=1, description="number of results")
    threshold: float | None = Field(None, ge=-1, le=1, description="minimum score")
    label: str | None = Field(None, description="only items with this label")
    where: str | None = Field(
        None,
        description='only items this filter accepts, e.g. label in ("dress", "skirt") and '
        "price < 20 (label and metadata fields; =, !=, <, <=, >, >=, in, exists, and, or, not)",
    )


def add_search_routes(app: FastAPI, wiring: Wiring) -> None:
    """``POST /embed``, ``POST /search`` and ``GET /items/{id}/similar``. Add these before
    the item routes: ids may contain "/", so ``/items/{id}`` would take ``.../similar``."""
    service, settings = wiring.service, wiring.settings
    read_dep = wiring.read_dep
    max_k = settings.max_k
    auth = (401,) if settings.api_key_all else ()

    @app.post(
        "/embed",
        tags=["search"],
        dependencies=read_dep,
        responses=errors(400, *auth, 413, 415, 422, 503),
        openapi_extra=image_upload_encoding("files"),
    )
    async def embed(
        files: Annotated[list[UploadFile], File(description="one or more images")],
    ) -> dict[str, Any]:
        """The encoding service: images in, vectors out."""
        blobs = await read_files(files, settings)
        vectors = []
        for n, data in enumerate(blobs, 1):
            try:
                vec = await run_in_threadpool(service.embed, data)
            except ImageRejected as exc:
                raise ImageRejected(exc.reason, f"file {n}: {exc.detail or exc.reason}") from None
            vectors.append(service.vector_json(vec))
        model = service.model
        return {
            "model": model["name"],
            "dim": model["dim"],
            "metric": model["metric"],
            "encoding": "packed-bits-hex" if service.binary else "float32",
            "vectors": vectors,
        }

    search_body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": SearchRequest.model_json_schema()},
                "multipart/form-data": {
                    "encoding": {"file": {"contentType": "image/*"}},
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "k": {"type": "integer", "default": 10},
                            "threshold": {"type": "number"},
                            "label": {"type": "string"},
                            "where": {"type": "string"},
                        },
                    },
                },
            },
        }
    }

    @app.post(
        "/search",
        tags=["search"],
        dependencies=read_dep,
        openapi_extra=search_body,
        responses=errors(400, *auth, 404, 413, 415, 422, 503),
    )
    async def search(request: Request) -> Response:
        """Search by an uploaded image (multipart ``file``) or by JSON ``id``/``url``/``vector``,
        ``text`` (models with a text tower) or ``terms`` (weighted texts, ids and vectors)."""
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
                        if k in ("k", "threshold", "label", "where") and v != ""
                    }
                )
                (data,) = await read_files([upload], settings)  # type: ignore[list-item]
                query: dict[str, Any] = {"upload": upload.filename or "upload"}
            vec = await run_in_threadpool(service.embed, data)
            results = await read_now(
                service.search_vector, vec, params.k, params.threshold, params.label, params.where
            )
        elif ctype == "application/json":
            try:
                params = SearchRequest.model_validate_json(await request.body())
            except ValidationError as exc:
                raise RequestValidationError(exc.errors()) from None
            kinds = ("id", "url", "vector", "text", "terms")
            given = [n for n in kinds if getattr(params, n) is not None]
            if len(given) != 1:
                raise InvalidInput("give exactly one of 'id', 'url', 'vector', 'text' or 'terms'")
            if params.text is not None or params.terms is not None:
                if params.text is not None:
                    query = {"text": params.text}
                    terms: list[dict[str, Any]] = [{"text": params.text}]
                else:
                    terms = [t.model_dump(exclude_none=True) for t in params.terms or []]
                    query = {
                        "terms": [{**t, "vector": True} if "vector" in t else t for t in terms]
                    }
                results = await run_in_threadpool(
                    service.search_terms,
                    terms,
                    params.k,
                    params.threshold,
                    params.label,
                    params.where,
                )
            elif params.id is not None:
                query = {"id": params.id}
                results = await read_now(
                    service.similar,
                    params.id,
                    params.k,
                    params.threshold,
                    params.label,
                    params.where,
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
                    service.search_vector,
                    vec,
                    params.k,
                    params.threshold,
                    params.label,
                    params.where,
                )
        else:
            raise HTTPException(415, "send multipart/form-data with a 'file', or a JSON object")
        return SafeJSONResponse(
            {
                "query": query,
                "results": results,
                "took_ms": round((time.perf_counter() - start) * 1000, 2),
            }
        )

    @app.get(
        "/items/{item_id:path}/similar",
        tags=["items"],
        dependencies=read_dep,
        responses=errors(400, *auth, 404, 422),
    )
    async def similar(
        item_id: str,
        k: Annotated[int, Query(ge=1, le=max_k)] = 10,
        threshold: Annotated[float | None, Query(ge=-1, le=1)] = None,
        label: str | None = None,
        where: Annotated[
            str | None, Query(description="only items this filter accepts (as in POST /search)")
        ] = None,
    ) -> Response:
        """The item's most similar items (the item itself excluded)."""
        start = time.perf_counter()
        results = await service.similar_async(item_id, k, threshold, label, where)
        return SafeJSONResponse(
            {
                "query": {"id": item_id},
                "results": results,
                "took_ms": round((time.perf_counter() - start) * 1000, 2),
            }
        )
