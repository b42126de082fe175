"""MilvusVectors: the Milvus vector store. Most tests use Milvus Lite in a temporary folder;
the ``server`` ones use a real Milvus standalone server (tests/services_milvus.py)."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from services_milvus import milvus_server  # noqa: F401  (the session fixture)

from lookalike.errors import (
    BackendMismatch,
    CollectionNotFound,
    InvalidInput,
    MissingDependency,
    ServiceUnavailable,
)

pytest.importorskip("pymilvus", reason="needs the milvus extra")
from lookalike.store.milvus import MilvusVectors  # noqa: E402


def unit(rows: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def codes(rows: int, bits: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (rows, bits // 8), dtype=np.uint8)


def ids_of(n: int, prefix: str = "item") -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def lite(tmp_path: Path) -> str:
    return str(tmp_path / "milvus" / "vectors.db")


def opened(uri: str, name: str = "photos", **kw: object) -> MilvusVectors:
    kw.setdefault("dim", 32)
    kw.setdefault("binary", False)
    store = MilvusVectors(uri, name, **kw)  # type: ignore[arg-type]
    store.open()
    return store


# -- Milvus Lite --------------------------------------------------------------------------


def test_search_scores_are_numpys_exact_cosine(lite: str) -> None:
    store = opened(lite, index="flat")
    x, ids = unit(300, 32, 1), ids_of(300)
    store.upsert(ids, x, [None] * 300, [{}] * 300)
    queries = unit(5, 32, 2)
    hits = store.search(queries, 10)
    exact = queries @ x.T
    for q, row in enumerate(hits):
        best = np.argsort(-exact[q])[:10]
        assert [h[0] for h in row] == [ids[i] for i in best]
        np.testing.assert_allclose([h[1] for h in row], exact[q, best], atol=1e-5)
    got = store.vectors_of([ids[7], ids[8], "no-such-id"])
    assert set(got) == {ids[7], ids[8]} and got[ids[7]].dtype == np.float32
    np.testing.assert_allclose(got[ids[7]], x[7], atol=1e-6)
    assert store.search(np.zeros((0, 32), np.float32), 3) == []


def test_concurrent_searches_and_reads_share_requests_and_get_their_own_answers(
    lite: str,
) -> None:
    store = opened(lite, index="flat")
    x, ids = unit(500, 32, 3), ids_of(500)
    store.upsert(ids, x, [None] * 500, [{}] * 500)
    queries = unit(64, 32, 4)
    alone = [store.search(q[None], 5)[0] for q in queries]
    before = (store._searches.batches, store._reads.batches)
    start = threading.Barrier(16)

    def ask(n: int) -> tuple[list[tuple[str, float]], dict[str, np.ndarray]]:
        if n < 16:
            start.wait(10)
        return store.search(queries[n][None], 5)[0], store.vectors_of([ids[n], "no-such-id"])

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(64)))
    for n, (hits, vectors) in enumerate(answers):
        assert [i for i, _ in hits] == [i for i, _ in alone[n]]
        np.testing.assert_allclose([s for _, s in hits], [s for _, s in alone[n]], atol=1e-6)
        assert list(vectors) == [ids[n]]
        np.testing.assert_allclose(vectors[ids[n]], x[n], atol=1e-6)
    searches = store._searches.batches - before[0]
    reads = store._reads.batches - before[1]
    assert searches < 64 and reads < 64  # 16 threads at once: merged requests


def test_upsert_replaces_a_row_and_keeps_the_count(lite: str) -> None:
    store = opened(lite)
    x = unit(20, 32, 3)
    store.upsert(ids_of(20), x, ["old"] * 20, [{"v": 1}] * 20)
    new = unit(1, 32, 4)
    store.upsert(["item-5"], new, ["new"], [{"v": 2}])
    assert store.count() == 20
    np.testing.assert_allclose(store.vectors_of(["item-5"])["item-5"], new[0], atol=1e-6)
    assert store.search(new, 1, 'label == "new"') == [[("item-5", pytest.approx(1.0, abs=1e-5))]]
    # a later duplicate in the same call wins
    store.upsert(["dup", "dup"], unit(2, 32, 5), ["first", "second"], [{}, {}])
    assert [h[0] for h in store.search(unit(1, 32, 6), 5, 'label == "second"')[0]] == ["dup"]
    assert store.count() == 21


class WriteLog:
    """Records the rows pymilvus' client inserts and upserts (the calls still go through)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from pymilvus import MilvusClient

        self.inserted: list[str] = []
        self.upserted: list[str] = []
        for name, log in (("insert", self.inserted), ("upsert", self.upserted)):
            real = getattr(MilvusClient, name)

            def record(client: Any, collection: str, rows: Any, *a: Any, _real: Any = real,
                       _log: list[str] = log, **kw: Any) -> Any:  # fmt: skip
                _log.extend(row["id"] for row in rows)
                return _real(client, collection, rows, *a, **kw)

            monkeypatch.setattr(MilvusClient, name, record)


