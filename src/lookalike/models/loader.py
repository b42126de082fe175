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
import mmap
import os
import posixpath
import socket
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from ..errors import InvalidInput, ModelUnavailable
from .embedders.base import Embedder
from .embedders.onnx import OnnxEmbedder, load_preparer, probe_output_shapes
from .registry import DEFAULT_MODEL, MODELS, ModelSpec, Pooling, get_model_spec

if TYPE_CHECKING:
    import onnxruntime

logger = logging.getLogger(__name__)

#: File names looked for in a local model folder, in order.
LOCAL_MODEL_FILES = ("model.onnx", "onnx/model.onnx")
PREPROCESSOR_FILE = "preprocessor_config.json"
LOCAL_OVERRIDES_FILE = "lookalike.json"
_OVERRIDE_KEYS = {"name", "output", "pooling", "dim", "model_file"}
_POOLINGS: tuple[Pooling, ...] = ("none", "cls", "mean")
_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class ModelFiles:
    """The files of one resolved model.

    ``source`` is ``"hf:<repo>@<commit>"`` for hub models, ``"local:<absolute folder>"``
    for local folders.
    """

    model_path: Path
    preprocessor_config: Path | None
    source: str


# -- environment -------------------------------------------------------------------------


def hub_offline() -> bool:
    """Whether Hugging Face hub access is disabled (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``).

    Reads the environment now (huggingface_hub reads it once at import time) and also
    honours huggingface_hub's own constant.
    """
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in _TRUE:
            return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> Path:
    """The huggingface_hub cache folder, from the environment as it is now."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        value = os.environ.get(var)
        if value:
            return Path(os.path.expandvars(value)).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(os.path.expandvars(home)).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_model_cached(spec: ModelSpec) -> bool:
    """Whether the model file of a hub model is in the cache (no network access)."""
    if spec.kind != "onnx" or not spec.repo or not spec.model_file:
        return spec.kind != "onnx"
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(spec.repo, spec.model_file, cache_dir=str(hub_cache_dir()))
    except (OSError, ValueError):
        return False
    return isinstance(found, str)


# -- hub models --------------------------------------------------------------------------

_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


class HubUnreachable(ConnectionError):
    """The hub's host name does not resolve (raised before huggingface_hub spends ~20 s retrying)."""


def _check_hub_reachable() -> None:
    """Fail fast when the hub's host name cannot be resolved (no network at all).

    Without this, huggingface_hub retries a failing request with back-off for about 20
    seconds before giving up. Skipped when a proxy is configured (the proxy resolves names).
    """
    if any(os.environ.get(var) for var in _PROXY_VARS):
        return
    from huggingface_hub import constants

    host = urlsplit(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).hostname
    if not host:
        return
    try:
        socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise HubUnreachable(f"cannot resolve {host}: {exc}") from exc


def _download_command(spec: ModelSpec) -> str:
    files = [f for f in (spec.model_file, spec.preprocessor_file) if f]
    return f"hf download {spec.repo} {' '.join(files)}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    text = text.splitlines()[0] if text else ""
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _hub_failure(
    spec: ModelSpec, filename: str, cache_dir: Path, offline: bool, exc: BaseException | None
) -> ModelUnavailable:
    """The user-facing paragraph for a hub model whose file could not be obtained."""
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{spec.repo}/{filename}"
    if (
        exc is None
        or isinstance(exc, OfflineModeIsEnabled)
        or (offline and isinstance(exc, LocalEntryNotFoundError))
    ):
        why = (
            f"{where} is not in the Hugging Face cache ({cache_dir}) and HF_HUB_OFFLINE is set,"
            " so it was not downloaded."
        )
    elif isinstance(exc, HubUnreachable):
        why = (
            f"{where} is not in the Hugging Face cache ({cache_dir}) and the hub is unreachable"
            f" ({exc})."
        )
    elif isinstance(exc, LocalEntryNotFoundError):
        cause = exc.__cause__ or exc.__context__
        detail = _one_line(cause) if cause is not None else "the network is unreachable"
        why = (
            f"{where} is not in the Hugging Face cache ({cache_dir}) and downloading it failed"
            f" ({detail})."
        )
    elif isinstance(exc, GatedRepoError):
        why = (
            f"the hub repository {spec.repo} is gated: log in (hf auth login) and accept its terms."
        )
    elif isinstance(exc, RepositoryNotFoundError):
        why = f"the hub repository {spec.repo} does not exist or needs authentication."
    elif isinstance(exc, RevisionNotFoundError):
        why = f"the hub repository {spec.repo} has no such revision ({_one_line(exc)})."
    elif isinstance(exc, EntryNotFoundError):
        why = f"the hub repository {spec.repo} has no file {filename}."
    elif isinstance(exc, HfHubHTTPError):
        why = f"downloading {where} into {cache_dir} failed ({_one_line(exc)})."
    else:
        why = f"downloading {where} into {cache_dir} failed ({_one_line(exc)})."
    return ModelUnavailable(
        f"Model {spec.name!r} is not available: {why}\n"
        "To fix it, download it beforehand where the network is available (it goes to the same"
        " HF_HOME/HF_HUB_CACHE cache):\n"
        f"  {_download_command(spec)}\n"
        "or use a local model folder with --model-path DIR (model.onnx + preprocessor_config.json),\n"
        "or the weight-free perceptual hash with --model phash."
    )


