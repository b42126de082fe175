"""``lookalike.client.Client`` against a live server (uvicorn on a local port): every method
answers what the library answers for the same query, errors arrive typed, the API key is
sent and never shown, and a server that is down fails fast with ``ServiceUnavailable``."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
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
from server_util import live_server, make_collection  # noqa: E402

from lookalike.client import (  # noqa: E402
    Client,
    ItemExists,
    ServerUnavailable,
    Unauthorized,
)
from lookalike.collection import Collection  # noqa: E402
from lookalike.errors import (  # noqa: E402
    ImageRejected,
    InvalidInput,
    ItemNotFound,
    QueryError,
    ServiceUnavailable,
)
from lookalike.search.hits import Hit  # noqa: E402
from lookalike.server import ServerSettings, create_app  # noqa: E402

KEY = "s3cret-key-123"
# Items the float collection gets through the client, with metadata to filter on.
EXTRA = {
    "m/1": ("dress", {"price": 12, "shop": {"city": "Oslo"}}, 201),
    "m/2": ("dress", {"price": 35.5, "shop": {"city": "Rome"}}, 202),
    "m/3": ("skirt", {"price": "12", "tags": "sale"}, 203),
    "m/4": (None, {"price": 8}, 204),
}


def _jpeg(seed: int) -> bytes:
    return imagegen.encode(imagegen.photo_like(seed, (120, 90)), "JPEG", quality=90)


class Served:
    """A collection, the live server in front of it and a client with the key."""

    def __init__(self, coll: Collection, base: str, src: Path) -> None:
        self.coll, self.base, self.src = coll, base, src
        self.client = Client(base, api_key=KEY)


@pytest.fixture(scope="module")
def floats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A tiny float (cosine) model's collection: the 8-photo gallery plus EXTRA."""
    root = tmp_path_factory.mktemp("floats")
    model = tiny_models.write_local_model(root / "tiny", tiny_models.make_pooling_model(dim=16))
    coll = make_collection(root, model=None, model_path=model)
    settings = ServerSettings(api_key=KEY, allow_urls=True, allow_private_for_tests=True)
    with live_server(create_app(coll, settings)) as base:
        served = Served(coll, base, root / "gallery")
        for item_id, (label, meta, seed) in EXTRA.items():
            served.client.add(_jpeg(seed), ids=item_id, labels=label, metadata=meta)
        yield served
    coll.close()


