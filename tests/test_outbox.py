"""The outbox: every committed change of an item queues its id, in the change's own
transaction; a rolled-back change queues nothing; publishing forgets only what it handled."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lookalike.distributed.tuning import tune_search
from lookalike.store import outbox
from lookalike.store.catalog import Catalog, Item
from lookalike.store.milvus_index import plan_index


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


def test_the_search_knob_doubles_until_the_target_unless_pinned() -> None:
    plan = plan_index("ivf-sq8", {"nlist": 512, "nprobe": 4}, binary=False, lite=False)
    recall_at = {4: 0.80, 8: 0.90, 16: 0.96, 32: 0.99}
    assert tune_search(plan, lambda: recall_at[plan.search["nprobe"]], 0.95, ()) == 0.96
    assert plan.search["nprobe"] == 16
    pinned = plan_index("ivf-sq8", {"nlist": 512, "nprobe": 4}, binary=False, lite=False)
    assert tune_search(pinned, lambda: 0.5, 0.95, {"nprobe"}) == 0.5
    assert pinned.search["nprobe"] == 4
    small = plan_index("ivf-flat", {"nlist": 8, "nprobe": 2}, binary=False, lite=False)
    rising = lambda: 0.5 + small.search["nprobe"] / 100  # noqa: E731 - never reaches 0.95
    assert tune_search(small, rising, 0.95, ()) == 0.58 and small.search["nprobe"] == 8


def test_the_tuning_stops_where_more_lists_gain_nothing() -> None:
    plan = plan_index("ivf-sq8", {"nlist": 512, "nprobe": 4}, binary=False, lite=False)
    recall_at = {4: 0.90, 8: 0.93, 16: 0.94, 32: 0.94, 64: 0.94}
    assert tune_search(plan, lambda: recall_at[plan.search["nprobe"]], 0.95, ()) == 0.94
    assert plan.search["nprobe"] == 16  # the quantised codes cap it: 32 would only cost time
