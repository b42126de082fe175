"""Local model folders: find model.onnx and its preprocessing config, read lookalike.json overrides, and build a spec from the graph."""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelUnavailable
from .embedders.onnx import OnnxEmbedder
from .embedders.session import load_preparer, probe_output_shapes
from .hub import ModelFiles
from .registry import ModelSpec, Pooling

if TYPE_CHECKING:
    import onnxruntime

logger = logging.getLogger(__name__)

#: File names looked for in a local model folder, in order.
PREPROCESSOR_FILE = "preprocessor_config.json"
LOCAL_MODEL_FILES = ("model.onnx", "onnx/model.onnx")
LOCAL_OVERRIDES_FILE = "lookalike.json"
_OVERRIDE_KEYS = {"name", "output", "pooling", "dim", "model_file", "grayscale", "clahe"}
_POOLINGS: tuple[Pooling, ...] = ("none", "cls", "mean")


# -- local folders -----------------------------------------------------------------------


def _local_failure(directory: Path, what: str) -> ModelUnavailable:
    return ModelUnavailable(
        f"{what}\n"
        "A --model-path folder needs model.onnx (or onnx/model.onnx) and preprocessor_config.json"
        " (Hugging Face image-processor settings), e.g. as fetched by:\n"
        "  hf download Qdrant/clip-ViT-B-32-vision model.onnx preprocessor_config.json"
        f" --local-dir {directory}\n"
        "or use a registry model (--model clip-vit-b32) or the weight-free --model phash."
    )


