"""The REST API: every endpoint, the security defaults and every bad input (TestClient)."""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

import imagegen  # noqa: E402
import tiny_models  # noqa: E402
from http_server import LocalHTTPServer  # noqa: E402
from PIL import Image  # noqa: E402
from server_util import GALLERY, client, make_collection  # noqa: E402

from lookalike.collection import Collection  # noqa: E402
from lookalike.errors import DownloadError, MissingDependency  # noqa: E402
from lookalike.server import ServerSettings, create_app  # noqa: E402
from lookalike.server.security import (  # noqa: E402
    FetchLimits,
    UrlRefused,
    address_allowed,
    check_api_key,
    safe_fetch,
)
from lookalike.server.service import RWLock  # noqa: E402

KEY = "s3cret-key"


@pytest.fixture
def coll(tmp_path: Path) -> Iterator[Collection]:
    c = make_collection(tmp_path)
    yield c
    c.close()


def gallery_bytes(coll: Collection, label: str, seed: int) -> bytes:
    return (coll.root.parent / "gallery" / label / f"{seed}.jpg").read_bytes()


def upload(data: bytes, name: str = "q.jpg", ctype: str = "image/jpeg") -> dict[str, Any]:
    return {"file": (name, data, ctype)}


def ids_of(resp: Any) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [r["id"] for r in resp.json()["results"]]


# -- page, health, metrics -----------------------------------------------------------


def test_page_and_assets_are_served_by_the_app_without_any_cdn(coll: Collection) -> None:
    c = client(coll)
    page = c.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for asset, ctype in (("app.js", "javascript"), ("app.css", "text/css")):
        r = c.get(f"/static/{asset}")
        assert r.status_code == 200 and ctype in r.headers["content-type"]
        assert "//cdn" not in r.text and "@import" not in r.text
    assert '<script src="/static/app.js"' in page.text
    assert 'href="/static/app.css"' in page.text
    assert 'name="viewport"' in page.text  # phone-sized screens
    assert c.get("/static/nope.js").status_code == 404
    assert c.get("/static/..%2Fservice.py").status_code == 404


def test_health_reports_model_items_and_safe_defaults(coll: Collection) -> None:
    body = client(coll).get("/health").json()
    assert body["status"] == "ok"
    assert body["items"] == sum(len(s) for s in GALLERY.values())
    assert body["model"] == "phash" and body["metric"] == "hamming"
    assert body["url_fetching"] is False and body["auth"] == "off"
    assert body["max_upload_bytes"] == 20 * 2**20
    assert body["text_search"] is False  # phash has no text tower


def test_metrics_count_requests_latency_items_and_index(coll: Collection) -> None:
    c = client(coll)
    c.get("/items/red/1.jpg/similar")
    c.get("/items/red/1.jpg/similar")
    c.get("/items/nope/similar")
    text = c.get("/metrics").text
    route = 'route="/items/{item_id:path}/similar"'
    assert f'lookalike_requests_total{{method="GET",{route},status="200"}} 2' in text
    assert f'lookalike_requests_total{{method="GET",{route},status="404"}} 1' in text
    assert f'lookalike_request_duration_seconds_count{{method="GET",{route}}} 3' in text
    assert "# TYPE lookalike_request_duration_seconds histogram" in text
    assert "lookalike_items 8" in text
    assert "lookalike_index_vectors 8" in text
    assert "lookalike_index_bytes " in text


def test_openapi_docs_list_every_endpoint(coll: Collection) -> None:
    c = client(coll)
    docs = c.get("/docs")
    assert docs.status_code == 200
    assert "cdn" not in docs.text.lower() and "//" not in docs.text.replace("http://", "")
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/docs-assets/{asset}" in docs.text
        r = c.get(f"/docs-assets/{asset}")
        assert r.status_code == 200 and len(r.content) > 10_000
    assert c.get("/docs-assets/..%2Fsecret").status_code == 404
    assert c.get("/redoc").status_code == 404
    paths = c.get("/openapi.json").json()["paths"]
    for p in (
        "/embed",
        "/search",
        "/items",
        "/items/{item_id}",
        "/items/{item_id}/similar",
        "/items/{item_id}/image",
        "/items/{item_id}/thumbnail",
        "/health",
        "/metrics",
    ):
        assert p in paths, p
    assert "multipart/form-data" in paths["/search"]["post"]["requestBody"]["content"]


