"""Stored vectors: one raw row-major file addressed by slot, separate from any index.

Rows are written with ``pwrite`` and fsynced *before* the catalog commits the items that
point at them, so a crash can leave unused rows past the catalog's ``next_slot`` (they are
overwritten later) but never a committed item without its vector. Reads are memory-mapped:
the OS page cache holds the data, not a private copy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import Catalog

_FEW = 8  # reads of up to this many rows use pread instead of a memory map


class VectorFile:
    def __init__(self, path: Path, dtype: np.dtype[Any] | str, width: int) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.width = int(width)
        self.row_bytes = self.dtype.itemsize * self.width

    def write(self, first_slot: int, rows: np.ndarray) -> None:
        """Write ``rows`` at slots ``first_slot, first_slot + 1, ...`` and fsync."""
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise ValueError(f"expected rows of width {self.width}, got shape {rows.shape}")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            data = rows.tobytes()
            offset = first_slot * self.row_bytes
            view = memoryview(data)
            while view:
                written = os.pwrite(fd, view, offset)
                view = view[written:]
                offset += written
            os.fsync(fd)
        finally:
            os.close(fd)

    def matrix(self, n_slots: int) -> np.ndarray:
        """A read-only memory map of the first ``n_slots`` rows (zero rows if none)."""
        if n_slots <= 0 or not self.path.exists():
            return np.zeros((0, self.width), dtype=self.dtype)
        available = self.path.stat().st_size // self.row_bytes
        n = min(n_slots, available)
        if n == 0:
            return np.zeros((0, self.width), dtype=self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(n, self.width))

    def read(self, slots: np.ndarray | list[int], n_slots: int) -> np.ndarray:
        idx = np.asarray(slots, dtype=np.int64)
        if idx.ndim == 1 and 0 < idx.size <= _FEW:
            return self._read_few(idx, n_slots)
        mat = self.matrix(n_slots)
        if idx.size and (idx.max() >= mat.shape[0] or idx.min() < 0):
            raise IndexError(
                "vector slot out of range: the vectors file is shorter than the catalog"
            )
        return np.array(mat[idx], dtype=self.dtype)

    def _read_few(self, idx: np.ndarray, n_slots: int) -> np.ndarray:
        """A handful of rows with ``pread`` (a query's vector): much cheaper than mapping
        the file for one row; same checks and result as the memory-mapped path."""
        out = np.empty((idx.size, self.width), dtype=self.dtype)
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            fd = -1
        try:
            for j, slot in enumerate(idx.tolist()):
                data = b""
                if fd >= 0 and 0 <= slot < n_slots:
                    data = os.pread(fd, self.row_bytes, slot * self.row_bytes)
                if len(data) != self.row_bytes:
                    raise IndexError(
                        "vector slot out of range: the vectors file is shorter than the catalog"
                    )
                out[j] = np.frombuffer(data, dtype=self.dtype)
        finally:
            if fd >= 0:
                os.close(fd)
        return out

    def size_bytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0


class RowReader:
    """Float rows by slot from the memory-mapped vectors file (re-mapped when it grows)."""

    def __init__(self, vectors: VectorFile, catalog: Catalog) -> None:
        self.vectors = vectors
        self.catalog = catalog
        self._map: np.ndarray | None = None

    def __call__(self, slots: np.ndarray) -> np.ndarray:
        slots = np.asarray(slots, dtype=np.int64)
        if self._map is None or (slots.size and int(slots.max()) >= self._map.shape[0]):
            self._map = self.vectors.matrix(self.catalog.next_slot)
            if slots.size and int(slots.max()) >= self._map.shape[0]:
                raise IndexError(
                    "vector slot out of range: the vectors file is shorter than the catalog"
                )
        return np.asarray(self._map[slots], dtype=np.float32)
