"""The outbox: every committed change of an item queues its id, in the change's own
transaction; a rolled-back change queues nothing; publishing forgets only what it handled."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lookalike.distributed.tuning import tune_search
from lookalike.errors import InvalidInput
from lookalike.store import outbox
from lookalike.store.catalog import Catalog, Item
from lookalike.store.milvus_index import adopt_index, plan_index


def _item(item_id: str, slot: int, label: str | None = None) -> Item:
    return Item(item_id, slot, "src", f"/p/{item_id}", None, label, added_at=time.time())


def test_triggers_queue_inserts_updates_renames_and_deletes(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "c.sqlite")
    with catalog.transaction():
        catalog.insert(_item("before", 0))
    outbox.enable(catalog.db, backfill=True)
    assert outbox.enabled(catalog.db) and outbox.pending(catalog.db) == 1
    with catalog.transaction():
        catalog.insert(_item("a", 1))
        catalog.insert(_item("b", 2))
    catalog.db.execute("UPDATE items SET label = 'x' WHERE id = 'a'")
    catalog.db.execute("UPDATE items SET id = 'b2' WHERE id = 'b'")  # a rename
    catalog.db.execute("UPDATE items SET mtime_ns = 5 WHERE id = 'a'")  # not published
    catalog.db.commit()
    with catalog.transaction():
        catalog.delete(["before"])
    ids, upto = outbox.next_batch(catalog.db, 100)
    assert ids == ["before", "a", "b", "b2"]
    with pytest.raises(RuntimeError), catalog.transaction():
        catalog.insert(_item("rolled-back", 9))
        raise RuntimeError
    assert outbox.next_batch(catalog.db, 100) == (ids, upto)
    with catalog.transaction():
        catalog.insert(_item("late", 3))
    outbox.done(catalog.db, upto)
    assert outbox.next_batch(catalog.db, 100)[0] == ["late"]
    catalog.close()


def test_collections_without_a_remote_store_queue_nothing(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "c.sqlite")
    with catalog.transaction():
        catalog.insert(_item("a", 0))
    assert not outbox.enabled(catalog.db) and outbox.pending(catalog.db) == 0
    catalog.close()


def test_the_search_knob_doubles_from_its_smallest_until_the_target_unless_pinned() -> None:
    plan = plan_index("ivf-sq8", {"nlist": 512, "nprobe": 4}, binary=False, lite=False)
    recall_at = {1: 0.5, 2: 0.7, 4: 0.80, 8: 0.90, 16: 0.96, 32: 0.99}
    assert tune_search(plan, lambda: recall_at[plan.search["nprobe"]], 0.95, ()) == 0.96
    assert plan.search["nprobe"] == 16
    # easy data: fewer lists than the default already reach it, and fewer neighbours in HNSW
    easy = plan_index("ivf-flat", None, binary=False, lite=False)
    assert easy.search["nprobe"] == 16
    recall_at = {1: 0.90, 2: 0.96, 4: 0.99, 8: 1.0, 16: 1.0}
    assert tune_search(easy, lambda: recall_at[easy.search["nprobe"]], 0.95, ()) == 0.96
    assert easy.search["nprobe"] == 2
    hnsw = plan_index("hnsw", None, binary=False, lite=False)
    assert hnsw.search["ef"] == 64
    recall_at = {16: 0.93, 32: 0.97, 64: 0.99}
    assert tune_search(hnsw, lambda: recall_at[hnsw.search["ef"]], 0.95, ()) == 0.97
    assert hnsw.search["ef"] == 32
    pinned = plan_index("ivf-sq8", {"nlist": 512, "nprobe": 4}, binary=False, lite=False)
    assert tune_search(pinned, lambda: 0.5, 0.95, {"nprobe"}) == 0.5
    assert pinned.search["nprobe"] == 4
    small = plan_index("ivf-flat", {"nlist": 8, "nprobe": 2}, binary=False, lite=False)
    rising = lambda: 0.5 + small.search["nprobe"] / 100  # noqa: E731 - never reaches 0.95
    assert tune_search(small, rising, 0.95, ()) == 0.58 and small.search["nprobe"] == 8


def test_the_tuning_stops_where_more_lists_gain_nothing() -> None:
    plan = plan_index("ivf-sq8", {"nlist": 512, "nprobe": 4}, binary=False, lite=False)
    recall_at = {1: 0.70, 2: 0.85, 4: 0.90, 8: 0.93, 16: 0.94, 32: 0.94, 64: 0.94}
    assert tune_search(plan, lambda: recall_at[plan.search["nprobe"]], 0.95, ()) == 0.94
    assert plan.search["nprobe"] == 16  # the quantised codes cap it: 32 would only cost time


def test_a_rerank_shortlist_is_cut_to_the_fewest_candidates_that_reach_the_target() -> None:
    plan = plan_index("ivf-sq8", {"nlist": 512, "nprobe": 16}, binary=False, lite=False)
    recall_at = {11: 0.90, 12: 0.93, 14: 0.96, 16: 0.99, 20: 1.0, 30: 1.0}
    tried: list[dict[str, int]] = []

    def measure() -> float:
        tried.append(dict(plan.search))
        lists = {1: 0.5, 2: 0.8}.get(plan.search["nprobe"], 1.0)
        return lists * recall_at[plan.search["shortlist"]]

    plan.search["shortlist"] = 12  # an earlier tuning's: the knob is tuned with the longest
    assert tune_search(plan, measure, 0.95, ()) == 0.96
    assert [t["nprobe"] for t in tried[:3]] == [1, 2, 4]
    assert [t["shortlist"] for t in tried] == [30, 30, 30, 11, 12, 14]
    assert plan.search == {"nprobe": 4, "shortlist": 14}
    assert (plan.shortlist(10), plan.shortlist(11), plan.shortlist(1), plan.shortlist(100)) == (
        14, 15, 14, 140,
    )  # fmt: skip
    assert plan.search_params(15)["params"] == {"nprobe": 4}  # Milvus never sees it
    assert plan.params() == {"nlist": 512, "nprobe": 4}
    assert plan.describe()["rerank"] == "exact, shortlist 1.4k"

    # the longest short of the target: the fewest candidates that match its recall
    short = plan_index("ivf-sq8", {"nlist": 512, "nprobe": 16}, binary=False, lite=False)
    capped = {11: 0.88, 12: 0.91, 14: 0.92, 16: 0.92, 20: 0.92, 30: 0.92}
    assert tune_search(short, lambda: capped[short.search["shortlist"]], 0.95, {"nprobe"}) == 0.92
    assert short.search == {"nprobe": 16, "shortlist": 14}
    # a shortlist the indexer stored and gave: kept as it is
    given = plan_index("ivf-sq8", {"nprobe": 16, "shortlist": 20}, binary=False, lite=False)
    assert tune_search(given, lambda: 1.0, 0.95, {"shortlist"}) == 1.0
    assert given.search["shortlist"] == 20


def test_replicas_take_the_stored_shortlist_and_indexes_without_a_rerank_have_none() -> None:
    stored = {"nprobe": 32, "shortlist": 12}  # what the indexer keeps in Redis ("search")
    sq8 = adopt_index({"index_type": "IVF_SQ8", "nlist": "512"}, stored, binary=False)
    assert sq8.search == stored and sq8.shortlist(10) == 12
    fresh = adopt_index({"index_type": "IVF_SQ8", "nlist": "512"}, {}, binary=False)
    assert fresh.search == {"nprobe": 16, "shortlist": 30}  # before any tuning
    assert plan_index("auto", stored, binary=False, lite=False).search == {"ef": 64}
    for kind, knobs in (("hnsw", {"ef": 64}), ("ivf-flat", {"nprobe": 16})):
        plan = plan_index(kind, {"shortlist": 12}, binary=False, lite=False)
        assert plan.search == knobs and plan.shortlist(10) == 10
    for bad in (5, 1001, "many"):
        with pytest.raises(InvalidInput, match="shortlist"):
            plan_index("ivf-sq8", {"shortlist": bad}, binary=False, lite=False)