# -- search -------------------------------------------------------------------------


@pytest.mark.parametrize(("label", "seed"), [("red", 1), ("red", 4), ("blue", 12)])
def test_upload_search_returns_the_identical_image_first(
    coll: Collection, label: str, seed: int
) -> None:
    r = client(coll).post("/search", files=upload(gallery_bytes(coll, label, seed)), data={"k": 3})
    body = r.json()
    assert r.status_code == 200, body
    first = body["results"][0]
    assert first["id"] == f"{label}/{seed}.jpg"
    assert first["score"] == 1.0 and first["label"] == label and first["rank"] == 1
    assert len(body["results"]) == 3
    assert first["image_url"] == f"/items/{label}%2F{seed}.jpg/image"
    assert first["thumbnail_url"] == f"/items/{label}%2F{seed}.jpg/thumbnail"
    assert "path" not in first  # server file paths are never shown


def test_upload_search_sniffs_content_not_name_or_type(coll: Collection) -> None:
    png = imagegen.encode(Image.open(io.BytesIO(gallery_bytes(coll, "blue", 11))), "PNG")
    r = client(coll).post("/search", files=upload(png, "photo.txt", "text/plain"))
    assert ids_of(r)[0] == "blue/11.jpg"


def test_search_by_id_excludes_the_item_and_matches_similar_endpoint(coll: Collection) -> None:
    c = client(coll)
    by_json = ids_of(c.post("/search", json={"id": "red/2.jpg", "k": 5}))
    by_get = ids_of(c.get("/items/red/2.jpg/similar", params={"k": 5}))
    by_quoted = ids_of(c.get("/items/red%2F2.jpg/similar?k=5"))
    assert by_json == by_get == by_quoted
    assert len(by_json) == 5 and "red/2.jpg" not in by_json


def test_search_filters_k_threshold_and_label(coll: Collection) -> None:
    c = client(coll)
    r = c.post("/search", json={"id": "red/1.jpg", "k": 10, "label": "blue"})
    assert r.status_code == 200
    assert {h["label"] for h in r.json()["results"]} == {"blue"}
    assert len(r.json()["results"]) == 4
    r = c.get("/items/red/1.jpg/similar", params={"k": 10, "threshold": 0.6})
    assert all(h["score"] >= 0.6 for h in r.json()["results"])
    r = c.post("/search", files=upload(gallery_bytes(coll, "red", 3)), data={"label": "red"})
    assert [h["label"] for h in r.json()["results"]] == ["red"] * 4
    r = c.post(
        "/search", files=upload(gallery_bytes(coll, "red", 3)), data={"k": "2", "threshold": "0.99"}
    )
    assert ids_of(r) == ["red/3.jpg"]


def test_search_by_vector_hex_and_bytes(coll: Collection) -> None:
    c = client(coll)
    emb = c.post("/embed", files={"files": ("a.jpg", gallery_bytes(coll, "blue", 13))}).json()
    hexvec = emb["vectors"][0]
    assert ids_of(c.post("/search", json={"vector": hexvec, "k": 1})) == ["blue/13.jpg"]
    as_list = list(bytes.fromhex(hexvec))
    assert ids_of(c.post("/search", json={"vector": as_list, "k": 1})) == ["blue/13.jpg"]


def test_embed_gives_the_stored_vectors(coll: Collection) -> None:
    files = [
        ("files", ("a.jpg", gallery_bytes(coll, "red", 1), "image/jpeg")),
        ("files", ("b.jpg", gallery_bytes(coll, "blue", 11), "image/jpeg")),
    ]
    body = client(coll).post("/embed", files=files).json()
    assert body["model"] == "phash" and body["dim"] == 64 and body["metric"] == "hamming"
    assert body["encoding"] == "packed-bits-hex"
    for item_id, vec in zip(("red/1.jpg", "blue/11.jpg"), body["vectors"], strict=True):
        stored = coll.vectors.read([coll.get(item_id).slot], coll.catalog.next_slot)[0]
        assert bytes.fromhex(vec) == bytes(stored)


