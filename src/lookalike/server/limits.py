"""Bounds on the server's expensive work, so that no flood of one kind of request can take
the threads or the memory every other request needs. Over a bound the request is refused
with :class:`Busy` (HTTP 503 with ``Retry-After``) instead of queueing without end.

* :class:`Slots`: at most ``n`` at once (URL fetches); a request waits up to ``wait``
  seconds for a slot.
* :class:`MemoryBudget`: decodes reserve their estimated peak memory from a budget; one
  decode is always let through when nothing else runs, however large, so any image within
  the megapixel limit can be decoded on an idle server.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from ..errors import LookalikeError

__all__ = ["Busy", "MemoryBudget", "Slots", "decode_cost"]

# Peak bytes per pixel of decoding an upload and preparing the model input (measured: a
# 49-megapixel PNG took ~750 MB, ~15 bytes a pixel: the decoded RGB(A) image, its converted
# copy and the resized float input).
BYTES_PER_PIXEL = 16


class Busy(LookalikeError):
    """The server is at one of its concurrency bounds; try again after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


def decode_cost(pixels: int) -> int:
    """The bytes a decode of ``pixels`` pixels reserves (at least a megapixel's worth)."""
    return max(int(pixels), 1_000_000) * BYTES_PER_PIXEL


class Slots:
    """At most ``n`` holders at once; others wait up to ``wait`` seconds, then :class:`Busy`."""

    def __init__(self, n: int, what: str, wait: float = 0.0, retry_after: int = 2) -> None:
        self._sem = threading.BoundedSemaphore(n)
        self.n = n
        self.what = what
        self.wait = wait
        self.retry_after = retry_after

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        got = self._sem.acquire(timeout=self.wait) if self.wait > 0 else self._sem.acquire(False)
        if not got:
            raise Busy(
                f"too many {self.what} in progress ({self.n} at most); retry shortly",
                self.retry_after,
            )
        try:
            yield
        finally:
            self._sem.release()


class MemoryBudget:
    """Reservations of bytes from ``budget``; a reservation that does not fit waits up to
    ``wait`` seconds for others to end, then raises :class:`Busy`."""

    def __init__(self, budget: int, what: str, wait: float = 2.0, retry_after: int = 2) -> None:
        self.budget = budget
        self.what = what
        self.wait = wait
        self.retry_after = retry_after
        self._used = 0
        self._holders = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, cost: int) -> Iterator[None]:
        cost = min(max(0, cost), self.budget)
        deadline = time.monotonic() + self.wait
        with self._cond:
            while self._holders and self._used + cost > self.budget:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Busy(f"the server is busy {self.what}; retry shortly", self.retry_after)
                self._cond.wait(left)
            self._used += cost
            self._holders += 1
        try:
            yield
        finally:
            with self._cond:
                self._used -= cost
                self._holders -= 1
                self._cond.notify_all()
