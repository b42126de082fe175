"""Browsing: ``GET /items`` (a page of items, optionally of one label) and ``GET /labels``."""

from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..browse import Browser
from ..responses import SafeJSONResponse, errors
from .common import Wiring

MAX_PAGE = 200


class LabelCount(BaseModel):
    label: str
    count: int = Field(description="items with this label")


class Labels(BaseModel):
    """The collection's labels with their item counts."""

    labels: list[LabelCount] = Field(description="by label name")
    unlabelled: int = Field(description="items without a label")
    total: int = Field(description="items in the collection")


class ItemPage(BaseModel):
    """A page of items in the order they were added; each in the shape of ``GET /items/{id}``."""

    items: list[dict[str, Any]] = Field(
        description="id, label, metadata, url, width, height, image_url, thumbnail_url"
    )
    total: int = Field(description="items in the collection (of this label, when given)")
    offset: int
    limit: int
    label: str | None = None


def add_browse_routes(app: FastAPI, wiring: Wiring) -> None:
    """``GET /items`` and ``GET /labels``."""
    browser = Browser(wiring.service.browse_source, wiring.service.lock)
    auth = (401,) if wiring.settings.api_key_all else ()

    @app.get(
        "/items",
        tags=["items"],
        dependencies=wiring.read_dep,
        response_model=ItemPage,
        responses=errors(*auth, 422),
    )
    def list_items(
        offset: Annotated[int, Query(ge=0, le=2**62, description="items to skip")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="items to return")] = 24,
        label: Annotated[
            str | None, Query(description="only items with this label (none: an empty page)")
        ] = None,
    ) -> Response:
        """Browse the collection: ``limit`` items from ``offset``, oldest first. An unknown
        label is an empty page with ``total`` 0 (``GET /labels`` lists the known ones)."""
        return SafeJSONResponse(browser.page(offset, limit, label))

    @app.get(
        "/labels",
        tags=["items"],
        dependencies=wiring.read_dep,
        response_model=Labels,
        responses=errors(*auth),
    )
    def labels() -> dict[str, Any]:
        """Every label of the collection with its item count."""
        return browser.labels()
