"""Probes of the CUDA stack: the NVIDIA driver (libcuda through ctypes), onnxruntime's CUDA provider, and torch with CUDA. Each imports its library only when called."""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"

CPU_PROVIDER = "CPUExecutionProvider"

_CUDA_ERROR_NO_DEVICE = 100

# -- probes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriverProbe:
    """What the NVIDIA driver reports. ``count`` None: could not be determined (the
    resolution then relies on the backends' own probes); ``error`` why there is none."""

    count: int | None
    names: tuple[str, ...] = ()
    memory: tuple[int, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class OrtProbe:
    """onnxruntime as installed. ``version`` None: not importable. ``cuda_error``: why its
    CUDA provider library does not load ("" when it does, or is not there at all)."""

    version: str | None
    providers: tuple[str, ...] = ()
    cuda_error: str = ""

    @property
    def has_cuda(self) -> bool:
        return CUDA_PROVIDER in self.providers


@dataclass(frozen=True)
class TorchProbe:
    """torch as installed. ``version`` None: not installed; ``cuda_version`` None: a
    CPU-only build; ``converter``: onnx2torch (and torchvision, which it imports) found."""

    version: str | None
    cuda_version: str | None = None
    device_count: int = 0
    converter: bool = False
    error: str = ""


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _load_driver() -> tuple[Any, str]:
    """(the CUDA driver library, "") or (None, why not)."""
    if sys.platform.startswith("linux"):
        names = ["libcuda.so.1", "libcuda.so"]
    elif sys.platform == "win32":
        names = ["nvcuda.dll"]
    else:
        return None, f"CUDA does not exist on {sys.platform}"
    for name in names:
        try:
            return ctypes.CDLL(name), ""
        except OSError:
            continue
    return None, f"no NVIDIA driver ({names[0]} not found)"


def _cu_error(lib: Any, code: int) -> str:
    text = ctypes.c_char_p()
    try:
        if lib.cuGetErrorName(code, ctypes.byref(text)) == 0 and text.value:
            return f"{text.value.decode(errors='replace')} ({code})"
    except (AttributeError, OSError):
        pass
    return f"CUDA driver error {code}"


def probe_cuda_driver() -> DriverProbe:
    """Ask the NVIDIA driver (libcuda, through ctypes) how many devices are visible.

    Honours ``CUDA_VISIBLE_DEVICES`` like every CUDA program; device N here is ``cuda:N``
    for onnxruntime and torch too. Never raises.
    """
    lib, why = _load_driver()
    if lib is None:
        return DriverProbe(0, error=why)
    try:
        code = lib.cuInit(0)
        if code != 0:
            if code == _CUDA_ERROR_NO_DEVICE:
                visible = os.environ.get("CUDA_VISIBLE_DEVICES")
                extra = f", CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
                return DriverProbe(0, error=f"the NVIDIA driver reports no device{extra}")
            return DriverProbe(0, error=f"the NVIDIA driver fails to start: {_cu_error(lib, code)}")
        count = ctypes.c_int(0)
        code = lib.cuDeviceGetCount(ctypes.byref(count))
        if code != 0:
            return DriverProbe(None, error=f"cuDeviceGetCount: {_cu_error(lib, code)}")
        names: list[str] = []
        memory: list[int] = []
        for ordinal in range(count.value):
            dev = ctypes.c_int(0)
            buf = ctypes.create_string_buffer(256)
            total = ctypes.c_size_t(0)
            name, size = "", 0
            if lib.cuDeviceGet(ctypes.byref(dev), ordinal) == 0:
                if lib.cuDeviceGetName(buf, 256, dev) == 0:
                    name = buf.value.decode(errors="replace")
                if lib.cuDeviceTotalMem_v2(ctypes.byref(total), dev) == 0:
                    size = int(total.value)
            names.append(name)
            memory.append(size)
        if count.value == 0:
            return DriverProbe(0, error="the NVIDIA driver reports no device")
        return DriverProbe(count.value, tuple(names), tuple(memory))
    except (AttributeError, OSError, ValueError) as exc:  # an odd libcuda: don't decide
        return DriverProbe(None, error=f"could not query the NVIDIA driver: {exc}")


def _cuda_provider_library(ort_module: Any) -> str | None:
    from pathlib import Path

    capi = Path(ort_module.__file__).parent / "capi"
    for pattern in ("libonnxruntime_providers_cuda.so", "onnxruntime_providers_cuda.dll"):
        found = capi / pattern
        if found.exists():
            return str(found)
    return None


def probe_onnxruntime() -> OrtProbe:
    """onnxruntime's providers and, when CUDA is listed, whether its CUDA provider library
    loads (listing only says onnxruntime-gpu is installed; the library needs the CUDA and
    cuDNN versions it was built for, and onnxruntime would otherwise fall back to the CPU
    silently when the session is created). Never raises."""
    try:
        import onnxruntime as ort
    except Exception as exc:  # broken install: say so, don't crash the probe
        return OrtProbe(None, cuda_error=_one_line(f"{type(exc).__name__}: {exc}"))
    providers = tuple(ort.get_available_providers())
    version = str(getattr(ort, "__version__", "?"))
    if CUDA_PROVIDER not in providers:
        return OrtProbe(version, providers)
    library = _cuda_provider_library(ort)
    if library is None:
        return OrtProbe(version, providers, "its CUDA provider library is missing")
    error = _try_load(library)
    if error and hasattr(ort, "preload_dlls"):
        # onnxruntime >= 1.21 can load CUDA/cuDNN from the nvidia-* pip packages
        # (onnxruntime-gpu[cuda,cudnn]); it prints its own complaints, which we drop.
        import contextlib
        import io

        with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
            ort.preload_dlls()
        error = _try_load(library)
    return OrtProbe(version, providers, error)


_MISSING_LIBRARY = ("cannot open shared object", "No such file", "could not be found", "126")


def _try_load(library: str) -> str:
    """Why ``library`` does not load because a library it needs is missing ("" if it
    loads, or fails for another reason such as a symbol onnxruntime itself provides once
    loaded: that case is left to :func:`check_session`, never reported as missing)."""
    try:
        ctypes.CDLL(library)
    except OSError as exc:
        text = str(exc)
        if not any(marker in text for marker in _MISSING_LIBRARY):
            logger.debug("loading %s outside onnxruntime failed: %s", library, text)
            return ""
        # "<path>: libcudnn.so.9: cannot open shared object file: ..." -> keep the cause
        if text.startswith(library):
            text = text[len(library) :].lstrip(": ")
        return _one_line(text, 160)
    return ""


def probe_torch() -> TorchProbe:
    """torch's version, CUDA build and device count; whether onnx2torch is installed.

    Imports torch only if it is installed (``find_spec`` first); onnx2torch is only
    looked up. Never raises."""
    if importlib.util.find_spec("torch") is None:
        return TorchProbe(None)
    converter = all(importlib.util.find_spec(m) is not None for m in ("onnx2torch", "torchvision"))
    try:
        import torch
    except Exception as exc:
        return TorchProbe(None, error=_one_line(f"import torch failed: {exc}"), converter=converter)
    version = str(torch.__version__)
    cuda_version = getattr(torch.version, "cuda", None)
    if cuda_version is None:
        return TorchProbe(version, None, 0, converter)
    try:
        if torch.cuda.is_available():
            return TorchProbe(version, cuda_version, torch.cuda.device_count(), converter)
        torch.cuda.init()  # raises the reason
        error = "torch.cuda.is_available() is false"
    except Exception as exc:
        error = _one_line(str(exc) or type(exc).__name__, 160)
    return TorchProbe(version, cuda_version, 0, converter, error)
