"""Decoding on the GPU (``--decode gpu``): JPEGs decoded by nvJPEG through torchvision,
then turned around, resized and cropped on the device; every other file on the CPU.

Per file, in a pool of reader threads: read, stat, content hash, and the JPEG header
(:func:`~lookalike.ingest.decode.jpeg_header`: format, size, EXIF orientation, limits).
Complete RGB and greyscale JPEGs go to the GPU in batches of :data:`BATCH`:
``torchvision.io.decode_jpeg(device=...)``, the orientation, the resize
(``interpolate(antialias=True)``, bicubic or bilinear as the preprocessor asks, rounded to 8
bits as Pillow's is), the centre crops, and the 32 x 32 grey thumbnail of the perceptual
hash. The crops come back as uint8 pixels (or, for a preparer that does not defer its last
step, as the normalised model input). Any other file, and any JPEG the GPU decoder refuses,
goes through :func:`worker.process` on the CPU, as in the other modes, with its reasons
for skipping.

Inexact by design, hence an opt-in: nvJPEG's IDCT and chroma upsampling and the float
resize differ from libjpeg + Pillow (``benchmarks/gpu_ingest.py`` measures the model inputs,
the vectors, the perceptual hashes and retrieval; docs/gpu.md has the figures). The
full-resolution pixel hash is left unset: the duplicate finder computes it from the file
when it needs it, as for drafted decodes.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..models.device import CudaUnavailable
from ..models.embedders.base import Preparer
from ..models.phash import phash_ints_from_gray32
from ..models.torch_backend import look_up
from .decode import DEFAULT_PIXEL_HASH, DecodeLimits, jpeg_header
from .worker import PHASH_FROM_RESIZED_MIN_SIDE, Result, Task, process, read_task

log = logging.getLogger(__name__)

#: JPEGs per nvJPEG call.
BATCH = 256
#: Reader threads at most (read, content hash, JPEG header), and files per read task.
READERS = 3
CHUNK = 32
#: Pillow resample filters the GPU reproduces (torch's antialiased kernels match them).
RESAMPLE = {2: "bilinear", 3: "bicubic"}


def check_preparer(preparer: Preparer) -> Any:
    """The preparer as an ``ImageProcessorSpec`` the GPU can follow, or InvalidInput."""
    from ..models.preprocess import ImageProcessorSpec

    if not isinstance(preparer, ImageProcessorSpec):
        raise InvalidInput(
            "--decode gpu needs a neural model with resize/crop/normalise preprocessing"
            f" ({type(preparer).__name__} is not one)"
        )
    steps = [
        name
        for name, on in (
            ("grayscale", preparer.grayscale),
            ("clahe", preparer.clahe is not None),
            ("fast_resize", preparer.fast_resize),
        )
        if on
    ]
    if preparer.resample not in RESAMPLE:
        steps.append(f"resample filter {preparer.resample}")
    if steps:
        raise InvalidInput(f"--decode gpu cannot do this model's {', '.join(steps)}")
    return preparer


def load_torch(device: str | None) -> tuple[Any, str]:
    """(torch, the device to decode on): ``device``, else cuda:0; CudaUnavailable (exit 3)
    when torch, torchvision or a CUDA device is missing."""
    try:
        import torch
        import torchvision.io  # noqa: F401 - decode_jpeg
    except ImportError as exc:
        raise CudaUnavailable(
            "torch",
            f"--decode gpu needs torch with CUDA and torchvision (nvJPEG): {exc}",
        ) from exc
    if device is None:
        if not torch.cuda.is_available():
            raise CudaUnavailable("cuda-device", "--decode gpu: torch sees no CUDA device")
        device = "cuda:0"
    return torch, device


@dataclass
class _Read:
    task: Task
    result: Result
    data: bytes | None = None
    header: tuple[int, int, int] | None = None  # (width, height, orientation) of a JPEG


def _read(task: Task, limits: DecodeLimits) -> _Read:
    result, data = read_task(task, limits)
    return _Read(task, result, data, None if data is None else jpeg_header(data, limits))


def _read_chunk(tasks: list[Task], limits: DecodeLimits) -> list[_Read]:
    return [_read(task, limits) for task in tasks]


class GpuDecoder:
    """Decode, orient, resize and crop batches of JPEG bytes on ``device`` following
    ``spec`` (an ``ImageProcessorSpec``); see the module docs."""

    def __init__(self, spec: Any, device: str, torch: Any) -> None:
        self.spec = spec
        self.device = device
        self.torch = torch
        self.mode = RESAMPLE[spec.resample]
        self.crops = spec._crops()
        self.table = torch.from_numpy(np.array(spec.lookup_table()).ravel()).to(device)

    def decode(self, blobs: list[bytes]) -> list[Any]:
        """(3, H, W) uint8 tensors on the device, None where nvJPEG refused the file."""
        from torchvision.io import ImageReadMode, decode_jpeg

        torch = self.torch
        data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        try:
            return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device))
        except RuntimeError:  # one bad file fails the batch: find it
            out: list[Any] = []
            for one in data:
                try:
                    out.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=self.device))
                except RuntimeError as exc:
                    log.debug("nvJPEG refused a file (%s); decoding it on the CPU", exc)
                    out.append(None)
            return out

    def orient(self, x: Any, orientation: int) -> Any:
        """EXIF ``orientation`` applied to a (C, H, W) tensor, as Pillow's transposes."""
        rot90 = self.torch.rot90
        if orientation == 2:
            return x.flip(-1)
        if orientation == 3:
            return x.flip(-2, -1)
        if orientation == 4:
            return x.flip(-2)
        if orientation == 5:
            return x.transpose(-2, -1)
        if orientation == 6:
            return rot90(x, -1, dims=(-2, -1))
        if orientation == 7:
            return x.transpose(-2, -1).flip(-2, -1)
        if orientation == 8:
            return rot90(x, 1, dims=(-2, -1))
        return x

    def prepare(self, images: Any) -> tuple[Any, Any] | None:
        """(the cropped model pixels as float (N, 3, h, w) holding 8-bit values, the
        (N, 32, 32) grey thumbnails) of oriented (N, 3, H, W) uint8 images of one size;
        None when a crop would need padding (the CPU does that)."""
        import torch.nn.functional as F

        height, width = int(images.shape[2]), int(images.shape[3])
        x = images.float()
        size = self.spec.resize_size(width, height)
        if size is not None and size != (width, height):
            x = F.interpolate(
                x, size=(size[1], size[0]), mode=self.mode, antialias=True, align_corners=False
            )
            x = x.round_().clamp_(0, 255)  # Pillow resizes 8-bit pixels to 8-bit pixels
        resized = x
        for ch, cw in self.crops:
            top, left = (x.shape[2] - ch) // 2, (x.shape[3] - cw) // 2
            if top < 0 or left < 0:
                return None
            x = x[:, :, top : top + ch, left : left + cw]
        rh, rw = int(resized.shape[2]), int(resized.shape[3])
        reduced = rw <= width and rh <= height
        small = min(rw, rh) < PHASH_FROM_RESIZED_MIN_SIDE
        source = images.float() if (not reduced or small) else resized
        return x, self._gray32(source)

    def _gray32(self, x: Any) -> Any:
        """Pillow's ``convert("L")`` (its integer weights) and a 32 x 32 antialiased
        bicubic shrink (the CPU hash uses Lanczos: a few bits differ)."""
        import torch.nn.functional as F

        r, g, b = x[:, 0].double(), x[:, 1].double(), x[:, 2].double()
        gray = ((r * 19595 + g * 38470 + b * 7471 + 32768) / 65536).floor()[:, None]
        small = F.interpolate(gray, size=(32, 32), mode="bicubic", antialias=True)
        return small.round_().clamp_(0, 255)[:, 0]

    def finish(self, crops: list[Any], defer: bool) -> list[np.ndarray]:
        """Crops to host arrays: (h, w, 3) uint8 with ``defer``, else the (3, h, w) float32
        input (the lookup table applied on the device). One copy when all sizes agree."""
        torch = self.torch

        def host(x: Any) -> Any:
            if defer:
                return x.permute(0, 2, 3, 1).to(torch.uint8)
            return look_up(torch, self.table, x)

        if len({tuple(c.shape) for c in crops}) == 1:
            return list(host(torch.stack(crops)).cpu().numpy())
        return [host(c[None]).cpu().numpy()[0] for c in crops]

    def results(self, reads: list[_Read], defer: bool) -> list[Result | None]:
        """A Result for each read (None: decode it on the CPU). Images of one size are
        resized and cropped together."""
        torch = self.torch
        groups: dict[tuple[int, int], list[tuple[int, Any]]] = {}
        for i, (read, image) in enumerate(
            zip(reads, self.decode([r.data or b"" for r in reads]), strict=True)
        ):
            if image is not None and read.header is not None:
                image = self.orient(image, read.header[2])
                groups.setdefault((int(image.shape[1]), int(image.shape[2])), []).append((i, image))
        done: list[int] = []
        crops: list[Any] = []
        grays: list[Any] = []
        for members in groups.values():
            prepared = self.prepare(torch.stack([image for _, image in members]))
            if prepared is not None:
                done += [i for i, _ in members]
                crops += list(prepared[0])
                grays.append(prepared[1])
        out: list[Result | None] = [None] * len(reads)
        if not done:
            return out
        arrays = self.finish(crops, defer)
        hashes = phash_ints_from_gray32(torch.cat(grays).cpu().numpy())
        for i, array, phash in zip(done, arrays, hashes, strict=True):
            result, (width, height, orientation) = reads[i].result, reads[i].header  # type: ignore[misc]
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            result.width, result.height = width, height
            result.phash = phash
            result.prepared = np.ascontiguousarray(array)
            out[i] = result
        return out