def test_new_ids_are_inserted_and_only_stored_ids_upserted(
    lite: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a Milvus upsert deletes before it inserts, and a bulk load's deletes make Milvus
    # compact every segment and build its index again; new ids need no delete
    store, writes = opened(lite), WriteLog(monkeypatch)
    store.upsert(ids_of(20), unit(20, 32, 3), [None] * 20, [{}] * 20)
    assert (len(writes.inserted), writes.upserted) == (20, [])
    mixed = ids_of(25)[15:]  # 5 stored, 5 new
    store.upsert(mixed, unit(10, 32, 4), ["b"] * 10, [{}] * 10)
    assert writes.upserted == mixed[:5] and writes.inserted[20:] == mixed[5:]
    assert store.count() == 25  # every id once
    assert sorted(store.vectors_of(mixed)) == sorted(mixed)


def test_delete_removes_rows_and_ignores_unknown_ids(lite: str) -> None:
    store = opened(lite)
    x = unit(10, 32, 7)
    store.upsert(ids_of(10), x, [None] * 10, [{}] * 10)
    store.delete(["item-0", "item-1", "never-added"])
    assert store.count() == 8
    assert "item-0" not in {h[0] for h in store.search(x[:1], 10)[0]}
    assert store.vectors_of(["item-0"]) == {}


def test_label_filter_expression(lite: str) -> None:
    store = opened(lite, index="flat")
    x = unit(30, 32, 8)
    labels = ["shoes" if i % 3 == 0 else ("hat" if i % 3 == 1 else None) for i in range(30)]
    store.upsert(ids_of(30), x, labels, [{}] * 30)
    hits = store.search(x[:1], 30, 'label == "shoes"')[0]
    assert {h[0] for h in hits} == {f"item-{i}" for i in range(0, 30, 3)}
    unlabelled = store.search(x[:1], 30, 'label == ""')[0]
    assert {h[0] for h in unlabelled} == {f"item-{i}" for i in range(2, 30, 3)}


def test_metadata_json_filter_expression(lite: str) -> None:
    store = opened(lite, index="flat")
    x = unit(12, 32, 9)
    metas = [{"price": i * 10, "brand": "acme" if i < 6 else "zeta"} for i in range(12)]
    store.upsert(ids_of(12), x, [None] * 12, metas)
    hits = store.search(x[:1], 12, 'meta["price"] >= 50 and meta["brand"] == "acme"')[0]
    assert {h[0] for h in hits} == {"item-5"}


def test_binary_codes_score_one_minus_hamming_over_bits(lite: str) -> None:
    store = opened(lite, "hashes", dim=64, binary=True)
    assert store.info()["milvus_index"] == "BIN_FLAT"
    x = codes(50, 64, 10)
    store.upsert(ids_of(50), x, [None] * 50, [{}] * 50)
    query = x[3:4]
    hits = store.search(query, 5)[0]
    distance = np.unpackbits(x ^ query, axis=1).sum(axis=1)
    for item, score in hits:
        assert score == pytest.approx(1 - distance[int(item.split("-")[1])] / 64)
    assert hits[0] == ("item-3", 1.0)
    assert sorted((s for _, s in hits), reverse=True) == [s for _, s in hits]
    got = store.vectors_of(["item-9"])["item-9"]
    assert got.dtype == np.uint8 and np.array_equal(got, x[9])


def test_existing_collection_with_other_dims_or_metric_is_refused_naming_both(lite: str) -> None:
    opened(lite, "shoes", dim=32).close()
    with pytest.raises(BackendMismatch) as dims:
        opened(lite, "shoes", dim=48)
    assert "'shoes' has 32 dims (IP)" in str(dims.value)
    assert "model has 48 dims (IP)" in str(dims.value)
    with pytest.raises(BackendMismatch) as metric:
        opened(lite, "shoes", dim=32, binary=True)
    assert "32 dims (IP)" in str(metric.value) and "32 bits (HAMMING)" in str(metric.value)


def test_a_collection_without_our_fields_is_refused(lite: str) -> None:
    from pymilvus import DataType, MilvusClient

    Path(lite).parent.mkdir(parents=True)
    client = MilvusClient(uri=lite)
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=32)
    client.create_collection("foreign", schema=schema)
    client.close()
    with pytest.raises(BackendMismatch, match="'foreign' .* not a lookalike collection"):
        opened(lite, "foreign")


