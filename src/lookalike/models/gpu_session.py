"""On a chosen device: checking that onnxruntime really uses CUDA, free GPU memory, and a batch size chosen from it."""

from __future__ import annotations

import ctypes
import logging
import sys
from typing import Any

from .cuda_probes import CUDA_PROVIDER, _load_driver
from .device import CudaUnavailable, Device

logger = logging.getLogger(__name__)

# -- sessions and batch sizes ----------------------------------------------------------------


def check_session(session: Any, device: Device) -> None:
    """Raise :class:`CudaUnavailable` if an onnxruntime session opened for a CUDA device
    does not actually use CUDA (onnxruntime drops a provider it cannot load with only a
    warning; we never let CUDA fall back to the CPU silently)."""
    if not device.is_cuda or device.backend != "onnxruntime":
        return
    used = list(session.get_providers())
    if CUDA_PROVIDER not in used:
        raise CudaUnavailable(
            "cuda-libraries",
            f"device {device.request}: onnxruntime opened the model without its CUDA provider"
            f" (providers in use: {', '.join(used)}); its CUDA libraries failed to load",
        )


def cuda_memory(index: int = 0) -> tuple[int, int] | None:
    """(free, total) bytes on CUDA device ``index``, or None if unknown.

    Uses torch when it is already imported, else the driver API (a primary-context
    retain/release, the context onnxruntime and torch share). Never raises.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                free, total = torch.cuda.mem_get_info(index)
                return int(free), int(total)
        except Exception:  # fall back to the driver
            pass
    lib, _ = _load_driver()
    if lib is None:
        return None
    try:
        if lib.cuInit(0) != 0:
            return None
        dev = ctypes.c_int(0)
        if lib.cuDeviceGet(ctypes.byref(dev), index) != 0:
            return None
        ctx = ctypes.c_void_p()
        if lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) != 0:
            return None
        try:
            if lib.cuCtxPushCurrent_v2(ctx) != 0:
                return None
            try:
                free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
                if lib.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)) != 0:
                    return None
                return int(free.value), int(total.value)
            finally:
                popped = ctypes.c_void_p()
                lib.cuCtxPopCurrent_v2(ctypes.byref(popped))
        finally:
            lib.cuDevicePrimaryCtxRelease_v2(dev)
    except (AttributeError, OSError):
        return None


def suggest_batch_size(
    free_bytes: int | None,
    input_shape: tuple[int, ...] = (3, 224, 224),
    *,
    bytes_per_value: int = 4,
    work_factor: int = 64,
    fraction: float = 0.5,
    minimum: int = 8,
    maximum: int = 256,
    default: int = 64,
) -> int:
    """A batch size for a GPU with ``free_bytes`` free memory.

    Budget: ``fraction`` of the free memory; each image is counted as ``work_factor``
    times its input tensor (activations, workspace; generous for CNNs and ViT-B/L at
    224-336 px). The result is a power of two in [minimum, maximum]; ``default`` when the
    free memory is unknown. Past ~256 a GPU gains little while host buffers and the
    decode window keep growing.
    """
    if free_bytes is None or free_bytes <= 0:
        return default
    per_image = bytes_per_value * work_factor
    for size in input_shape:
        per_image *= max(1, int(size))
    fits = int(free_bytes * fraction) // per_image
    size = minimum
    while size * 2 <= min(fits, maximum):
        size *= 2
    return max(minimum, min(size, maximum))


def batch_size_for(device: Device, input_shape: tuple[int, ...] = (3, 224, 224)) -> int:
    """:func:`suggest_batch_size` for ``device``'s current free memory (32 on the CPU,
    the CLI's historical default)."""
    if not device.is_cuda:
        return 32
    memory = cuda_memory(device.index or 0)
    return suggest_batch_size(memory[0] if memory else None, input_shape)
