"""Rewriting an ONNX graph for torch: pruning to one output, folding QuantizeLinear/DequantizeLinear (onnx2torch has no converters for them), converting with onnx2torch, and the fp32/TF32 switch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import InvalidInput, ModelUnavailable

if TYPE_CHECKING:
    import onnx
    import torch

Precision = Literal["fp32", "tf32", "fp16"]
QdqMode = Literal["emulate", "drop"]

PRECISIONS: tuple[Precision, ...] = ("fp32", "tf32", "fp16")


# -- ONNX graph rewriting ------------------------------------------------------------------


_Q_RANGE = {2: (0, 255), 3: (-128, 127), 4: (0, 65535), 5: (-32768, 32767)}  # uint8,int8,u16,i16


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
