"""Finding model files (Hugging Face cache or a local folder) and building embedders.

Nothing here touches the network or loads weights when called through ``load_embedder``:
the returned embedder resolves its files and opens the onnxruntime session on first use.

Hub models live in huggingface_hub's normal cache (``HF_HOME`` / ``HF_HUB_CACHE``). The
cache is always tried first, so a model that was downloaded once is used as is, with no
network request and no silent update (vectors in a collection stay comparable). Only if a
file is missing, and ``HF_HUB_OFFLINE`` is not set, is it downloaded. The environment is
read at call time, not when huggingface_hub was imported, so setting ``HF_HUB_OFFLINE`` or
``HF_HUB_CACHE`` late (tests, a CLI flag) works.
"""

from __future__ import annotations

import json
import logging
import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput, ModelUnavailable
from .embedders.base import Embedder
from .embedders.onnx import OnnxEmbedder
from .hub import _check_hub_spec, resolve_hub_model, resolve_hub_preprocessor
from .local import _local_embedder
from .registry import DEFAULT_MODEL, MODELS, ModelSpec, get_model_spec

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

# -- embedders ---------------------------------------------------------------------------


def embedder_for_spec(spec: ModelSpec, *, threads: int | None = None) -> Embedder:
    """A lazy embedder for a registry ``spec`` (nothing is resolved or loaded yet)."""
    if spec.kind == "phash":
        from .embedders.phash import PhashEmbedder

        return PhashEmbedder(spec)
    _check_hub_spec(spec)
    command = f"hf download {spec.repo} {spec.model_file} --force-download"
    return OnnxEmbedder(
        spec,
        partial(resolve_hub_model, spec),
        threads=threads,
        preprocessor_resolver=partial(resolve_hub_preprocessor, spec),
        source=f"hf:{spec.repo}/{spec.model_file}",
        fix_hint=f"Download it again with: {command}",
    )


def load_embedder(
    model: str | None = None,
    model_path: str | os.PathLike[str] | None = None,
    *,
    threads: int | None = None,
) -> Embedder:
    """The embedder for a registry model name (default ``DEFAULT_MODEL``) or a local folder.

    Cheap: no network access and no weights are loaded; that happens on ``load()`` or the
    first ``embed()``. ``threads`` sets onnxruntime's intra-op threads (default: all cores).
    Raises ``InvalidInput`` for an unknown name (the message lists the known ones) and
    ``ModelUnavailable`` when ``model_path`` is not a usable model folder.
    """
    if threads is not None and threads < 1:
        raise InvalidInput(f"threads must be at least 1, got {threads}")
    if model_path is not None:
        if model is not None:
            raise InvalidInput(
                "give either a model name or a model folder (--model-path), not both"
            )
        return _local_embedder(Path(model_path), threads)
    name = model or DEFAULT_MODEL
    if name not in MODELS and Path(name).expanduser().is_dir():
        known = ", ".join(sorted(MODELS))
        raise InvalidInput(
            f"unknown model {name!r}; known models: {known} (for a local model folder, use"
            " --model-path)"
        )
    spec = get_model_spec(name)
    if spec.kind == "onnx" and spec.repo is None:
        raise ModelUnavailable(
            f"model {name!r} has no download: export it to ONNX (see docs/models.md) and pass"
            f" the folder with --model-path (its lookalike.json:"
            f' {{"output": {json.dumps(spec.output)}, "pooling": {json.dumps(spec.pooling)}}})'
        )
    return embedder_for_spec(spec, threads=threads)


def embedder_from_config(model: dict[str, Any], threads: int | None) -> Embedder:
    """The embedder a collection's stored model identity names."""
    if model.get("kind") == "external":
        from .embedders.external import ExternalEmbedder

        return ExternalEmbedder(model["name"], int(model["dim"]), model["metric"])

    if model.get("model_path"):
        return load_embedder(model_path=model["model_path"], threads=threads)
    return load_embedder(model["name"], threads=threads)