def test_open_without_create_needs_the_collection(lite: str) -> None:
    with pytest.raises(CollectionNotFound, match="no collection 'missing'"):
        MilvusVectors(lite, "missing", dim=8, binary=False).open(create=False)


@pytest.mark.parametrize(
    ("index", "params", "binary", "message"),
    [
        (
            "ivf-sq8",
            None,
            False,
            "Milvus Lite has only the flat, ivf-flat and auto indexes; "
            "ivf-sq8 needs a Milvus server",
        ),
        ("hnsw", None, False, "hnsw needs a Milvus server"),
        ("ivf-flat", None, True, "ivf-flat needs a Milvus server"),
        (
            "ivf-sq8",
            None,
            True,
            "ivf-sq8 is for float vectors; a hamming collection takes flat or ivf-flat",
        ),
        ("ivf-flat", {"nlist": 0}, False, "nlist must be in 1..65536, not 0"),
        ("ivf-flat", {"nlist": 70000}, False, "nlist must be in 1..65536, not 70000"),
        ("ivf-flat", {"nlist": 8, "nprobe": 9}, False, "nprobe (9) cannot exceed nlist (8)"),
        ("flat", {"nlist": 8}, False, "flat takes no parameters, not nlist"),
        ("ivf-flat", {"nlist": "many"}, False, "nlist must be an integer, not 'many'"),
        ("annoy", None, False, "unknown Milvus index 'annoy'"),
    ],
)
def test_what_the_target_cannot_do_is_refused_in_one_line(
    lite: str, index: str, params: dict | None, binary: bool, message: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        MilvusVectors(lite, "c", dim=64, binary=binary, index=index, params=params)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_arguments_are_invalid_input(lite: str) -> None:
    store = opened(lite, dim=8)
    one = unit(1, 8, 11)
    with pytest.raises(InvalidInput, match="at most 1024 bytes"):
        store.upsert(["x" * 1025], one, [None], [{}])
    with pytest.raises(InvalidInput, match="8 floats"):
        store.upsert(["a"], unit(1, 9, 11), [None], [{}])
    with pytest.raises(InvalidInput, match="1 to 16384 neighbours"):
        store.search(one, 16385)
    with pytest.raises(InvalidInput, match="bad Milvus filter"):
        store.search(one, 3, "colour === 'red'")
    with pytest.raises(InvalidInput, match="not JSON"):
        store.upsert(["a"], one, [None], [{"when": object()}])
    with pytest.raises(InvalidInput, match="Milvus Lite cannot hold ids with a '"):
        store.upsert(["it's"], one, [None], [{}])
    with pytest.raises(InvalidInput, match="a Milvus Lite file name ends in .db"):
        MilvusVectors(str(Path(lite).with_suffix(".txt")), "c", dim=8, binary=False)


def test_count_and_info(lite: str) -> None:
    store = opened(lite, index="ivf-flat", params={"nlist": 16, "nprobe": 4})
    store.upsert(ids_of(40), unit(40, 32, 12), [None] * 40, [{}] * 40)
    assert store.count() == 40
    info = store.info()
    assert info == {
        "type": "ivf-flat",
        "milvus_index": "IVF_FLAT",
        "params": {"nlist": 16, "nprobe": 4},
        "metric": "IP",
        "dim": 32,
        "count": 40,
        "uri": lite,
        "collection": "photos",
        "deployment": "lite",
    }
    # reopened with the default index, the store adopts the collection's own; nprobe is a
    # search knob, not stored: the default (16) unless given again
    assert opened(lite).info()["params"] == {"nlist": 16, "nprobe": 16}
    assert opened(lite, params={"nprobe": 4}).info()["params"] == {"nlist": 16, "nprobe": 4}
    with pytest.raises(BackendMismatch, match="has a IVF_FLAT index nlist=16; --index flat"):
        opened(lite, index="flat")
    store.drop()
    assert MilvusVectors(lite, "photos", dim=32, binary=False).lite


def test_without_pymilvus_the_extra_is_named(lite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(MissingDependency, match=r"pip install 'lookalike\[milvus\]'"):
        MilvusVectors(lite, "c", dim=8, binary=False).open()


def test_an_unreachable_server_is_unavailable_quickly_and_no_secret_leaks() -> None:
    port = free_port()
    store = MilvusVectors(
        f"http://alice:s3cret-pw@127.0.0.1:{port}",
        "photos",
        dim=8,
        binary=False,
        token="tok-very-secret",
        timeout=3,
    )
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as err:
        store.open()
    assert time.monotonic() - started < 15
    message = str(err.value)
    assert message.startswith(f"Milvus at http://127.0.0.1:{port} is unavailable")
    for text in (message, repr(store), store.display_uri):
        assert "s3cret" not in text and "tok-very" not in text and "alice" not in text
    with pytest.raises(ServiceUnavailable):  # and again on the next call, not a hang
        store.count()


# -- a real Milvus server -----------------------------------------------------------------


@pytest.fixture
def server_store(milvus_server) -> Iterator[Callable[..., MilvusVectors]]:  # noqa: F811
    """Opens stores on the server, each test on collections of its own (dropped after)."""
    names: dict[str, str] = {}
    stores: list[MilvusVectors] = []

    def make(name: str, **kw: object) -> MilvusVectors:
        names.setdefault(name, f"{name}_{uuid.uuid4().hex[:8]}")
        stores.append(opened(milvus_server.uri, names[name], **kw))
        return stores[-1]

    yield make
    for store in stores:
        with contextlib.suppress(Exception):
            store.drop()
        store.close()


def clustered(rows: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors around 50 centres, as image embeddings group by content."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((50, dim))
    x = centres[rng.integers(0, 50, rows)] + 0.5 * rng.standard_normal((rows, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_server_ivf_sq8_reranks_its_shortlist_to_exact_scores(
    server_store: Callable[..., MilvusVectors],
) -> None:
    x, queries = clustered(5000, 64, 20), clustered(100, 64, 21)
    exact = queries @ x.T
    truth = np.argsort(-exact, axis=1)[:, :10]
    store = server_store("recall", dim=64, index="ivf-sq8", params={"nlist": 32, "nprobe": 8})
    store.upsert(ids_of(5000, "v"), x, [None] * 5000, [{}] * 5000)
    store.wait_indexed(120, reload=True)  # searches go through the IVF_SQ8 index only
    assert store.index_progress() == (5000, 5000, 0)
    info = store.info()
    assert (info["milvus_index"], info["params"]) == ("IVF_SQ8", {"nlist": 32, "nprobe": 8})
    assert info["count"] == 5000 and info["deployment"] == "server"
    assert info["rerank"] == "exact, shortlist 3k"  # untuned: the longest
    hits = store.search(queries, 10)
    rows = [[int(item.split("-")[1]) for item, _ in row] for row in hits]
    # every score is the exact cosine (8-bit codes alone are off by ~1e-3), best first
    for q, row, scored in zip(range(100), rows, hits, strict=True):
        got = np.array([score for _, score in scored])
        np.testing.assert_allclose(got, exact[q, row], atol=1e-6)
        assert np.all(np.diff(got) <= 0)
    recall = np.mean([len(set(r) & set(t)) / 10 for r, t in zip(rows, truth, strict=True)])
    assert recall >= 0.99  # 8 of 32 lists; the exact re-rank undoes the quantisation's misorder
    # many queries with a large k are split so that each answer fits one request
    assert store.plan.query_batch(1000, 64) < 256
    assert [len(r) for r in store.search(queries[:3], 1000)] == [1000] * 3
    assert store.plan.query_batch(1000, 64, vectors=False) == 256  # answers without vectors


class Kept:
    """A kept copy of the vectors (as Redis keeps them with --redis-vectors), counting reads."""

    def __init__(self, ids: list[str], rows: np.ndarray) -> None:
        self.bytes = {i: row.tobytes() for i, row in zip(ids, rows, strict=True)}
        self.asked: list[str] = []

    def kept_vectors(self, ids: Sequence[str]) -> list[bytes | None]:
        self.asked += ids
        return [self.bytes.get(i) for i in ids]


def test_server_ivf_sq8_reranks_with_the_kept_vectors_and_milvus_sends_none(
    server_store: Callable[..., MilvusVectors], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike.store import milvus_wire

    x, queries = clustered(3000, 64, 30), clustered(40, 64, 31)
    ids = ids_of(3000, "v")
    store = server_store("kept", dim=64, index="ivf-sq8", params={"nlist": 32, "nprobe": 8})
    store.upsert(ids, x, [None] * 3000, [{}] * 3000)
    store.wait_indexed(120, reload=True)
    from_milvus = store.search(queries, 10)
    asked_vectors: list[bool] = []
    real_search = milvus_wire.search

    def spy(*args: Any, **kw: Any) -> Any:
        asked_vectors.append(kw["with_vectors"])
        return real_search(*args, **kw)

    monkeypatch.setattr(milvus_wire, "search", spy)
    store.kept = kept = Kept(ids, x)
    reads = store._reads.batches
    assert store.search(queries, 10) == from_milvus  # same ids, same exact scores
    assert asked_vectors and not any(asked_vectors)  # Milvus sent ids and scores only
    assert len(kept.asked) == len(set(kept.asked)) >= 30  # one read of each shortlisted id
    assert store._reads.batches == reads  # and none from Milvus

    # ids with no kept vector (published before vectors were kept) are read from Milvus
    for item_id in ids[::2]:
        del kept.bytes[item_id]
    assert store.search(queries, 10) == from_milvus
    assert store._reads.batches == reads + 1


def test_a_shortlist_takes_its_rows_from_the_kept_bytes_leaving_out_ids_without() -> None:
    from lookalike.store.milvus_wire import Shortlist, kept_rows, reranked, with_rows

    rows = unit(4, 8, 5)
    kept = [rows[0].tobytes(), None, rows[2].tobytes(), b"short"]
    found = kept_rows(["a", "b", "c", "d"], kept, 8, binary=False)
    assert sorted(found) == ["a", "c"] and np.array_equal(found["c"], rows[2])
    shortlist = Shortlist(["c", "b", "a"], np.array([0.9, 0.8, 0.7], np.float32), None)
    full = with_rows(shortlist, found)
    assert full.ids == ["c", "a"] and np.array_equal(full.vectors, rows[[2, 0]])
    assert full.scores.tolist() == pytest.approx([0.9, 0.7])
    assert reranked(rows[0], full, 1) == [("a", pytest.approx(1.0))]
    assert (
        with_rows(shortlist, {}).ids == [] and reranked(rows[0], with_rows(shortlist, {}), 5) == []
    )
    codes8 = kept_rows(["h"], [bytes([1, 2])], 16, binary=True)
    assert codes8["h"].dtype == np.uint8 and codes8["h"].tolist() == [1, 2]


def test_server_auto_is_hnsw_and_ef_follows_k(server_store: Callable[..., MilvusVectors]) -> None:
    store = server_store("auto", dim=16)
    assert store.info()["milvus_index"] == "HNSW"
    assert store.info()["params"] == {"M": 16, "efConstruction": 200, "ef": 64}
    store.upsert(ids_of(300), unit(300, 16, 22), [None] * 300, [{}] * 300)
    assert len(store.search(unit(1, 16, 23), 200)[0]) == 200  # k > ef: ef is raised to k


def test_server_rows_are_seen_at_once_by_another_replica(
    server_store: Callable[..., MilvusVectors],
) -> None:
    one, two = server_store("replicas", dim=8), server_store("replicas", dim=8)
    x = unit(3, 8, 24)
    one.upsert(["it's", 'say "hi"', "back\\slash"], x, ["a", None, None], [{}, {}, {}])
    assert two.count() == 3  # Strong consistency: no flush, no wait
    assert two.search(x[:1], 1) == [[("it's", pytest.approx(1.0, abs=1e-5))]]
    two.delete(["it's"])
    assert one.count() == 2


def test_server_rows_another_writer_stored_are_replaced_not_stored_twice(
    server_store: Callable[..., MilvusVectors], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a run killed after its write, before it recorded it: the re-run's store finds the rows
    one, two = server_store("rewrite", dim=8), server_store("rewrite", dim=8)
    one.upsert(ids_of(50), unit(50, 8, 25), [None] * 50, [{}] * 50)
    writes = WriteLog(monkeypatch)
    again = unit(60, 8, 26)
    two.upsert(ids_of(60), again, ["again"] * 60, [{}] * 60)
    assert (len(writes.upserted), len(writes.inserted)) == (50, 10)
    assert one.count() == 60
    hits = one.search(again[:1], 60, 'label == "again"')[0]
    assert len(hits) == len({h[0] for h in hits}) == 60
    assert hits[0] == ("item-0", pytest.approx(1.0, abs=1e-5))


def test_server_compaction_merges_small_segments_and_waits_for_their_index(
    server_store: Callable[..., MilvusVectors],
) -> None:
    store = server_store("compact", dim=16)
    for part in range(3):  # three sealed segments of 1,200 rows (indexed from 1,024 rows)
        store.upsert(ids_of(1200, f"p{part}"), unit(1200, 16, 30 + part), [None] * 1200,
                     [{}] * 1200)  # fmt: skip
        store.flush()

    def segments() -> list[int]:
        with store._call("list segments") as client:
            found = client._get_connection().get_query_segment_info(store.collection)
        return sorted(segment.num_rows for segment in found)

    store.wait_indexed(120, reload=True)
    assert segments() == [1200, 1200, 1200]
    store.wait_indexed(300, reload=True, compact=True)
    assert segments() == [3600]
    assert store.index_progress() == (3600, 3600, 0)
    assert store.count() == 3600


def test_server_restart_calls_fail_fast_then_the_same_store_works_again(
    milvus_server,  # noqa: F811
    server_store: Callable[..., MilvusVectors],
) -> None:
    if not milvus_server.can_restart:
        pytest.skip("LOOKALIKE_TEST_MILVUS_URI is set: the server is not ours to restart")
    store = server_store("restarts", dim=8, timeout=3)
    x = unit(50, 8, 25)
    store.upsert(ids_of(50), x, [None] * 50, [{}] * 50)
    milvus_server.stop()
    try:
        for call in (store.count, store.ping, lambda: store.search(x[:1], 3)):
            started = time.monotonic()
            with pytest.raises(ServiceUnavailable, match="Milvus at http://127.0.0.1"):
                call()
            assert time.monotonic() - started < 10
    finally:
        milvus_server.start()
    deadline = time.monotonic() + 90
    while True:  # the server reloads the collection; meanwhile calls say it is unavailable
        started = time.monotonic()
        try:
            hits = store.search(x[:1], 3)
            break
        except ServiceUnavailable:
            assert time.monotonic() - started < 10
            assert time.monotonic() < deadline, "the store did not come back in 90 s"
            time.sleep(1)
    assert hits[0][0] == ("item-0", pytest.approx(1.0, abs=1e-5))
    assert store.count() == 50


def test_only_ivf_sq8_reranks_and_info_says_so() -> None:
    from lookalike.cli.remote import remote_lines
    from lookalike.store.milvus_index import plan_index

    sq8 = plan_index("ivf-sq8", None, binary=False, lite=False)
    assert sq8.reranks and sq8.shortlist(10) == 30 and sq8.shortlist(10_000) == 16384
    for kind, binary in (("flat", False), ("ivf-flat", True), ("hnsw", False), ("auto", False)):
        plan = plan_index(kind, None, binary=binary, lite=False)
        assert not plan.reranks and plan.shortlist(10) == 10 and "rerank" not in plan.describe()
    info = {"store": "Milvus http://h:19530 (c)", "count": 5, **sq8.describe()}
    assert remote_lines(info)[1:] == [
        "            ivf-sq8 (IVF_SQ8, nlist=512, nprobe=16), 5 vectors",
        "            re-ranked by exact scores (shortlist 3k)",
    ]