def test_float_model_embed_and_search(tmp_path: Path) -> None:
    model = tiny_models.write_local_model(tmp_path / "tiny", tiny_models.make_pooling_model(dim=16))
    c0 = make_collection(tmp_path, model=None, model_path=model)
    try:
        c = client(c0)
        data = gallery_bytes(c0, "blue", 14)
        emb = c.post("/embed", files={"files": ("x.jpg", data)}).json()
        assert emb["dim"] == 16 and emb["encoding"] == "float32" and emb["metric"] == "cosine"
        vec = np.asarray(emb["vectors"][0])
        assert vec.shape == (16,) and abs(float(np.linalg.norm(vec)) - 1) < 1e-5
        r = c.post("/search", files=upload(data), data={"k": 2})
        assert r.json()["results"][0]["id"] == "blue/14.jpg"
        assert r.json()["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)
        assert ids_of(c.post("/search", json={"vector": list(vec), "k": 1})) == ["blue/14.jpg"]
        bad = c.post("/search", json={"vector": [1.0, 2.0]})
        assert bad.status_code == 400 and "expected 16" in bad.json()["error"]
        bad = c.post("/search", json={"vector": "00ff"})
        assert bad.status_code == 400
    finally:
        c0.close()


# -- items and images ------------------------------------------------------------------


def test_get_item_image_and_thumbnail(coll: Collection) -> None:
    c = client(coll)
    item = c.get("/items/red/3.jpg").json()
    assert item["id"] == "red/3.jpg" and item["label"] == "red"
    assert item["width"] == 160 and item["height"] == 120
    assert "path" not in item
    img = c.get(item["image_url"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert img.content == gallery_bytes(coll, "red", 3)
    thumb = c.get(item["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    t = Image.open(io.BytesIO(thumb.content))
    assert t.format == "JPEG" and max(t.size) <= 256
    cached = list((coll.root / "cache" / "thumbs").glob("*.jpg"))
    assert len(cached) == 1
    assert c.get(item["thumbnail_url"]).content == thumb.content
    webp = c.get(item["thumbnail_url"], headers={"Accept": "image/webp,*/*"})
    assert webp.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(webp.content)).format == "WEBP"


def test_small_thumbnail_setting(coll: Collection) -> None:
    r = client(coll, thumbnail_px=64).get("/items/blue/12.jpg/thumbnail")
    assert max(Image.open(io.BytesIO(r.content)).size) == 64


def test_add_search_and_delete_items(coll: Collection) -> None:
    c = client(coll, api_key=KEY)
    new = imagegen.encode(imagegen.photo_like(77, (150, 100)), "PNG")
    other = imagegen.encode(imagegen.photo_like(78, (150, 100)), "JPEG")
    files = [("files", ("n.png", new, "image/png")), ("files", ("o.jpg", other, "image/jpeg"))]
    r = c.post(
        "/items",
        files=files,
        data={"ids": ["new-77", "new-78"], "labels": ["green"], "metadata": ['{"sku": 7}']},
        headers={"X-API-Key": KEY},
    )
    assert r.status_code == 201, r.text
    assert r.json() == {"added": 2, "ids": ["new-77", "new-78"]}
    item = c.get("/items/new-77").json()
    assert item["label"] == "green" and item["metadata"] == {"sku": 7}
    assert c.get("/items/new-77/image").content == new
    assert c.get("/items/new-77/image").headers["content-type"] == "image/png"
    assert ids_of(c.post("/search", files=upload(other), data={"k": 1})) == ["new-78"]
    stored = Path(coll.get("new-77").path or "")
    assert stored.parent == coll.root / "uploads" and stored.is_file()

    # default id: from the content; the same content again is a conflict, and nothing is added
    r = c.post("/items", files={"files": ("z.png", new)}, headers={"X-API-Key": KEY})
    assert r.status_code == 201 and r.json()["ids"][0].startswith("upload-")
    again = c.post("/items", files={"files": ("z.png", new)}, headers={"X-API-Key": KEY})
    assert again.status_code == 409 and "already exists" in again.json()["error"]
    assert len(coll) == 8 + 3
    assert len(list((coll.root / "uploads").iterdir())) == 3  # the refused upload left no file

    d = c.delete("/items/new-77", headers={"Authorization": f"Bearer {KEY}"})
    assert d.status_code == 200 and d.json() == {"removed": "new-77"}
    assert not stored.exists()
    assert c.get("/items/new-77").status_code == 404
    assert c.delete("/items/new-77", headers={"X-API-Key": KEY}).status_code == 404
    d = c.delete("/items/red/1.jpg", headers={"X-API-Key": KEY})  # an indexed file: kept on disk
    assert d.status_code == 200 and (coll.root.parent / "gallery/red/1.jpg").exists()
    assert len(coll) == 9


# -- security -------------------------------------------------------------------------


def test_write_endpoints_need_the_api_key(coll: Collection) -> None:
    c = client(coll, api_key=KEY)
    data = imagegen.encode(imagegen.photo_like(90), "JPEG")
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
        r = c.post("/items", files={"files": ("a.jpg", data)}, headers=headers)
        assert r.status_code == 401 and "API key" in r.json()["error"]
        assert c.delete("/items/red/1.jpg", headers=headers).status_code == 401
    assert len(coll) == 8
    # reads stay open by default
    assert c.get("/items/red/1.jpg/similar").status_code == 200
    assert c.post("/search", json={"id": "red/1.jpg"}).status_code == 200
    assert c.get("/health").json()["auth"] == "writes"


def test_api_key_all_protects_every_api_endpoint(coll: Collection) -> None:
    c = client(coll, api_key=KEY, api_key_all=True)
    h = {"X-API-Key": KEY}
    data = gallery_bytes(coll, "red", 1)
    reads = [
        ("GET", "/items/red/1.jpg", {}),
        ("GET", "/items/red/1.jpg/similar", {}),
        ("GET", "/items/red/1.jpg/image", {}),
        ("GET", "/items/red/1.jpg/thumbnail", {}),
        ("GET", "/metrics", {}),
        ("POST", "/search", {"json": {"id": "red/1.jpg"}}),
        ("POST", "/embed", {"files": {"files": ("a.jpg", data)}}),
    ]
    for method, path, kw in reads:
        assert c.request(method, path, **kw).status_code == 401, path
        assert c.request(method, path, headers=h, **kw).status_code == 200, path
    # the page, its assets and the health check hold no data and stay reachable
    assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200
    health = c.get("/health").json()
    assert health["auth"] == "all" and "items" not in health and "text_search" not in health


def test_api_key_settings_are_checked() -> None:
    from lookalike.errors import InvalidInput

    with pytest.raises(InvalidInput):
        ServerSettings(api_key_all=True)
    with pytest.raises(InvalidInput):
        ServerSettings(api_key="  ")
    assert check_api_key("k", {"x-api-key": "k"})
    assert check_api_key("k", {"authorization": "Bearer k"})
    assert not check_api_key("k", {"authorization": "Basic k"})
    assert not check_api_key("k", {"x-api-key": "kk"})
    assert not check_api_key("k", {})


def test_cors_is_off_unless_configured(coll: Collection) -> None:
    origin = {"Origin": "https://evil.example"}
    r = client(coll).get("/health", headers=origin)
    assert "access-control-allow-origin" not in r.headers
    pre = client(coll).options(
        "/search", headers={**origin, "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in pre.headers
    c = client(coll, cors_origins=("https://app.example",))
    ok = c.get("/health", headers={"Origin": "https://app.example"})
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in c.get("/health", headers=origin).headers


BAD_UPLOADS = [
    ("text", imagegen.text_file(), 415, "not-an-image"),
    ("random", imagegen.random_bytes(), 415, "not-an-image"),
    ("empty", b"", 400, "empty"),
    ("truncated", imagegen.truncated_jpeg(), 400, "truncated"),
    ("bomb", imagegen.png_bomb(), 413, "too-large"),
    ("svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>', 415, "not-an-image"),
]


@pytest.mark.parametrize(("name", "data", "status", "reason"), BAD_UPLOADS, ids=lambda v: "")
def test_bad_uploads_get_a_4xx_json_error(
    coll: Collection, name: str, data: bytes, status: int, reason: str
) -> None:
    c = client(coll, api_key=KEY)
    for path, field in (("/search", "file"), ("/embed", "files"), ("/items", "files")):
        r = c.post(
            path, files={field: (f"{name}.jpg", data, "image/jpeg")}, headers={"X-API-Key": KEY}
        )
        assert r.status_code == status, (path, r.text)
        assert reason in r.json()["error"]
    assert len(coll) == 8 and not (coll.root / "uploads").exists()


def test_megapixel_limit(coll: Collection) -> None:
    big = imagegen.encode(imagegen.photo_like(5, (1200, 1000)), "JPEG")
    r = client(coll, max_megapixels=1.0).post("/search", files=upload(big))
    assert r.status_code == 413 and "megapixels" in r.json()["error"]


def test_upload_size_limit_with_and_without_content_length(coll: Collection) -> None:
    c = client(coll, max_upload_bytes=100_000)
    big = imagegen.random_bytes(300_000)
    r = c.post("/search", files=upload(big))
    assert r.status_code == 413 and "limit" in r.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: streamed
        for _ in range(40):
            yield b"x" * 10_000

    r = c.post("/search", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    # a file just over the per-file limit inside a small-enough body is refused too
    c2 = client(coll, max_upload_bytes=150_000)
    r = c2.post("/embed", files={"files": ("a.jpg", b"\xff\xd8\xff" + b"0" * 150_100)})
    assert r.status_code == 413


def test_too_many_files(coll: Collection) -> None:
    data = gallery_bytes(coll, "red", 1)
    files = [("files", (f"{i}.jpg", data)) for i in range(3)]
    r = client(coll, max_files=2).post("/embed", files=files)
    assert r.status_code == 400 and "at most 2" in r.json()["error"]


BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    (
        "POST",
        "/search",
        {"content": b"{", "headers": {"Content-Type": "application/json"}},
        422,
        "",
    ),
    ("POST", "/search", {"json": ["id"]}, 422, ""),
    ("POST", "/search", {"json": {}}, 400, "exactly one"),
    ("POST", "/search", {"json": {"id": "red/1.jpg", "url": "http://x"}}, 400, "exactly one"),
    ("POST", "/search", {"json": {"id": "red/1.jpg", "bogus": 1}}, 422, "bogus"),
    ("POST", "/search", {"json": {"id": "red/1.jpg", "k": 0}}, 422, "k"),
    ("POST", "/search", {"json": {"id": "red/1.jpg", "k": 5000}}, 400, "k must be"),
    ("POST", "/search", {"json": {"id": "red/1.jpg", "k": "many"}}, 422, "k"),
    ("POST", "/search", {"json": {"id": "red/1.jpg", "threshold": 3}}, 422, "threshold"),
    ("POST", "/search", {"json": {"id": "nope"}}, 404, "nope"),
    ("POST", "/search", {"json": {"vector": "zz"}}, 400, "hex"),
    ("POST", "/search", {"json": {"vector": "00ff"}}, 400, "expected 8"),
    ("POST", "/search", {"json": {"vector": [1.5] * 8}}, 400, "byte values"),
    ("POST", "/search", {"json": {"url": "http://127.0.0.1/a.jpg"}}, 400, "URL fetching is off"),
    ("POST", "/search", {"content": b"id=1", "headers": {"Content-Type": "text/plain"}}, 415, ""),
    ("POST", "/search", {"data": {"k": "3"}, "files": {"other": ("a", b"x")}}, 400, "'file'"),
    ("POST", "/embed", {"json": {}}, 422, "files"),
    ("GET", "/items/nope", {}, 404, "nope"),
    ("GET", "/items/nope/similar", {}, 404, "nope"),
    ("GET", "/items/red/1.jpg/similar?k=-1", {}, 422, "k"),
    ("GET", "/items/red/1.jpg/similar?k=x", {}, 422, "k"),
    ("GET", "/items/red/1.jpg/similar?threshold=nan", {}, 422, "threshold"),
    ("GET", "/items/nope/image", {}, 404, "nope"),
    ("GET", "/items/nope/thumbnail", {}, 404, "nope"),
    ("GET", "/items/../../../etc/passwd/image", {}, 404, ""),
    ("GET", "/items/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd/image", {}, 404, ""),
    ("GET", "/items//etc/passwd/image", {}, 404, ""),
    ("DELETE", "/items/nope", {}, 404, "nope"),
    ("POST", "/items", {"files": {"files": ("a.jpg", b"x")}, "data": {"metadata": "[1]"}}, 400, ""),
    ("GET", "/no-such-page", {}, 404, ""),
    ("PUT", "/items/red/1.jpg", {}, 405, ""),
]


@pytest.mark.parametrize(("method", "path", "kw", "status", "text"), BAD_REQUESTS)
def test_bad_requests_get_a_4xx_json_error(
    coll: Collection, method: str, path: str, kw: dict[str, Any], status: int, text: str
) -> None:
    r = client(coll).request(method, path, **kw)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and "\n" not in body["error"]
    assert "Traceback" not in r.text
    assert text in body["error"]


def test_metadata_and_ids_must_match_the_files(coll: Collection) -> None:
    c = client(coll)
    data = imagegen.encode(imagegen.photo_like(60), "JPEG")
    r = c.post("/items", files={"files": ("a.jpg", data)}, data={"metadata": "not json"})
    assert r.status_code == 400 and "JSON object" in r.json()["error"]
    r = c.post("/items", files={"files": ("a.jpg", data)}, data={"ids": ["a", "b"]})
    assert r.status_code == 400 and "2 ids for 1 files" in r.json()["error"]
    files = [("files", ("a.jpg", data)), ("files", ("b.jpg", data))]
    r = c.post("/items", files=files, data={"ids": ["same", "same"]})
    assert r.status_code == 400 and "twice" in r.json()["error"]
    assert len(coll) == 8


def test_items_without_an_image_file_answer_404(coll: Collection) -> None:
    coll.add_vectors(["vec-only"], np.zeros((1, 8), dtype=np.uint8))
    c = client(coll)
    assert c.get("/items/vec-only").status_code == 200
    r = c.get("/items/vec-only/image")
    assert r.status_code == 404 and "no stored image" in r.json()["error"]
    assert c.get("/items/vec-only/thumbnail").status_code == 404
    Path(coll.get("red/4.jpg").path or "").unlink()  # the indexed file vanished
    r = c.get("/items/red/4.jpg/image")
    assert r.status_code == 404 and "missing" in r.json()["error"]


def test_unexpected_errors_are_json_500_without_traceback(
    coll: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = client(coll)

    def boom(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(coll, "search_vector", boom)
    r = c.get("/items/red/1.jpg/similar")
    assert r.status_code == 500 and r.json() == {"error": "internal server error"}


# -- URL fetching and the SSRF guard ------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",
        "::",
        "not-an-ip",
    ],
)
def test_guard_refuses_non_public_addresses(address: str) -> None:
    assert not address_allowed(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"])
def test_guard_allows_public_addresses(address: str) -> None:
    assert address_allowed(address)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://example.com/a.jpg", "only http and https"),
        ("gopher://example.com/", "only http and https"),
        ("http:///nohost", "no host"),
        ("http://user:pw@example.com/a.jpg", "credentials"),
        ("http://example.com:99999/a.jpg", "invalid URL"),
        ("http://localhost/a.jpg", "non-public"),
        ("http://127.0.0.1:1/a.jpg", "non-public"),
        ("http://[::1]/a.jpg", "non-public"),
        ("http://169.254.169.254/latest/meta-data/", "non-public"),
        ("http://2130706433/a.jpg", "non-public"),  # 127.0.0.1 as a number
    ],
)
def test_safe_fetch_refuses_before_connecting(url: str, message: str) -> None:
    with pytest.raises(UrlRefused, match=message):
        safe_fetch(url)


@pytest.fixture
def image_server(coll: Collection) -> Iterator[LocalHTTPServer]:
    files = {"a.jpg": gallery_bytes(coll, "blue", 12), "big.jpg": b"\xff\xd8\xff" + b"0" * 300_000}
    with LocalHTTPServer(files) as server:
        yield server


def test_url_search_to_a_loopback_server_is_refused_with_fetching_on(
    coll: Collection, image_server: LocalHTTPServer
) -> None:
    c = client(coll, allow_urls=True)
    assert c.get("/health").json()["url_fetching"] is True
    r = c.post("/search", json={"url": image_server.url("a.jpg")})
    assert r.status_code == 400 and "non-public address" in r.json()["error"]
    assert image_server.total_requests == 0  # refused before any connection


def test_url_search_success_path_with_the_test_only_override(
    coll: Collection, image_server: LocalHTTPServer
) -> None:
    # allow_private_for_tests turns the address check off so that the fetch path (pinned
    # connection, redirects, limits) can run against 127.0.0.1; the check itself is
    # covered by the tests above and by the redirect test below.
    c = client(coll, allow_urls=True, allow_private_for_tests=True, fetch_timeout=1.0)
    r = c.post("/search", json={"url": image_server.url("a.jpg"), "k": 2})
    assert ids_of(r)[0] == "blue/12.jpg"
    assert r.json()["results"][0]["score"] == 1.0
    r = c.post("/search", json={"url": image_server.url("redirect/a.jpg"), "k": 1})
    assert ids_of(r) == ["blue/12.jpg"]
    r = c.post("/search", json={"url": image_server.url("missing.jpg")})
    assert r.status_code == 400 and "HTTP 404" in r.json()["error"]
    r = c.post("/search", json={"url": image_server.url("slow/a.jpg?delay=0.5")})
    assert r.status_code == 400 and "timed out" in r.json()["error"]
    small = client(coll, allow_urls=True, allow_private_for_tests=True, max_upload_bytes=100_000)
    r = small.post("/search", json={"url": image_server.url("big.jpg")})
    assert r.status_code == 400 and "larger than" in r.json()["error"]
    r = small.post("/search", json={"url": image_server.url("nolength/big.jpg")})
    assert r.status_code == 400 and "larger than" in r.json()["error"]


class _Redirector(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_a: Any) -> None:
        pass


def test_redirects_are_checked_again_at_every_hop(image_server: LocalHTTPServer) -> None:
    """A 'public' host (127.0.0.1 plays it, via an injected resolver and address check)
    redirects to a host that resolves to a private address: refused at the second hop."""
    _Redirector.target = f"http://internal.test:{image_server.port}/a.jpg"
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    public_port = httpd.server_address[1]
    dns = {"public.test": "127.0.0.1", "internal.test": "10.0.0.7"}
    try:
        with pytest.raises(UrlRefused, match="internal.test.*10.0.0.7"):
            safe_fetch(
                f"http://public.test:{public_port}/start",
                allow_address=lambda a: a == "127.0.0.1",
                resolver=lambda host, _port: [dns[host]],
            )
        # the connection really goes to the vetted address (here: the image server)
        dns["internal.test"] = "127.0.0.1"
        data = safe_fetch(
            f"http://public.test:{public_port}/start",
            allow_address=lambda a: a == "127.0.0.1",
            resolver=lambda host, _port: [dns[host]],
        )
        assert data == image_server.files["a.jpg"]
        _Redirector.target = f"http://public.test:{public_port}/again"
        with pytest.raises(UrlRefused, match="redirects"):
            safe_fetch(
                f"http://public.test:{public_port}/loop",
                FetchLimits(max_redirects=3),
                allow_address=lambda a: a == "127.0.0.1",
                resolver=lambda host, _port: [dns[host]],
            )
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_any_private_address_among_several_is_refused() -> None:
    with pytest.raises(UrlRefused, match="non-public"):
        safe_fetch("http://mixed.test/a.jpg", resolver=lambda _h, _p: ["8.8.8.8", "10.0.0.1"])


def test_fetch_failures_are_download_errors() -> None:
    with pytest.raises(DownloadError):
        safe_fetch(
            "http://closed.test:1/a.jpg",
            allow_address=lambda _a: True,
            resolver=lambda _h, _p: ["127.0.0.1"],
        )


# -- concurrency primitives -----------------------------------------------------------


def test_rwlock_readers_share_writers_exclude() -> None:
    lock = RWLock()
    inside: list[str] = []
    r1_in, release_r1, writer_done = threading.Event(), threading.Event(), threading.Event()

    def reader() -> None:
        with lock.read():
            inside.append("r1")
            r1_in.set()
            release_r1.wait(5)

    def writer() -> None:
        with lock.write():
            inside.append("w")
        writer_done.set()

    t1 = threading.Thread(target=reader)
    t1.start()
    r1_in.wait(5)
    with lock.read():  # a second reader gets in while the first holds the lock
        inside.append("r2")
    tw = threading.Thread(target=writer)
    tw.start()
    assert not writer_done.wait(0.2)  # the writer waits for the reader
    release_r1.set()
    assert writer_done.wait(5)
    t1.join()
    tw.join()
    assert inside == ["r1", "r2", "w"]


# -- without the extra ---------------------------------------------------------------


def test_missing_server_extra_is_a_clear_error(
    coll: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "fastapi" else real(n, *a)
    )
    with pytest.raises(MissingDependency, match=r"lookalike\[server\]"):
        create_app(coll)


def test_json_errors_are_one_line_for_validation(coll: Collection) -> None:
    r = client(coll).post("/search", json={"id": 5})
    assert r.status_code == 422
    assert json.loads(r.text)["error"].startswith("invalid request: id:")


def test_a_failure_after_the_commit_keeps_the_committed_image(
    coll: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_update(*_a: Any, **_k: Any) -> None:
        raise OSError("disk full")

    c = client(coll)
    monkeypatch.setattr(coll.index, "update", broken_update)
    data = imagegen.encode(imagegen.photo_like(61), "JPEG")
    r = c.post("/items", files={"files": ("a.jpg", data)}, data={"ids": "late"})
    assert r.status_code == 500 and r.json() == {"error": "internal server error"}
    item = coll.get("late")  # committed before the index update failed
    assert Path(item.path or "").read_bytes() == data


def _brute_force(coll: Collection, query_id: str, label: str | None) -> dict[str, float]:
    """Exact Hamming scores of every other item (with ``label``) against ``query_id``."""
    q = coll.vectors.read([coll.get(query_id).slot], coll.catalog.next_slot)[0]
    out = {}
    for item in coll.items():
        if item.id == query_id or (label is not None and item.label != label):
            continue
        v = coll.vectors.read([item.slot], coll.catalog.next_slot)[0]
        out[item.id] = 1.0 - int(np.unpackbits(np.bitwise_xor(q, v)).sum()) / 64
    return out


@pytest.mark.parametrize("label", ["red", "blue", "rare", "unknown"])
def test_label_filtered_search_is_exact(coll: Collection, label: str) -> None:
    coll.add_vectors(["rare-1"], np.full((1, 8), 7, dtype=np.uint8), labels=["rare"])
    c = client(coll)
    expected = _brute_force(coll, "red/2.jpg", label)
    r = c.get("/items/red/2.jpg/similar", params={"k": 3, "label": label})
    hits = r.json()["results"]
    best = sorted(expected.values(), reverse=True)[:3]
    assert [h["score"] for h in hits] == pytest.approx(best)
    assert all(h["score"] == pytest.approx(expected[h["id"]]) for h in hits)
    assert all(h["label"] == label for h in hits)
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    r = c.post("/search", json={"id": "red/2.jpg", "k": 3, "label": label, "threshold": 0.6})
    assert all(h["score"] >= 0.6 and h["label"] == label for h in r.json()["results"])
