"""Tiny deterministic ONNX image models for tests, and ways to lay them out on disk.

No weights are ever downloaded: the models are built with ``onnx.helper`` from a seeded
random generator, so the same arguments always give byte-identical models.

Models
    ``make_pooling_model(dim)``  pixel_values (N,3,H,W) -> image_embeds (N, dim)
    ``make_token_model(dim, tokens)``  pixel_values -> last_hidden_state (N, tokens, dim);
        token 0 equals ``make_pooling_model(dim)``'s embedding (same seed), the other tokens
        differ, so CLS pooling is testable.
    ``make_model_with_input(shape)``  a model with an arbitrary input shape (bad-input tests).

Layouts
    ``write_local_model(folder, model)``  a ``--model-path`` folder (model.onnx or
        onnx/model.onnx + preprocessor_config.json [+ lookalike.json]).
    ``write_hub_cache(cache, repo_id, files)``  huggingface_hub's cache layout
        (``models--ORG--NAME/{blobs,refs/main,snapshots/<commit>/...}``) so that
        ``hf_hub_download(..., local_files_only=True)`` finds the files.
    ``install_hub_model(cache, repo_id, model)``  both of the above for one model.
    ``use_offline_hub(monkeypatch, cache)``  point HF_HUB_CACHE/HF_HOME at ``cache`` and turn
        on HF_HUB_OFFLINE (environment and huggingface_hub's import-time constant).
    ``tiny_hub_spec(name, repo_id, dim)``  a registry ``ModelSpec`` for such a model.

The preprocessor config is CLIP-style but tiny (resize shortest edge 32, crop 32x32), so
tests stay fast.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lookalike.models.registry import ModelSpec, Pooling

OPSET = 17
IR_VERSION = 8  # old enough for any onnxruntime >= 1.17
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

Dim = int | str | None


def tiny_preprocessor_config(size: int = 32) -> dict[str, Any]:
    """A CLIP-style Hugging Face image-processor config producing (3, size, size) inputs."""
    return {
        "image_processor_type": "CLIPImageProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"shortest_edge": size},
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": size, "width": size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
    }


def _const(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array), name=name)


def _features(
    nodes: list[onnx.NodeProto],
    inits: list[TensorProto],
    image: str,
    dim: int,
    rng: np.random.Generator,
) -> str:
    """Append the shared feature extractor; returns the name of its (N, dim) float32 output.

    A strided 4x4 conv + ReLU (spatial structure matters, and it is nonlinear) pooled
    globally, concatenated with the per-channel means, then projected to ``dim``.
    """
    channels = 8
    inits += [
        _const("conv_w", rng.normal(0, 0.5, (channels, 3, 4, 4)).astype(np.float32)),
        _const("conv_b", rng.normal(0, 0.1, (channels,)).astype(np.float32)),
        _const("proj_w", rng.normal(0, 1.0, (channels + 3, dim)).astype(np.float32)),
        _const("proj_b", rng.normal(0, 0.1, (dim,)).astype(np.float32)),
    ]
    nodes += [
        helper.make_node("Conv", [image, "conv_w", "conv_b"], ["conv"], strides=[4, 4]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["conv_pool"]),
        helper.make_node("Flatten", ["conv_pool"], ["conv_flat"], axis=1),
        helper.make_node("GlobalAveragePool", [image], ["mean_pool"]),
        helper.make_node("Flatten", ["mean_pool"], ["mean_flat"], axis=1),
        helper.make_node("Concat", ["conv_flat", "mean_flat"], ["feats"], axis=1),
        helper.make_node("MatMul", ["feats", "proj_w"], ["proj"]),
        helper.make_node("Add", ["proj", "proj_b"], ["features"]),
    ]
    return "features"


def _input(
    nodes: list[onnx.NodeProto], name: str, size: int | None, dtype: str
) -> tuple[onnx.ValueInfoProto, str]:
    """The (N, 3, H, W) input, cast to float32 inside the graph for float16 models."""
    hw: list[Dim] = [size, size] if size is not None else ["height", "width"]
    elem = TensorProto.FLOAT16 if dtype == "float16" else TensorProto.FLOAT
    value = helper.make_tensor_value_info(name, elem, ["batch", 3, *hw])
    if dtype == "float16":
        nodes.append(helper.make_node("Cast", [name], ["image_f32"], to=TensorProto.FLOAT))
        return value, "image_f32"
    return value, name


def _finish(
    nodes: list[onnx.NodeProto],
    inits: list[TensorProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    name: str,
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lookalike-tests"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def make_pooling_model(
    dim: int = 16,
    seed: int = 0,
    *,
    size: int | None = None,
    input_name: str = "pixel_values",
    output_name: str = "image_embeds",
    dtype: Literal["float32", "float16"] = "float32",
    symbolic_dim: bool = False,
    extra_token_output: bool = False,
) -> onnx.ModelProto:
    """pixel_values (N, 3, H, W) -> ``output_name`` (N, dim), like CLIP's image_embeds.

    ``size``: fixed H = W (default: dynamic). ``dtype="float16"``: the input is float16.
    ``symbolic_dim``: the output's last axis is declared symbolic (forces a probe run).
    ``extra_token_output``: also output "last_hidden_state" (N, 4, dim) first, like HF
    exports that return several tensors (the (N, dim) output is still the embedding).
    """
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[TensorProto] = []
    inp, image = _input(nodes, input_name, size, dtype)
    feats = _features(nodes, inits, image, dim, rng)
    if symbolic_dim:
        # Reshape to its own runtime shape: onnxruntime cannot infer the size statically
        # (with a plain Identity it would report the real size despite the declaration).
        nodes += [
            helper.make_node("Shape", [feats], ["feats_shape"]),
            helper.make_node("Reshape", [feats, "feats_shape"], [output_name]),
        ]
    else:
        nodes.append(helper.make_node("Identity", [feats], [output_name]))
    out_dim: Dim = "dim" if symbolic_dim else dim
    outputs = [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", out_dim])]
    if extra_token_output:
        inits.append(_const("tok_scale", np.ones((1, 4, dim), np.float32) * 2))
        nodes += [
            helper.make_node("Unsqueeze", [feats, "tok_axis"], ["tok_feats"]),
            helper.make_node("Mul", ["tok_feats", "tok_scale"], ["last_hidden_state"]),
        ]
        inits.append(_const("tok_axis", np.array([1], np.int64)))
        outputs.insert(
            0,
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", 4, dim]
            ),
        )
    return _finish(nodes, inits, [inp], outputs, "tiny_pooling")


def make_token_model(
    dim: int = 8,
    tokens: int = 5,
    seed: int = 0,
    *,
    size: int | None = None,
    output_name: str = "last_hidden_state",
) -> onnx.ModelProto:
    """pixel_values (N, 3, H, W) -> ``output_name`` (N, tokens, dim), like a ViT.

    Token 0 (the "CLS" token) is exactly ``make_pooling_model(dim, seed)``'s output; token t
    is that times a fixed per-token scale plus an offset, so CLS and mean pooling differ.
    """
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[TensorProto] = []
    inp, image = _input(nodes, "pixel_values", size, "float32")
    feats = _features(nodes, inits, image, dim, rng)
    token_rng = np.random.default_rng(seed + 1000)
    scale = token_rng.uniform(0.5, 2.0, (1, tokens, dim)).astype(np.float32)
    offset = token_rng.normal(0, 1.0, (1, tokens, dim)).astype(np.float32)
    scale[0, 0] = 1.0
    offset[0, 0] = 0.0
    inits += [
        _const("tok_axis", np.array([1], np.int64)),
        _const("tok_scale", scale),
        _const("tok_offset", offset),
    ]
    nodes += [
        helper.make_node("Unsqueeze", [feats, "tok_axis"], ["tok_feats"]),
        helper.make_node("Mul", ["tok_feats", "tok_scale"], ["tok_scaled"]),
        helper.make_node("Add", ["tok_scaled", "tok_offset"], [output_name]),
    ]
    out = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", tokens, dim])
    return _finish(nodes, inits, [inp], [out], "tiny_tokens")


def make_model_with_input(shape: list[Dim], dim: int = 4) -> onnx.ModelProto:
    """A model whose input "x" has ``shape`` (e.g. ``["batch", 10]``): not an image model
    unless ``shape`` is (N, 3, H, W). Output "y" (batch, dim)."""
    inits = [_const("w", np.ones((1, dim), np.float32))]
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
        helper.make_node("Reshape", ["m", "one"], ["m2"]),
        helper.make_node("MatMul", ["m2", "w"], ["y"]),
    ]
    inits.append(_const("one", np.array([1, 1], np.int64)))
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, dim])
    return _finish(nodes, inits, [inp], [out], "tiny_odd_input")


def model_bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


# -- layouts -------------------------------------------------------------------------------


def write_local_model(
    folder: Path,
    model: onnx.ModelProto | bytes,
    *,
    layout: Literal["root", "onnx"] = "root",
    preprocessor: Mapping[str, Any] | None = None,
    lookalike: Mapping[str, Any] | None = None,
) -> Path:
    """Lay ``model`` out as a local model folder (what ``--model-path`` takes); returns it.

    ``layout="root"``: folder/model.onnx; ``"onnx"``: folder/onnx/model.onnx (Xenova/
    transformers.js style). preprocessor_config.json goes at the folder's root
    (``preprocessor`` default: ``tiny_preprocessor_config()``); ``lookalike`` is written to
    lookalike.json when given.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.onnx" if layout == "root" else folder / "onnx" / "model.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(model if isinstance(model, bytes) else model_bytes(model))
    config = dict(preprocessor) if preprocessor is not None else tiny_preprocessor_config()
    (folder / "preprocessor_config.json").write_text(json.dumps(config, indent=2))
    if lookalike is not None:
        (folder / "lookalike.json").write_text(json.dumps(dict(lookalike)))
    return folder


