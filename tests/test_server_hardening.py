"""The server's answers to hostile or odd input: metadata limits, URLs, the OpenAPI
description, leftover files, the favicon (TestClient; the live tests are in
test_server_limits.py)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

import imagegen  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from server_util import client, make_collection  # noqa: E402

from lookalike.collection import Collection  # noqa: E402

KEY = "s3cret-key"


@pytest.fixture
def coll(tmp_path: Path) -> Iterator[Collection]:
    c = make_collection(tmp_path)
    yield c
    c.close()


def _jpeg(seed: int) -> bytes:
    return imagegen.encode(imagegen.photo_like(seed, (120, 90)), "JPEG", quality=90)


def _add(c: TestClient, item_id: str, metadata: str, seed: int = 77) -> Any:
    return c.post(
        "/items",
        files={"files": ("a.jpg", _jpeg(seed))},
        data={"ids": item_id, "metadata": metadata},
    )


# -- metadata limits -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ('{"x": NaN}', "finite"),
        ('{"x": Infinity}', "finite"),
        ('{"x": [1, -Infinity]}', "finite"),
        ('{"a": ' * 20 + "1" + "}" * 20, "deeper than 16"),
        ('{"a": ' * 600 + "1" + "}" * 600, "deeper than 16"),
        ('{"a": ' * 100_000 + "1" + "}" * 100_000, "deeper"),
        ("[" * 100_000 + "]" * 100_000, "deeper"),
        (json.dumps({"big": "x" * 70_000}), "limit"),
    ],
)
def test_bad_metadata_is_refused_at_input_and_never_stored(
    coll: Collection, metadata: str, reason: str
) -> None:
    c = client(coll)
    r = _add(c, "bad-meta", metadata)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert reason in error and "\n" not in error and len(error) < 300
    assert not coll.catalog.id_exists("bad-meta")
    assert c.get("/items/red/1.jpg/similar", params={"k": 20}).status_code == 200


def test_metadata_within_the_limits_round_trips(coll: Collection) -> None:
    c = client(coll)
    meta = {"a": {"b": {"c": [1, 2.5, None, True, "é"]}}, "n": -0.0}
    assert _add(c, "ok-meta", json.dumps(meta)).status_code == 201
    assert c.get("/items/ok-meta").json()["metadata"] == meta


def _store_raw_metadata(coll: Collection, item_id: str, text: str) -> None:
    """Put metadata in the catalog behind the library's back (an older version, a hand edit)."""
    db = sqlite3.connect(coll.root / "catalog.sqlite")
    with db:
        db.execute("UPDATE items SET metadata = ? WHERE id = ?", (text, item_id))
    db.close()


@pytest.mark.parametrize(
    "stored", ['{"x": NaN, "y": [Infinity, -Infinity]}', '{"a": ' * 400 + "1" + "}" * 400]
)
def test_stored_bad_metadata_never_makes_a_500(coll: Collection, stored: str) -> None:
    _store_raw_metadata(coll, "red/2.jpg", stored)
    c = client(coll)
    for resp in (
        c.get("/items/red/2.jpg"),
        c.get("/items/red/1.jpg/similar", params={"k": 8}),
        c.post("/search", json={"id": "red/1.jpg", "k": 8}),
    ):
        assert resp.status_code == 200, resp.text
        assert "NaN" not in resp.text and "Infinity" not in resp.text
    item = c.get("/items/red/2.jpg").json()
    if "NaN" in stored:
        assert item["metadata"] == {"x": None, "y": [None, None]}


