"""RedisMetadata: item records shared by replicas and indexers through a real Redis.

Claims are atomic and all-or-nothing, commits only land under a live claim, removals hide an
item at once, and a Redis that goes away is a ServiceUnavailable, not a hang.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from services_redis import RedisService, redis_namespace, redis_server  # noqa: F401

from lookalike.errors import (
    BackendMismatch,
    InvalidInput,
    MissingDependency,
    ServiceUnavailable,
)
from lookalike.store.catalog import Item
from lookalike.store.redis_meta import ClaimLost, RedisMetadata

Factory = Callable[..., RedisMetadata]


@pytest.fixture
def make(redis_server: RedisService, redis_namespace: str) -> Iterator[Factory]:  # noqa: F811
    """RedisMetadata objects on this test's namespace (each its own client)."""
    made: list[RedisMetadata] = []

    def factory(**kwargs: object) -> RedisMetadata:
        kwargs.setdefault("namespace", redis_namespace)
        store = RedisMetadata(redis_server.uri, **kwargs)  # type: ignore[arg-type]
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()


@pytest.fixture
def meta(make: Factory) -> RedisMetadata:
    return make()


def item(item_id: str, label: str | None = "shoes", **fields: object) -> Item:
    values: dict[str, object] = {
        "source": "folder:/photos",
        "path": f"/photos/{item_id}.jpg",
        "url": None,
        "label": label,
        "metadata": {"n": 1},
        "size": 1234,
        "width": 640,
        "height": 480,
        "added_at": 1700000000.25,
    }
    values.update(fields)
    return Item(id=item_id, slot=-1, **values)  # type: ignore[arg-type]


def test_items_round_trip_exactly(meta: RedisMetadata) -> None:
    rich = item(
        "ünï/cödé id:1",
        label="t-shirt",
        url="https://example.com/a.jpg?x=1",
        metadata={"price": 12.5, "tags": ["a", "ß"], "nested": {"ok": True, "none": None}},
    )
    bare = item("bare", label=None, path=None, size=None, width=None, height=None, metadata={})
    meta.put([rich, bare])
    assert meta.get(["ünï/cödé id:1", "bare", "unknown"]) == [rich, bare, None]
    assert meta.get_one("bare") == bare and bare.label is None and bare.path is None
    assert meta.count() == 2 and meta.labels() == {"t-shirt": 1}


def test_only_ready_items_are_visible(meta: RedisMetadata) -> None:
    assert meta.claim(["pending"], "t1") is None
    assert meta.get(["pending"]) == [None] and meta.count() == 0
    assert meta.page(None, 10) == [] and list(meta.ids()) == []


