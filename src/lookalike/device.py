"""Where the model runs: ``--device cpu|cuda|cuda:N|auto`` and ``LOOKALIKE_DEVICE``.

:func:`parse_device` reads the request (the argument, else ``LOOKALIKE_DEVICE``, else
``auto``); :func:`resolve_device` turns it into a :class:`Device`: the CPU, or one CUDA
device with the backend that will run the ONNX graph on it:

``onnxruntime``
    onnxruntime-gpu's ``CUDAExecutionProvider`` (preferred: it runs any graph onnxruntime
    runs, quantized QDQ graphs included);
``torch``
    the same ONNX graph converted to a PyTorch module with onnx2torch, run by a torch
    build with CUDA (see ``torch_backend.py``).

``auto`` picks CUDA when a device is visible and one backend can use it, else the CPU;
the reason for a CPU choice on a machine with a GPU is in ``Device.note``. An explicit
``cuda``/``cuda:N`` never falls back: it raises :class:`CudaUnavailable` (exit code 3 in
the CLI) with one line naming what is missing: onnxruntime-gpu (and the torch path's
packages), a visible CUDA device, CUDA libraries that load, or device N.

``LOOKALIKE_GPU_BACKEND`` (``auto``, ``onnxruntime``, ``torch``) forces one backend.

Nothing heavy is imported here: onnxruntime and torch are imported only by the probes,
and a probe runs only when a CUDA device may be used. On a machine with no NVIDIA driver
``auto`` costs one failed ``dlopen``. The probes are plain functions collected in
:class:`Probes`; tests pass their own (``resolve_device(..., probes=...)``) or
monkeypatch the module's ``probe_*`` functions.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from lookalike.errors import InvalidInput, MissingDependency

logger = logging.getLogger(__name__)

ENV_VAR = "LOOKALIKE_DEVICE"
BACKEND_ENV_VAR = "LOOKALIKE_GPU_BACKEND"

DeviceKind = Literal["cpu", "cuda"]
Backend = Literal["onnxruntime", "torch"]
BackendChoice = Literal["auto", "onnxruntime", "torch"]

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"

INSTALL_GPU = "pip install 'lookalike[gpu]'"
INSTALL_TORCH = "torch with CUDA plus pip install 'lookalike[torch-gpu]'"

# CUresult codes we name without asking the driver.
_CUDA_ERROR_NO_DEVICE = 100


class CudaUnavailable(MissingDependency):
    """CUDA was asked for and cannot be used. The message is one line.

    ``missing`` says what: ``"onnxruntime-gpu"`` (no CUDA provider in onnxruntime),
    ``"cuda-libraries"`` (onnxruntime-gpu's CUDA/cuDNN libraries fail to load),
    ``"cuda-device"`` (no CUDA device visible), ``"device-index"`` (cuda:N does not
    exist), ``"torch"``, ``"onnx2torch"``, ``"torch-cuda"`` (the torch path's parts).
    Exit code 3, from :class:`MissingDependency`.
    """

    def __init__(self, missing: str, message: str) -> None:
        self.missing = missing
        super().__init__(_one_line(message))


# -- the request ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceRequest:
    """What was asked for: ``kind`` auto/cpu/cuda, ``index`` for ``cuda:N`` (None: the
    default device), ``origin`` where it came from (for messages)."""

    kind: Literal["auto", "cpu", "cuda"]
    index: int | None = None
    origin: str = "default"

    @property
    def text(self) -> str:
        return f"cuda:{self.index}" if self.kind == "cuda" and self.index is not None else self.kind

    @property
    def label(self) -> str:
        """How messages name the request: ``--device cuda:1``, ``LOOKALIKE_DEVICE=cuda``."""
        if self.origin == ENV_VAR:
            return f"{ENV_VAR}={self.text}"
        if self.origin == "default":
            return f"device {self.text}"
        return f"{self.origin} {self.text}"


def parse_device(
    value: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    origin: str = "--device",
) -> DeviceRequest:
    """Read ``value`` (e.g. the ``--device`` argument), else ``LOOKALIKE_DEVICE``, else auto.

    Accepts ``cpu``, ``cuda``, ``cuda:N`` (N >= 0) and ``auto``, in any case, with spaces
    around. An empty ``LOOKALIKE_DEVICE`` counts as unset. Raises ``InvalidInput``.
    """
    env = os.environ if environ is None else environ
    if value is not None:
        text, where = value, origin
    elif env.get(ENV_VAR, "").strip():
        text, where = env[ENV_VAR], ENV_VAR
    else:
        return DeviceRequest("auto", None, "default")
    spec = text.strip().lower()
    if spec in ("auto", "cpu", "cuda"):
        return DeviceRequest(spec, None, where)  # type: ignore[arg-type]
    if spec.startswith("cuda:"):
        number = spec[5:]
        if number.isdigit() and number.isascii():
            return DeviceRequest("cuda", int(number), where)
    shown = f"{ENV_VAR}={text!r}" if where == ENV_VAR else f"{where} {text!r}"
    raise InvalidInput(f"invalid device {shown}: use cpu, cuda, cuda:N (N = 0, 1, ...) or auto")


def parse_backend(
    value: str | None = None, *, environ: Mapping[str, str] | None = None
) -> BackendChoice:
    """The GPU backend preference: ``value``, else ``LOOKALIKE_GPU_BACKEND``, else auto."""
    env = os.environ if environ is None else environ
    text = value if value is not None else env.get(BACKEND_ENV_VAR, "")
    choice = text.strip().lower() or "auto"
    if choice not in ("auto", "onnxruntime", "torch"):
        where = "backend" if value is not None else BACKEND_ENV_VAR
        raise InvalidInput(f"invalid {where} {text!r}: use auto, onnxruntime or torch")
    return choice  # type: ignore[return-value]


# -- the result ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """Where and how the model runs.

    ``providers``/``provider_options`` are what to pass to ``onnxruntime.InferenceSession``
    for the onnxruntime backend (for the torch backend, the CPU provider: onnxruntime then
    only reads the graph's metadata). ``name``/``memory_total`` describe the GPU when the
    driver told us; ``note`` says why ``auto`` chose the CPU on a machine with a GPU.
    """

    kind: DeviceKind = "cpu"
    index: int | None = None
    backend: Backend = "onnxruntime"
    providers: tuple[str, ...] = (CPU_PROVIDER,)
    provider_options: tuple[dict[str, str], ...] = field(default=({},), hash=False)
    name: str = ""
    memory_total: int | None = None
    request: str = "auto"
    note: str = field(default="", compare=False)

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    @property
    def torch_device(self) -> str:
        """The device string torch takes: ``"cpu"`` or ``"cuda:N"``."""
        return f"cuda:{self.index or 0}" if self.is_cuda else "cpu"

    def session_providers(self) -> list[str | tuple[str, dict[str, str]]]:
        """``providers`` and their options in the one-list form onnxruntime also accepts."""
        return [
            (name, dict(opts)) if opts else name
            for name, opts in zip(self.providers, self.provider_options, strict=True)
        ]

    def describe(self) -> str:
        """One short phrase for ``info`` and the progress line, e.g.
        ``cuda:0 (onnxruntime CUDA, NVIDIA H200)`` or ``cpu (onnxruntime)``."""
        if not self.is_cuda:
            return "cpu (onnxruntime)"
        how = "onnxruntime CUDA" if self.backend == "onnxruntime" else "torch CUDA via onnx2torch"
        gpu = f", {self.name}" if self.name else ""
        return f"cuda:{self.index or 0} ({how}{gpu})"


def cpu_device(request: str = "cpu", note: str = "") -> Device:
    return Device(request=request, note=note)


def cuda_provider_options(index: int) -> dict[str, str]:
    """onnxruntime CUDAExecutionProvider options for device ``index`` (all long-standing
    keys; onnxruntime rejects unknown ones)."""
    return {
        "device_id": str(index),
        "cudnn_conv_algo_search": "EXHAUSTIVE",  # fixed batch shapes: search once, reuse
        "do_copy_in_default_stream": "1",
        "arena_extend_strategy": "kSameAsRequested",  # no power-of-two overshoot
    }


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


class Probes(NamedTuple):
    driver: Callable[[], DriverProbe]
    onnxruntime: Callable[[], OrtProbe]
    torch: Callable[[], TorchProbe]


def default_probes() -> Probes:
    """The module's probe functions, looked up now (so monkeypatching them works)."""
    module = sys.modules[__name__]
    return Probes(module.probe_cuda_driver, module.probe_onnxruntime, module.probe_torch)


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


# -- resolution ----------------------------------------------------------------------------


def resolve_device(
    spec: str | DeviceRequest | None = None,
    *,
    backend: str | None = None,
    environ: Mapping[str, str] | None = None,
    probes: Probes | None = None,
) -> Device:
    """The device to run on for ``spec`` (a string as ``--device`` takes, a parsed
    request, or None: ``LOOKALIKE_DEVICE``, else auto).

    Raises ``InvalidInput`` for a bad spec and :class:`CudaUnavailable` when CUDA was
    asked for explicitly and cannot be used. ``auto`` never raises for lack of a GPU.
    """
    request = spec if isinstance(spec, DeviceRequest) else parse_device(spec, environ=environ)
    preference = parse_backend(backend, environ=environ)
    if request.kind == "cpu":
        return cpu_device(request.text)
    probes = probes or default_probes()
    driver = probes.driver()
    if request.kind == "auto":
        if driver.count == 0:
            return cpu_device("auto")
        try:
            return _cuda(request, 0, driver, probes, preference)
        except CudaUnavailable as exc:
            note = f"a CUDA GPU is visible but unused: {_strip_label(str(exc), request)}"
            logger.info("device auto: %s", note)
            return cpu_device("auto", note)
    return _cuda(request, request.index or 0, driver, probes, preference)


def _strip_label(message: str, request: DeviceRequest) -> str:
    prefix = f"{request.label}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _cuda(
    request: DeviceRequest,
    index: int,
    driver: DriverProbe,
    probes: Probes,
    preference: BackendChoice,
) -> Device:
    label = request.label
    if driver.count == 0:
        raise CudaUnavailable("cuda-device", f"{label}: no CUDA device visible: {driver.error}")
    if driver.count is not None and index >= driver.count:
        last = f"cuda:0 to cuda:{driver.count - 1}" if driver.count > 1 else "cuda:0"
        raise CudaUnavailable(
            "device-index",
            f"{label}: there is no cuda:{index}; {_plural(driver.count, 'CUDA device')}"
            f" visible ({last})",
        )
    name = driver.names[index] if index < len(driver.names) else ""
    memory = driver.memory[index] if index < len(driver.memory) and driver.memory[index] else None
    reasons: list[tuple[str, str]] = []

    if preference in ("auto", "onnxruntime"):
        ort = probes.onnxruntime()
        if ort.version is None:
            reasons.append(("onnxruntime-gpu", f"onnxruntime does not import ({ort.cuda_error})"))
        elif not ort.has_cuda:
            offered = ", ".join(ort.providers) or "no provider"
            reasons.append(
                (
                    "onnxruntime-gpu",
                    f"onnxruntime-gpu is not installed (onnxruntime {ort.version} offers"
                    f" {offered})",
                )
            )
        elif ort.cuda_error:
            reasons.append(
                (
                    "cuda-libraries",
                    f"onnxruntime-gpu {ort.version} cannot load its CUDA libraries"
                    f" ({ort.cuda_error}); it needs the CUDA and cuDNN versions it was built"
                    " for (pip install 'onnxruntime-gpu[cuda,cudnn]')",
                )
            )
        else:
            return Device(
                kind="cuda",
                index=index,
                backend="onnxruntime",
                providers=(CUDA_PROVIDER, CPU_PROVIDER),
                provider_options=(cuda_provider_options(index), {}),
                name=name,
                memory_total=memory,
                request=request.text,
            )

    if preference in ("auto", "torch"):
        t = probes.torch()
        if t.version is None:
            why = t.error or "torch is not installed"
            reasons.append(("torch", why))
        elif t.cuda_version is None:
            reasons.append(("torch-cuda", f"torch {t.version} is a CPU-only build"))
        elif t.device_count == 0:
            reasons.append(("torch-cuda", f"torch {t.version} sees no CUDA device ({t.error})"))
        elif index >= t.device_count:
            reasons.append(
                (
                    "device-index",
                    f"torch sees {_plural(t.device_count, 'CUDA device')}, not cuda:{index}",
                )
            )
        elif not t.converter:
            reasons.append(("onnx2torch", "onnx2torch (with torchvision) is not installed"))
        else:
            return Device(
                kind="cuda",
                index=index,
                backend="torch",
                providers=(CPU_PROVIDER,),
                provider_options=({},),
                name=name,
                memory_total=memory,
                request=request.text,
            )

    missing = reasons[0][0]
    text = "; ".join(reason for _, reason in reasons)
    if preference == "auto":
        fix = f"install onnxruntime-gpu ({INSTALL_GPU}) or {INSTALL_TORCH}"
    elif preference == "onnxruntime":
        fix = f"{INSTALL_GPU}, or {BACKEND_ENV_VAR}=torch"
    else:
        fix = INSTALL_TORCH
    if missing == "cuda-libraries":
        fix = ""
    raise CudaUnavailable(missing, f"{label}: {text}" + (f"; fix: {fix}" if fix else ""))


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


__all__ = [
    "BACKEND_ENV_VAR",
    "ENV_VAR",
    "CudaUnavailable",
    "Device",
    "DeviceRequest",
    "DriverProbe",
    "OrtProbe",
    "Probes",
    "TorchProbe",
    "batch_size_for",
    "check_session",
    "cpu_device",
    "cuda_memory",
    "cuda_provider_options",
    "default_probes",
    "parse_backend",
    "parse_device",
    "probe_cuda_driver",
    "probe_onnxruntime",
    "probe_torch",
    "resolve_device",
    "suggest_batch_size",
]
