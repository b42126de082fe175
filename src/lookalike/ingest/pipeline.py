"""Decode workers: read -> hash -> decode -> normalise -> filter -> prepare model input.

Runs in a pool of threads (``mode="threads"``: Pillow, hashlib/xxhash and numpy release the
GIL for the heavy parts, and model inputs need no pickling) or of processes
(``mode="processes"``: a decoder crash on a hostile file costs only that file), overlapping
with model inference. The number of tasks in flight is bounded (a sliding window of
futures), so memory stays bounded however long the input is. One bad file never stops a
run: every failure becomes a "skipped" result.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from ..errors import ImageRejected, LookalikeError
from ..models.embedders.base import Preparer
from .checks import file_problem
from .decode import DEFAULT_PIXEL_HASH, DecodeLimits, decode_image, pixel_hash
from .procs import exit_with_parent, worker_context

DecodeMode = Literal["threads", "processes"]
DECODE_MODES: tuple[DecodeMode, ...] = ("threads", "processes")

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


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Items in the catalog already passed the megapixel limit they were indexed with.
_ANY_INDEXED_SIZE = DecodeLimits(max_megapixels=1000.0)


def full_pixel_hash(
    path: str, expect_content_hash: str | None, kind: str = DEFAULT_PIXEL_HASH
) -> bytes | None:
    """The full-resolution pixel hash (of ``kind``) of the file at ``path``, or None when it
    is gone, changed since indexing (``expect_content_hash`` differs) or cannot be decoded."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if expect_content_hash is not None and content_hash(data) != expect_content_hash:
        return None
    try:
        return pixel_hash(decode_image(data, _ANY_INDEXED_SIZE).image, kind)
    except LookalikeError:
        return None


