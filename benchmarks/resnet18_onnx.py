"""Build a ResNet-18-shaped ONNX model with random weights (for speed measurements only).

Same layers, shapes and FLOPs as torchvision's resnet18 with batch norm folded into the
convolutions (as an exported inference graph has it); the output is the 512-d pooled
feature. Random weights are fine: speed does not depend on the values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLIP_LIKE_PREPROCESSOR = {
    "image_processor_type": "CLIPImageProcessor",
    "do_resize": True,
    "size": {"shortest_edge": 224},
    "resample": 3,
    "do_center_crop": True,
    "crop_size": {"height": 224, "width": 224},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "do_convert_rgb": True,
}


class _Graph:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int, relu: bool) -> str:
        w = self.name("w")
        b = self.name("b")
        fan_in = cin * k * k
        self.inits.append(
            numpy_helper.from_array(
                (self.rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / fan_in)).astype(
                    np.float32
                ),
                w,
            )
        )
        self.inits.append(numpy_helper.from_array(np.zeros(cout, dtype=np.float32), b))
        y = self.name("conv")
        pad = k // 2
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, w, b],
                [y],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[pad] * 4,
            )
        )
        if relu:
            r = self.name("relu")
            self.nodes.append(helper.make_node("Relu", [y], [r]))
            return r
        return y

    def block(self, x: str, cin: int, cout: int, stride: int) -> str:
        h = self.conv(x, cin, cout, 3, stride, relu=True)
        h = self.conv(h, cout, cout, 3, 1, relu=False)
        shortcut = (
            self.conv(x, cin, cout, 1, stride, relu=False) if stride != 1 or cin != cout else x
        )
        s = self.name("add")
        self.nodes.append(helper.make_node("Add", [h, shortcut], [s]))
        r = self.name("relu")
        self.nodes.append(helper.make_node("Relu", [s], [r]))
        return r


def build_resnet18(seed: int = 0) -> onnx.ModelProto:
    g = _Graph(seed)
    x = g.conv("pixel_values", 3, 64, 7, 2, relu=True)
    mp = g.name("pool")
    g.nodes.append(
        helper.make_node(
            "MaxPool", [x], [mp], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        )
    )
    x = mp
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        x = g.block(x, cin, cout, stride)
        x = g.block(x, cout, cout, 1)
        cin = cout
    gap = g.name("gap")
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], [gap]))
    g.nodes.append(helper.make_node("Flatten", [gap], ["image_embeds"], axis=1))
    graph = helper.make_graph(
        g.nodes,
        "resnet18",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", 512])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def write_model_folder(folder: Path, seed: int = 0) -> Path:
    """A local model folder usable with ``lookalike index --model-path``."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(build_resnet18(seed), str(folder / "model.onnx"))
    (folder / "preprocessor_config.json").write_text(json.dumps(CLIP_LIKE_PREPROCESSOR, indent=2))
    return folder


if __name__ == "__main__":
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "resnet18-random")
    write_model_folder(out)
    params = sum(int(np.prod(t.dims)) for t in onnx.load(str(out / "model.onnx")).graph.initializer)
    print(f"wrote {out} ({params / 1e6:.1f}M parameters)")
