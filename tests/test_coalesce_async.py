"""Awaited calls share batches (``AsyncCoalescer``, store/coalesce.py): a replica's
``/similar`` requests wait for their batch on the event loop, without a thread each."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable

import pytest
from test_coalesce import Gate

from lookalike.store.coalesce import AsyncCoalescer


async def queued(co: AsyncCoalescer[int, int], n: int) -> None:
    """Until ``n`` calls wait in the queues (the first batch is held meanwhile)."""
    for _ in range(2000):
        if sum(len(q) for q in co._queues.values()) >= n:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{n} calls never queued")


async def held(co: AsyncCoalescer[int, int], gate: Gate, key: Hashable) -> asyncio.Task[int]:
    """A first call, held inside ``run`` (the others queue behind it meanwhile)."""
    first = asyncio.create_task(co(key, 0))
    assert await asyncio.to_thread(gate.entered.wait, 10)
    return first


def test_an_idle_coalescer_runs_a_call_at_once_as_its_own_batch() -> None:
    gate = Gate()
    gate.release.set()
    co = AsyncCoalescer(gate)

    async def main() -> list[int]:
        return [await co("k", 1), await co("k", 2)]

    assert asyncio.run(main()) == [10, 20]
    assert gate.batches == [("k", [1]), ("k", [2])] and co.batches == 2


def test_calls_awaited_while_a_batch_runs_share_the_next_and_get_their_own_results() -> None:
    gate = Gate()
    co = AsyncCoalescer(gate)

    async def main() -> list[int]:
        first = await held(co, gate, "k")
        rest = [asyncio.create_task(co("k", n)) for n in (1, 2, 3, 4)]
        await queued(co, 4)
        gate.release.set()
        return [await first, *await asyncio.gather(*rest)]

    assert asyncio.run(main()) == [0, 10, 20, 30, 40]
    assert gate.batches == [("k", [0]), ("k", [1, 2, 3, 4])]


def test_keys_are_not_merged_and_the_oldest_key_goes_first() -> None:
    gate = Gate()
    co = AsyncCoalescer(gate)

    async def main() -> list[int]:
        first = await held(co, gate, "a")
        rest = [asyncio.create_task(co(key, n)) for key, n in (("b", 1), ("a", 2), ("b", 3))]
        await queued(co, 3)
        gate.release.set()
        return [await first, *await asyncio.gather(*rest)]

    assert asyncio.run(main()) == [0, 10, 20, 30]
    assert gate.batches == [("a", [0]), ("b", [1, 3]), ("a", [2])]


def test_an_error_reaches_every_call_of_its_batch_and_no_other() -> None:
    gate = Gate()
    co = AsyncCoalescer(gate)

    async def main() -> None:
        first = await held(co, gate, "ok")
        bad = [asyncio.create_task(co("boom", n)) for n in (1, 2)]
        good = asyncio.create_task(co("ok", 3))
        await queued(co, 3)
        gate.release.set()
        assert await first == 0 and await good == 30
        for task in bad:
            with pytest.raises(ValueError, match="failed on"):
                await task
        assert await co("ok", 4) == 40  # it still works after a failed batch

    asyncio.run(main())


def test_a_caller_that_gives_up_leaves_the_others_their_answers() -> None:
    gate = Gate()
    co = AsyncCoalescer(gate)

    async def main() -> list[int]:
        first = await held(co, gate, "k")
        gone, kept = asyncio.create_task(co("k", 1)), asyncio.create_task(co("k", 2))
        await queued(co, 2)
        gone.cancel()  # e.g. its client closed the connection
        gate.release.set()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return [await first, await kept]

    assert asyncio.run(main()) == [0, 20]
    assert gate.batches == [("k", [0]), ("k", [2])]


def test_calls_from_several_event_loops_are_each_answered_on_their_own() -> None:
    gate = Gate()
    co = AsyncCoalescer(gate)
    results: dict[int, int] = {}

    def on_own_loop(n: int) -> None:
        results[n] = asyncio.run(co("k", n))

    first = threading.Thread(target=on_own_loop, args=(0,))
    first.start()
    assert gate.entered.wait(10)
    others = [threading.Thread(target=on_own_loop, args=(n,)) for n in (1, 2, 3)]
    for t in others:
        t.start()
    for _ in range(2000):
        if sum(len(q) for q in co._queues.values()) == 3:
            break
        threading.Event().wait(0.005)
    gate.release.set()
    for t in [first, *others]:
        t.join(10)
    assert results == {0: 0, 1: 10, 2: 20, 3: 30}
    assert len(gate.batches) == 2 and sorted(gate.batches[1][1]) == [1, 2, 3]  # one batch


def test_a_run_that_returns_the_wrong_number_of_results_is_an_error() -> None:
    co: AsyncCoalescer[int, int] = AsyncCoalescer(lambda key, items: items[:-1])
    with pytest.raises(RuntimeError, match="a batch of 1 gave 0 results"):
        asyncio.run(co("k", 1))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AsyncCoalescer(lambda key, items: items, inflight=0)