def repo_folder(cache: Path, repo_id: str) -> Path:
    """``<cache>/models--ORG--NAME``, huggingface_hub's folder for a model repo."""
    return cache / ("models--" + repo_id.replace("/", "--"))


def write_hub_cache(
    cache: Path,
    repo_id: str,
    files: Mapping[str, bytes],
    *,
    commit: str | None = None,
    revision: str = "main",
    symlinks: bool = True,
) -> str:
    """Lay ``files`` (path in repo -> content) out in huggingface_hub's cache; return the commit.

    The layout is what ``hf_hub_download`` writes::

        <cache>/models--ORG--NAME/blobs/<sha256>
        <cache>/models--ORG--NAME/refs/<revision>          (the commit hash, no newline)
        <cache>/models--ORG--NAME/snapshots/<commit>/<path> -> ../../blobs/<sha256>

    ``commit`` defaults to a hash of the contents (40 hex digits). With ``symlinks=False``
    the snapshot holds plain copies (as on Windows without developer mode).
    """
    if commit is None:
        digest = hashlib.sha1()
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
        commit = digest.hexdigest()
    root = repo_folder(cache, repo_id)
    blobs = root / "blobs"
    snapshot = root / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        blob = blobs / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        pointer = snapshot.joinpath(*path.split("/"))
        pointer.parent.mkdir(parents=True, exist_ok=True)
        if pointer.exists() or pointer.is_symlink():
            pointer.unlink()
        if symlinks:
            pointer.symlink_to(os.path.relpath(blob, pointer.parent))
        else:
            pointer.write_bytes(content)
    refs = root / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / revision).write_text(commit)
    return commit


