"""A tiny CLIP pair for tests: an image tower and a text tower that share one space.

Image tower: pixel_values (N,3,32,32), CLIP-normalised -> the image's mean colour (the
normalisation undone in the graph) on axes 0 (red), 1 (green), 2 (blue) of a ``dim``-d
``image_embeds``; the other axes are 0. Text tower: input_ids + attention_mask (int64) ->
the masked sum of per-word rows: "red"/"green"/"blue" are the unit vectors of those axes,
"dress" a small step along axis 3, [UNK] nothing, and [PAD] a large blue row, so a
missing attention mask shows. The tokenizer is a WordLevel ``tokenizers`` model.

Layouts: ``write_local_clip(folder)`` (model.onnx + preprocessor_config.json + text/) and
``install_hub_clip(cache)`` (as the registry's ``clip-vit-b32``: Qdrant/clip-ViT-B-32-vision
and Qdrant/clip-ViT-B-32-text, 512 dims).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from tiny_models import (
    CLIP_MEAN,
    CLIP_STD,
    _const,
    _finish,
    install_hub_model,
    model_bytes,
    tiny_preprocessor_config,
    write_hub_cache,
    write_local_model,
)

VOCAB = {"[PAD]": 0, "[UNK]": 1, "red": 2, "green": 3, "blue": 4, "dress": 5}
CLIP_DIM = 512


def make_clip_image_model(dim: int = CLIP_DIM) -> onnx.ModelProto:
    proj = np.zeros((3, dim), dtype=np.float32)
    proj[0, 0] = proj[1, 1] = proj[2, 2] = 1.0
    nodes = [
        helper.make_node("GlobalAveragePool", ["pixel_values"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Mul", ["flat", "std"], ["scaled"]),
        helper.make_node("Add", ["scaled", "mean"], ["rgb"]),
        helper.make_node("MatMul", ["rgb", "proj"], ["image_embeds"]),
    ]
    inits = [
        _const("std", np.asarray(CLIP_STD, dtype=np.float32)),
        _const("mean", np.asarray(CLIP_MEAN, dtype=np.float32)),
        _const("proj", proj),
    ]
    inputs = [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["n", 3, 32, 32])]
    outputs = [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["n", dim])]
    return _finish(nodes, inits, inputs, outputs, "tiny-clip-vision")


def make_clip_text_model(dim: int = CLIP_DIM) -> onnx.ModelProto:
    table = np.zeros((len(VOCAB), dim), dtype=np.float32)
    table[VOCAB["red"], 0] = table[VOCAB["green"], 1] = table[VOCAB["blue"], 2] = 1.0
    table[VOCAB["dress"], 3] = 0.1
    table[VOCAB["[PAD]"], 2] = 50.0
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["rows"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["rows", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["text_embeds"], keepdims=0),
        helper.make_node("Identity", ["rows"], ["last_hidden_state"]),
    ]
    inits = [
        _const("table", table),
        _const("axis2", np.asarray([2], dtype=np.int64)),
        _const("axis1", np.asarray([1], dtype=np.int64)),
    ]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["n", "tokens"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["n", "tokens"]),
    ]
    outputs = [
        helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["n", "tokens", dim]),
        helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["n", dim]),
    ]
    return _finish(nodes, inits, inputs, outputs, "tiny-clip-text")


def make_tokenizer_json() -> bytes:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.normalizers import Lowercase
    from tokenizers.pre_tokenizers import Whitespace

    tokenizer = Tokenizer(WordLevel(VOCAB, unk_token="[UNK]"))
    tokenizer.normalizer = Lowercase()
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer.to_str().encode()


def write_local_clip(folder: Path, *, text: bool = True) -> Path:
    """A ``--model-path`` folder: model.onnx + preprocessor_config.json (+ text/)."""
    write_local_model(folder, make_clip_image_model())
    if text:
        (folder / "text").mkdir(parents=True, exist_ok=True)
        (folder / "text" / "model.onnx").write_bytes(model_bytes(make_clip_text_model()))
        (folder / "text" / "tokenizer.json").write_bytes(make_tokenizer_json())
    return folder


def install_hub_clip(cache: Path, *, text: bool = True) -> Path:
    """The pair in a hub cache under the registry's clip-vit-b32 repositories."""
    install_hub_model(
        cache,
        "Qdrant/clip-ViT-B-32-vision",
        make_clip_image_model(),
        preprocessor=tiny_preprocessor_config(),
    )
    if text:
        write_hub_cache(
            cache,
            "Qdrant/clip-ViT-B-32-text",
            {
                "model.onnx": model_bytes(make_clip_text_model()),
                "tokenizer.json": make_tokenizer_json(),
                "config.json": json.dumps({"projection_dim": CLIP_DIM}).encode(),
            },
        )
    return cache


COLOURS = {
    "red": (220, 20, 20),
    "green": (20, 200, 20),
    "blue": (20, 20, 220),
    "purple": (150, 20, 160),
    "grey": (128, 128, 128),
}


def write_colour_images(folder: Path) -> Path:
    """One solid 40x40 PNG per colour of ``COLOURS`` (named ``<colour>.png``)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name, rgb in COLOURS.items():
        Image.new("RGB", (40, 40), rgb).save(folder / f"{name}.png")
    return folder
