"""Binding a collection to its model: the recorded model record (see ``identity``) checked
against the model about to be used, what changed recorded through a ``save`` callback (the
collection writes its own marker; nothing here touches a collection folder)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ModelMismatch, ModelUnavailable
from .embedders.base import Embedder
from .identity import (
    CONTENT_KEYS,
    HashCache,
    content_identity,
    differences,
    fast_resize_of,
    probe,
)
from .loader import embedder_from_config, load_embedder

#: Writes (model record, hash cache) into the collection; False when it could not.
Save = Callable[[dict[str, Any], HashCache], bool]


def bind(
    stored: dict[str, Any], current: dict[str, Any], where: str
) -> tuple[dict[str, Any], str | None]:
    """Check the model about to be used (``current``: identity, ``model_path`` and content
    keys) against a collection's ``stored`` record.

    Returns (the record to store from now on, a note for the user or None); raises
    ``ModelMismatch`` naming what differs. A local model is the same model wherever its
    folder is when its content matches (the folder name is only a label): the record then
    takes the new ``model_path``. Records without content keys (older collections) are
    compared by name, dims and metric and get the content keys recorded.
    """
    has_content = bool(stored.get("onnx_sha256")) and bool(current.get("onnx_sha256"))
    both_local = bool(stored.get("model_path")) and bool(current.get("model_path"))
    diffs = differences(stored, current) if has_content else []
    if stored.get("name") != current.get("name") and not (has_content and both_local):
        diffs.insert(0, f"name {stored.get('name')!r} vs {current.get('name')!r}")
    if not has_content and not diffs:
        diffs = [
            f"{k} {stored.get(k)} vs {current.get(k)}"
            for k in ("dim", "metric")
            if stored.get(k) != current.get(k)
        ]
    if diffs:
        shown = current.get("model_path") or current.get("name")
        raise ModelMismatch(
            f"collection {where} was built with model {stored.get('name')!r}"
            f" ({stored.get('dim')} dims); {shown} is a different model: {'; '.join(diffs)}."
            " Use the same model, or a new --collection."
        )
    record = dict(stored)
    record.update({k: current[k] for k in CONTENT_KEYS if k in current})
    note = None
    old_path, new_path = stored.get("model_path"), current.get("model_path")
    if old_path and new_path and old_path != new_path:
        record["model_path"] = new_path
        same = "same ONNX sha256 and preprocessing" if has_content else "same name and dims"
        note = f"model moved: {old_path} -> {new_path} ({same}); collection.json updated"
    return record, note


def bind_model(
    config: dict[str, Any], embedder: Embedder, model_path: str | None, where: str, save: Save
) -> str | None:
    """Check ``embedder`` (found at ``model_path``) against ``config["model"]``; record its
    content keys (older collections), new place or refreshed hash cache through ``save``
    and in ``config``. Returns a note for the user (the model moved) or None."""
    cache = list(config.get("model_hash_cache") or [])
    content, new_cache = content_identity(embedder, cache)
    current = {**embedder.identity(), "model_path": model_path, **content}
    record, note = bind(config["model"], current, where)
    changed = record != config["model"] or new_cache != cache
    if changed and save(record, new_cache):
        config["model"] = record
        config["model_hash_cache"] = new_cache
    return note


def stored_embedder(
    config: dict[str, Any], where: str, threads: int | None, save: Save
) -> Embedder:
    """The embedder a collection's ``config`` records, loaded and checked."""
    stored = config["model"]
    try:
        embedder = embedder_from_config(stored, threads)
        bind_model(config, embedder, stored.get("model_path"), where, save)
    except ModelUnavailable as exc:
        path = stored.get("model_path")
        if not path or Path(path).is_dir():
            raise
        raise ModelUnavailable(
            f"the model folder of collection {where}, {path}, is missing. If it moved, point"
            f" the collection at its new place: lookalike index --model-path NEWPLACE"
            f" --collection {where}"
        ) from exc
    return embedder


def new_record(
    embedder: Embedder, model_path: str | os.PathLike[str] | None
) -> tuple[dict[str, Any], HashCache]:
    """(the model record of a new collection, its hash cache); probes the model first."""
    probe(embedder)
    record = embedder.identity()
    record["model_path"] = str(Path(model_path).resolve()) if model_path else None
    content, cache = content_identity(embedder, [])
    record.update(content)
    return record, cache


def bind_requested(
    config: dict[str, Any],
    model: str | None,
    model_path: str | os.PathLike[str] | None,
    threads: int | None,
    where: str,
    save: Save,
    fast_resize: bool = False,
) -> tuple[Embedder, str | None]:
    """The model the user asked for, loaded, probed and checked against ``config`` (see
    ``bind_model``). On ``ModelMismatch``, ``exc.requested`` is the requested embedder."""
    requested = load_embedder(model, model_path, threads=threads, fast_resize=fast_resize)
    path = str(Path(model_path).resolve()) if model_path else None
    try:
        if path is None:  # a registry model: its name and dims refuse it before loading
            bind(config["model"], {**requested.identity(), "model_path": None}, where)
        probe(requested)
        return requested, bind_model(config, requested, path, where, save)
    except ModelMismatch as exc:
        exc.requested = requested
        raise


def check_fast_resize(record: dict[str, Any], requested: bool, where: object) -> bool:
    """Whether a collection resizes fast: as recorded (remembered); asking for it on a
    collection whose vectors came from the reference resize is refused."""
    stored = fast_resize_of(record)
    if requested and not stored:
        raise ModelMismatch(
            f"collection {where} was built without --fast-resize: its vectors come from the"
            " reference resize. Use a new --collection for --fast-resize."
        )
    return stored


def model_summary(record: dict[str, Any]) -> dict[str, Any]:
    """What ``info`` shows of a model record (``model_present``: whether a local model's
    folder is still there; None for registry models)."""
    path = record.get("model_path")
    return {
        "model": record["name"],
        "model_path": path,
        "model_present": Path(path).is_dir() if path else None,
        "model_sha256": record.get("onnx_sha256"),
        "dim": record["dim"],
        "metric": record["metric"],
        "fast_resize": fast_resize_of(record),
    }
