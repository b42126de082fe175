"""Model files from the Hugging Face hub cache (huggingface_hub), resolved lazily, with a paragraph of advice when they are unavailable."""

from __future__ import annotations

import logging
import mmap
import os
import posixpath
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import InvalidInput, ModelUnavailable
from .registry import ModelSpec

if TYPE_CHECKING:
    pass


#: File names looked for in a local model folder, in order.
logger = logging.getLogger(__name__)

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


# -- text towers -------------------------------------------------------------------------


@dataclass(frozen=True)
class TextFiles:
    """The files of one resolved text tower: the ONNX model and its tokenizer."""

    model_path: Path
    tokenizer_path: Path
    source: str


def _text_as_spec(spec: ModelSpec) -> ModelSpec:
    """``spec`` with its text tower's repo and files in place of the image tower's, so the
    hub helpers (and their advice) serve the text tower unchanged."""
    assert spec.text is not None and spec.text.repo is not None
    return replace(
        spec,
        repo=spec.text.repo,
        model_file=spec.text.model_file,
        preprocessor_file=spec.text.tokenizer_file,
        text=None,
    )


def hub_text_cached(spec: ModelSpec) -> bool | None:
    """Whether a registry model's text tower is in the hub cache; None: it has none."""
    if spec.text is None or spec.text.repo is None:
        return None
    return hub_model_cached(_text_as_spec(spec))


def resolve_hub_text(spec: ModelSpec) -> TextFiles:
    """The text tower of a registry model: its ONNX model and tokenizer, from the cache or
    downloaded into it (unless offline), at one commit; ``ModelUnavailable`` otherwise."""
    tower = _text_as_spec(spec)
    assert tower.model_file is not None and tower.preprocessor_file is not None
    cache_dir = hub_cache_dir()
    offline = hub_offline()
    model_path = _hub_file(tower, tower.model_file, None, cache_dir, offline)
    commit = _snapshot_commit(model_path)
    tokenizer = _hub_file(tower, tower.preprocessor_file, commit, cache_dir, offline)
    folder = posixpath.dirname(tower.model_file)
    for name in _external_data_files(model_path):
        _hub_file(tower, posixpath.join(folder, name), commit, cache_dir, offline)
    return TextFiles(model_path, tokenizer, f"hf:{tower.repo}@{commit or 'unknown'}")
