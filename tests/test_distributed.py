"""Distributed mode, spec by example: a collection folder publishing to Milvus (Milvus Lite
here) and Redis (a real redis-server), searched from the CLI, and served by a stateless
replica with no folder at all. Same commands, same results as the embedded store."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_models import make_pooling_model, write_local_model

pytest.importorskip("pymilvus", reason="distributed mode needs the milvus extra")
pytest.importorskip("redis", reason="distributed mode needs the redis extra")

from lookalike.distributed.config import RemoteSpec  # noqa: E402
from lookalike.store.milvus import MilvusVectors  # noqa: E402
from lookalike.store.redis_meta import RedisMetadata  # noqa: E402


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_local_model(tmp_path / "model", make_pooling_model(dim=16))


def _hits(cli: Callable[..., Any], coll: Path, query: str, *extra: str) -> list[tuple[str, float]]:
    r = cli("search", query, "--collection", str(coll), "-k", "5", "--json", *extra)
    assert r.code == 0, r.err
    return [(h["id"], round(h["score"], 4)) for h in r.json_lines()[0]["results"]]


def _milvus(uri: str, name: str = "lookalike", dim: int = 16) -> MilvusVectors:
    m = MilvusVectors(uri, name, dim=dim, binary=False)
    m.open(create=False)
    return m


def test_index_into_milvus_lite_finds_what_the_embedded_store_finds(
    cli: Callable[..., Any], photos: Path, model: Path, tmp_path: Path
) -> None:
    emb, mil, lite = tmp_path / "emb", tmp_path / "mil", str(tmp_path / "vectors.db")
    base = ("--model-path", str(model), "--no-progress")
    assert cli("index", str(photos), "--collection", str(emb), *base).code == 0
    r = cli(
        "index", str(photos), "--collection", str(mil), *base,
        "--store", "milvus", "--milvus-uri", lite, "--index", "flat",
    )  # fmt: skip
    assert r.code == 0, r.err
    assert "store:      Milvus" in r.out and "recall@10 1.000" in r.out
    assert "flat (FLAT), 60 vectors" in r.out and "re-ranked" not in r.out
    for query in ("hat/1006.jpg", "shoes/1036.jpg", "t-shirt/1054.jpg"):
        assert _hits(cli, mil, str(photos / query)) == _hits(cli, emb, str(photos / query))
        assert _hits(cli, mil, "id:" + query, "--label", "hat") == _hits(
            cli, emb, "id:" + query, "--label", "hat"
        )
    info = cli("info", "--collection", str(mil), "--json").json()
    assert info["remote"]["count"] == 60 and info["remote"]["type"] == "flat"
    assert info["remote"]["measured"]["recall_at_10"] == 1.0


def test_the_folder_remembers_its_store_for_every_later_command(
    cli: Callable[..., Any], photos: Path, model: Path, tmp_path: Path
) -> None:
    mil, lite = tmp_path / "mil", str(tmp_path / "vectors.db")
    first = cli(
        "index", str(photos), "--collection", str(mil), "--model-path", str(model),
        "--store", "milvus", "--milvus-uri", lite,
    )  # fmt: skip
    assert first.code == 0, first.err
    again = cli("index", str(photos), "--collection", str(mil))  # no store flags
    assert again.code == 0 and "unchanged 60" in again.out and "store:      Milvus" in again.out
    assert cli("remove", "hat/1006.jpg", "--collection", str(mil)).code == 0
    shutil.move(photos / "shoes" / "1036.jpg", photos / "shoes" / "renamed.jpg")
    (photos / "pants" / "1024.jpg").unlink()
    assert cli("index", str(photos), "--collection", str(mil)).code == 0
    ids = {h[0] for h in _hits(cli, mil, str(photos / "hat" / "1007.jpg"), "-k", "100")}
    assert "hat/1006.jpg" in ids  # re-added by the run: its file is still there
    assert "shoes/renamed.jpg" in ids and "shoes/1036.jpg" not in ids
    assert "pants/1024.jpg" not in ids
    assert _milvus(lite).count() == 59
    other = cli(
        "index", str(photos), "--collection", str(mil),
        "--store", "milvus", "--milvus-uri", str(tmp_path / "other.db"),
    )  # fmt: skip
    assert other.code == 2 and "cannot move" in other.err and len(other.err.splitlines()) == 1


def test_bad_store_flags_get_one_line_each(
    cli: Callable[..., Any], photos: Path, model: Path, tmp_path: Path
) -> None:
    coll = ("--collection", str(tmp_path / "c"), "--model-path", str(model))
    cases = {
        ("--store", "milvus"): "--milvus-uri",
        ("--store", "milvus", "--milvus-uri", "ftp://h:1"): "",
        ("--store", "milvus", "--milvus-uri", "http://:19530"): "",
        ("--store", "milvus", "--milvus-uri", "http://h:99999"): "",
        ("--metadata", "redis://h"): "--store milvus",
        ("--milvus-uri", "x.db", "--metadata", "mysql://h"): "",
        ("--milvus-uri", "x.db", "--milvus-collection", "1bad-name"): "--milvus-collection",
    }
    for flags, words in cases.items():
        r = cli("index", str(photos), *coll, *flags)
        assert r.code == 2, (flags, r.err)
        assert len(r.err.strip().splitlines()) == 1 and words in r.err, (flags, r.err)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_metadata_in_redis_and_a_replica_with_no_folder(
    cli: Callable[..., Any], photos: Path, model: Path, tmp_path: Path, redis_server: Any
) -> None:
    from fastapi.testclient import TestClient

    from lookalike.distributed.served import ServedCollection
    from lookalike.server import create_app

    uri = redis_server.uri.rsplit("/", 1)[0] + "/3"
    RedisMetadata(uri).flush_namespace()
    lite = str(tmp_path / "vectors.db")
    r = cli(
        "index", str(photos), "--collection", str(tmp_path / "mil"), "--model-path", str(model),
        "--store", "milvus", "--milvus-uri", lite, "--metadata", uri,
    )  # fmt: skip
    assert r.code == 0, r.err
    meta = RedisMetadata(uri)
    assert meta.count() == 60
    item = meta.get(["hat/1006.jpg"])[0]
    assert item is not None and item.label == "hat" and item.path == str(photos / "hat/1006.jpg")
    expected = _hits(cli, tmp_path / "mil", "id:hat/1006.jpg")

    served = ServedCollection(RemoteSpec.parse(lite, None, None, None, uri))
    with TestClient(create_app(served, uploads=tmp_path / "shared")) as c:
        health = c.get("/health").json()
        assert health["dependencies"] == {"milvus": "ok", "redis": "ok"}
        assert health["items"] == 60
        similar = c.get("/items/hat/1006.jpg/similar", params={"k": 5}).json()["results"]
        assert [(h["id"], round(h["score"], 4)) for h in similar] == expected
        data = (photos / "dress" / "1000.jpg").read_bytes()
        added = c.post("/items", files={"files": ("n.jpg", data)}, data={"ids": ["new/1"]})
        assert added.status_code == 201, added.text
        again = c.post("/items", files={"files": ("n.jpg", data)}, data={"ids": ["new/1"]})
        assert again.status_code == 409
        top = c.post("/search", files={"file": ("q.jpg", data)}, data={"k": "2"}).json()
        assert {h["id"] for h in top["results"]} == {"new/1", "dress/1000.jpg"}
        assert c.get("/items/new/1/image").content == data
        assert c.get("/labels").json()["total"] == 61
        assert len(c.get("/items", params={"limit": 100}).json()["items"]) == 61
        assert c.delete("/items/new/1").status_code == 200
        assert c.get("/items/new/1").status_code == 404
        assert c.get("/items/new/1/similar").status_code == 404
        # a vector whose record is not ready (an add in flight) is no item to query by
        served.milvus.upsert(["ghost"], np.ones((1, served.dim), np.float32), [None], [{}])
        ghost = c.get("/items/ghost/similar")
        assert ghost.status_code == 404 and "'ghost'" in ghost.json()["error"], ghost.text
        served.milvus.delete(["ghost"])
        assert list((tmp_path / "shared").glob("*.jpg")) == []
    assert meta.count() == 60


def test_a_redis_database_of_another_collection_is_refused(
    cli: Callable[..., Any], photos: Path, model: Path, tmp_path: Path, redis_server: Any
) -> None:
    uri = redis_server.uri.rsplit("/", 1)[0] + "/4"
    RedisMetadata(uri).flush_namespace()
    base = ("--model-path", str(model), "--metadata", uri)
    first = cli(
        "index", str(photos / "hat"), "--collection", str(tmp_path / "a"), *base,
        "--store", "milvus", "--milvus-uri", str(tmp_path / "a.db"),
    )  # fmt: skip
    assert first.code == 0, first.err
    other = write_local_model(tmp_path / "m2", make_pooling_model(dim=8, seed=3))
    second = cli(
        "index", str(photos / "hat"), "--collection", str(tmp_path / "b"),
        "--model-path", str(other), "--metadata", uri,
        "--store", "milvus", "--milvus-uri", str(tmp_path / "b.db"), "--milvus-collection", "b",
    )  # fmt: skip
    assert second.code == 2, second.err
    assert "16" in second.err and "8" in second.err and len(second.err.strip().splitlines()) == 1


def test_json_info_never_shows_credentials(
    cli: Callable[..., Any], photos: Path, model: Path, tmp_path: Path, redis_server: Any
) -> None:
    uri = redis_server.uri.replace("redis://", "redis://:s3cret@").rsplit("/", 1)[0] + "/5"
    r = cli(
        "index", str(photos / "hat"), "--collection", str(tmp_path / "c"),
        "--model-path", str(model), "--store", "milvus",
        "--milvus-uri", str(tmp_path / "c.db"), "--metadata", uri,
        env={"LOOKALIKE_MILVUS_TOKEN": "t0ken"},
    )  # fmt: skip
    text = r.out + r.err + (tmp_path / "c" / "collection.json").read_text()
    text += json.dumps(cli("info", "--collection", str(tmp_path / "c"), "--json").json())
    assert "s3cret" not in text and "t0ken" not in text


def test_hash_collections_use_a_binary_field_with_hamming_distance(
    cli: Callable[..., Any], photos: Path, tmp_path: Path
) -> None:
    emb, mil = tmp_path / "emb", tmp_path / "mil"
    assert cli("index", str(photos), "--collection", str(emb), "--model", "phash").code == 0
    r = cli("index", str(photos), "--collection", str(mil), "--model", "phash",
            "--store", "milvus", "--milvus-uri", str(tmp_path / "h.db"))  # fmt: skip
    assert r.code == 0, r.err
    info = cli("info", "--collection", str(mil), "--json").json()["remote"]
    assert info["milvus_index"] == "BIN_FLAT" and info["metric"] == "HAMMING"
    for query in ("hat/1006.jpg", "skirt/1050.jpg"):
        got = _hits(cli, mil, str(photos / query))
        want = _hits(cli, emb, str(photos / query))
        assert got[0] == want[0] == (query, 1.0)
        assert sorted(s for _, s in got) == sorted(s for _, s in want)