def test_a_deeply_nested_json_body_is_a_4xx(coll: Collection) -> None:
    c = client(coll)
    for body in (
        "[" * 100_000,
        '{"id": ' * 100_000,
        '{"vector": ' + "[" * 50_000 + "]" * 50_000 + "}",
    ):
        r = c.post("/search", content=body, headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, r.text
        assert set(r.json()) == {"error"}


# -- URLs with non-ASCII characters ----------------------------------------------------


def test_non_ascii_urls_are_percent_encoded_and_idna_hosts(coll: Collection) -> None:
    from http_server import LocalHTTPServer

    from lookalike.server.security import safe_fetch

    image = (coll.root.parent / "gallery" / "blue" / "12.jpg").read_bytes()
    with LocalHTTPServer({"café/ü 1.jpg": image}) as srv:
        url = f"http://127.0.0.1:{srv.port}/café/ü 1.jpg?q=naïve&x=%C3%A9"
        assert safe_fetch(url, allow_address=lambda _a: True) == image
        assert srv.requests[-1].query == {"q": "naïve", "x": "é"}
        asked: list[str] = []

        def resolver(host: str, _port: int) -> list[str]:
            asked.append(host)
            return ["127.0.0.1"]

        idn = f"http://bücher.example:{srv.port}/café/ü 1.jpg"
        assert safe_fetch(idn, allow_address=lambda _a: True, resolver=resolver) == image
        assert asked == ["xn--bcher-kva.example"]
        assert srv.requests[-1].header("Host") == f"xn--bcher-kva.example:{srv.port}"

        c = client(coll, allow_urls=True, allow_private_for_tests=True)
        r = c.post("/search", json={"url": url, "k": 1})
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["id"] == "blue/12.jpg"
        # a host that cannot be written in IDNA is a 4xx, not a 500
        r = c.post("/search", json={"url": "http://exa\u0000mple.com/a.jpg"})
        assert r.status_code == 400 and set(r.json()) == {"error"}
        r = c.post("/search", json={"url": "http://" + "é" * 70 + ".com/a.jpg"})
        assert r.status_code == 400 and set(r.json()) == {"error"}


# -- leftovers are cleaned at start ----------------------------------------------------


def _age(path: Path, seconds: float) -> None:
    import os
    import time

    t = time.time() - seconds
    os.utime(path, (t, t))


def test_start_removes_orphaned_uploads_and_stale_thumbnails(coll: Collection) -> None:
    c = client(coll)
    assert _add(c, "kept", "{}").status_code == 201
    uploads = coll.root / "uploads"
    (kept_file,) = list(uploads.iterdir())
    _age(kept_file, 3600)  # referenced: kept however old
    old_orphan = uploads / ("a" * 32 + ".jpg")
    new_orphan = uploads / ("b" * 32 + ".png")  # a concurrent writer's, not committed yet
    old_tmp = uploads / ("c" * 32 + ".jpg.tmp")
    foreign = uploads / "notes.txt"  # not a name the server writes: never touched
    for path in (old_orphan, new_orphan, old_tmp, foreign):
        path.write_bytes(b"x")
    for path in (old_orphan, old_tmp, foreign):
        _age(path, 3600)
    for item_id in ("red/1.jpg", "red/2.jpg", "kept"):
        assert c.get(f"/items/{item_id}/thumbnail").status_code == 200
        assert (
            c.get(f"/items/{item_id}/thumbnail", headers={"Accept": "image/webp"}).status_code
            == 200
        )
    thumbs = coll.root / "cache" / "thumbs"
    assert len(list(thumbs.iterdir())) == 6
    legacy = thumbs / ("d" * 32 + ".jpg")  # an older version's naming
    legacy.write_bytes(b"x")
    coll.remove(["red/2.jpg"])  # as `lookalike index` does when a file vanished

    client(coll)  # a server starts

    assert sorted(p.name for p in uploads.iterdir()) == sorted(
        [kept_file.name, new_orphan.name, foreign.name]
    )
    left = list(thumbs.iterdir())
    assert len(left) == 4 and not legacy.exists()
    c = client(coll)
    assert c.get("/items/kept/image").status_code == 200
    # the thumbnails that stayed are the live items' and are served from the cache
    assert c.get("/items/red/1.jpg/thumbnail").status_code == 200
    assert len(list(thumbs.iterdir())) == 4


def test_deleting_an_item_removes_its_thumbnails(coll: Collection) -> None:
    c = client(coll)
    for accept in ("image/jpeg", "image/webp"):
        assert c.get("/items/red/3.jpg/thumbnail", headers={"Accept": accept}).status_code == 200
    thumbs = coll.root / "cache" / "thumbs"
    assert len(list(thumbs.iterdir())) == 2
    assert c.delete("/items/red/3.jpg").status_code == 200
    assert list(thumbs.iterdir()) == []


def test_no_cleanup_while_another_process_holds_the_lock(coll: Collection) -> None:
    import fcntl

    orphan = coll.root / "uploads" / ("e" * 32 + ".jpg")
    orphan.parent.mkdir()
    orphan.write_bytes(b"x")
    _age(orphan, 3600)
    with open(coll.root / "lock", "a+") as fh:  # another descriptor: as another process
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        assert client(coll).get("/health").status_code == 200
        assert orphan.exists()
    client(coll)
    assert not orphan.exists()


# -- the OpenAPI description -----------------------------------------------------------


def test_openapi_documents_errors_and_image_content_types(coll: Collection) -> None:
    spec = client(coll, api_key=KEY).get("/openapi.json").json()
    paths = spec["paths"]
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"] and error["properties"]["error"]["type"] == "string"

    def codes(path: str, method: str) -> dict[str, Any]:
        return paths[path][method]["responses"]

    def is_error(response: dict[str, Any]) -> bool:
        schema = response["content"]["application/json"]["schema"]
        return schema == {"$ref": "#/components/schemas/Error"}

    expected = {
        ("/items", "post"): {"201", "400", "401", "409", "413", "415", "422", "503"},
        ("/items/{item_id}", "delete"): {"200", "401", "404", "503"},
        ("/items/{item_id}", "get"): {"200", "404"},
        ("/items/{item_id}/similar", "get"): {"200", "400", "404", "422"},
        ("/items/{item_id}/image", "get"): {"200", "404"},
        ("/items/{item_id}/thumbnail", "get"): {"200", "404", "503"},
        ("/search", "post"): {"200", "400", "404", "413", "415", "422", "503"},
        ("/embed", "post"): {"200", "400", "413", "415", "422", "503"},
    }
    for (path, method), want in expected.items():
        got = codes(path, method)
        assert want <= set(got), (path, method, sorted(got))
        for code in want - {"200", "201"}:
            assert is_error(got[code]), (path, method, code, got[code])

    image = codes("/items/{item_id}/image", "get")["200"]["content"]
    assert {"image/jpeg", "image/png", "image/webp", "image/gif"} <= set(image)
    assert image["image/png"]["schema"] == {"type": "string", "format": "binary"}
    assert "application/json" not in image
    thumb = codes("/items/{item_id}/thumbnail", "get")["200"]["content"]
    assert set(thumb) == {"image/jpeg", "image/webp"}
    for path, field in (("/items", "files"), ("/embed", "files"), ("/search", "file")):
        body = paths[path]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert body["encoding"][field]["contentType"] == "image/*", path


# -- favicon ---------------------------------------------------------------------------


def test_favicon_is_a_small_icon_served_to_everyone(coll: Collection) -> None:
    import io

    from PIL import Image

    c = client(coll, api_key=KEY, api_key_all=True)
    r = c.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"] == "image/x-icon"
    assert "max-age" in r.headers["cache-control"] and len(r.content) < 10_000
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.format == "ICO" and im.size == (32, 32)
    assert "/favicon.ico" not in c.get("/openapi.json").json()["paths"]


# -- no server path in any answer ------------------------------------------------------


def test_no_answer_shows_a_server_path(coll: Collection, tmp_path: Path) -> None:
    c = client(coll)
    assert _add(c, "", "{}").status_code == 400
    added = c.post("/items", files={"files": ("a.jpg", _jpeg(31))})
    assert added.status_code == 201
    (new_id,) = added.json()["ids"]
    answers = [
        added,
        c.get(f"/items/{new_id}"),
        c.get("/items/red/1.jpg"),
        c.get("/items/red/1.jpg/similar", params={"k": 20}),
        c.post("/search", json={"id": new_id, "k": 20}),
        c.post("/search", files={"file": ("q.jpg", _jpeg(31))}),
        c.get("/items/nope"),
        c.get("/items/%ff%fe"),
        c.get("/items/nope/similar"),
        c.get("/items/nope/image"),
        c.get("/items/nope/thumbnail"),
        c.delete("/items/nope"),
        c.post("/search", json={"id": "nope"}),
        c.post("/items", files={"files": ("a.jpg", _jpeg(31))}, data={"ids": new_id}),
        c.get("/health"),
        c.get("/metrics"),
        c.get("/openapi.json"),
    ]
    (coll.root.parent / "gallery" / "red" / "4.jpg").unlink()
    answers += [c.get("/items/red/4.jpg/image"), c.get("/items/red/4.jpg/thumbnail")]
    for r in answers:
        for secret in {str(tmp_path), str(tmp_path.resolve())}:
            assert secret not in r.text, (r.request.url, r.text[:300])
    hits = c.get("/items/red/1.jpg/similar", params={"k": 20}).json()["results"]
    for hit in hits:
        assert hit["image_url"].startswith("/items/") and not hit["id"].startswith("/")


# -- a backend that fails on its side ------------------------------------------------------


def test_a_service_failing_on_its_side_is_a_502_in_one_line(
    coll: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike.errors import ServiceFailed
    from lookalike.store.milvus_upkeep import MilvusError

    assert issubclass(MilvusError, ServiceFailed)

    def fails(*_: Any, **__: Any) -> Any:
        raise MilvusError("Milvus at http://m:19530: search failed: read binlog failed")

    monkeypatch.setattr(coll, "query_vector", fails)
    r = client(coll).get("/items/red/1.jpg/similar")
    assert r.status_code == 502, r.text
    assert r.json() == {"error": "Milvus at http://m:19530: search failed: read binlog failed"}
