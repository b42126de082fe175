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

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from ..errors import InvalidInput, MissingDependency
from .cuda_probes import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    DriverProbe,
    OrtProbe,
    TorchProbe,
    _one_line,
    probe_cuda_driver,
    probe_onnxruntime,
    probe_torch,
)

logger = logging.getLogger(__name__)

ENV_VAR = "LOOKALIKE_DEVICE"
BACKEND_ENV_VAR = "LOOKALIKE_GPU_BACKEND"

DeviceKind = Literal["cpu", "cuda"]
Backend = Literal["onnxruntime", "torch"]
BackendChoice = Literal["auto", "onnxruntime", "torch"]


INSTALL_GPU = "pip install 'lookalike[gpu]'"
INSTALL_TORCH = "torch with CUDA plus pip install 'lookalike[torch-gpu]'"

# CUresult codes we name without asking the driver.


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


# The process default set by the command line's --device (checked when it is set), used by
# every model that was not given a device of its own; None: LOOKALIKE_DEVICE, else auto.
_default: tuple[str, str] | None = None


def set_default_device(value: str | None, origin: str = "--device") -> None:
    """Make ``value`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``) the device of every model
    loaded afterwards in this process that names none itself; None restores the default
    (``LOOKALIKE_DEVICE``, else auto). Raises ``InvalidInput`` for a bad value."""
    global _default
    if value is not None:
        parse_device(value, environ={}, origin=origin)
    _default = None if value is None else (value, origin)


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
    if value is None and _default is not None and environ is None:
        value, origin = _default
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


class Probes(NamedTuple):
    driver: Callable[[], DriverProbe]
    onnxruntime: Callable[[], OrtProbe]
    torch: Callable[[], TorchProbe]


def default_probes() -> Probes:
    """The module's probe functions, looked up now (so monkeypatching them works)."""
    module = sys.modules[__name__]
    return Probes(module.probe_cuda_driver, module.probe_onnxruntime, module.probe_torch)


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
    "cpu_device",
    "cuda_provider_options",
    "default_probes",
    "parse_backend",
    "parse_device",
    "probe_cuda_driver",
    "probe_onnxruntime",
    "probe_torch",
    "resolve_device",
    "set_default_device",
]
