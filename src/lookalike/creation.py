"""Creating a collection folder for a model: the marker is written last, under the folder's
lock, so that processes racing to create it take turns (used by ``Collection.open``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .models.binding import new_record
from .models.embedders.base import Embedder
from .store import layout
from .store.layout import MARKER


def create_new(
    root: Path, embedder: Embedder, model_path: str | os.PathLike[str] | None
) -> dict[str, Any] | None:
    """The new collection's config; None when another process created it meanwhile (open
    it then). The model is probed first: a model that cannot be used creates nothing."""
    record = new_record(embedder, model_path)
    root.mkdir(parents=True, exist_ok=True)
    with layout.write_lock(root):
        if (root / MARKER).is_file():
            return None
        layout.check_creatable(root)
        return create(root, embedder, model_path, record)


def create(
    root: Path,
    embedder: Embedder,
    model_path: str | os.PathLike[str] | None,
    record: tuple[dict[str, Any], Any] | None = None,
) -> dict[str, Any]:
    """Write the folder (or rewrite an empty collection's marker); returns its config."""
    model_info, cache = record or new_record(embedder, model_path)
    config = layout.new_config(model_info, str(embedder.row_dtype), embedder.row_width, cache)
    layout.create_folder(root, config)
    return config
