"""The server's readers-writer lock: many searches at once, one add or removal alone."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["RWLock", "WouldBlock"]


class WouldBlock(Exception):
    """A non-blocking read found a writer active or waiting."""


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
