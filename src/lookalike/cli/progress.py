"""A small progress bar: images per second and ETA, on stderr, at most a few redraws a second."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _fmt_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Callable progress sink: ``progress(done, total)``; ``close()`` ends the line."""

    def __init__(
        self, label: str = "indexing", stream: TextIO | None = None, interval: float = 0.2
    ):
        self.label = label
        self.stream = stream or sys.stderr
        self.interval = interval
        self.start = time.monotonic()
        self._last = 0.0
        self._drawn = False
        self._done = 0
        self._total = 0

    def __call__(self, done: int, total: int) -> None:
        self._done, self._total = done, total
        now = time.monotonic()
        if now - self._last < self.interval and done < total:
            return
        self._last = now
        self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self._done / elapsed
        total = max(self._total, 1)
        frac = min(1.0, self._done / total)
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        eta = _fmt_eta((self._total - self._done) / rate) if rate > 0 else "?"
        line = f"\r{self.label} [{bar}] {self._done}/{self._total} {rate:6.1f} img/s ETA {eta}  "
        self.stream.write(line)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._total:
            self._draw(time.monotonic())
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
