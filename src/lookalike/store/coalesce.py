"""Concurrent calls merged into batched ones (a replica's searches, under load).

A Milvus search or vector read costs a few milliseconds per request whatever it holds, and
little more per extra query in it (on 2 cores: 7 ms for one query, 15 ms for 16). When
threads call at once, the calls that arrive while ``inflight`` requests are already out
wait, and the next free request carries all of them: nothing waits when the store is idle,
and under load the fixed cost is shared. Only calls with the same key (e.g. the same k and
filter) are merged. :class:`Coalescer` serves threads; :class:`AsyncCoalescer` serves calls
awaited on an event loop, which hold no thread while they wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, Generic, TypeVar

__all__ = ["AsyncCoalescer", "Coalescer"]

T = TypeVar("T")
R = TypeVar("R")


class _Call(Generic[T, R]):
    __slots__ = ("done", "error", "items", "queued", "results", "wake")

    def __init__(self, items: Sequence[T]) -> None:
        self.items = list(items)
        self.results: list[R] = []
        self.error: BaseException | None = None
        self.done = False
        self.queued = True  # not yet taken into a batch
        self.wake = threading.Event()  # set when done, or when it may lead a batch


class _Batching(Generic[T, R]):
    """What both coalescers hold: ``run``, their limits, a lock and the batch count."""

    def __init__(
        self, run: Callable[[Hashable, list[T]], Sequence[R]], inflight: int, max_items: int
    ) -> None:
        if inflight < 1 or max_items < 1:
            raise ValueError("inflight and max_items must be at least 1")
        self._run = run
        self.inflight, self.max_items = inflight, max_items
        self._lock = threading.Lock()
        self._running = 0
        self.batches = 0  # batches run so far (tests and benchmarks read it)


class Coalescer(_Batching[T, R]):
    """``coalescer(key, items)`` returns ``run(key, items)``, where ``run`` may be given the
    items of several concurrent calls with that key at once (it returns one result per item,
    in order). An exception from ``run`` is raised in every call it served.

    Each waiting thread sleeps on its own event: a finished batch wakes the threads it served
    and a waiting one, which then leads the next batch (never all the waiters)."""

    def __init__(
        self,
        run: Callable[[Hashable, list[T]], Sequence[R]],
        *,
        inflight: int = 2,
        max_items: int = 256,
    ) -> None:
        super().__init__(run, inflight, max_items)
        self._queues: dict[Hashable, list[_Call[T, R]]] = {}

    def __call__(self, key: Hashable, items: Sequence[T]) -> list[R]:
        call: _Call[T, R] = _Call(items)
        with self._lock:
            self._queues.setdefault(key, []).append(call)
        while True:
            with self._lock:
                call.wake.clear()
                batch = None
                if call.queued and self._running < self.inflight:
                    batch = self._take(key)
                    self._running += 1
                    self.batches += 1
            if batch is not None:
                try:
                    self._serve(key, batch)
                finally:
                    with self._lock:
                        self._running -= 1
                        self._promote()
            if call.done:
                break
            call.wake.wait()
        if call.error is not None:
            raise call.error
        return call.results

    def _promote(self) -> None:
        """Wake the first waiting call of a key per free request, to lead a batch (under the
        lock; dicts keep insertion order: the longest-waiting keys first)."""
        heads = [queue[0] for queue in self._queues.values()]
        for call in heads[: max(0, self.inflight - self._running)]:
            call.wake.set()

    def _take(self, key: Hashable) -> list[_Call[T, R]]:
        """The oldest waiting calls of ``key``, up to ``max_items`` items (at least one)."""
        queue = self._queues[key]
        n, size = 0, 0
        while n < len(queue) and (n == 0 or size + len(queue[n].items) <= self.max_items):
            size += len(queue[n].items)
            n += 1
        batch, rest = queue[:n], queue[n:]
        for call in batch:
            call.queued = False
        if rest:
            self._queues[key] = rest
        else:
            del self._queues[key]
        return batch

    def _serve(self, key: Hashable, batch: list[_Call[T, R]]) -> None:
        items = [item for call in batch for item in call.items]
        try:
            results = list(self._run(key, items))
            if len(results) != len(items):
                raise RuntimeError(f"a batch of {len(items)} gave {len(results)} results")
        except BaseException as exc:
            for call in batch:
                call.error, call.done = exc, True
                call.wake.set()
            return
        start = 0
        for call in batch:
            call.results = results[start : start + len(call.items)]
            call.done = True
            start += len(call.items)
            call.wake.set()


class AsyncCoalescer(_Batching[T, R]):
    """:class:`Coalescer` for callers on an asyncio event loop: ``await coalescer(key, item)``
    returns ``run(key, items)``'s result for ``item``. A waiting call holds no thread (a
    server thread per waiting request costs a hand-off each way); each batch runs in a
    worker thread of the coalescer's own. At most ``inflight`` batches run at once; calls
    that arrive meanwhile gather for the next. Calls from several event loops may share it:
    each call is answered on its own loop."""

    def __init__(
        self,
        run: Callable[[Hashable, list[T]], Sequence[R]],
        *,
        inflight: int = 1,
        max_items: int = 256,
    ) -> None:
        super().__init__(run, inflight, max_items)  # its lock: for calls from several loops
        self._queues: dict[Hashable, list[tuple[T, asyncio.Future[R]]]] = {}
        self._pool: ThreadPoolExecutor | None = None  # made on first use

    async def __call__(self, key: Hashable, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._queues.setdefault(key, []).append((item, future))
        self._start()
        return await future

    def _start(self) -> None:
        """Start batches while fewer than ``inflight`` run and calls wait (oldest key first)."""
        while True:
            with self._lock:
                if self._running >= self.inflight or not self._queues:
                    return
                key = next(iter(self._queues))
                queue = self._queues.pop(key)
                calls, rest = queue[: self.max_items], queue[self.max_items :]
                if rest:
                    self._queues[key] = rest  # last: other keys go first
                calls = [(item, future) for item, future in calls if not future.done()]
                if not calls:  # every caller gave up (a closed connection)
                    continue
                self._running += 1
                self.batches += 1
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.inflight, "lookalike-batch")
                pool = self._pool
            items = [item for item, _ in calls]
            work = pool.submit(self._run, key, items)
            work.add_done_callback(partial(self._finish, calls))

    def _finish(self, calls: list[tuple[T, asyncio.Future[R]]], work: Future[Sequence[R]]) -> None:
        """In the worker thread: answer each call on its own loop, then start the next batch."""
        with self._lock:
            self._running -= 1
        try:
            results = list(work.result())
            if len(results) != len(calls):
                raise RuntimeError(f"a batch of {len(calls)} gave {len(results)} results")
        except BaseException as exc:  # every call of the batch gets it
            _answer([(future, None, exc) for _, future in calls])
        else:
            _answer([(f, r, None) for (_, f), r in zip(calls, results, strict=True)])
        self._start()


def _answer(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """Set each future's result or error on its own loop: one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for answer in answers:
        by_loop.setdefault(answer[0].get_loop(), []).append(answer)
    for loop, some in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, some)


def _settle(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in answers:
        if future.done():  # the caller gave up meanwhile
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
