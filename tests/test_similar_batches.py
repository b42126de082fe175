"""A replica's concurrent ``/similar`` requests answered together (``distributed/batched.py``):
the requests that arrive while a batch is out share the next one, which reads all their
vectors from Redis at once, searches Milvus once and reads all their hits' records at once.
Each request gets exactly what it gets alone, missing and hidden items included."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_models import make_pooling_model, write_local_model

pytest.importorskip("pymilvus", reason="distributed mode needs the milvus extra")
pytest.importorskip("redis", reason="distributed mode needs the redis extra")

from lookalike.distributed.config import RemoteSpec  # noqa: E402
from lookalike.distributed.served import ServedCollection  # noqa: E402
from lookalike.errors import ItemNotFound  # noqa: E402
from lookalike.store.redis_meta import RedisMetadata  # noqa: E402

QUERIES = ["hat/1006.jpg", "shoes/1036.jpg", "skirt/1050.jpg", "dress/1000.jpg", "hat/1006.jpg"]


def _served(cli: Callable[..., Any], photos: Path, tmp: Path, redis: Any, kept: bool) -> Any:
    """A served collection of ``photos`` whose vectors are kept in Redis too, or only in
    Milvus (Lite)."""
    uri = redis.uri.rsplit("/", 1)[0] + "/9"
    RedisMetadata(uri).flush_namespace()
    model = write_local_model(tmp / "m", make_pooling_model(dim=16))
    r = cli(
        "index", str(photos), "--collection", str(tmp / "c"), "--no-progress",
        "--model-path", str(model), "--store", "milvus", "--milvus-uri", str(tmp / "c.db"),
        "--metadata", uri, *(["--redis-vectors"] if kept else []),
    )  # fmt: skip
    assert r.code == 0, r.err
    s = ServedCollection(RemoteSpec.parse(str(tmp / "c.db"), None, None, None, uri))
    assert s.redis_vectors == kept
    return s


@pytest.fixture(params=["redis-vectors", "milvus-vectors"])
def served(
    cli: Callable[..., Any], photos: Path, tmp_path: Path, redis_server: Any, request: Any
) -> Any:
    s = _served(cli, photos, tmp_path, redis_server, request.param == "redis-vectors")
    yield s
    s.close()


@pytest.fixture
def kept(cli: Callable[..., Any], photos: Path, tmp_path: Path, redis_server: Any) -> Any:
    s = _served(cli, photos, tmp_path, redis_server, True)
    yield s
    s.close()


def _ids(hits: list[Any]) -> list[tuple[str, float]]:
    return [(h.id, round(h.score, 5)) for h in hits]


@contextlib.contextmanager
def _first_search_held(served: ServedCollection) -> Iterator[tuple[threading.Event, ...]]:
    """(held, release): the next Milvus search sets ``held`` and waits for ``release``."""
    held, release = threading.Event(), threading.Event()
    search = served.milvus.search

    def first_waits(*args: Any, **kw: Any) -> Any:
        if not held.is_set():
            held.set()
            assert release.wait(30)
        return search(*args, **kw)

    served.milvus.search = first_waits  # type: ignore[method-assign]
    try:
        yield held, release
    finally:
        served.milvus.search = search  # type: ignore[method-assign]


def _together(served: ServedCollection, queries: list[str], k: int = 5) -> list[Any]:
    """``similar`` of each query from its own thread, all of them waiting behind a first batch
    that is held until they are queued: they are then answered by one second batch."""
    with (
        _first_search_held(served) as (held, release),
        ThreadPoolExecutor(len(queries) + 1) as pool,
    ):
        lead = pool.submit(served.similar, "pants/1024.jpg", k)
        assert held.wait(30)
        futures = [pool.submit(_outcome, served, q, k) for q in queries]
        queue = served._similar._batches._queues  # the calls waiting, by key
        deadline = time.monotonic() + 30
        while len(queue.get((k + 1, None), [])) < len(queries):
            assert time.monotonic() < deadline and not any(f.done() for f in futures)
            time.sleep(0.01)
        release.set()
        lead.result(30)
        return [f.result(30) for f in futures]


def _outcome(served: ServedCollection, item_id: str, k: int) -> Any:
    try:
        return _ids(served.similar(item_id, k))
    except ItemNotFound as exc:
        return str(exc)


def test_concurrent_requests_share_one_batch_and_get_what_they_get_alone(served: Any) -> None:
    alone = [_outcome(served, q, 5) for q in QUERIES]
    assert all(isinstance(a, list) and len(a) == 5 for a in alone)
    assert all(q not in [i for i, _ in a] for q, a in zip(QUERIES, alone, strict=True))
    before, reads = served._similar.batches, served.milvus._reads.batches
    searches = served.milvus._searches.batches
    assert _together(served, QUERIES) == alone
    assert served._similar.batches == before + 2  # the held first one, then all the others
    assert served.milvus._searches.batches == searches + 2  # one Milvus search each
    # every vector from Redis, or all of the batch's in one Milvus read
    assert served.milvus._reads.batches == reads + (0 if served.redis_vectors else 2)


def test_a_missing_or_hidden_item_in_a_batch_is_not_found_and_the_others_are_answered(
    served: Any,
) -> None:
    served.redis.begin_remove(["dress/1000.jpg"])  # being removed: hidden at once
    queries = ["nobody", *QUERIES]
    alone = [_outcome(served, q, 5) for q in queries]
    assert alone[0] == "no item with id 'nobody'"
    assert alone[4] == "no item with id 'dress/1000.jpg'"
    assert not any("dress/1000.jpg" in dict(a) for a in alone if isinstance(a, list))
    assert _together(served, queries) == alone


def test_hidden_hits_make_a_request_ask_milvus_for_more_with_its_own_vector(
    served: Any,
) -> None:
    first = _ids(served.similar("hat/1006.jpg", 3))
    served.redis.begin_remove([i for i, _ in first])  # every hit of the first round hidden
    again = _ids(served.similar("hat/1006.jpg", 3))
    assert len(again) == 3 and not {i for i, _ in first} & {i for i, _ in again}
    direct = served.search_vector(
        served.item_vector("hat/1006.jpg"), 3, exclude=["hat/1006.jpg"]
    )  # the same search, unbatched
    assert again == _ids(direct)


def _awaited_together(served: ServedCollection, queries: list[str], k: int = 5) -> list[Any]:
    """``similar_async`` of each query on one event loop (as the server awaits them), all
    waiting behind a first batch that is held until they are queued."""

    async def outcome(item_id: str) -> Any:
        try:
            return _ids(await served.similar_async(item_id, k))
        except ItemNotFound as exc:
            return str(exc)

    async def main(held: threading.Event, release: threading.Event) -> list[Any]:
        lead = asyncio.create_task(outcome("pants/1024.jpg"))
        assert await asyncio.to_thread(held.wait, 30)
        tasks = [asyncio.create_task(outcome(q)) for q in queries]
        queue = served._similar._waits._queues  # the calls waiting, by key
        deadline = time.monotonic() + 30
        while len(queue.get((k + 1, None), [])) < len(queries):
            assert time.monotonic() < deadline and not any(t.done() for t in tasks)
            await asyncio.sleep(0.01)
        release.set()
        await lead
        return list(await asyncio.gather(*tasks))

    with _first_search_held(served) as (held, release):
        return asyncio.run(main(held, release))


def test_awaited_requests_share_one_batch_and_get_what_they_get_alone(served: Any) -> None:
    served.redis.begin_remove(["dress/1000.jpg"])  # hidden: not found, like a missing id
    queries = ["nobody", *QUERIES]
    alone = [_outcome(served, q, 5) for q in queries]
    assert alone[0] == "no item with id 'nobody'" and isinstance(alone[1], list)
    before = served._similar._waits.batches
    assert _awaited_together(served, queries) == alone
    assert served._similar._waits.batches == before + 2  # the held first one, then the rest


def test_awaited_hidden_hits_ask_milvus_for_more_as_the_threaded_path_does(served: Any) -> None:
    first = _ids(served.similar("hat/1006.jpg", 3))
    served.redis.begin_remove([i for i, _ in first])  # every hit of the first round hidden
    again = _ids(asyncio.run(served.similar_async("hat/1006.jpg", 3)))
    assert len(again) == 3 and not {i for i, _ in first} & {i for i, _ in again}
    assert again == _ids(served.similar("hat/1006.jpg", 3))


def test_records_without_a_kept_vector_are_read_from_milvus_in_one_read(kept: Any) -> None:
    served = kept
    alone = [_outcome(served, q, 5) for q in QUERIES[:3]]
    items = served.redis.get(QUERIES[:3])
    served.redis.put(items)  # rewritten without their vectors (an older writer)
    assert all(served.redis.vector(q) == (True, None) for q in QUERIES[:3])
    reads = served.milvus._reads.batches
    assert _together(served, QUERIES[:3]) == alone
    assert served.milvus._reads.batches == reads + 1  # the three in one read
    stored = served.milvus.vectors_of(QUERIES[:1])[QUERIES[0]]
    assert np.array_equal(served.item_vector(QUERIES[0])[0], stored)
