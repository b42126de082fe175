"""Extra perceptual hashes for the ``near`` level: dHash, and both hashes of the mirrored
and of the margin-trimmed image.

phash alone misses mirrored and letterboxed copies and is weaker than dHash on logos and
captions (measured in docs/duplicates.md). So ``near`` compares each pair of items by a
128-bit distance, ``hamming(phash) + hamming(dHash)``, taking the smallest over three views:

* the images as they are;
* one image against the other's mirror image (``mphash``, ``mdhash``): flipped copies;
* both images with their uniform margins trimmed (``tphash``, ``tdhash``, see
  :func:`content_box`): padding, letterboxing, plain frames.

``dhash`` is imagehash's difference hash (greyscale, 9 x 8 LANCZOS, a bit where a pixel is
brighter than its right neighbour). The stored phash stays the phash of the image itself.

These are derived data kept in ``COLLECTION/dupes/hashes-v3.npy`` (one row per slot; a
slot's file never changes, a changed file gets a new slot), computed on first use from the
image files for the items that lack them, in a process pool, and saved atomically. Items
whose file is gone or changed since indexing get none and are compared by phash only.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ImageRejected
from ..ingest.decode import DecodeLimits, decode_image
from ..models.phash import REDUCING_GAP, gray32, phash_from_gray32
from .source import DedupSource

log = logging.getLogger(__name__)

FIELDS = ("dhash", "mphash", "mdhash", "tphash", "tdhash")
DTYPE = np.dtype([("slot", "<i8")] + [(f, "<u8") for f in FIELDS])
FILE = Path("dupes") / "hashes-v3.npy"
_TRIM_SIDE = 128  # margins are found on a thumbnail this large
_TRIM_TOLERANCE = 16  # grey levels from the line's median
_TRIM_SHARE = 0.95  # share of a line's pixels within tolerance for it to be margin


def dhash_int(image: Image.Image) -> int:
    gray = image.convert("L").resize((9, 8), Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    px = np.asarray(gray, dtype=np.int16)
    bits = (px[:, 1:] > px[:, :-1]).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def phash_int_unsigned(image: Image.Image) -> int:
    return int.from_bytes(phash_from_gray32(np.asarray(gray32(image))), "big")


def content_box(image: Image.Image) -> tuple[int, int, int, int]:
    """The box left after trimming near-uniform rows and columns from the four sides.

    A row (column) is margin when 95 % of its pixels are within 16 grey levels of its
    median. Columns and rows are trimmed in turn until neither changes, so black bars
    beside a white background both go. Returns the whole image when little is left.
    """
    w, h = image.size
    scale = min(1.0, _TRIM_SIDE / max(w, h))
    small = image.convert("L")
    if scale < 1.0:
        small = small.resize((max(1, round(w * scale)), max(1, round(h * scale))))
    g = np.asarray(small, dtype=np.int16)
    top, bottom, left, right = 0, g.shape[0], 0, g.shape[1]

    def margin(lines: np.ndarray) -> np.ndarray:  # lines: (n, length)
        med = np.median(lines, axis=1, keepdims=True)
        return (np.abs(lines - med) <= _TRIM_TOLERANCE).mean(axis=1) >= _TRIM_SHARE

    for _ in range(4):
        before = (top, bottom, left, right)
        cols = margin(g[top:bottom, left:right].T)
        keep = np.flatnonzero(~cols)
        if len(keep) == 0:
            break
        left, right = left + int(keep[0]), left + int(keep[-1]) + 1
        rows = margin(g[top:bottom, left:right])
        keep = np.flatnonzero(~rows)
        if len(keep) == 0:
            break
        top, bottom = top + int(keep[0]), top + int(keep[-1]) + 1
        if (top, bottom, left, right) == before:
            break
    if (right - left) < g.shape[1] * 0.2 or (bottom - top) < g.shape[0] * 0.2:
        return (0, 0, w, h)
    return (
        int(left / scale),
        int(top / scale),
        min(w, round(right / scale)),
        min(h, round(bottom / scale)),
    )


def image_hashes(image: Image.Image) -> tuple[int, int, int, int, int]:
    """(dhash, mirrored phash, mirrored dhash, trimmed phash, trimmed dhash)."""
    mirror = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    box = content_box(image)
    trimmed = image if box == (0, 0, *image.size) else image.crop(box)
    return (
        dhash_int(image),
        phash_int_unsigned(mirror),
        dhash_int(mirror),
        phash_int_unsigned(trimmed),
        dhash_int(trimmed),
    )


def hashes_of_file(
    job: tuple[str, int | None, int | None],
) -> tuple[int, int, int, int, int] | None:
    """:func:`image_hashes` of an image file, or None when it is gone, changed since
    indexing, or unreadable."""
    path, size, mtime_ns = job
    try:
        st = os.stat(path)
        if size is not None and (st.st_size != size or st.st_mtime_ns != mtime_ns):
            return None
        with open(path, "rb") as fh:
            data = fh.read()
        image = decode_image(data, DecodeLimits()).image
    except (OSError, ImageRejected):
        return None
    return image_hashes(image)


def _load(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
        if arr.dtype == DTYPE:
            return arr
        log.warning("ignoring %s: unexpected layout", path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
    return np.zeros(0, dtype=DTYPE)


def extra_hashes(
    coll: DedupSource, slots: np.ndarray, workers: int | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(has, {field: uint64 array})`` aligned with ``slots`` (fields: :data:`FIELDS`),
    computing what is missing."""
    path = coll.root / FILE
    table = _load(path)
    table = table[np.isin(table["slot"], slots)]  # drop rows of removed items
    known = np.isin(slots, table["slot"])
    missing = slots[~known]
    if len(missing):
        items = coll.catalog.by_slots(missing.tolist())
        jobs = [
            (int(s), items[int(s)])
            for s in missing.tolist()
            if int(s) in items and items[int(s)].path
        ]
        log.info("computing the extra perceptual hashes of %d items", len(jobs))
        args = [(it.path or "", it.size, it.mtime_ns) for _, it in jobs]
        n_workers = min(os.cpu_count() or 1, 4) if workers is None else workers
        if n_workers > 1 and len(args) > 64:
            with ProcessPoolExecutor(n_workers) as pool:
                results = list(pool.map(hashes_of_file, args, chunksize=64))
        else:
            results = [hashes_of_file(a) for a in args]
        new = np.array(
            [(s, *r) for (s, _), r in zip(jobs, results, strict=True) if r is not None],
            dtype=DTYPE,
        )
        table = np.concatenate([table, new])
        if len(new) and not coll.readonly:
            _save(path, table)
    order = np.argsort(table["slot"])
    table = table[order]
    pos = np.searchsorted(table["slot"], slots)
    pos_c = np.minimum(pos, max(len(table) - 1, 0))
    if len(table) == 0:
        return np.zeros(len(slots), dtype=bool), {
            f: np.zeros(len(slots), dtype=np.uint64) for f in FIELDS
        }
    has = (pos < len(table)) & (table["slot"][pos_c] == slots)
    return has, {f: np.where(has, table[f][pos_c], 0).astype(np.uint64) for f in FIELDS}


def _save(path: Path, table: np.ndarray) -> None:
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    with open(tmp, "wb") as fh:
        np.save(fh, table, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
