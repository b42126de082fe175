"""onnxruntime sessions and the helpers around them: opening a model (CPU, or a CUDA device's provider), checking its image input, the preprocessing it comes with, pooling its output, probing output shapes."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import LookalikeError, ModelUnavailable
from .base import Preparer

if TYPE_CHECKING:
    import onnxruntime

    from ..device import Device

logger = logging.getLogger(__name__)


#: onnxruntime type strings of the inputs we can feed, and the numpy dtype to cast to.
INPUT_DTYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
}


def ort_message(exc: BaseException) -> str:
    """A one-line version of an onnxruntime error, without the ``[ONNXRuntimeError] : 7 :`` noise."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if text.startswith("[ONNXRuntimeError]"):
        # "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from X failed:Protobuf parsing failed."
        text = text.split(" : ", 3)[-1]
    if "failed:" in text:
        text = text.rsplit("failed:", 1)[-1].strip() or text
    return text if len(text) <= 200 else text[:197] + "..."


def create_session(
    model_path: Path,
    *,
    threads: int | None = None,
    fix_hint: str = "",
    device: Device | None = None,
    expose: str | None = None,
) -> onnxruntime.InferenceSession:
    """Open ``model_path`` with onnxruntime on the CPU, or on ``device``'s CUDA provider
    (checked: onnxruntime never silently falls back to the CPU when CUDA was chosen).

    ``intra_op_num_threads`` is ``threads`` (default: every core). Thread spinning is
    disabled: by default onnxruntime's intra-op threads busy-wait for a while after each
    parallel section, which on a small machine steals the cores the image-decoding worker
    processes need to keep the model fed; without spinning, idle ORT threads sleep and
    the decoders run, which gives better end-to-end throughput for a small latency cost.

    ``expose`` names a tensor of the graph to make an output when it is not one already
    (see :mod:`..expose`). Raises ``ModelUnavailable`` (with ``fix_hint`` appended) if the
    file cannot be loaded.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: the library never writes to stderr itself
    providers = device.session_providers() if device else ["CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
        if expose is not None and expose not in [o.name for o in session.get_outputs()]:
            from ..expose import exposed_model  # an intermediate tensor: edit the graph

            edited = exposed_model(model_path, expose)
            if edited is not None:
                session = ort.InferenceSession(edited, sess_options=options, providers=providers)
    except LookalikeError:
        raise
    except Exception as exc:  # onnxruntime's errors all derive from Exception directly
        kind = type(exc).__name__
        if kind == "InvalidProtobuf":
            what = f"{model_path} is not a valid ONNX model ({ort_message(exc)})."
            fix = "The file may be truncated or corrupted."
        elif kind == "NoSuchFile":
            what = f"{model_path} (or a file it references) does not exist ({ort_message(exc)})."
            fix = ""
        else:
            what = f"onnxruntime could not load {model_path}: {ort_message(exc)}."
            fix = "It may be corrupted, incomplete or use operators this onnxruntime lacks."
        message = "\n".join(line for line in (what, fix, fix_hint) if line)
        raise ModelUnavailable(message) from exc
    if device is not None and device.is_cuda:
        from ..gpu_session import check_session

        check_session(session, device)
    logger.debug("opened %s with %d intra-op threads", model_path, options.intra_op_num_threads)
    return session


def check_image_input(
    session: onnxruntime.InferenceSession, model_path: Path
) -> tuple[str, np.dtype[Any], list[int | str | None]]:
    """Check the model takes one (N, 3, H, W) float image tensor; return (name, dtype, shape)."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(f"{i.name} {i.shape}" for i in inputs)
        raise ModelUnavailable(
            f"{model_path} has {len(inputs)} inputs ({names}); lookalike feeds images to a"
            " model with exactly one input of shape (N, 3, H, W)."
        )
    first = inputs[0]
    shape = list(first.shape)
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
        raise ModelUnavailable(
            f"{model_path} takes input {first.name!r} of shape {shape}; lookalike needs an image"
            " model whose input is (N, 3, H, W) pixel values (channels first)."
        )
    dtype = INPUT_DTYPES.get(first.type)
    if dtype is None:
        raise ModelUnavailable(
            f"{model_path} takes input {first.name!r} of type {first.type}; lookalike feeds"
            " float32, float16 or float64 pixel values."
        )
    return first.name, dtype, shape


def load_preparer(preprocessor_config: Path | None, model_name: str) -> Preparer:
    """Build the image preparer from a Hugging Face ``preprocessor_config.json``."""
    if preprocessor_config is None:
        raise ModelUnavailable(
            f"model {model_name!r} has no preprocessor_config.json, so lookalike does not know"
            " how to resize and normalise images for it.\nAdd a Hugging Face image-processor"
            " preprocessor_config.json next to the model."
        )
    try:
        config = json.loads(Path(preprocessor_config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelUnavailable(
            f"could not read the preprocessor config of model {model_name!r} at"
            f" {preprocessor_config}: {exc}"
        ) from exc
    if not isinstance(config, dict):
        raise ModelUnavailable(
            f"the preprocessor config {preprocessor_config} of model {model_name!r} is not a"
            " JSON object."
        )
    from ..preprocess import ImageProcessorSpec

    try:
        return ImageProcessorSpec.from_hf_config(config)
    except LookalikeError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelUnavailable(
            f"the preprocessor config {preprocessor_config} of model {model_name!r} is not"
            f" usable: {exc}"
        ) from exc


def pool_output(out: np.ndarray, pooling: str) -> np.ndarray:
    """Reduce a model output to (batch, dim): "cls" takes token 0, "mean" averages tokens,
    "none" keeps it (squeezing trailing size-1 axes, as in (N, C, 1, 1) CNN features)."""
    if pooling == "cls":
        if out.ndim != 3:
            raise ModelUnavailable(
                f"CLS pooling needs a (batch, tokens, dim) output, got shape {out.shape}"
            )
        return out[:, 0, :]
    if pooling == "mean":
        if out.ndim == 4:  # (batch, channels, height, width) feature maps: spatial mean
            return out.mean(axis=(2, 3))
        if out.ndim != 3:
            raise ModelUnavailable(
                "mean pooling needs a (batch, tokens, dim) or (batch, channels, height, width)"
                f" output, got shape {out.shape}"
            )
        return out.mean(axis=1)
    if out.ndim > 2 and all(size == 1 for size in out.shape[2:]):
        return out.reshape(out.shape[0], -1)
    if out.ndim > 2:
        raise ModelUnavailable(
            f'an output of shape {out.shape} needs pooling ("mean" for feature maps)'
        )
    return out


def probe_output_shapes(
    session: onnxruntime.InferenceSession, sample: np.ndarray
) -> dict[str, tuple[int, ...]]:
    """Run ``sample`` (one prepared image, (3, H, W)) through the model; return every
    output's actual shape. Used when the graph declares symbolic sizes."""
    name = session.get_inputs()[0].name
    dtype = INPUT_DTYPES.get(session.get_inputs()[0].type, np.dtype(np.float32))
    batch = np.ascontiguousarray(sample[None], dtype=dtype)
    try:
        outputs = session.run(None, {name: batch})
    except Exception as exc:
        raise ModelUnavailable(
            f"a test inference with an input of shape {batch.shape} failed: {ort_message(exc)}"
        ) from exc
    return {
        meta.name: tuple(np.asarray(value).shape)
        for meta, value in zip(session.get_outputs(), outputs, strict=True)
    }