@pytest.fixture(scope="module")
def hashes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The phash (Hamming) gallery, reads and writes behind the key."""
    root = tmp_path_factory.mktemp("hashes")
    coll = make_collection(root)
    with live_server(create_app(coll, ServerSettings(api_key=KEY, api_key_all=True))) as base:
        yield Served(coll, base, root / "gallery")
    coll.close()


def same_hits(got: list[Hit], expected: list[Hit]) -> None:
    assert all(isinstance(h, Hit) and h.path is None for h in got)
    shape = [(h.rank, h.id, h.label, h.url, h.metadata) for h in got]
    assert shape == [(h.rank, h.id, h.label, h.url, h.metadata) for h in expected]
    assert np.allclose([h.score for h in got], [h.score for h in expected], atol=1e-5)


# -- searching: the library's answers --------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"k": 3},
        {"label": "dress"},
        {"where": "price < 20"},
        {"where": "shop.city = 'Oslo' or label = 'red'", "k": 5},
        {"threshold": 0.5, "k": 20},
    ],
)
def test_search_by_upload_path_id_and_vector_equals_the_library(
    floats: Served, options: dict[str, Any]
) -> None:
    c, coll = floats.client, floats.coll
    path = floats.src / "blue" / "12.jpg"
    data = path.read_bytes()
    vec = c.embed(data)
    for query in (data, path, str(path), "id:blue/12.jpg", "id:m/2", vec, vec.tolist()):
        as_library = np.asarray(query, dtype=np.float32) if isinstance(query, list) else query
        expected = coll.search(as_library, **options)
        same_hits(c.search(query, **options), expected)
    assert c.search("id:blue/12.jpg", **options)[0].id != "blue/12.jpg"


def test_search_by_url_the_server_fetches(floats: Served) -> None:
    data = _jpeg(77)
    with LocalHTTPServer({"q.jpg": data}) as web:
        hits = floats.client.search(web.url("q.jpg"), k=4, where="price exists")
    same_hits(hits, floats.coll.search(data, k=4, where="price exists"))


def test_similar_equals_the_library(floats: Served) -> None:
    c, coll = floats.client, floats.coll
    same_hits(c.similar("red/1.jpg"), coll.search("id:red/1.jpg"))
    same_hits(
        c.similar("m/1", k=2, where="price >= 10"), coll.search("id:m/1", 2, where="price >= 10")
    )
    same_hits(c.similar("red/2.jpg", label="blue"), coll.search("id:red/2.jpg", label="blue"))


def test_embed_equals_the_library(floats: Served, hashes: Served) -> None:
    data = (floats.src / "red" / "3.jpg").read_bytes()
    vec = floats.client.embed(data)
    assert vec.dtype == np.float32 and vec.shape == (16,)
    assert np.allclose(vec, floats.coll.embed_image(data)[0], atol=1e-6)
    bits = hashes.client.embed(hashes.src / "red" / "3.jpg")
    assert bits.dtype == np.uint8 and bits.shape == (8,)
    assert bytes(bits) == bytes(np.asarray(hashes.coll.embed_image(data)[0], dtype=np.uint8))


def test_hash_models_search_by_hex_and_bytes(hashes: Served) -> None:
    c, coll = hashes.client, hashes.coll
    data = (hashes.src / "blue" / "13.jpg").read_bytes()
    bits = c.embed(data)
    for query in (data, "id:red/4.jpg", bits, bits.tobytes().hex()):
        expected = coll.search(bits if isinstance(query, str) and ":" not in query else query)
        same_hits(c.search(query, k=5), expected[:5])


def test_text_needs_a_text_tower(floats: Served) -> None:
    with pytest.raises(QueryError, match="text"):
        floats.client.search(text="a red dress")
    with pytest.raises(InvalidInput, match="exactly one"):
        floats.client.search()


# -- items --------------------------------------------------------------------------------


def test_add_get_and_remove(floats: Served) -> None:
    c, coll = floats.client, floats.coll
    photos = [_jpeg(301), floats.src / "red" / "1.jpg"]
    ids = c.add(photos, ids=["new/a", "new/b?#%"], labels=["hat", None], metadata=[{"n": 1}, {}])
    assert ids == ["new/a", "new/b?#%"]
    for item_id in ids:
        item, stored = c.get(item_id), coll.get(item_id)
        assert (item["id"], item["label"], item["metadata"]) == (
            stored.id,
            stored.label,
            stored.metadata,
        )
        assert (item["width"], item["height"]) == (stored.width, stored.height)
    assert c.search(photos[0], k=1)[0].id == "new/a"
    with pytest.raises(ItemExists, match="new/a"):
        c.add(_jpeg(302), ids="new/a")
    made = c.add(_jpeg(303), labels="hat")  # the server names it
    assert c.get(made[0])["label"] == "hat"
    for item_id in [*ids, *made]:
        c.remove(item_id)
        with pytest.raises(ItemNotFound):
            c.get(item_id)
    with pytest.raises(ItemNotFound):
        c.remove("new/a")


def test_info_and_health(floats: Served) -> None:
    c = floats.client
    info = c.info()
    assert info["items"] == len(floats.coll) and info["dim"] == 16
    assert info["metric"] == "cosine"
    health = c.health()
    assert health["status"] == "ok" and health["auth"] == "writes"


# -- errors -----------------------------------------------------------------------------


def test_bad_requests_are_typed(floats: Served) -> None:
    c = floats.client
    with pytest.raises(QueryError, match="column"):
        c.search("id:red/1.jpg", where="price <")
    with pytest.raises(QueryError, match="k"):
        c.similar("red/1.jpg", k=0)
    with pytest.raises(QueryError, match="expected 16"):
        c.search([0.5, 0.5])
    with pytest.raises(ItemNotFound, match="nope"):
        c.similar("nope")
    with pytest.raises(ItemNotFound, match="nope"):
        c.search("id:nope")
    with pytest.raises(QueryError, match="does not exist"):
        c.search(floats.src / "missing.jpg")
    with pytest.raises(ImageRejected) as rejected:
        c.add(b"not an image at all", ids="junk")
    assert rejected.value.reason == "not-an-image"
    with pytest.raises(InvalidInput, match="2 ids for 1 files"):
        c.add(_jpeg(5), ids=["a", "b"])


def test_uploads_over_the_limit_are_refused(tmp_path: Path) -> None:
    coll = make_collection(tmp_path)
    app = create_app(coll, ServerSettings(max_upload_bytes=2000))
    with live_server(app) as base, pytest.raises(ImageRejected) as err:
        Client(base).search(_jpeg(1) + b"\0" * 200_000)
    assert err.value.reason == "too-large"
    coll.close()


def test_the_key_is_sent_and_never_shown(floats: Served, hashes: Served) -> None:
    keyless = Client(floats.base)
    assert keyless.search("id:red/1.jpg", k=1)  # open reads
    with pytest.raises(Unauthorized, match="API key") as err:
        keyless.add(_jpeg(9))
    assert KEY not in str(err.value)
    with pytest.raises(Unauthorized):
        Client(hashes.base, api_key="wrong").similar("red/1.jpg")
    with pytest.raises(Unauthorized):
        Client(hashes.base).get("red/1.jpg")
    assert hashes.client.get("red/1.jpg")["label"] == "red"
    c = hashes.client
    with pytest.raises(ItemNotFound) as missing:
        c.get("nope")
    for text in (repr(c), str(missing.value), c.url):
        assert KEY not in text
    with pytest.raises(InvalidInput, match="api_key=") as in_url:
        Client(hashes.base.replace("://", "://user:pw@"))
    assert "pw" not in str(in_url.value)


# -- a server that is down, slow or busy ------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_server_that_is_down_fails_fast() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="refused") as err:
        Client(url, api_key=KEY).health()
    assert time.monotonic() - start < 2
    assert err.value.uri == url and KEY not in str(err.value)


def test_a_server_that_does_not_answer_times_out() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="no answer within 0.5 s"):
            Client(url, timeout=0.5).search("id:x")
        assert time.monotonic() - start < 3


def test_a_busy_server_says_when_to_retry(tmp_path: Path) -> None:
    coll = make_collection(tmp_path)
    settings = ServerSettings(
        allow_urls=True, allow_private_for_tests=True, fetch_timeout=2.0, max_fetches=1
    )
    with LocalHTTPServer() as web, live_server(create_app(coll, settings)) as base:
        drip = web.url("slowheaders?delay=0.2")
        stuck = threading.Thread(target=lambda: _ignore(Client(base).search, drip))
        stuck.start()
        deadline = time.monotonic() + 5
        while web.total_requests < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(ServerUnavailable, match="fetch") as busy:
            Client(base).search(drip)
        stuck.join(10)
    assert isinstance(busy.value, ServiceUnavailable)
    assert busy.value.retry_after is not None and busy.value.retry_after >= 1
    coll.close()


def _ignore(fn: Any, *args: Any) -> None:
    with contextlib.suppress(InvalidInput):  # the fetch times out: a 400
        fn(*args)
