"""A model's content identity: what a collection records to refuse any other model.

Name, dims and metric are not enough: a different model in a folder of the same name (or a
model file changed in place) would mix incomparable vectors. So a collection also records

- ``onnx_sha256``: sha256 of the ONNX file (``onnx_data_sha256``: of each external-data file),
- ``preprocess`` and ``preprocess_sha256``: the canonical preprocessing (every
  ``ImageProcessorSpec`` field that changes the pixels, plus the output name and pooling)
  and the sha256 of its canonical JSON,
- ``resolved``: where the files were found (``hf:<repo>@<commit>`` for hub models).

Hashing a big ONNX file takes a while, so digests are cached by (path, size, mtime_ns):
the cache travels with the collection (``collection.json``) and is passed in and out here.
Nothing here reads or writes a collection; the caller does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelUnavailable
from .embedders.base import Embedder
from .embedders.onnx import OnnxEmbedder
from .hub import _external_data_files

#: The keys ``content_identity`` adds to a collection's model record.
CONTENT_KEYS = ("onnx_sha256", "onnx_data_sha256", "preprocess", "preprocess_sha256", "resolved")
#: Keys whose difference means "another model" (``resolved`` only says where it was found).
COMPARED_KEYS = ("onnx_sha256", "onnx_data_sha256", "preprocess_sha256")

HashCache = list[dict[str, Any]]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cached_sha256(path: Path, cache: HashCache) -> tuple[str, dict[str, Any]]:
    """sha256 of ``path``, reused from ``cache`` when (path, size, mtime_ns) match."""
    real = str(Path(path).resolve())
    st = os.stat(real)
    for entry in cache:
        if (entry.get("path"), entry.get("size"), entry.get("mtime_ns")) == (
            real,
            st.st_size,
            st.st_mtime_ns,
        ) and isinstance(entry.get("sha256"), str):
            return entry["sha256"], entry
    entry = {
        "path": real,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": file_sha256(Path(real)),
    }
    return entry["sha256"], entry


def canonical_preprocess(preparer: Any, output: str, pooling: str) -> dict[str, Any]:
    """The preprocessing as plain JSON data: the spec's pixel-changing fields, output, pooling."""
    if dataclasses.is_dataclass(preparer) and not isinstance(preparer, type):
        fields = {
            f.name: getattr(preparer, f.name) for f in dataclasses.fields(preparer) if f.compare
        }
    else:
        fields = {"preparer": type(preparer).__qualname__}
    # lookalike's own optional steps appear only when on: existing identities stay the same
    if not fields.get("grayscale", True):
        del fields["grayscale"]
    if "clahe" in fields and fields["clahe"] is None:
        del fields["clahe"]
    if not fields.get("fast_resize", True):
        del fields["fast_resize"]
    data = json.loads(json.dumps(fields))  # tuples -> lists, as stored in collection.json
    data.update(output=output, pooling=pooling)
    return data


def fast_resize_of(record: dict[str, Any]) -> bool:
    """Whether a model record's preprocessing resizes with ``--fast-resize``."""
    return bool((record.get("preprocess") or {}).get("fast_resize"))


def preprocess_sha256(preprocess: dict[str, Any]) -> str:
    text = json.dumps(preprocess, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def probe(embedder: Embedder) -> None:
    """Load the model, build its preparer and run one image through: every way a model can
    be unusable shows up here, before anything is created."""
    from PIL import Image

    from .embedders.external import ExternalEmbedder

    if isinstance(embedder, ExternalEmbedder):  # vectors made elsewhere: nothing to run
        return
    embedder.load()
    preparer = embedder.preparer()
    embedder.embed([np.asarray(preparer(Image.new("RGB", (64, 48), (120, 130, 140))))])


def content_identity(embedder: Embedder, cache: HashCache) -> tuple[dict[str, Any], HashCache]:
    """(the content keys of ``embedder``'s model, the updated hash cache).

    Empty for models without files (phash, external vectors). Loads the model.
    """
    if not isinstance(embedder, OnnxEmbedder):
        return {}, cache
    embedder.load()
    files = embedder.files
    used: HashCache = []
    onnx_sha, entry = _cached_sha256(files.model_path, cache)
    used.append(entry)
    data: dict[str, str] = {}
    for name in _external_data_files(files.model_path):
        path = files.model_path.parent / name
        if not path.is_file():
            raise ModelUnavailable(f"{files.model_path} references missing external data {path}")
        data[name], entry = _cached_sha256(path, cache)
        used.append(entry)
    preprocess = canonical_preprocess(
        embedder.preparer(), embedder.output_name, embedder.spec.pooling
    )
    content: dict[str, Any] = {
        "onnx_sha256": onnx_sha,
        "preprocess": preprocess,
        "preprocess_sha256": preprocess_sha256(preprocess),
        "resolved": files.source,
    }
    if data:
        content["onnx_data_sha256"] = data
    kept = [e for e in cache if e.get("path") not in {u["path"] for u in used}]
    return content, (used + kept)[:16]


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two model records, in words (empty: the same model)."""
    out: list[str] = []
    for key, label in (("dim", "dims"), ("metric", "metric")):
        if stored.get(key) != current.get(key):
            out.append(f"{label} {stored.get(key)} vs {current.get(key)}")
    if stored.get("onnx_sha256") and stored.get("onnx_sha256") != current.get("onnx_sha256"):
        out.append(
            f"ONNX file sha256 {str(stored['onnx_sha256'])[:12]} vs"
            f" {str(current.get('onnx_sha256'))[:12]}"
        )
    if stored.get("onnx_sha256") and stored.get("onnx_data_sha256") != current.get(
        "onnx_data_sha256"
    ):
        out.append("ONNX external data files")
    if stored.get("preprocess_sha256") and stored.get("preprocess_sha256") != current.get(
        "preprocess_sha256"
    ):
        old, new = stored.get("preprocess") or {}, current.get("preprocess") or {}
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        detail = ", ".join(f"{k} {old.get(k)} vs {new.get(k)}" for k in keys) or "hash differs"
        out.append(f"preprocessing ({detail})")
    return out