def run_gpu(
    tasks: Iterable[Task],
    preparer: Preparer,
    limits: DecodeLimits,
    *,
    workers: int,
    device: str | None = None,
    max_in_flight: int = 512,
    pixel_hash_kind: str = DEFAULT_PIXEL_HASH,
) -> Iterator[Result]:
    """``pipeline.run`` for ``mode="gpu"``: results in submission order (see module docs)."""
    spec = check_preparer(preparer)
    torch, device = load_torch(device)
    decoder = GpuDecoder(spec, device, torch)
    defer = bool(spec.defer_normalise)
    # Few readers: reading and hashing a file takes ~0.1 ms, and more threads only fight the
    # thread driving the GPU for the GIL.
    pool = ThreadPoolExecutor(
        max_workers=max(1, min(workers, READERS)), thread_name_prefix="gpu-read"
    )
    # Files travel to the readers in chunks: one future per file costs more in wake-ups
    # (and GIL hand-overs) than reading and hashing a small photo.
    window: deque[Future[list[_Read]]] = deque()
    it = iter(tasks)
    try:
        while True:
            while len(window) * CHUNK < max(max_in_flight, 2 * BATCH):
                chunk = list(islice(it, CHUNK))
                if not chunk:
                    break
                window.append(pool.submit(_read_chunk, chunk, limits))
            if not window:
                return
            reads: list[_Read] = []
            while window and len(reads) < BATCH:
                reads += window.popleft().result()
            yield from _batch_results(
                decoder, reads, defer, pool, preparer, limits, pixel_hash_kind
            )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _batch_results(
    decoder: GpuDecoder,
    reads: list[_Read],
    defer: bool,
    pool: ThreadPoolExecutor,
    preparer: Preparer,
    limits: DecodeLimits,
    pixel_hash_kind: str,
) -> Iterator[Result]:
    gpu = [r for r in reads if r.result.status == "ok" and r.header is not None]
    try:
        on_gpu = decoder.results(gpu, defer) if gpu else []
    except Exception as exc:  # e.g. out of GPU memory: this batch on the CPU, the run goes on
        log.warning(
            "GPU decoding failed (%s: %s); decoding a batch on the CPU", type(exc).__name__, exc
        )
        on_gpu = [None] * len(gpu)
    decoded = dict(zip((id(r) for r in gpu), on_gpu, strict=True))
    on_cpu: dict[int, Future[Result]] = {}
    for r in reads:
        if r.result.status == "ok" and decoded.get(id(r)) is None:
            on_cpu[id(r)] = pool.submit(process, r.task, preparer, limits, None, pixel_hash_kind)
    for r in reads:
        done = decoded.get(id(r))
        if done is not None:
            yield done
        elif id(r) in on_cpu:
            yield on_cpu[id(r)].result()
        else:
            yield r.result  # skipped before decoding, or unchanged ("same")
