"""Decode workers: read -> hash -> decode -> normalise -> filter -> prepare model input.

Runs in a pool of threads (``mode="threads"``: Pillow, hashlib/xxhash and numpy release the
GIL for the heavy parts, and model inputs need no pickling) or of processes
(``mode="processes"``: a decoder crash on a hostile file costs only that file), overlapping
with model inference. The number of tasks in flight is bounded (a sliding window of
futures), so memory stays bounded however long the input is. One bad file never stops a
run: every failure becomes a "skipped" result.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import Any, Literal

from ..models.embedders.base import Preparer
from .decode import DEFAULT_PIXEL_HASH, DecodeLimits
from .procs import exit_with_parent, worker_context
from .worker import PHASH_FROM_RESIZED_MIN_SIDE, Result, Task, process

__all__ = [
    "DECODE_MODES",
    "PHASH_FROM_RESIZED_MIN_SIDE",
    "DecodeMode",
    "Result",
    "Task",
    "default_decode",
    "default_workers",
    "index_draft",
    "process",
    "run",
]

DecodeMode = Literal["threads", "processes", "gpu"]
DECODE_MODES: tuple[DecodeMode, ...] = ("threads", "processes", "gpu")

log = logging.getLogger(__name__)


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
    """Decode workers (threads or processes): every core for hash models and models on a
    GPU; for neural models on the CPU, which run on every core themselves, half of them
    (decoding a photo costs a small fraction of a forward pass there, and more workers only
    take cores from the model)."""
    cores = os.cpu_count() or 1
    return max(1, cores // 2 if model_uses_cores else cores)


def default_decode(model_on_gpu: bool) -> DecodeMode:
    """Threads, unless the model runs on a GPU: then decoding is the bottleneck, and
    processes spread it over every core without the GIL (with uint8 model inputs, see
    ``Embedder.ingest_preparer``, what they send back costs little to copy)."""
    return "processes" if model_on_gpu else "threads"


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
    gpu_device: str | None = None,
) -> Generator[Result, None, None]:
    """Process tasks, yielding results in submission order.

    ``workers=0`` runs in this process (handy for tests and tiny jobs); otherwise ``mode``
    picks a pool of threads or of processes (see the module docs). ``mode="gpu"`` decodes
    JPEGs on ``gpu_device`` (default cuda:0) with ``workers`` reader threads: see
    gpu_decode.py.
    """
    if mode not in DECODE_MODES:
        raise ValueError(f"unknown decode mode {mode!r} (known: {', '.join(DECODE_MODES)})")
    if mode == "gpu":
        from .gpu_decode import run_gpu

        yield from run_gpu(
            tasks,
            preparer,
            limits,
            workers=max(1, workers),
            device=gpu_device,
            max_in_flight=max_in_flight,
            pixel_hash_kind=pixel_hash_kind,
        )
        return
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
