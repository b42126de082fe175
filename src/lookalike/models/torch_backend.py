"""GPU runners: one ONNX graph output, batch in, numpy out.

Both runners have ``run(batch: np.ndarray) -> np.ndarray``, returning what
``session.run([output], {input: batch})[0]`` returns on the CPU, so ``OnnxEmbedder`` can
call either in place of its onnxruntime session:

:class:`TorchRunner`
    the ONNX graph converted to a PyTorch module with onnx2torch (the ``torch`` backend
    of ``device.py``). Conversion is lazy (first ``load()``/``run()``); the graph is first
    pruned to the one output we use. Host->device copies go through a reused pinned
    buffer with ``non_blocking`` copies, the output comes back through another. Precision:
    ``"fp32"`` (IEEE float32 convolutions and matmuls: TF32 off, for parity with the CPU),
    ``"tf32"`` (TF32 tensor cores), ``"fp16"`` (weights and inputs in half precision) or
    ``"auto"``: fp16 for float graphs on a GPU, fp32 for rewritten quantized graphs (their
    emulated int8 rounding needs float32) and on the CPU. A half-precision batch whose output
    is not finite (an overflow) is run again in fp32, and the runner stays in fp32 from then
    on (:meth:`TorchRunner.fall_back`). The TF32 switch is process-wide in torch.
    ``run_pixels`` takes (N, H, W, 3) uint8 pixels and does the preprocessing's last step
    (the lookup table of ``ImageProcessorSpec.lookup_table``) on the device: a quarter of
    the bytes to copy, and the same float32 values as on the CPU.

:class:`OrtCudaRunner`
    an onnxruntime session opened with the CUDA provider, run with I/O binding: the
    input is bound from host memory (one copy to the device), the output is bound to the
    device and copied to the host once.

Quantized (QDQ) graphs: onnx2torch has no QuantizeLinear/DequantizeLinear converters, so
:func:`dequantize_qdq` first rewrites them into plain ONNX ops. Constant
DequantizeLinear(weights) are folded into float32 initializers (exactly the values
onnxruntime's DequantizeLinear gives). Activation Q/DQ pairs are either emulated with
float ops (``qdq="emulate"``, the default: ``clip(round(x / s) + zp, lo, hi)`` then
``(q - zp) * s``, i.e. fake quantization, which keeps the int8 rounding of every
activation) or dropped (``qdq="drop"``: plain float32 inference of the same weights).
``benchmarks/gpu_ingest.py`` measures both against onnxruntime's int8 kernels.

Nothing here is imported by ``lookalike`` at start-up; torch, onnx2torch, onnx and
onnxruntime are imported on first use.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import InvalidInput, ModelUnavailable
from .onnx_rewrite import (
    convert_to_torch,
    dequantize_qdq,
    has_qdq,
    prune_to_output,
    set_fp32_precision,
)
from .parity import check_parity, cosine_similarities, max_normalized_diff

if TYPE_CHECKING:
    import onnx
    import onnxruntime

Precision = Literal["fp32", "tf32", "fp16", "auto"]
QdqMode = Literal["emulate", "drop"]

PRECISIONS: tuple[Precision, ...] = ("fp32", "tf32", "fp16", "auto")

_FLOAT16 = 10  # onnx.TensorProto.FLOAT16

logger = logging.getLogger(__name__)


def look_up(torch: Any, table: Any, pixels: Any) -> Any:
    """``table`` (the (3, 256) lookup table, flattened, on the device) applied to (N, 3, H,
    W) 8-bit values (any dtype): the float32 model input, as ``ImageProcessorSpec.normalise``."""
    offsets = torch.arange(3, device=pixels.device, dtype=torch.int64).view(1, 3, 1, 1) * 256
    return torch.take(table, pixels.to(torch.int64) + offsets)


class TorchRunner:
    """Run one output of an ONNX model with PyTorch (via onnx2torch) on ``device``.

    ``device`` is a torch device string (``"cuda:0"``; ``"cpu"`` works too, for tests).
    Nothing is imported or converted before :meth:`load` or the first :meth:`run`.
    ``run`` is thread-safe (one batch at a time: the pinned buffers are shared).
    """

    def __init__(
        self,
        model: str | Path | onnx.ModelProto,
        *,
        output: str | None = None,
        device: str = "cuda:0",
        precision: Precision = "fp32",
        qdq: QdqMode = "emulate",
        channels_last: bool = False,
        cudnn_benchmark: bool = True,
    ) -> None:
        if precision not in PRECISIONS:
            raise InvalidInput(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self._model = model
        self._output = output
        self.device = device
        #: as asked; ``precision`` is what runs (``auto`` resolved by :meth:`load`)
        self.requested_precision: Precision = precision
        self.precision: Precision = precision
        self.qdq = qdq
        self.channels_last = channels_last
        self.cudnn_benchmark = cudnn_benchmark
        self._lock = threading.RLock()
        self._module: Any = None
        self._torch: Any = None
        self._out_index = -1
        self._input_half = False
        self._pinned_in: Any = None
        self._pinned_out: Any = None
        self._pinned_px: Any = None
        self._tables: dict[bytes, Any] = {}
        #: set by load(): the graph had QuantizeLinear/DequantizeLinear nodes, rewritten
        #: by dequantize_qdq (its vectors then differ from onnxruntime's int8 kernels by
        #: about a quantization step: compare by cosine, see check_parity).
        self.rewrote_qdq = False

    @property
    def loaded(self) -> bool:
        return self._module is not None

    @property
    def output_name(self) -> str:
        self.load()
        assert self._output is not None
        return self._output

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def load(self) -> None:
        with self._lock:
            if self._module is not None:
                return
            try:
                import torch
            except ImportError as exc:
                raise ModelUnavailable(f"the torch path needs torch with CUDA ({exc})") from exc
            module, name, index, quantized = convert_to_torch(
                self._model, output=self._output, qdq=self.qdq
            )
            if self.requested_precision == "auto":
                self.precision = "fp16" if self.is_cuda and not quantized else "fp32"
            if self.is_cuda:
                if not torch.cuda.is_available():
                    raise ModelUnavailable(f"torch {torch.__version__} cannot use CUDA here")
                set_fp32_precision(torch, allow_tf32=self.precision == "tf32")
                torch.backends.cudnn.benchmark = self.cudnn_benchmark
            module = module.to(self.device)
            if self.precision == "fp16":
                module = module.half()
            if self.channels_last:
                module = module.to(memory_format=torch.channels_last)
            self._input_half = self.precision == "fp16" or self._declares_half_input()
            self._torch = torch
            self._output = name
            self._out_index = index
            self.rewrote_qdq = quantized
            self._module = module

    def _declares_half_input(self) -> bool:
        import onnx

        model = self._model
        proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
        first = proto.graph.input[0].type.tensor_type.elem_type
        return bool(first == _FLOAT16)

    def fall_back(self) -> bool:
        """Run in fp32 from now on (the module is converted again); False if it already
        does."""
        with self._lock:
            if self.precision == "fp32":
                return False
            logger.warning("the torch path falls back from %s to fp32", self.precision)
            self.requested_precision = self.precision = "fp32"
            self._module = None
            self.load()
            return True

    def close(self) -> None:
        with self._lock:
            self._module = None
            self._pinned_in = self._pinned_out = self._pinned_px = None
            self._tables.clear()
            if self._torch is not None and self.is_cuda:
                self._torch.cuda.empty_cache()

    # -- running -----------------------------------------------------------------------

    def _pinned(self, current: Any, shape: tuple[int, ...], dtype: Any) -> Any:
        torch = self._torch
        if (
            current is not None
            and current.shape[1:] == shape[1:]
            and current.shape[0] >= shape[0]
            and current.dtype == dtype
        ):
            return current
        return torch.empty(shape, dtype=dtype, pin_memory=self.is_cuda)

    def to_device(self, batch: np.ndarray) -> Any:
        """Copy a host batch to the device (through the pinned buffer); returns the tensor
        :meth:`forward` takes. Call under :meth:`run`'s lock or from one thread."""
        torch = self._torch
        x = np.ascontiguousarray(batch, dtype=np.float32)
        host = torch.from_numpy(x)
        if not self.is_cuda:
            return host.half() if self._input_half else host
        self._pinned_in = self._pinned(self._pinned_in, tuple(x.shape), torch.float32)
        staging = self._pinned_in[: x.shape[0]]
        staging.copy_(host)
        on_device = staging.to(self.device, non_blocking=True)
        return on_device.half() if self._input_half else on_device

    def forward(self, x: Any) -> Any:
        """Run the module on a tensor already on the device; returns the float32 output
        tensor, still on the device."""
        torch = self._torch
        if self._input_half and x.dtype != torch.float16:
            x = x.half()
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            result = self._module(x)
        if isinstance(result, (tuple, list)):
            result = result[self._out_index if self._out_index >= 0 else 0]
        return result.float()

    def to_host(self, out: Any) -> np.ndarray:
        """Copy a device output to a fresh numpy array (through the pinned buffer)."""
        torch = self._torch
        if not self.is_cuda:
            return np.array(out.detach().cpu().numpy(), copy=True)
        self._pinned_out = self._pinned(self._pinned_out, tuple(out.shape), torch.float32)
        target = self._pinned_out[: out.shape[0]]
        target.copy_(out, non_blocking=True)
        torch.cuda.current_stream(out.device).synchronize()
        return np.array(target.numpy(), copy=True)

    def pixels_to_device(self, pixels: np.ndarray, table: np.ndarray) -> Any:
        """Copy (N, H, W, 3) uint8 pixels to the device (through a pinned buffer) and look
        every value up in ``table`` (3, 256) there: the (N, 3, H, W) float32 input, equal to
        ``ImageProcessorSpec.normalise`` on the CPU."""
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.uint8))
        if self.is_cuda:
            self._pinned_px = self._pinned(self._pinned_px, tuple(x.shape), torch.uint8)
            staging = self._pinned_px[: x.shape[0]]
            staging.copy_(x)
            x = staging.to(self.device, non_blocking=True)
        key = table.tobytes()
        flat = self._tables.get(key)
        if flat is None:
            flat = torch.from_numpy(np.array(table, dtype=np.float32).ravel())
            flat = self._tables[key] = flat.to(self.device)
        return look_up(torch, flat, x.permute(0, 3, 1, 2))

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The model's output for ``batch`` (N, ...) as float32 numpy, like onnxruntime's."""
        return self._run(batch, lambda: self.to_device(batch))

    def run_pixels(self, pixels: np.ndarray, table: np.ndarray) -> np.ndarray:
        """:meth:`run` on (N, H, W, 3) uint8 pixels, normalised on the device by ``table``
        (see :meth:`pixels_to_device`)."""
        return self._run(pixels, lambda: self.pixels_to_device(pixels, table))

    def _run(self, batch: np.ndarray, upload: Any) -> np.ndarray:
        self.load()
        with self._lock:
            try:
                out = self.forward(upload())
                if self.precision == "fp16" and not bool(self._torch.isfinite(out).all()):
                    self.fall_back()  # an overflow in half precision: this batch again
                    out = self.forward(upload())
                return self.to_host(out)
            except Exception as exc:
                torch = self._torch
                oom = getattr(torch.cuda, "OutOfMemoryError", ())
                if oom and isinstance(exc, oom):
                    raise ModelUnavailable(
                        f"out of GPU memory on {self.device} with a batch of {len(batch)};"
                        " use a smaller --batch-size"
                    ) from exc
                raise ModelUnavailable(
                    f"the torch model failed on a batch of shape {tuple(batch.shape)} on"
                    f" {self.device}: {type(exc).__name__}: {exc}"
                ) from exc

    def __repr__(self) -> str:
        return (
            f"TorchRunner(device={self.device!r}, precision={self.precision!r},"
            f" loaded={self.loaded})"
        )


# -- onnxruntime with I/O binding ----------------------------------------------------------


class OrtCudaRunner:
    """Run one output of an onnxruntime session opened with the CUDA provider, with I/O
    binding: input from host memory, output bound on the device, copied back once.

    ``device_type`` is ``"cuda"`` (``"cpu"`` runs the same code on a CPU session, for tests).
    """

    def __init__(
        self,
        session: onnxruntime.InferenceSession,
        *,
        output: str | None = None,
        device_id: int = 0,
        device_type: str = "cuda",
    ) -> None:
        first = session.get_inputs()[0]
        self._session = session
        self._input = first.name
        self._dtype = np.float16 if first.type == "tensor(float16)" else np.float32
        outputs = [o.name for o in session.get_outputs()]
        if output is not None and output not in outputs:
            raise ModelUnavailable(f"the model has no output {output!r}; its outputs: {outputs}")
        self.output_name = output or outputs[0]
        self.device_id = device_id
        self.device_type = device_type

    def run(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=self._dtype)
        binding = self._session.io_binding()
        binding.bind_cpu_input(self._input, x)
        binding.bind_output(self.output_name, self.device_type, self.device_id)
        self._session.run_with_iobinding(binding)
        (out,) = binding.copy_outputs_to_cpu()
        return np.asarray(out)


__all__ = [
    "OrtCudaRunner",
    "TorchRunner",
    "check_parity",
    "convert_to_torch",
    "cosine_similarities",
    "dequantize_qdq",
    "has_qdq",
    "look_up",
    "max_normalized_diff",
    "prune_to_output",
    "set_fp32_precision",
]
