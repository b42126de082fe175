"""Browsing over HTTP: ``GET /items`` (paged, by label) and ``GET /labels`` (with counts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

import imagegen  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from server_util import GALLERY, client, make_collection  # noqa: E402

from lookalike.collection import Collection  # noqa: E402

KEY = "browse-test-key"


@pytest.fixture
def coll(tmp_path: Path) -> Iterator[Collection]:
    c = make_collection(tmp_path)
    yield c
    c.close()


def _add(c: TestClient, item_id: str, label: str | None, seed: int, **headers: str) -> Any:
    data: dict[str, str] = {"ids": item_id, "metadata": '{"title": "T"}'}
    if label is not None:
        data["labels"] = label
    jpeg = imagegen.encode(imagegen.photo_like(seed, (120, 90)), "JPEG", quality=90)
    return c.post("/items", files={"files": ("a.jpg", jpeg)}, data=data, headers=headers)


def test_items_pages_through_the_collection_in_order(coll: Collection) -> None:
    c = client(coll)
    everything = [i.id for i in coll.catalog.items()]
    assert len(everything) == 8
    seen: list[str] = []
    offset = 0
    while True:
        r = c.get("/items", params={"offset": offset, "limit": 3})
        assert r.status_code == 200
        body = r.json()
        assert body["total"] == 8 and body["offset"] == offset and body["limit"] == 3
        if not body["items"]:
            break
        assert len(body["items"]) <= 3
        seen += [item["id"] for item in body["items"]]
        offset += 3
    assert seen == everything  # oldest first, each once
    item = c.get("/items", params={"limit": 1}).json()["items"][0]
    assert set(item) == {
        "id",
        "label",
        "metadata",
        "url",
        "width",
        "height",
        "image_url",
        "thumbnail_url",
    }
    assert item == c.get(f"/items/{item['id']}").json()  # the shape of GET /items/{id}
    assert c.get(item["thumbnail_url"]).status_code == 200
    assert c.get("/items").json()["limit"] == 24  # the default page


def test_items_by_label_and_an_unknown_label(coll: Collection) -> None:
    c = client(coll)
    body = c.get("/items", params={"label": "blue", "limit": 2, "offset": 1}).json()
    assert body["total"] == 4 and body["label"] == "blue"
    assert [i["id"] for i in body["items"]] == ["blue/12.jpg", "blue/13.jpg"]
    assert {i["label"] for i in body["items"]} == {"blue"}
    unknown = c.get("/items", params={"label": "green"})
    assert unknown.status_code == 200
    assert unknown.json()["items"] == [] and unknown.json()["total"] == 0


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 201}, {"offset": -1}, {"limit": "x"}, {"offset": 2**63}],
)
def test_items_rejects_bad_paging(coll: Collection, params: dict[str, Any]) -> None:
    r = client(coll).get("/items", params=params)
    assert r.status_code == 422
    assert set(r.json()) == {"error"}


def test_labels_count_items_and_follow_changes(coll: Collection) -> None:
    c = client(coll, api_key=KEY)
    want = [{"label": k, "count": len(v)} for k, v in sorted(GALLERY.items())]
    assert c.get("/labels").json() == {"labels": want, "unlabelled": 0, "total": 8}
    # adds and removals bump the catalog generation: the cached counts follow
    assert _add(c, "new/green.jpg", "green", 31, **{"X-API-Key": KEY}).status_code == 201
    assert _add(c, "new/none.jpg", None, 32, **{"X-API-Key": KEY}).status_code == 201
    body = c.get("/labels").json()
    assert {"label": "green", "count": 1} in body["labels"]
    assert body["unlabelled"] == 1 and body["total"] == 10
    assert c.get("/items", params={"label": "green"}).json()["total"] == 1
    assert c.get("/items").json()["total"] == 10
    assert c.delete("/items/red/1.jpg", headers={"X-API-Key": KEY}).status_code == 200
    assert {"label": "red", "count": 3} in c.get("/labels").json()["labels"]


def test_browse_needs_the_key_with_api_key_all(coll: Collection) -> None:
    c = client(coll, api_key=KEY, api_key_all=True)
    for path in ("/items", "/labels"):
        assert c.get(path).status_code == 401
        assert c.get(path, headers={"X-API-Key": KEY}).status_code == 200


def test_browse_answers_show_no_server_path(coll: Collection) -> None:
    c = client(coll)
    text = c.get("/items", params={"limit": 200}).text + c.get("/labels").text
    assert str(coll.root.parent) not in text and '"path"' not in text


def test_openapi_documents_browse(coll: Collection) -> None:
    spec = client(coll, api_key=KEY, api_key_all=True).get("/openapi.json").json()
    items = spec["paths"]["/items"]["get"]
    assert {"200", "401", "422"} <= set(items["responses"])
    for code in ("401", "422"):
        schema = items["responses"][code]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}
    assert {p["name"] for p in items["parameters"]} == {"offset", "limit", "label"}
    labels = spec["paths"]["/labels"]["get"]
    assert {"200", "401"} <= set(labels["responses"])
    assert "Labels" in spec["components"]["schemas"]
    assert "ItemPage" in spec["components"]["schemas"]
