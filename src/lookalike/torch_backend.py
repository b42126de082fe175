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
    ``"tf32"`` (TF32 tensor cores) or ``"fp16"`` (weights and inputs in half precision).
    The TF32 switch is process-wide in torch.

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

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lookalike.errors import InvalidInput, ModelUnavailable

if TYPE_CHECKING:
    import onnx
    import onnxruntime
    import torch

Precision = Literal["fp32", "tf32", "fp16"]
QdqMode = Literal["emulate", "drop"]

PRECISIONS: tuple[Precision, ...] = ("fp32", "tf32", "fp16")

_Q_RANGE = {2: (0, 255), 3: (-128, 127), 4: (0, 65535), 5: (-32768, 32767)}  # uint8,int8,u16,i16
_FLOAT16 = 10  # onnx.TensorProto.FLOAT16


# -- parity --------------------------------------------------------------------------------


def _normalized_rows(values: np.ndarray) -> np.ndarray:
    rows = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return rows / norms


def max_normalized_diff(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Largest absolute difference between the L2-normalised rows of two outputs (what
    lookalike stores). 1e-3 is the tolerance the GPU paths are held to in fp32."""
    if np.shape(reference) != np.shape(candidate):
        raise ValueError(f"shapes differ: {np.shape(reference)} vs {np.shape(candidate)}")
    return float(np.max(np.abs(_normalized_rows(reference) - _normalized_rows(candidate))))


def cosine_similarities(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two outputs."""
    return np.sum(_normalized_rows(reference) * _normalized_rows(candidate), axis=1)


# -- ONNX graph rewriting ------------------------------------------------------------------


def has_qdq(model: onnx.ModelProto) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def prune_to_output(model: onnx.ModelProto, output: str) -> onnx.ModelProto:
    """A copy of ``model`` whose only graph output is ``output``, without the nodes and
    initializers it does not need."""
    import onnx

    names = [o.name for o in model.graph.output]
    if output not in names:
        raise ModelUnavailable(f"the model has no output {output!r}; its outputs: {names}")
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    graph = pruned.graph
    keep_out = [o for o in graph.output if o.name == output]
    del graph.output[:]
    graph.output.extend(keep_out)
    needed = {output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    return pruned


def dequantize_qdq(model: onnx.ModelProto, mode: QdqMode = "emulate") -> onnx.ModelProto:
    """Rewrite QuantizeLinear/DequantizeLinear into ops onnx2torch (and any runtime) runs.

    - DequantizeLinear of constant initializers (quantized weights and biases) becomes a
      float32 initializer ``(x - zero_point) * scale`` (per-tensor or per-axis).
    - Activation QuantizeLinear -> DequantizeLinear: ``mode="emulate"`` replaces them by
      ``Clip(Round(x / s) + zp, lo, hi)`` and ``(q - zp) * s`` in float32 (same rounding:
      ONNX Round and QuantizeLinear both round half to even); ``mode="drop"`` removes
      them, so the activations stay float32.

    Per-axis activation quantization is not supported (raises ``ModelUnavailable``).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if mode not in ("emulate", "drop"):
        raise InvalidInput(f"qdq mode must be emulate or drop, got {mode!r}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    consts: dict[str, np.ndarray] = {}

    def const(name: str) -> np.ndarray | None:
        if name in consts:
            return consts[name]
        tensor = inits.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    new_nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    alias: dict[str, str] = {}  # for mode="drop": tensor name -> the float tensor it stands for
    counter = 0

    def fresh(base: str) -> str:
        nonlocal counter
        counter += 1
        return f"qdq_{counter}_{base}"

    def scalar_init(value: float, base: str) -> str:
        name = fresh(base)
        new_inits.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
        return name

    def attr(node: onnx.NodeProto, key: str, default: int) -> int:
        for a in node.attribute:
            if a.name == key:
                return int(helper.get_attribute_value(a))
        return default

    def scale_zp(node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray, int]:
        scale = const(node.input[1])
        if scale is None:
            raise ModelUnavailable(
                f"{node.op_type} node {node.name!r} has a computed scale; only constant"
                " scales can be rewritten for the torch path"
            )
        zp_name = node.input[2] if len(node.input) > 2 else ""
        zp = const(zp_name) if zp_name else None
        if zp_name and zp is None:
            raise ModelUnavailable(f"{node.op_type} node {node.name!r} has a computed zero point")
        if zp is None:
            zp = np.zeros((), dtype=np.uint8)
        elem = (
            inits[zp_name].data_type
            if zp_name in inits
            else helper.np_dtype_to_tensor_dtype(zp.dtype)
        )
        return scale.astype(np.float32), zp, int(elem)

    def per_axis_check(node: onnx.NodeProto, scale: np.ndarray) -> None:
        if scale.size != 1:
            raise ModelUnavailable(
                f"{node.op_type} node {node.name!r} quantizes activations per axis; the torch"
                " path only rewrites per-tensor activation quantization"
            )

    for node in graph.node:
        inputs = [alias.get(i, i) for i in node.input]
        if node.op_type == "DequantizeLinear" and const(node.input[0]) is not None:
            x = const(node.input[0])
            assert x is not None
            scale, zp, _ = scale_zp(node)
            axis = attr(node, "axis", 1)
            if scale.size > 1 and x.ndim > 0:
                shape = [1] * x.ndim
                shape[axis % x.ndim] = -1
                scale = scale.reshape(shape)
                zp = zp.reshape(shape)
            value = (x.astype(np.int64) - zp.astype(np.int64)).astype(np.float32) * scale
            value = value.astype(np.float32)
            consts[node.output[0]] = value
            new_inits.append(numpy_helper.from_array(value, node.output[0]))
            continue
        if node.op_type == "QuantizeLinear":
            scale, zp, elem = scale_zp(node)
            per_axis_check(node, scale)
            if mode == "drop":
                alias[node.output[0]] = inputs[0]
                continue
            if elem not in _Q_RANGE:
                raise ModelUnavailable(
                    f"QuantizeLinear node {node.name!r} has output type {elem}; only 8- and"
                    " 16-bit integer quantization can be emulated"
                )
            lo, hi = _Q_RANGE[elem]
            s = scalar_init(float(scale.reshape(-1)[0]), "scale")
            z = scalar_init(float(zp.reshape(-1)[0]), "zp")
            lo_name = scalar_init(float(lo), "lo")
            hi_name = scalar_init(float(hi), "hi")
            div, rnd, add = fresh("div"), fresh("round"), fresh("add")
            new_nodes += [
                helper.make_node("Div", [inputs[0], s], [div]),
                helper.make_node("Round", [div], [rnd]),
                helper.make_node("Add", [rnd, z], [add]),
                helper.make_node("Clip", [add, lo_name, hi_name], [node.output[0]]),
            ]
            continue
        if node.op_type == "DequantizeLinear":
            scale, zp, _ = scale_zp(node)
            per_axis_check(node, scale)
            if mode == "drop":
                alias[node.output[0]] = inputs[0]
                continue
            s = scalar_init(float(scale.reshape(-1)[0]), "scale")
            z = scalar_init(float(zp.reshape(-1)[0]), "zp")
            sub = fresh("sub")
            new_nodes += [
                helper.make_node("Sub", [inputs[0], z], [sub]),
                helper.make_node("Mul", [sub, s], [node.output[0]]),
            ]
            continue
        if inputs != list(node.input):
            clone = onnx.NodeProto()
            clone.CopyFrom(node)
            del clone.input[:]
            clone.input.extend(inputs)
            node = clone
        new_nodes.append(node)

    # A graph output that became an alias (mode="drop") is kept by an Identity.
    for value in graph.output:
        if value.name in alias:
            new_nodes.append(helper.make_node("Identity", [alias[value.name]], [value.name]))

    used = {i for n in new_nodes for i in n.input} | {o.name for o in graph.output}
    kept_inits = [t for t in graph.initializer if t.name in used and t.name not in consts]
    kept_inits += [t for t in new_inits if t.name in used]
    # float32 now flows where integers did: drop the declared intermediate types
    del graph.value_info[:]
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    for value in graph.output:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    return out


def convert_to_torch(
    model: str | Path | onnx.ModelProto,
    *,
    output: str | None = None,
    qdq: QdqMode = "emulate",
) -> tuple[torch.nn.Module, str, int, bool]:
    """(module, output name, index of that output in what the module returns or -1 for a
    single tensor, whether QDQ nodes were rewritten).

    Loads the ONNX graph, prunes it to ``output`` (default: the first), rewrites QDQ
    nodes (:func:`dequantize_qdq`) and converts it with onnx2torch. Raises
    ``ModelUnavailable`` (e.g. an operator onnx2torch cannot convert) or
    ``MissingDependency``-style ``ModelUnavailable`` when onnx2torch is missing.
    """
    import onnx

    try:
        from onnx2torch import convert
    except ImportError as exc:
        raise ModelUnavailable(
            f"the torch path needs onnx2torch and torchvision ({exc}); pip install"
            " 'lookalike[torch-gpu]'"
        ) from exc
    where = str(model) if not isinstance(model, onnx.ModelProto) else "the model"
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    name = output or proto.graph.output[0].name
    proto = prune_to_output(proto, name)
    quantized = has_qdq(proto)
    if quantized:
        proto = dequantize_qdq(proto, qdq)
    producer = next((n for n in proto.graph.node if name in n.output), None)
    index = list(producer.output).index(name) if producer is not None else 0
    try:
        module = convert(proto)
    except NotImplementedError as exc:
        raise ModelUnavailable(
            f"onnx2torch cannot convert {where}: {exc}; run it with onnxruntime-gpu instead"
            " (pip install 'lookalike[gpu]')"
        ) from exc
    except Exception as exc:
        raise ModelUnavailable(
            f"onnx2torch failed on {where}: {type(exc).__name__}: {exc}"
        ) from exc
    multi = producer is not None and len(producer.output) > 1
    return module.eval(), name, index if multi else -1, quantized


def set_fp32_precision(torch_module: Any, allow_tf32: bool) -> None:
    """TF32 on or off for cuDNN convolutions and cuBLAS matmuls (process-wide).

    Uses torch's ``fp32_precision`` settings where they exist (2.9+; mixing them with the
    legacy ``allow_tf32`` flags is an error there), else the legacy flags."""
    backends = torch_module.backends
    conv = getattr(getattr(backends, "cudnn", None), "conv", None)
    matmul = getattr(getattr(backends, "cuda", None), "matmul", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        value = "tf32" if allow_tf32 else "ieee"
        try:
            conv.fp32_precision = value
            if matmul is not None and hasattr(matmul, "fp32_precision"):
                matmul.fp32_precision = value
            return
        except (RuntimeError, ValueError, AttributeError):
            pass  # e.g. legacy flags already set in this process: use them too
    backends.cudnn.allow_tf32 = allow_tf32
    backends.cuda.matmul.allow_tf32 = allow_tf32


# -- the torch runner ----------------------------------------------------------------------


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
        self.precision = precision
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

    def close(self) -> None:
        with self._lock:
            self._module = None
            self._pinned_in = self._pinned_out = None
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

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The model's output for ``batch`` (N, ...) as float32 numpy, like onnxruntime's."""
        self.load()
        with self._lock:
            try:
                return self.to_host(self.forward(self.to_device(batch)))
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


def check_parity(
    runner: Any,
    session: onnxruntime.InferenceSession,
    sample: np.ndarray,
    *,
    output: str | None = None,
    tolerance: float = 1e-3,
    min_cosine: float = 0.99,
) -> tuple[float, float]:
    """Run ``sample`` through ``runner`` and a reference onnxruntime ``session`` (CPU);
    return (:func:`max_normalized_diff`, smallest cosine). For a load-time self-check of
    the torch path on the first real batch.

    Float graphs must agree within ``tolerance`` (max abs difference of the normalised
    vectors). Rewritten quantized graphs (``runner.rewrote_qdq``) cannot: one rounding
    step flipped anywhere moves the vector by ~1e-2, so they are held to ``min_cosine``
    instead. Raises ``ModelUnavailable`` on failure (NaN included).
    """
    name = output or getattr(runner, "output_name", None) or session.get_outputs()[0].name
    first = session.get_inputs()[0]
    dtype = np.float16 if first.type == "tensor(float16)" else np.float32
    (reference,) = session.run([name], {first.name: np.asarray(sample, dtype=dtype)})
    got = runner.run(sample)
    diff = max_normalized_diff(np.asarray(reference), got)
    cosine = float(np.min(cosine_similarities(np.asarray(reference), got)))
    if getattr(runner, "rewrote_qdq", False):
        ok, shown = cosine >= min_cosine, f"a cosine of {cosine:.4f} (minimum {min_cosine:g})"
    else:
        ok, shown = diff <= tolerance, f"{diff:.2e} (tolerance {tolerance:g})"
    if not ok:  # NaN fails both comparisons
        raise ModelUnavailable(
            f"the GPU path's vectors differ from onnxruntime's on the CPU by {shown};"
            " use --device cpu, or onnxruntime-gpu"
        )
    return diff, cosine


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
    "max_normalized_diff",
    "prune_to_output",
    "set_fp32_precision",
]
