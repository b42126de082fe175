"""Concurrent calls share batched requests (store/coalesce.py): what a replica's Milvus
searches and vector reads go through."""

from __future__ import annotations

import threading
from collections.abc import Hashable
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from lookalike.store.coalesce import Coalescer


class Gate:
    """A ``run`` that records its batches and holds the first one until released."""

    def __init__(self) -> None:
        self.batches: list[tuple[Hashable, list[int]]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, key: Hashable, items: list[int]) -> list[int]:
        with self.lock:
            self.batches.append((key, list(items)))
            first = len(self.batches) == 1
        if first:
            self.entered.set()
            assert self.release.wait(10)
        if key == "boom":
            raise ValueError(f"failed on {items}")
        return [10 * x for x in items]


def hold_first(
    pool: ThreadPoolExecutor, co: Coalescer[int, int], gate: Gate, key: str
) -> Future[list[int]]:
    """A first call, held inside ``run`` (the others queue behind it meanwhile)."""
    first = pool.submit(co, key, [0])
    assert gate.entered.wait(10)
    return first


def wait_queued(co: Coalescer[int, int], n: int) -> None:
    """Until ``n`` calls wait in the queues (the first batch is held meanwhile)."""
    for _ in range(2000):
        with co._lock:
            if sum(len(q) for q in co._queues.values()) >= n:
                return
        threading.Event().wait(0.005)
    raise AssertionError(f"{n} calls never queued")


def test_an_idle_coalescer_sends_a_call_at_once_as_its_own_batch() -> None:
    gate = Gate()
    gate.release.set()
    co = Coalescer(gate)
    assert co("k", [1, 2]) == [10, 20]
    assert co("k", [3]) == [30]
    assert gate.batches == [("k", [1, 2]), ("k", [3])]
    assert co.batches == 2


def test_calls_arriving_during_a_request_share_the_next_and_get_their_own_results() -> None:
    gate = Gate()
    co = Coalescer(gate, inflight=1)
    with ThreadPoolExecutor(12) as pool:
        first = hold_first(pool, co, gate, "k")
        rest = [pool.submit(co, "k", [n, n + 100]) for n in range(1, 11)]
        wait_queued(co, 10)
        gate.release.set()
        assert first.result(10) == [0]
        for n, fut in enumerate(rest, 1):
            assert fut.result(10) == [10 * n, 10 * (n + 100)]
    assert len(gate.batches) == 2  # the held one, then all ten together
    assert sorted(gate.batches[1][1]) == sorted(x for n in range(1, 11) for x in (n, n + 100))


def test_only_calls_with_the_same_key_are_merged() -> None:
    gate = Gate()
    co = Coalescer(gate, inflight=1)
    with ThreadPoolExecutor(8) as pool:
        first = hold_first(pool, co, gate, "a")
        a = [pool.submit(co, "a", [n]) for n in (1, 2, 3)]
        b = [pool.submit(co, "b", [n]) for n in (4, 5)]
        wait_queued(co, 5)
        gate.release.set()
        assert [f.result(10) for f in (first, *a, *b)] == [[0], [10], [20], [30], [40], [50]]
    keys = sorted((key, sorted(items)) for key, items in gate.batches[1:])
    assert keys == [("a", [1, 2, 3]), ("b", [4, 5])]


def test_a_batch_holds_at_most_max_items_and_the_rest_follow() -> None:
    gate = Gate()
    co = Coalescer(gate, inflight=1, max_items=4)
    with ThreadPoolExecutor(12) as pool:
        first = hold_first(pool, co, gate, "k")
        rest = [pool.submit(co, "k", [n]) for n in range(1, 11)]
        wait_queued(co, 10)
        gate.release.set()
        assert [f.result(10) for f in rest] == [[10 * n] for n in range(1, 11)]
        first.result(10)
    sizes = [len(items) for _, items in gate.batches[1:]]
    assert sizes == [4, 4, 2]


def test_no_more_requests_are_out_at_once_than_inflight() -> None:
    out, most, lock = 0, 0, threading.Lock()

    def run(key: Hashable, items: list[int]) -> list[int]:
        nonlocal out, most
        with lock:
            out += 1
            most = max(most, out)
        threading.Event().wait(0.01)
        with lock:
            out -= 1
        return items

    co = Coalescer(run, inflight=2)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda n: co("k", [n]), range(200)))
    assert results == [[n] for n in range(200)]
    assert most == 2
    assert co.batches < 200  # merged under load


def test_an_error_reaches_every_call_of_its_batch_and_no_other() -> None:
    gate = Gate()
    co = Coalescer(gate, inflight=1)
    with ThreadPoolExecutor(8) as pool:
        first = hold_first(pool, co, gate, "ok")
        bad = [pool.submit(co, "boom", [n]) for n in (1, 2)]
        good = pool.submit(co, "ok", [3])
        wait_queued(co, 3)
        gate.release.set()
        assert first.result(10) == [0]
        assert good.result(10) == [30]
        for fut in bad:
            with pytest.raises(ValueError, match="failed on"):
                fut.result(10)
    # the coalescer still works after a failed batch
    assert co("ok", [4]) == [40]


def test_a_run_that_returns_the_wrong_number_of_results_is_an_error() -> None:
    co: Coalescer[int, int] = Coalescer(lambda key, items: items[:-1])
    with pytest.raises(RuntimeError, match="a batch of 2 gave 1 results"):
        co("k", [1, 2])


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(lambda key, items: items, inflight=0)
