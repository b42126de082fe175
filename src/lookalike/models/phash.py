"""A weight-free 64-bit DCT perceptual hash, the algorithm of ``imagehash.phash``.

Steps: greyscale (Pillow "L"), 32 x 32 LANCZOS, 2-D DCT-II (unnormalised, as
``scipy.fftpack.dct``), keep the top-left 8 x 8 coefficients (DC included), set a bit where
the coefficient is above their median. Bits are stored row-major, most significant first,
so ``int.from_bytes(phash_bits(img), "big") == int(str(imagehash.phash(img)), 16)``.

Differences from ``imagehash``, all measured in docs/preprocessing.md:

- the DCT is one precomputed 8 x 32 matrix applied with two small matmuls (no scipy);
  :func:`phash_from_gray32` gives the same bits as imagehash's DCT/median step for the same
  32 x 32 input (coefficients are rounded to 1e-6 first, so exact ties, e.g. from
  symmetric or flat images, resolve the same way on every machine instead of by
  floating-point noise);
- :func:`phash_bits` shrinks the image with ``reducing_gap`` (a box-filter ``reduce`` to
  about twice the target size before the LANCZOS step), several times faster on photos
  and on average a fraction of a bit away from imagehash.

Hashes are 8 bytes (:func:`phash_bits`) or, for SQLite ``INTEGER`` columns, a signed
64-bit int (:func:`phash_int`): the same 64 bits read as two's complement, so values with
the top bit set are negative. Convert back with ``value.to_bytes(8, "big", signed=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from ..errors import InvalidInput

__all__ = [
    "PhashPreparer",
    "hamming",
    "phash_bits",
    "phash_from_gray32",
    "phash_int",
    "phash_int_to_bits",
    "phash_ints_from_gray32",
]

HASH_SIZE = 8
IMG_SIZE = 32  # HASH_SIZE * imagehash's highfreq_factor (4)
HASH_BYTES = HASH_SIZE * HASH_SIZE // 8

# Pillow's resize(reducing_gap=...) first box-reduces by int(scale / gap), then resamples
# with LANCZOS. 2.0 keeps the mean distance to imagehash ~0.3 bits on photos while doing
# most of the shrinking with the cheap box filter.
REDUCING_GAP = 2.0

# Coefficients are rounded to this many decimals before the median comparison, so that
# values equal in exact arithmetic compare equal (true ties cannot become noise bits).
_DECIMALS = 6


@lru_cache(maxsize=1)
def _dct_rows() -> np.ndarray:
    """The first 8 rows of the 32-point DCT-II matrix, scaled like scipy's (norm=None):
    ``D[k, n] = 2 cos(pi k (2n + 1) / 64)``."""
    k = np.arange(HASH_SIZE, dtype=np.float64)[:, None]
    n = np.arange(IMG_SIZE, dtype=np.float64)[None, :]
    d = 2.0 * np.cos(np.pi * k * (2.0 * n + 1.0) / (2.0 * IMG_SIZE))
    d.flags.writeable = False
    return d


def phash_from_gray32(pixels: np.ndarray) -> bytes:
    """The DCT + median part of the hash, for a 32 x 32 grey array (any real dtype).

    Returns 8 bytes: bit ``8 * i + j`` (counting from the most significant bit of the
    first byte) is set when DCT coefficient (i, j) is above the median of the 64.
    """
    p = np.asarray(pixels, dtype=np.float64)
    if p.shape != (IMG_SIZE, IMG_SIZE):
        raise InvalidInput(f"expected a {IMG_SIZE}x{IMG_SIZE} array, got shape {p.shape}")
    d = _dct_rows()
    low = (d @ p @ d.T).ravel()
    low = np.round(low, _DECIMALS)
    # The median of 64 values: mean of the 32nd and 33rd smallest (as numpy.median).
    part = np.partition(low, (31, 32))
    median = (part[31] + part[32]) / 2.0
    return np.packbits(low > median).tobytes()


def phash_ints_from_gray32(pixels: np.ndarray) -> list[int]:
    """:func:`phash_from_gray32` of N 32 x 32 grey arrays at once, as signed 64-bit ints
    (the same bits: the same arithmetic, vectorised)."""
    p = np.asarray(pixels, dtype=np.float64)
    if p.ndim != 3 or p.shape[1:] != (IMG_SIZE, IMG_SIZE):
        raise InvalidInput(f"expected (N, {IMG_SIZE}, {IMG_SIZE}) arrays, got shape {p.shape}")
    d = _dct_rows()
    low = np.round((d @ p @ d.T).reshape(len(p), -1), _DECIMALS)
    part = np.partition(low, (31, 32), axis=1)
    median = (part[:, 31] + part[:, 32]) / 2.0
    bits = np.packbits(low > median[:, None], axis=1)
    return [int.from_bytes(row.tobytes(), "big", signed=True) for row in bits]


def gray32(image: Image.Image) -> Image.Image:
    """The 32 x 32 greyscale thumbnail the hash is computed from (fast path)."""
    gray = image if image.mode == "L" else image.convert("L")
    if gray.size == (IMG_SIZE, IMG_SIZE):
        return gray
    return gray.resize((IMG_SIZE, IMG_SIZE), Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)


def phash_bits(image: Image.Image) -> bytes:
    """The 64-bit perceptual hash of a decoded image, as 8 big-endian bytes."""
    return phash_from_gray32(np.asarray(gray32(image)))


def phash_int(image: Image.Image) -> int:
    """The hash as a signed 64-bit integer (fits SQLite INTEGER; see the module docs)."""
    return int.from_bytes(phash_bits(image), "big", signed=True)


def phash_int_to_bits(value: int) -> bytes:
    """Inverse of :func:`phash_int`'s conversion: signed int64 back to 8 bytes."""
    return value.to_bytes(HASH_BYTES, "big", signed=True)


def hamming(a: bytes, b: bytes) -> int:
    """Number of differing bits between two hashes of the same length."""
    if len(a) != len(b):
        raise InvalidInput(f"hashes differ in length: {len(a)} and {len(b)} bytes")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


@dataclass(frozen=True)
class PhashPreparer:
    """Preparer for the "phash" model: an RGB image to its hash as ``uint8[8]``."""

    def __call__(self, image: Image.Image) -> np.ndarray:
        return np.frombuffer(phash_bits(image), dtype=np.uint8).copy()

    def draft_size(self) -> tuple[int, int] | None:
        return IMG_SIZE, IMG_SIZE
