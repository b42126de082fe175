"""What a decode worker does to one file: read -> content hash -> decode -> pixel hash ->
model input -> perceptual hash (:func:`process`), and the task and result it takes and
gives. ``pipeline.py`` runs it in pools; ``gpu_decode.py`` falls back to it for the files
the GPU does not decode; Spark executors run it too.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import ImageRejected
from ..models.embedders.base import Preparer
from .checks import file_problem
from .decode import DEFAULT_PIXEL_HASH, DecodeLimits, decode_image, pixel_hash
from .hashes import content_hash

log = logging.getLogger(__name__)


@dataclass
class Task:
    key: int
    path: str
    expect_hash: str | None = None
    """If the file's content hash equals this, the result is "same" and nothing is decoded."""


@dataclass
class Result:
    key: int
    status: str  # "ok" | "same" | "skipped"
    size: int | None = None
    mtime_ns: int | None = None
    content_hash: str | None = None
    reason: str = ""
    detail: str = ""
    pixel_hash: bytes | None = None
    phash: int | None = None
    width: int | None = None
    height: int | None = None
    prepared: np.ndarray | None = None


def read_task(task: Task, limits: DecodeLimits) -> tuple[Result, bytes | None]:
    """The file's bytes and a Result with its size, mtime and content hash; the bytes are
    None when there is nothing to decode (skipped, or unchanged: ``task.expect_hash``)."""
    try:
        st, data = read_regular_file(task.path, limits.max_file_bytes)
    except ImageRejected as exc:
        return Result(task.key, "skipped", reason=exc.reason, detail=exc.detail), None
    except OSError as exc:
        detail = exc.strerror or str(exc)
        return Result(task.key, "skipped", reason="unreadable", detail=detail), None
    result = Result(task.key, "ok", size=st.st_size, mtime_ns=st.st_mtime_ns)
    result.content_hash = content_hash(data)
    if task.expect_hash is not None and task.expect_hash == result.content_hash:
        result.status = "same"
        return result, None
    return result, data


def process(
    task: Task,
    preparer: Preparer,
    limits: DecodeLimits,
    draft: tuple[int, int] | None = None,
    pixel_hash_kind: str = DEFAULT_PIXEL_HASH,
) -> Result:
    """Everything done to one file, in one place. Never raises.

    ``draft`` lets JPEGs be decoded at a reduced scale (see :func:`decode_image`). A drafted
    image has no full-resolution pixels, so its ``pixel_hash`` is left unset (computed on
    demand by the duplicate finder); ``width``/``height`` are always the file's full size.
    ``pixel_hash_kind`` must be the kind of the collection the result goes to
    (``Catalog.pixel_hash_kind``; new collections use the default).
    """
    from ..models.phash import PhashPreparer, phash_int

    result, data = read_task(task, limits)
    if data is None:
        return result
    try:
        decoded = decode_image(data, limits, draft=draft)
        image = decoded.image
        # A preparer that takes arrays gets the pixels copied out of PIL once, for the
        # pixel hash as well (the copy costs about as much as the fast resize itself).
        pixels = np.asarray(image) if getattr(preparer, "takes_pixels", False) else None
        hashed = image if pixels is None else pixels
        result.pixel_hash = None if decoded.drafted else pixel_hash(hashed, pixel_hash_kind)
        result.width, result.height = decoded.source_width, decoded.source_height
        if isinstance(preparer, PhashPreparer):  # the same hash: don't compute it twice
            result.phash = phash_int(image)
            result.prepared = np.frombuffer(
                result.phash.to_bytes(8, "big", signed=True), dtype=np.uint8
            ).copy()
        else:
            result.prepared, reduced = _prepare(preparer, image, pixels)
            result.phash = phash_int(reduced)
    except ImageRejected as exc:
        result.status, result.reason, result.detail = "skipped", exc.reason, exc.detail
    except Exception as exc:  # a decoder bug must not stop the run
        log.debug("unexpected error on %s", task.path, exc_info=True)
        result.status, result.reason, result.detail = (
            "skipped",
            "error",
            f"{type(exc).__name__}: {exc}",
        )
    return result


def read_regular_file(path: str, max_bytes: int) -> tuple[os.stat_result, bytes]:
    """The file's stat and bytes; never blocks on a FIFO nor reads past ``max_bytes``."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as fh:
        st = os.fstat(fd)
        problem = file_problem(st, max_bytes)
        if problem is not None:
            raise ImageRejected(*problem)
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageRejected("too-big", f"over the {max_bytes / 2**20:g} MiB limit")
    return st, data


# The phash is taken from the image the preparer resized for the model when that is a
# reduction to at least this many pixels on the shorter side: one resize fewer per photo,
# and on average 0.3 bits (of 64) from the hash of the full image (docs/preprocessing.md).
PHASH_FROM_RESIZED_MIN_SIDE = 64


def _prepare(
    preparer: Preparer, image: Image.Image, pixels: np.ndarray | None = None
) -> tuple[np.ndarray, Image.Image]:
    """The model input, and the image to take the phash from. ``pixels``: the image's
    pixels, for a preparer that ``takes_pixels`` (``ImageProcessorSpec.prepare_pixels``)."""
    if pixels is not None:
        prepared, array = preparer.prepare_pixels(pixels)  # type: ignore[attr-defined]
        height, width = array.shape[:2]
    else:
        prepare = getattr(preparer, "prepare", None)
        if prepare is None:
            return preparer(image), image
        prepared, resized = prepare(image)
        width, height = resized.size
    reduced = width <= image.width and height <= image.height
    if not reduced or min(width, height) < PHASH_FROM_RESIZED_MIN_SIDE:
        return prepared, image
    if pixels is not None:
        return prepared, image if array is pixels else Image.fromarray(array)
    return prepared, resized
