"""Exposing any tensor of an ONNX graph as an output (``"output"`` in the registry or in a
local ``lookalike.json``): a classifier's pooled features before its last layer, say.

The loaded graph is edited in memory (the file is never changed): the tensor is appended to
``graph.output`` with the type and shape ``onnx.shape_inference`` infers for it, and
onnxruntime opens the edited bytes. A 4-D (batch, channels, height, width) tensor needs
``pooling: "mean"`` (the mean over the spatial dims) unless its spatial dims are 1.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MissingDependency, ModelUnavailable

__all__ = ["exposed_model"]


def exposed_model(model_path: Path, name: str) -> bytes | None:
    """``model_path``'s graph with tensor ``name`` added to its outputs, serialised; None
    when ``name`` already is an output. Raises ``ModelUnavailable`` when no node makes it."""
    try:
        import onnx
    except ImportError:
        raise MissingDependency(
            f"using the intermediate tensor {name!r} of {model_path.name} as the embedding "
            "needs the onnx package: pip install 'lookalike[classifiers]'"
        ) from None
    model = onnx.load(str(model_path))
    graph = model.graph
    if name in {o.name for o in graph.output}:
        return None
    produced = [out for node in graph.node for out in node.output if out]
    if name not in produced:
        outputs = ", ".join(o.name for o in graph.output)
        tail = ", ".join(produced[-6:])
        raise ModelUnavailable(
            f"{model_path} has no tensor {name!r}; its outputs: {outputs}; the last tensors "
            f"its nodes make: {tail}"
        )
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        infos = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    except Exception:  # noqa: BLE001 - inference is best effort: the session checks shapes
        infos = {}
    info = infos.get(name)
    if info is None:
        info = onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
    graph.output.append(info)
    return bytes(model.SerializeToString())