def _read_overrides(directory: Path) -> dict[str, Any]:
    path = directory / LOCAL_OVERRIDES_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelUnavailable(f"could not read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelUnavailable(f"{path} must hold a JSON object")
    unknown = sorted(set(data) - _OVERRIDE_KEYS)
    if unknown:
        raise ModelUnavailable(
            f"{path} has unknown keys {unknown}; allowed: {sorted(_OVERRIDE_KEYS)}"
        )
    for key in ("name", "output", "model_file"):
        if key in data and not (isinstance(data[key], str) and data[key]):
            raise ModelUnavailable(f"{path}: {key!r} must be a non-empty string")
    if "pooling" in data and data["pooling"] not in _POOLINGS:
        raise ModelUnavailable(f"{path}: 'pooling' must be one of {list(_POOLINGS)}")
    dim = data.get("dim")
    if "dim" in data and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise ModelUnavailable(f"{path}: 'dim' must be a positive integer")
    if not isinstance(data.get("grayscale", False), bool):
        raise ModelUnavailable(f"{path}: 'grayscale' must be true or false")
    if "clahe" in data:
        data["clahe"] = _clahe(path, data["clahe"])
    return data


def _clahe(path: Path, value: Any) -> tuple[float, int]:
    """``"clahe": {"clip_limit": 2.0, "tile_grid": 8}`` (both optional, OpenCV's defaults)."""
    if value is True:
        value = {}
    if not isinstance(value, dict) or set(value) - {"clip_limit", "tile_grid"}:
        raise ModelUnavailable(f'{path}: \'clahe\' must be {{"clip_limit": 2.0, "tile_grid": 8}}')
    clip, grid = value.get("clip_limit", 2.0), value.get("tile_grid", 8)
    if isinstance(clip, bool) or not isinstance(clip, int | float) or clip <= 0:
        raise ModelUnavailable(f"{path}: 'clahe.clip_limit' must be a number > 0")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ModelUnavailable(f"{path}: 'clahe.tile_grid' must be an integer >= 1")
    return float(clip), grid


def _locate_local_files(directory: Path, overrides: dict[str, Any]) -> ModelFiles:
    if not directory.is_dir():
        raise _local_failure(
            directory, f"Model folder {directory} does not exist or is not a folder."
        )
    candidates = (overrides["model_file"],) if "model_file" in overrides else LOCAL_MODEL_FILES
    model_path = next((directory / c for c in candidates if (directory / c).is_file()), None)
    if model_path is None:
        others = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*.onnx"))
        seen = (
            f' (it has: {", ".join(others[:5])}; pick one with "model_file" in lookalike.json)'
            if others
            else ""
        )
        raise _local_failure(
            directory,
            f"No ONNX model in {directory}: looked for {' and '.join(candidates)}{seen}.",
        )
    preprocessor = next(
        (
            p
            for p in (directory / PREPROCESSOR_FILE, model_path.parent / PREPROCESSOR_FILE)
            if p.is_file()
        ),
        None,
    )
    if preprocessor is None:
        raise _local_failure(directory, f"{directory} has a model but no {PREPROCESSOR_FILE}.")
    return ModelFiles(
        model_path=model_path,
        preprocessor_config=preprocessor,
        source=f"local:{directory.resolve()}",
    )


def _is_flat(shape: list[Any] | tuple[Any, ...]) -> bool:
    """(batch, dim), or (batch, dim, 1, 1...) CNN features."""
    return len(shape) >= 2 and all(s == 1 for s in shape[2:])


def _dim_of(shape: list[Any], pooling: Pooling) -> int | None:
    """The embedding size an output of ``shape`` gives after ``pooling``; None if unknown."""
    if pooling == "mean" and len(shape) == 4:  # feature maps: the channels
        size = shape[1]
    elif pooling in ("cls", "mean"):
        size = shape[2] if len(shape) == 3 else None
    else:
        size = shape[1] if _is_flat(shape) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def _build_local_spec(
    directory: Path,
    overrides: dict[str, Any],
    files: ModelFiles,
    session: onnxruntime.InferenceSession,
) -> ModelSpec:
    """A ModelSpec for a local model, read from its graph (and ``lookalike.json``)."""
    declared = {o.name: list(o.shape) for o in session.get_outputs()}
    name = overrides.get("name") or f"local:{directory.name}"

    def pick(shapes: dict[str, Any]) -> tuple[str, Pooling] | None:
        if "output" in overrides:
            out = overrides["output"]
            if out not in shapes:
                raise ModelUnavailable(
                    f"{directory / LOCAL_OVERRIDES_FILE} names output {out!r} but the model's"
                    f" outputs are: {', '.join(shapes)}."
                )
            auto: Pooling = "cls" if len(shapes[out]) == 3 else "none"
            return out, overrides.get("pooling", auto)
        flat = [n for n, s in shapes.items() if _is_flat(s) and len(s) in (2, 4)]
        if flat:
            return flat[0], overrides.get("pooling", "none")
        tokens = [n for n, s in shapes.items() if len(s) == 3]
        if tokens:
            return tokens[0], overrides.get("pooling", "cls")
        return None

    choice = pick(declared)
    dim = overrides.get("dim")
    if dim is None and choice is not None:
        dim = _dim_of(declared[choice[0]], choice[1])
    if choice is None or dim is None:
        # Unknown ranks or a symbolic size: run one image through and look at the result.
        preparer = load_preparer(files.preprocessor_config, name)
        from PIL import Image

        sample = np.asarray(preparer(Image.new("RGB", (64, 64), (128, 128, 128))))
        actual = probe_output_shapes(session, sample)
        if choice is None:
            choice = pick(actual)
        if choice is None:
            raise ModelUnavailable(
                f"cannot tell which output of {files.model_path} is the embedding (outputs:"
                f' {actual}); set "output" and "pooling" in {directory / LOCAL_OVERRIDES_FILE}.'
            )
        if dim is None:
            dim = _dim_of(list(actual[choice[0]]), choice[1])
    output, pooling = choice
    if dim is None:
        raise ModelUnavailable(
            f"cannot tell the embedding size of output {output!r} of {files.model_path} with"
            f' pooling {pooling!r}; set "dim" (or "output"/"pooling") in'
            f" {directory / LOCAL_OVERRIDES_FILE}."
        )
    model_file = files.model_path.relative_to(directory).as_posix()
    preprocessor_file = None
    if files.preprocessor_config is not None:
        preprocessor_file = files.preprocessor_config.relative_to(directory).as_posix()
    logger.debug("local model %s: output %s, pooling %s, dim %d", name, output, pooling, dim)
    return ModelSpec(
        name=name,
        kind="onnx",
        dim=dim,
        metric="cosine",
        model_file=model_file,
        preprocessor_file=preprocessor_file,
        output=output,
        pooling=pooling,
        description=f"Local ONNX model in {directory}",
    )


def _local_embedder(directory: Path, threads: int | None) -> OnnxEmbedder:
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise _local_failure(
            directory, f"Model folder {directory} does not exist or is not a folder."
        )
    overrides = _read_overrides(directory)
    files = _locate_local_files(directory, overrides)
    return OnnxEmbedder(
        None,
        lambda: files,
        threads=threads,
        preprocessor_resolver=lambda: files.preprocessor_config,
        spec_builder=partial(_build_local_spec, directory, overrides),
        source=f"local:{directory.resolve().name}/{files.model_path.relative_to(directory).as_posix()}",
        fix_hint=f"Replace {files.model_path} with a valid ONNX export.",
        expose=overrides.get("output"),
        steps={k: overrides[k] for k in ("grayscale", "clahe") if k in overrides},
    )


def resolve_local_model(directory: Path) -> tuple[ModelSpec, ModelFiles]:
    """The spec and files of a local model folder.

    The folder holds ``model.onnx`` (or ``onnx/model.onnx``) and ``preprocessor_config.json``.
    The spec is read from the graph: a (batch, dim) output is used as is, a (batch, tokens,
    dim) output is reduced to its CLS token; an optional ``lookalike.json`` may set
    ``name``, ``output``, ``pooling``, ``dim`` (and ``model_file``). This opens the model.
    """
    embedder = _local_embedder(Path(directory), threads=1)
    return embedder.spec, embedder.files
