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
import threading
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput, ModelUnavailable, NoTextTower
from .embedders.base import Embedder
from .embedders.onnx import OnnxEmbedder
from .hub import _check_hub_spec, resolve_hub_model, resolve_hub_preprocessor
from .identity import fast_resize_of
from .local import _local_embedder
from .registry import DEFAULT_MODEL, MODELS, ModelSpec, TextTowerSpec, get_model_spec, text_models

if TYPE_CHECKING:
    from .embedders.text import TextEmbedder
    from .hub import TextFiles

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
    fast_resize: bool = False,
) -> Embedder:
    """The embedder for a registry model name (default ``DEFAULT_MODEL``) or a local folder.

    Cheap: no network access and no weights are loaded; that happens on ``load()`` or the
    first ``embed()``. ``threads`` sets onnxruntime's intra-op threads (default: all cores).
    Raises ``InvalidInput`` for an unknown name (the message lists the known ones) and
    ``ModelUnavailable`` when ``model_path`` is not a usable model folder. ``fast_resize``:
    OpenCV's resize instead of the reference processor's (ONNX image models only).
    """
    embedder = _load_embedder(model, model_path, threads)
    if fast_resize:
        if not isinstance(embedder, OnnxEmbedder):
            raise InvalidInput(
                f"--fast-resize is for neural image models; {embedder.name!r} resizes nothing"
            )
        embedder.fast_resize = True
    return embedder


def _load_embedder(
    model: str | None, model_path: str | os.PathLike[str] | None, threads: int | None
) -> Embedder:
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

    fast = fast_resize_of(model)
    if model.get("model_path"):
        return load_embedder(model_path=model["model_path"], threads=threads, fast_resize=fast)
    return load_embedder(model["name"], threads=threads, fast_resize=fast)


# -- text towers -------------------------------------------------------------------------

#: Where a ``--model-path`` folder keeps its text tower (beside the image model).
LOCAL_TEXT_MODEL = "text/model.onnx"
LOCAL_TEXT_TOKENIZER = "text/tokenizer.json"


def _no_text_tower(name: str) -> NoTextTower:
    return NoTextTower(
        f"model {name!r} has no text tower, so it cannot search by text; models that can:"
        f" {', '.join(text_models())} (or a --model-path folder with {LOCAL_TEXT_MODEL} and"
        f" {LOCAL_TEXT_TOKENIZER})"
    )


def _local_text_files(directory: Path) -> TextFiles:
    from .hub import TextFiles

    return TextFiles(
        directory / LOCAL_TEXT_MODEL,
        directory / LOCAL_TEXT_TOKENIZER,
        f"local:{directory.resolve()}/text",
    )


def has_text_tower(model: dict[str, Any]) -> bool:
    """Whether the model a collection's stored record names has a text tower (so it can
    search by text): the same checks as ``text_embedder_for_record``, without loading
    anything (a local folder's files are only looked for)."""
    if model.get("kind") == "external" or model.get("metric") != "cosine":
        return False
    if model.get("model_path"):
        return (Path(model["model_path"]).expanduser() / LOCAL_TEXT_MODEL).is_file()
    registered = MODELS.get(str(model.get("name")))
    return registered is not None and registered.text is not None


_TEXT_EMBEDDERS: dict[tuple[Any, ...], TextEmbedder] = {}
_TEXT_LOCK = threading.Lock()


def text_embedder_for_record(model: dict[str, Any], threads: int | None = None) -> TextEmbedder:
    """The text tower of the model a collection's stored record names (loaded on first
    use, then kept: one per model and folder in the process, so searches share a session).

    A registry model has one when its spec names it (``ModelSpec.text``); a local folder
    when it holds ``text/model.onnx`` and ``text/tokenizer.json``. Raises ``NoTextTower``
    (naming the models that have one) otherwise."""
    from .hub import hub_cache_dir

    where = model.get("model_path") or str(hub_cache_dir())
    key = (model.get("name"), where, model.get("dim"), model.get("metric"), threads)
    with _TEXT_LOCK:
        cached = _TEXT_EMBEDDERS.get(key)
        if cached is None or not cached.loaded:  # not loaded yet: the files are looked at again
            cached = _text_embedder(model, threads)
            if len(_TEXT_EMBEDDERS) >= 8:
                _TEXT_EMBEDDERS.clear()
            _TEXT_EMBEDDERS[key] = cached
        return cached


def _text_embedder(model: dict[str, Any], threads: int | None) -> TextEmbedder:
    from .embedders.text import TextEmbedder

    name = str(model.get("name"))
    if model.get("kind") == "external" or model.get("metric") != "cosine":
        raise _no_text_tower(name)
    spec = ModelSpec(name=name, kind="onnx", dim=int(model["dim"]), metric="cosine")
    if model.get("model_path"):
        directory = Path(model["model_path"]).expanduser()
        if not (directory / LOCAL_TEXT_MODEL).is_file():
            raise _no_text_tower(name)
        tower = TextTowerSpec(
            repo=None, model_file=LOCAL_TEXT_MODEL, tokenizer_file=LOCAL_TEXT_TOKENIZER, output=None
        )
        return TextEmbedder(spec, tower, partial(_local_text_files, directory), threads=threads)
    registered = MODELS.get(name)
    if registered is None or registered.text is None:
        raise _no_text_tower(name)
    from .hub import resolve_hub_text

    return TextEmbedder(
        spec, registered.text, partial(resolve_hub_text, registered), threads=threads
    )