def install_hub_model(
    cache: Path,
    repo_id: str,
    model: onnx.ModelProto | bytes,
    *,
    model_file: str = "model.onnx",
    preprocessor: Mapping[str, Any] | None = None,
    preprocessor_file: str = "preprocessor_config.json",
    extra_files: Mapping[str, bytes] | None = None,
) -> str:
    """Put one model (+ preprocessor_config.json) in the hub cache as ``repo_id``; returns
    the commit. Pair it with ``tiny_hub_spec`` and ``use_offline_hub``."""
    config = dict(preprocessor) if preprocessor is not None else tiny_preprocessor_config()
    files = {
        model_file: model if isinstance(model, bytes) else model_bytes(model),
        preprocessor_file: json.dumps(config, indent=2).encode(),
        **(extra_files or {}),
    }
    return write_hub_cache(cache, repo_id, files)


def tiny_hub_spec(
    name: str = "tiny",
    repo_id: str = "lookalike-tests/tiny-vision",
    dim: int = 16,
    *,
    model_file: str = "model.onnx",
    output: str | None = "image_embeds",
    pooling: Pooling = "none",
) -> ModelSpec:
    """A registry entry for a tiny model installed with ``install_hub_model``.

    Register it for a test with
    ``monkeypatch.setitem(lookalike.models.registry.MODELS, spec.name, spec)``.
    """
    return ModelSpec(
        name=name,
        kind="onnx",
        dim=dim,
        metric="cosine",
        repo=repo_id,
        model_file=model_file,
        output=output,
        pooling=pooling,
        description="tiny test model",
    )


def use_offline_hub(monkeypatch: pytest.MonkeyPatch, cache: Path) -> Path:
    """Make ``cache`` the Hugging Face hub cache and forbid network access; returns it.

    Sets HF_HUB_OFFLINE=1 and HF_HUB_CACHE (HF_HOME too, next to it) in the environment,
    which is enough for lookalike (it reads them at call time), and also patches
    ``huggingface_hub.constants`` because huggingface_hub itself reads them at import time.
    For a CLI subprocess, pass the same variables in its environment.
    """
    import huggingface_hub.constants as hf_constants

    cache.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(cache.parent / "hf_home"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    return cache


def hub_env(cache: Path) -> dict[str, str]:
    """Environment variables for a CLI subprocess using ``cache`` offline."""
    return {
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache),
        "HF_HOME": str(cache.parent / "hf_home"),
    }
