"""Model inference in a thread of its own, overlapping with everything else an indexing run
does: gathering decoded results, writing vectors (fsync) and committing catalog rows.

onnxruntime releases the GIL while it runs, so while one batch is embedded the indexing
thread collects the next one and commits the previous one; with a batch or two waiting, the
model never waits for that thread. Batches are committed in submission order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")

#: Batches submitted and not yet committed: one being embedded and the rest waiting.
DEFAULT_DEPTH = 3


class InferenceQueue(Generic[T]):
    """``submit`` batches; each is embedded (``embed``, in the inference thread) and then
    committed (``commit``, in the submitting thread, in order). At most ``depth`` batches are
    in flight: ``submit`` commits the oldest ones first when the queue is full or they are
    done. ``finish`` commits everything left. Errors from ``embed`` surface in ``submit`` or
    ``finish``; leaving the ``with`` block stops the thread (batches not started are
    dropped)."""

    def __init__(
        self,
        embed: Callable[[list[T]], np.ndarray],
        commit: Callable[[list[T], np.ndarray], None],
        depth: int = DEFAULT_DEPTH,
    ) -> None:
        self._embed = embed
        self._commit = commit
        self._depth = max(1, depth)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._in_flight: deque[tuple[list[T], Future[np.ndarray]]] = deque()

    def submit(self, batch: list[T]) -> None:
        self._in_flight.append((batch, self._executor.submit(self._embed, batch)))
        while self._in_flight and (
            len(self._in_flight) >= self._depth or self._in_flight[0][1].done()
        ):
            self._commit_oldest()

    def finish(self) -> None:
        while self._in_flight:
            self._commit_oldest()

    def _commit_oldest(self) -> None:
        batch, fut = self._in_flight.popleft()
        self._commit(batch, fut.result())

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._in_flight.clear()

    def __enter__(self) -> InferenceQueue[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
