"""``--redis-vectors``: each item's vector kept beside its record in Redis, so that a replica
answers ``/similar`` with one Milvus call (the search) instead of two (reading the item's
vector, then searching). Same hits either way; records without a kept vector (published
before, or by another writer) are read from Milvus as before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_models import make_pooling_model, write_local_model

pytest.importorskip("pymilvus", reason="distributed mode needs the milvus extra")
pytest.importorskip("redis", reason="distributed mode needs the redis extra")

from lookalike.distributed.config import RemoteSpec  # noqa: E402
from lookalike.distributed.served import ServedCollection  # noqa: E402
from lookalike.store.redis_meta import RedisMetadata  # noqa: E402


def _index(cli: Callable[..., Any], src: Path, coll: Path, *flags: str) -> Any:
    r = cli("index", str(src), "--collection", str(coll), "--no-progress", *flags)
    assert r.code == 0, r.err
    return r


def _similar(c: Any, item_id: str) -> list[tuple[str, float]]:
    r = c.get(f"/items/{item_id}/similar", params={"k": 5})
    assert r.status_code == 200, r.text
    return [(h["id"], round(h["score"], 5)) for h in r.json()["results"]]


def _reads(served: ServedCollection) -> int:
    return served.milvus._reads.batches  # Milvus vector reads made so far


@pytest.mark.parametrize("model_flag", ["tiny-cnn", "phash"])
def test_similar_reads_the_vector_from_redis_with_the_same_hits(
    cli: Callable[..., Any], photos: Path, tmp_path: Path, redis_server: Any, model_flag: str
) -> None:
    from fastapi.testclient import TestClient

    from lookalike.server import create_app

    model = (
        ("--model-path", str(write_local_model(tmp_path / "m", make_pooling_model(dim=16))))
        if model_flag == "tiny-cnn"
        else ("--model", "phash")
    )
    base = redis_server.uri.rsplit("/", 1)[0]
    kept_uri, plain_uri = base + "/6", base + "/7"
    for uri in (kept_uri, plain_uri):
        RedisMetadata(uri).flush_namespace()
    kept = _index(
        cli, photos, tmp_path / "kept", *model, "--store", "milvus",
        "--milvus-uri", str(tmp_path / "kept.db"), "--metadata", kept_uri, "--redis-vectors",
    )  # fmt: skip
    assert "item vectors kept in Redis too" in kept.out
    _index(
        cli, photos, tmp_path / "plain", *model, "--store", "milvus",
        "--milvus-uri", str(tmp_path / "plain.db"), "--metadata", plain_uri,
    )  # fmt: skip
    with_redis = ServedCollection(
        RemoteSpec.parse(str(tmp_path / "kept.db"), None, None, None, kept_uri)
    )
    milvus_only = ServedCollection(
        RemoteSpec.parse(str(tmp_path / "plain.db"), None, None, None, plain_uri)
    )
    assert with_redis.redis_vectors and not milvus_only.redis_vectors
    ids = ["hat/1006.jpg", "shoes/1036.jpg", "skirt/1050.jpg"]
    with (
        TestClient(create_app(with_redis, uploads=tmp_path / "up1")) as fast,
        TestClient(create_app(milvus_only, uploads=tmp_path / "up2")) as slow,
    ):
        before, plain_before = _reads(with_redis), _reads(milvus_only)
        for item_id in ids:
            assert _similar(fast, item_id) == _similar(slow, item_id)
        assert _reads(with_redis) == before  # not one Milvus read
        assert _reads(milvus_only) == plain_before + len(ids)  # one per /similar
        stored = with_redis.milvus.vectors_of(ids)
        for item_id in ids:
            assert np.array_equal(with_redis.item_vector(item_id)[0], stored[item_id])
        kept = with_redis.redis.kept_vectors([*ids, "nobody"])
        assert kept == [stored[i].tobytes() for i in ids] + [None]
        if not with_redis.binary:  # a re-ranked index (IVF_SQ8) reads its shortlist there too
            for served in (with_redis, milvus_only):
                served.milvus.plan.rerank = True
            before = _reads(with_redis)
            for item_id in ids:
                assert _similar(fast, item_id) == _similar(slow, item_id)
            assert _reads(with_redis) == before
            for served in (with_redis, milvus_only):
                served.milvus.plan.rerank = None
        before = _reads(with_redis)  # (the check's own read counted)
        missing = fast.get("/items/nobody/similar")
        assert missing.status_code == 404 and "'nobody'" in missing.json()["error"]
        assert _reads(with_redis) == before

        # an add through the replica keeps the vector too; a removal drops it
        data = (photos / "dress" / "1000.jpg").read_bytes()
        added = fast.post("/items", files={"files": ("n.jpg", data)}, data={"ids": ["new/1"]})
        assert added.status_code == 201, added.text
        ready, raw = with_redis.redis.vector("new/1")
        row = with_redis.milvus.vectors_of(["new/1"])["new/1"]
        assert ready and raw == row.tobytes()
        assert _similar(fast, "new/1")[0][0] == "dress/1000.jpg"
        assert fast.delete("/items/new/1").status_code == 200
        assert with_redis.redis.vector("new/1") == (False, None)
        assert fast.get("/items/new/1/similar").status_code == 404

        # a record written without its vector (an older writer): Milvus is read instead
        item = with_redis.redis.get(["hat/1006.jpg"])[0]
        assert item is not None
        expected = _similar(fast, "hat/1006.jpg")
        with_redis.redis.put([item])
        assert with_redis.redis.vector("hat/1006.jpg") == (True, None)
        before = _reads(with_redis)
        assert _similar(fast, "hat/1006.jpg") == expected
        assert _reads(with_redis) == before + 1
    for served in (with_redis, milvus_only):
        served.close()


def test_redis_vectors_need_redis_and_are_chosen_when_the_store_is_made(
    cli: Callable[..., Any], photos: Path, tmp_path: Path, redis_server: Any
) -> None:
    model = write_local_model(tmp_path / "m", make_pooling_model(dim=16))
    coll = ("--collection", str(tmp_path / "c"), "--model-path", str(model))
    lite = ("--store", "milvus", "--milvus-uri", str(tmp_path / "c.db"))
    for flags, words in {
        (*lite, "--redis-vectors"): "needs --metadata redis://",
        ("--store", "embedded", "--redis-vectors"): "--redis-vectors",
        ("--redis-vectors",): "--store milvus",
    }.items():
        r = cli("index", str(photos / "hat"), *coll, *flags)
        assert r.code == 2 and words in r.err, (flags, r.err)
        assert len(r.err.strip().splitlines()) == 1
    uri = redis_server.uri.rsplit("/", 1)[0] + "/8"
    RedisMetadata(uri).flush_namespace()
    _index(
        cli, photos / "hat", tmp_path / "c", "--model-path", str(model), *lite, "--metadata", uri
    )
    later = cli("index", str(photos / "hat"), *coll, *lite, "--metadata", uri, "--redis-vectors")
    assert later.code == 2 and "first made" in later.err, later.err
    assert len(later.err.strip().splitlines()) == 1
    again = cli("index", str(photos / "hat"), "--collection", str(tmp_path / "c"))
    assert again.code == 0 and "kept in Redis" not in again.out
    meta = RedisMetadata(uri)
    first = meta.page(None, 1)[0].id
    assert meta.vector(first) == (True, None)  # still Milvus only
