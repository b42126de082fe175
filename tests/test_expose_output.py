"""``output`` naming any tensor of the graph (a classifier's features), with 4-D mean pooling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnx")
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from tiny_models import IR_VERSION, OPSET, write_local_model  # noqa: E402

from lookalike.errors import ModelUnavailable  # noqa: E402
from lookalike.models.loader import load_embedder  # noqa: E402
from lookalike.search.query import embed_image  # noqa: E402

CH, CLASSES = 6, 5


def classifier() -> onnx.ModelProto:
    """conv -> relu ("feature_map", 4-D) -> GlobalAveragePool ("pooled", N x C x 1 x 1) ->
    flatten -> gemm ("logits"): the only graph output is the logits."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((CH, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((CLASSES, CH)).astype(np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["pixel_values", "w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["feature_map"]),
        helper.make_node("GlobalAveragePool", ["feature_map"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-classifier",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=[w, fc],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def image() -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def embed(folder: Path) -> tuple[np.ndarray, Any]:
    emb = load_embedder(None, model_path=folder)
    return embed_image(emb, image()), emb


@pytest.mark.parametrize(
    ("output", "pooling"), [("pooled", None), ("feature_map", "mean"), ("flat", None)]
)
def test_intermediate_tensor_is_the_embedding(
    tmp_path: Path, output: str, pooling: str | None
) -> None:
    settings = {"output": output} | ({"pooling": pooling} if pooling else {})
    folder = write_local_model(tmp_path / "m", classifier(), lookalike=settings)
    vec, emb = embed(folder)
    assert vec.shape == (1, CH)
    assert emb.spec.dim == CH and emb.spec.output == output
    # the same features however they are taken: pooled by the graph or by lookalike
    ref, _ = embed(
        write_local_model(tmp_path / "ref", classifier(), lookalike={"output": "pooled"})
    )
    assert np.allclose(vec, ref, atol=1e-5)
    # the file on disk is not changed
    assert [o.name for o in onnx.load(str(folder / "model.onnx")).graph.output] == ["logits"]


def test_feature_map_without_pooling_and_unknown_tensor_fail_clearly(tmp_path: Path) -> None:
    folder = write_local_model(tmp_path / "a", classifier(), lookalike={"output": "feature_map"})
    with pytest.raises(ModelUnavailable):
        embed(folder)
    folder = write_local_model(tmp_path / "b", classifier(), lookalike={"output": "nope"})
    with pytest.raises(ModelUnavailable, match="no tensor 'nope'.*pooled"):
        embed(folder)