def pixel_hashes(
    items: Iterable[Any], kind: str = DEFAULT_PIXEL_HASH
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(the full-resolution pixel hash of every item that has or can get one, by id; those
    of them computed now). Items indexed from a drafted decode have none stored: their file
    is decoded in full now, if it still has the content hash recorded at indexing."""
    out: dict[str, bytes] = {}
    computed: dict[str, bytes] = {}
    for item in items:
        if item.pixel_hash is not None:
            out[item.id] = bytes(item.pixel_hash)
        elif item.path:
            value = full_pixel_hash(item.path, item.content_hash, kind)
            if value is not None:
                out[item.id] = computed[item.id] = value
    return out, computed


def file_content_hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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

    try:
        st, data = _read_regular_file(task.path, limits.max_file_bytes)
    except ImageRejected as exc:
        return Result(task.key, "skipped", reason=exc.reason, detail=exc.detail)
    except OSError as exc:
        return Result(task.key, "skipped", reason="unreadable", detail=exc.strerror or str(exc))
    result = Result(task.key, "ok", size=st.st_size, mtime_ns=st.st_mtime_ns)
    result.content_hash = content_hash(data)
    if task.expect_hash is not None and task.expect_hash == result.content_hash:
        result.status = "same"
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


def _read_regular_file(path: str, max_bytes: int) -> tuple[os.stat_result, bytes]:
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


def index_draft(preparer: Preparer, binary: bool) -> tuple[int, int] | None:
    """The JPEG draft size for indexing (see :func:`decode_image`), or None (full decode).

    Hash models only need a thumbnail, and ``--fast-resize`` collections have opted out of
    the reference's pixels: their JPEGs are decoded at a reduced scale (DCT scaling, never
    below the resize target), several times faster on large photos; the full-resolution
    pixel hash is then computed on demand by the duplicate finder. Otherwise float models
    see the fully decoded image, as the reference processors do."""
    if binary or getattr(preparer, "fast_resize", False):
        draft_size = getattr(preparer, "draft_size", None)
        return draft_size() if draft_size is not None else None
    return None


_worker_state: dict[str, Any] = {}


def _init_worker(
    preparer: Preparer,
    limits: DecodeLimits,
    draft: tuple[int, int] | None = None,
    pixel_hash_kind: str = DEFAULT_PIXEL_HASH,
    parent_pid: int | None = None,
) -> None:
    if parent_pid is not None:
        exit_with_parent(parent_pid)
    _worker_state["preparer"] = preparer
    _worker_state["limits"] = limits
    _worker_state["draft"] = draft
    _worker_state["pixel_hash_kind"] = pixel_hash_kind


def _work(task: Task) -> Result:
    return process(
        task,
        _worker_state["preparer"],
        _worker_state["limits"],
        _worker_state.get("draft"),
        _worker_state.get("pixel_hash_kind", DEFAULT_PIXEL_HASH),
    )


def _work_chunk(tasks: list[Task]) -> list[Result]:
    return [_work(task) for task in tasks]


def _process_chunk(tasks: list[Task], args: tuple[Any, ...]) -> list[Result]:
    return [process(task, *args) for task in tasks]


def default_workers(model_uses_cores: bool = False) -> int:
    """Decode workers (threads or processes): every core for hash models; for neural
    models, which run on every core themselves, half of them (decoding a photo costs a
    small fraction of a forward pass, and more workers only take cores from the model)."""
    cores = os.cpu_count() or 1
    return max(1, cores // 2 if model_uses_cores else cores)


def run(
    tasks: Iterable[Task],
    preparer: Preparer,
    limits: DecodeLimits,
    *,
    workers: int,
    draft: tuple[int, int] | None = None,
    max_in_flight: int = 128,
    chunk: int = 8,
    mode: DecodeMode = "processes",
    pixel_hash_kind: str = DEFAULT_PIXEL_HASH,
) -> Generator[Result, None, None]:
    """Process tasks, yielding results in submission order.

    ``workers=0`` runs in this process (handy for tests and tiny jobs); otherwise ``mode``
    picks a pool of threads or of processes (see the module docs).
    """
    if mode not in DECODE_MODES:
        raise ValueError(f"unknown decode mode {mode!r} (known: {', '.join(DECODE_MODES)})")
    args = (preparer, limits, draft, pixel_hash_kind)
    if workers <= 0:
        for task in tasks:
            yield process(task, *args)
        return
    if mode == "threads":
        threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        try:
            for _batch, fut in _windowed(
                tasks,
                lambda batch: threads.submit(_process_chunk, batch, args),
                workers,
                max_in_flight,
                chunk,
            ):
                yield from fut.result()
        finally:
            threads.shutdown(wait=True, cancel_futures=True)
        return
    yield from _run_processes(tasks, args, workers, max_in_flight, chunk)


def _windowed(
    tasks: Iterable[Task],
    submit: Callable[[list[Task]], Future[list[Result]]],
    workers: int,
    max_in_flight: int,
    chunk: int,
) -> Iterator[tuple[list[Task], Future[list[Result]]]]:
    """Submit tasks in small chunks, keeping at most ``max_in_flight`` tasks submitted and
    not yet handed out; yield (chunk, future) in submission order."""
    window: deque[tuple[list[Task], Future[list[Result]]]] = deque()
    chunk_size = _chunk_size(workers, max_in_flight, chunk)
    it = iter(tasks)
    exhausted = False
    while True:
        while not exhausted and len(window) * chunk_size < max_in_flight:
            batch = list(islice(it, chunk_size))
            if not batch:
                exhausted = True
                break
            window.append((batch, submit(batch)))
        if not window:
            return
        yield window.popleft()


def _chunk_size(workers: int, max_in_flight: int, chunk: int) -> int:
    # Tasks travel in small chunks: one future per file costs more in pickling and
    # scheduling than a drafted JPEG takes to hash.
    return max(1, min(chunk, max_in_flight // max(workers, 1)))


def _run_processes(
    tasks: Iterable[Task], args: tuple[Any, ...], workers: int, max_in_flight: int, chunk: int
) -> Iterator[Result]:
    # Workers never re-run the user's __main__ (worker_context) and exit when this process
    # dies (exit_with_parent, given our pid).
    ctx = worker_context(args[0], args[1])
    initargs = (*args, os.getpid())

    def new_pool(size: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=size, mp_context=ctx, initializer=_init_worker, initargs=initargs
        )

    pool = new_pool(workers)
    window: deque[tuple[list[Task], Future[list[Result]]]] = deque()
    chunk_size = _chunk_size(workers, max_in_flight, chunk)
    try:
        it = iter(tasks)
        exhausted = False
        while True:
            while not exhausted and len(window) * chunk_size < max_in_flight:
                batch = list(islice(it, chunk_size))
                if not batch:
                    exhausted = True
                    break
                window.append((batch, pool.submit(_work_chunk, batch)))
            if not window:
                break
            batch, fut = window.popleft()
            try:
                results = fut.result()
            except BrokenProcessPool:
                # A worker died (out of memory on a hostile file, a crash in a codec...).
                # Restart the pool and retry the unfinished tasks one at a time in-process,
                # so the culprit is found and only it is skipped.
                log.warning("a decode worker died; retrying the unfinished files")
                pending = batch + [t for b, _ in window for t in b]
                window.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool(workers)
                for t in pending:
                    single = new_pool(1)
                    try:
                        yield single.submit(_work, t).result()
                    except BrokenProcessPool:
                        yield Result(
                            t.key,
                            "skipped",
                            reason="crashed-decoder",
                            detail="the decoder process died",
                        )
                    finally:
                        single.shutdown(wait=False, cancel_futures=True)
                continue
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