def _hub_file(
    spec: ModelSpec, filename: str, revision: str | None, cache_dir: Path, offline: bool
) -> Path:
    """One file of ``spec.repo``: from the cache if there, else downloaded (unless offline)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import LocalEntryNotFoundError

    assert spec.repo is not None
    try:
        return Path(
            hf_hub_download(
                spec.repo,
                filename,
                revision=revision,
                cache_dir=str(cache_dir),
                local_files_only=True,
            )
        )
    except LocalEntryNotFoundError as exc:
        if offline:
            raise _hub_failure(spec, filename, cache_dir, offline, exc) from exc
    except Exception as exc:  # invalid repo id, unreadable cache...: never a traceback
        raise _hub_failure(spec, filename, cache_dir, offline, exc) from exc
    logger.info("downloading %s from the Hugging Face hub (%s)", filename, spec.repo)
    try:
        _check_hub_reachable()
        return Path(
            hf_hub_download(spec.repo, filename, revision=revision, cache_dir=str(cache_dir))
        )
    except Exception as exc:  # HTTP, connection, offline-mode and cache errors alike
        raise _hub_failure(spec, filename, cache_dir, offline, exc) from exc


def _snapshot_commit(path: Path) -> str | None:
    """The commit hash in a ``.../snapshots/<commit>/<file>`` cache path."""
    parts = path.parts
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "snapshots":
            return parts[index + 1]
    return None


def _external_data_files(model_path: Path) -> list[str]:
    """Names of the external-data files an ONNX model references (``model.onnx_data``...).

    Scans the serialized protobuf for ``StringStringEntryProto {key: "location", value: X}``
    entries instead of parsing the whole model, so it costs one pass over the bytes and no
    dependency on the ``onnx`` package.
    """
    marker = b"\x0a\x08location\x12"
    found: list[str] = []
    try:
        size = model_path.stat().st_size
        if size == 0:
            return []
        with (
            model_path.open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data,
        ):
            start = data.find(marker)
            while start != -1:
                pos = start + len(marker)
                length, shift = 0, 0
                while pos < size and shift < 35:
                    byte = data[pos]
                    pos += 1
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                raw = data[pos : pos + length] if 0 < length <= 512 else b""
                try:
                    name = raw.decode("utf-8")
                except UnicodeDecodeError:
                    name = ""
                parts = name.replace("\\", "/").split("/")
                safe = name.isprintable() and ".." not in parts and not name.startswith("/")
                if name and safe and name not in found:
                    found.append(name)
                start = data.find(marker, pos)
    except (OSError, ValueError):
        return []
    return found


def resolve_hub_preprocessor(spec: ModelSpec) -> Path | None:
    """Only the preprocessor config of a hub model (cached, or downloaded unless offline)."""
    if not spec.preprocessor_file:
        return None
    _check_hub_spec(spec)
    return _hub_file(spec, spec.preprocessor_file, None, hub_cache_dir(), hub_offline())


def _check_hub_spec(spec: ModelSpec) -> None:
    if spec.kind != "onnx" or not spec.repo or not spec.model_file:
        raise InvalidInput(f"model {spec.name!r} is not an ONNX model from the Hugging Face hub")


def resolve_hub_model(spec: ModelSpec) -> ModelFiles:
    """The files of a registry model, from huggingface_hub's cache or downloaded into it.

    Fetches ``spec.model_file``, then ``spec.preprocessor_file`` and any external-data
    file the model references, all at the same commit. Raises ``ModelUnavailable`` with a
    short "what was tried / how to fix it" paragraph when a file cannot be obtained.
    """
    _check_hub_spec(spec)
    assert spec.model_file is not None
    cache_dir = hub_cache_dir()
    offline = hub_offline()
    model_path = _hub_file(spec, spec.model_file, None, cache_dir, offline)
    commit = _snapshot_commit(model_path)
    preprocessor = None
    if spec.preprocessor_file:
        preprocessor = _hub_file(spec, spec.preprocessor_file, commit, cache_dir, offline)
    folder = posixpath.dirname(spec.model_file)
    for name in _external_data_files(model_path):
        logger.debug("%s references external data %s", spec.model_file, name)
        _hub_file(spec, posixpath.join(folder, name), commit, cache_dir, offline)
    return ModelFiles(
        model_path=model_path,
        preprocessor_config=preprocessor,
        source=f"hf:{spec.repo}@{commit or 'unknown'}",
    )


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
    return data


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
    if pooling in ("cls", "mean"):
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
    return embedder_for_spec(get_model_spec(name), threads=threads)
