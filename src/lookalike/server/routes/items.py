"""Items: add (upload), get and delete them, and serve their images and thumbnails."""

import json
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ...errors import InvalidInput
from ...store.metadata import MAX_DEPTH, check_metadata
from ..responses import (
    IMAGE_200,
    THUMBNAIL_200,
    SafeJSONResponse,
    errors,
    image_upload_encoding,
)
from ..uploads import Upload
from .common import Wiring, read_files


def add_item_routes(app: FastAPI, wiring: Wiring) -> None:
    """``/items`` and ``/items/{id}`` with its ``/image`` and ``/thumbnail``. Ids may contain
    "/" (folder-relative paths), so the sub-resources come first."""
    service, settings = wiring.service, wiring.settings
    read_dep, write_dep = wiring.read_dep, wiring.write_dep
    auth = (401,) if settings.api_key_all else ()

    @app.get(
        "/items/{item_id:path}/image",
        tags=["items"],
        dependencies=read_dep,
        response_class=Response,
        responses={**IMAGE_200, **errors(*auth, 404)},
    )
    def image(item_id: str) -> Response:
        """The original image (catalog items only)."""
        data, media = service.image(item_id)
        return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=300"})

    @app.get(
        "/items/{item_id:path}/thumbnail",
        tags=["items"],
        dependencies=read_dep,
        response_class=Response,
        responses={**THUMBNAIL_200, **errors(*auth, 404, 503)},
    )
    def thumbnail(item_id: str, request: Request) -> Response:
        """A small JPEG (WebP when the client accepts it), cached on disk."""
        webp = "image/webp" in request.headers.get("accept", "")
        data, media = service.thumbnail(item_id, webp=webp)
        return Response(
            data,
            media_type=media,
            headers={"Cache-Control": "private, max-age=300", "Vary": "Accept"},
        )

    @app.get(
        "/items/{item_id:path}",
        tags=["items"],
        dependencies=read_dep,
        response_model=dict[str, Any],
        responses=errors(*auth, 404),
    )
    def get_item(item_id: str) -> Response:
        """One item: id, label, metadata, size and links to its image."""
        return SafeJSONResponse(service.get(item_id))

    @app.delete(
        "/items/{item_id:path}",
        tags=["items"],
        dependencies=write_dep,
        responses=errors(401, 404, 503),
    )
    async def delete_item(item_id: str) -> dict[str, Any]:
        """Remove the item (and its uploaded image file)."""
        await run_in_threadpool(service.remove, item_id)
        return {"removed": item_id}

    @app.post(
        "/items",
        tags=["items"],
        dependencies=write_dep,
        status_code=201,
        responses=errors(400, 401, 409, 413, 415, 422, 503),
        openapi_extra=image_upload_encoding("files"),
    )
    async def add_items(
        files: Annotated[list[UploadFile], File(description="images to add")],
        ids: Annotated[list[str] | None, Form(description="one id per file")] = None,
        labels: Annotated[list[str] | None, Form(description="one label, or one per file")] = None,
        metadata: Annotated[
            list[str] | None, Form(description="a JSON object, or one per file")
        ] = None,
    ) -> dict[str, Any]:
        """Upload images to add; returns their ids. All or nothing."""
        blobs = await read_files(files, settings)
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
            metas.append(parse_metadata(text))
        uploads = [
            Upload(data, i, lab or None, m)
            for data, i, lab, m in zip(
                blobs, per_file(ids, "ids"), per_file(labels, "labels"), metas, strict=True
            )
        ]
        added = await run_in_threadpool(service.add, uploads)
        return {"added": len(added), "ids": added}


def parse_metadata(text: str) -> dict[str, Any]:
    """One ``metadata`` form field: a JSON object within the limits of
    :func:`~lookalike.store.metadata.check_metadata` (finite numbers, depth, size)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidInput(f"metadata is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise InvalidInput(f"metadata must be a JSON object ({exc})") from None
    return check_metadata(value)
