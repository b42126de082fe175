"""The server's readers-writer lock: many searches at once, one add or removal alone."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..store.layout import write_lock
from .limits import Busy

__all__ = ["RWLock", "RemoteReads", "WouldBlock", "exclusive_write", "read_now"]

# How long a write waits for another process's lock on the collection before a 503.
FILE_LOCK_WAIT = 0.5


class WouldBlock(Exception):
    """A non-blocking read found a writer active or waiting."""


async def read_now(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a short read on the event loop when no writer holds or awaits the lock
    (no thread hop: searches take ~1 ms), else in the threadpool, where it may wait."""
    try:
        return fn(*args, blocking=False)
    except WouldBlock:
        return await run_in_threadpool(fn, *args)


class RWLock:
    """Many readers or one writer; a waiting writer blocks new readers (no starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting = 0

    @contextlib.contextmanager
    def read(self, blocking: bool = True) -> Iterator[None]:
        """Hold the lock for reading; with ``blocking=False`` raise :class:`WouldBlock` at
        once instead of waiting for a writer."""
        with self._cond:
            while self._writer or self._waiting:
                if not blocking:
                    raise WouldBlock
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class RemoteReads:
    """A stateless replica's "lock": nothing local to guard (Milvus and Redis order the
    writes), but every read makes network calls of milliseconds, so a non-blocking read
    (one tried on the event loop) is sent to the threadpool instead."""

    @contextlib.contextmanager
    def read(self, blocking: bool = True) -> Iterator[None]:
        if not blocking:
            raise WouldBlock("a replica reads in the threadpool")
        yield

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def exclusive_write(root: Path, rw: RWLock, mutex: threading.Lock, wait: float) -> Iterator[None]:
    """Hold, in this order: the server's writer ``mutex`` (up to ``wait`` s), the
    collection's file lock (up to :data:`FILE_LOCK_WAIT` s), then ``rw`` for writing.

    The file lock comes before the readers-writer lock, and is not waited for long: a CLI
    ``index`` run holds it for minutes, and a write queued on the readers-writer lock would
    stop every search meanwhile. Raises :class:`Busy` (a 503) when either is taken.
    """
    if not mutex.acquire(timeout=wait):
        raise Busy("another write is in progress on this server; retry shortly")
    try:
        deadline = time.monotonic() + FILE_LOCK_WAIT
        while True:
            with write_lock(root, wait=False) as got:
                if got:
                    with rw.write():
                        yield
                    return
            if time.monotonic() >= deadline:
                raise Busy(
                    "another process (e.g. lookalike index) is writing to the collection;"
                    " retry later",
                    retry_after=5,
                )
            time.sleep(0.05)
    finally:
        mutex.release()