def test_one_of_eight_racing_claims_wins(make: Factory) -> None:
    stores = [make() for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    results: list[str | None] = [None] * len(stores)

    def race(n: int) -> None:
        barrier.wait()
        results[n] = stores[n].claim(["contested", f"own-{n}"], f"token-{n}")

    threads = [threading.Thread(target=race, args=(n,)) for n in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [n for n, result in enumerate(results) if result is None]
    assert len(winners) == 1
    assert all(results[n] == "contested" for n in range(8) if n not in winners)
    # the losers changed nothing: their own ids are free
    loser = (winners[0] + 1) % 8
    assert stores[0].claim([f"own-{loser}"], "late") is None
    assert stores[0].claim([f"own-{winners[0]}"], "late") == f"own-{winners[0]}"


def test_a_claim_is_all_or_nothing(meta: RedisMetadata) -> None:
    meta.put([item("done")])
    assert meta.claim(["a", "b"], "t1") is None
    assert meta.claim(["c", "b"], "t2") == "b"
    assert meta.claim(["d", "done"], "t2") == "done"
    # c and d were left alone by the refused claims
    assert meta.claim(["c", "d"], "t3") is None
    # the holder may claim again (a retry) and commit
    assert meta.claim(["a", "b"], "t1") is None
    meta.commit("t1", [item("a"), item("b")])
    assert meta.count() == 3 and meta.labels() == {"shoes": 3}


def test_an_expired_lease_can_be_retaken_and_the_late_commit_is_refused(
    meta: RedisMetadata,
) -> None:
    assert meta.claim(["x", "y"], "slow", lease_s=0.3) is None
    assert meta.claim(["x"], "fast") == "x"
    time.sleep(0.4)
    assert meta.claim(["x"], "fast") is None
    with pytest.raises(ClaimLost) as caught:
        meta.commit("slow", [item("x", label="old"), item("y", label="kept")])
    assert caught.value.ids == ["x"] and "'x'" in str(caught.value)
    # y was still held by "slow" (expired but not retaken): it was committed
    assert meta.get(["x", "y"]) == [None, item("y", label="kept")]
    meta.commit("fast", [item("x", label="new")])
    assert meta.labels() == {"kept": 1, "new": 1}


def test_a_commit_without_a_claim_is_refused(meta: RedisMetadata) -> None:
    with pytest.raises(ClaimLost):
        meta.commit("nobody", [item("never-claimed")])
    assert meta.count() == 0
    assert meta.claim(["z"], "t") is None
    meta.commit("t", [item("z")])
    meta.commit("t", [item("z")])  # a retried commit is harmless
    assert meta.count() == 1 and meta.labels() == {"shoes": 1}


def test_release_drops_only_the_holders_claims(meta: RedisMetadata) -> None:
    assert meta.claim(["a", "b"], "t1") is None
    meta.release("t2", ["a", "b"])
    assert meta.claim(["a"], "t2") == "a"
    meta.release("t1", ["a", "b"])
    assert meta.claim(["a", "b"], "t2") is None


def test_removal_hides_an_item_and_its_label_at_once(meta: RedisMetadata) -> None:
    meta.put([item("a", label="hat"), item("b", label="hat"), item("c", label="shoes")])
    assert meta.begin_remove(["a", "nope", "c"]) == ["nope"]
    assert meta.count() == 3  # nothing changed
    assert meta.begin_remove(["a", "c"]) == []
    assert meta.get(["a", "b", "c"]) == [None, item("b", label="hat"), None]
    assert meta.count() == 1 and meta.labels() == {"hat": 1}
    assert [i.id for i in meta.page(None, 10)] == ["b"]
    assert meta.claim(["a"], "t") is None  # a deleting id can be claimed (re-added)
    assert meta.begin_remove(["c"]) == []  # deleting counts as present: a retry is fine
    meta.finish_remove(["a", "c"])
    assert meta.claim(["c"], "t2") is None and meta.claim(["a"], "t2") == "a"
    meta.commit("t", [item("a", label="shoes")])
    assert meta.labels() == {"hat": 1, "shoes": 1}


def test_put_replaces_an_item_and_moves_its_label_count(meta: RedisMetadata) -> None:
    meta.put([item("a", label="hat"), item("b", label="hat")])
    meta.put([item("a", label="shoes", metadata={"v": 2})])
    assert meta.labels() == {"hat": 1, "shoes": 1} and meta.count() == 2
    assert meta.get_one("a") == item("a", label="shoes", metadata={"v": 2})
    meta.put([item("b", label=None)])
    assert meta.labels() == {"shoes": 1}
    assert meta.claim(["c"], "t") is None
    meta.put([item("c", label="hat")])  # the owner's upsert beats a claim
    assert meta.labels() == {"hat": 1, "shoes": 1}
    with pytest.raises(ClaimLost):
        meta.commit("t", [item("c")])


def test_paging_in_id_order_with_and_without_a_label(meta: RedisMetadata) -> None:
    ids = [f"id{n:03d}" for n in range(300)]
    meta.put([item(i, label="odd" if n % 2 else "even") for n, i in enumerate(ids)])
    first = meta.page(None, 7)
    assert [i.id for i in first] == ids[:7]
    assert [i.id for i in meta.page(first[-1].id, 3)] == ids[7:10]
    odd = meta.page("id100", 200, label="odd")
    assert [i.id for i in odd] == [i for n, i in enumerate(ids) if n % 2 and n > 100]
    assert meta.page(None, 5, label="missing") == []
    assert list(meta.ids(batch=64)) == ids


def test_bind_records_the_identity_and_refuses_another(make: Factory) -> None:
    shoes = {"collection": "shoes", "model": "clip-vit-b32", "dim": 512, "metric": "IP"}
    first, other = make(), make()
    assert first.identity() is None
    first.bind(shoes)
    other.bind(dict(shoes))
    assert other.identity() == shoes
    hats = {"collection": "hats", "model": "mobilenet", "dim": 1280, "metric": "IP"}
    with pytest.raises(BackendMismatch) as caught:
        other.bind(hats)
    message = str(caught.value)
    assert "collection 'shoes' (clip-vit-b32, 512 dims" in message
    assert "this is collection 'hats' (mobilenet, 1280 dims" in message
    assert first.address.display in message and "\n" not in message
    first.set_info("recall", {"at10": 0.97})
    assert other.info() == {"recall": {"at10": 0.97}}


def test_flush_namespace_leaves_other_namespaces_alone(make: Factory) -> None:
    mine, theirs = make(namespace="flush-me"), make(namespace="flush-me-not")
    try:
        mine.put([item("a")])
        theirs.put([item("a")])
        assert mine.flush_namespace() >= 3
        assert mine.count() == 0 and mine.get_one("a") is None
        assert theirs.get_one("a") == item("a")
    finally:
        theirs.flush_namespace()


def test_a_stopped_redis_is_unavailable_fast_and_the_same_object_recovers(
    redis_server: RedisService,  # noqa: F811
    meta: RedisMetadata,
) -> None:
    meta.put([item("a")])
    redis_server.stop()
    try:
        for call in (meta.count, lambda: meta.claim(["b"], "t"), lambda: meta.get(["a"])):
            started = time.monotonic()
            with pytest.raises(ServiceUnavailable) as caught:
                call()
            assert time.monotonic() - started < 3
            assert caught.value.exit_code == 3
            assert str(caught.value).startswith(f"Redis at {redis_server.uri} is unavailable")
    finally:
        redis_server.start()
    # no persistence: the restarted server is empty; the scripts are loaded again
    assert meta.count() == 0
    assert meta.claim(["b"], "t") is None
    meta.commit("t", [item("b")])
    assert meta.get(["b"]) == [item("b")]


def test_a_restart_between_calls_is_invisible(
    redis_server: RedisService,  # noqa: F811
    meta: RedisMetadata,
) -> None:
    assert meta.ping()
    redis_server.stop()
    redis_server.start()
    assert meta.claim(["a"], "t") is None  # the stale pooled connection is retried once
    meta.commit("t", [item("a")])
    assert meta.get(["a"]) == [item("a")] and meta.ping()
    redis_server.stop()
    redis_server.start()
    assert meta.get(["a"]) == [None]  # a pipeline on a stale connection is retried too
    assert meta.page(None, 5) == [] and meta.labels() == {}


def test_a_hung_redis_times_out_and_the_same_object_recovers(
    redis_server: RedisService,  # noqa: F811
    make: Factory,
) -> None:
    if not redis_server.owned:
        pytest.skip("freezes the server: only on a server of our own")
    meta = make(timeout=1.0)
    meta.put([item("a")])
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="no answer within 1 s"):
            meta.get(["a"])
        assert time.monotonic() - started < 2.5  # one timeout, no retry after it
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert meta.get(["a"]) == [item("a")]


def test_a_full_redis_is_unavailable_not_a_crash(
    redis_server: RedisService,  # noqa: F811
    meta: RedisMetadata,
) -> None:
    if not redis_server.owned:
        pytest.skip("changes the server's memory limit: only on a server of our own")
    meta.put([item("a")])
    meta._client.config_set("maxmemory", "1")
    try:
        with pytest.raises(ServiceUnavailable, match=r"unavailable: OOM command not allowed"):
            meta.put([item("b")])
        with pytest.raises(ServiceUnavailable, match="OOM"):
            meta.claim(["b", "c"], "t")
        assert meta.get(["a"]) == [item("a")]  # reads still work, and removals
        assert meta.begin_remove(["a"]) == [] and meta.count() == 0 and meta.labels() == {}
        meta.finish_remove(["a"])
    finally:
        meta._client.config_set("maxmemory", "0")
    assert meta.claim(["b", "c"], "t") is None  # nothing was left half done
    meta.commit("t", [item("b"), item("c")])
    assert meta.count() == 2 and meta.labels() == {"shoes": 2}


def test_namespaces_cannot_overlap(redis_server: RedisService) -> None:  # noqa: F811
    for bad in ("", "a:b", "has space", "star*"):
        with pytest.raises(InvalidInput, match="namespace"):
            RedisMetadata(redis_server.uri, namespace=bad)


def test_nothing_listens_there() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = RedisMetadata(f"redis://:s3cret@127.0.0.1:{port}/2", timeout=2)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as caught:
        store.ping()
    assert time.monotonic() - started < 3
    assert str(caught.value) == (
        f"Redis at redis://127.0.0.1:{port}/2 is unavailable: connection refused"
    )
    assert "s3cret" not in repr(store) and "s3cret" not in repr(store.address)


def test_passwords_are_used_and_never_shown(
    redis_server: RedisService,  # noqa: F811
    redis_namespace: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not redis_server.owned:
        pytest.skip("changes the server's password: only on a server of our own")
    admin = RedisMetadata(redis_server.uri, namespace=redis_namespace)
    admin._client.config_set("requirepass", "right-one")
    try:
        wrong = RedisMetadata(
            redis_server.uri.replace("redis://", "redis://:s3cret@"), namespace=redis_namespace
        )
        with pytest.raises(ServiceUnavailable) as caught:
            wrong.count()
        assert "authentication failed" in str(caught.value)
        for text in (str(caught.value), repr(caught.value), repr(wrong), repr(wrong.address)):
            assert "s3cret" not in text and "right-one" not in text
        monkeypatch.setenv("LOOKALIKE_REDIS_PASSWORD", "right-one")
        assert RedisMetadata(redis_server.uri, namespace=redis_namespace).count() == 0
        by_argument = RedisMetadata(redis_server.uri, namespace="x", password="right-one")
        assert by_argument.ping() and "right-one" not in repr(by_argument)
    finally:
        admin.close()
        admin = RedisMetadata(redis_server.uri, namespace=redis_namespace, password="right-one")
        admin._client.config_set("requirepass", "")
        admin.close()


def test_without_redis_py_the_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(MissingDependency, match=r"pip install 'lookalike\[redis\]'"):
        RedisMetadata("redis://127.0.0.1:1/0")


def test_a_kept_vector_is_raw_bytes_read_only_when_asked_for(meta: RedisMetadata) -> None:
    raw = bytes(range(256)) * 8  # not UTF-8: records are still read as text around it
    meta.put([item("a"), item("b")], [raw, None])
    assert meta.vector("a") == (True, raw)
    assert meta.vector("b") == (True, None)  # ready, nothing kept
    assert meta.vector("nobody") == (False, None)
    assert meta.get(["a"])[0] == item("a") and [i.id for i in meta.page(None, 10)] == ["a", "b"]
    meta.put([item("a", label="hat")])  # rewritten without one: the old vector is not kept
    assert meta.vector("a") == (True, None)
    assert meta.claim(["c"], "tok") is None
    assert meta.vector("c") == (False, None)  # claimed, not ready
    meta.commit("tok", [item("c")], [b"\x00\xff" * 4])
    assert meta.vector("c") == (True, b"\x00\xff" * 4)
    meta.begin_remove(["c"])
    assert meta.vector("c") == (False, b"\x00\xff" * 4)  # deleting: no item to query by
    meta.finish_remove(["c"])
    assert meta.vector("c") == (False, None)
