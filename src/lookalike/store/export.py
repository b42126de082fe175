"""Export a collection's items and vectors (no pickle: .npy arrays, JSON Lines, Parquet)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import InvalidInput, MissingDependency
from .catalog import Catalog
from .vectors import VectorFile

FORMATS = ("npy", "parquet")


def export_collection(
    catalog: Catalog, vectors_file: VectorFile, binary: bool, fmt: str, out: Path
) -> int:
    """Write all items; return how many. ``npy``: ``out`` is a folder with ``vectors.npy``
    (row i belongs to line i of ``items.jsonl``). ``parquet``: one file, a ``vector`` column."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    items = list(catalog.items())
    slots = np.asarray([i.slot for i in items], dtype=np.int64)
    vectors = vectors_file.read(slots, catalog.next_slot)
    rows = [
        {
            "id": i.id,
            "path": i.path,
            "url": i.url,
            "label": i.label,
            "metadata": i.metadata,
            "width": i.width,
            "height": i.height,
            "phash": i.phash,
            "content_hash": i.content_hash,
        }
        for i in items
    ]
    if fmt == "npy":
        if out.exists() and not out.is_dir():
            raise InvalidInput(f"{out} exists and is not a folder; npy export writes a folder")
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "vectors.npy.tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, vectors, allow_pickle=False)
        os.replace(tmp, out / "vectors.npy")
        with open(out / "items.jsonl.tmp", "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(out / "items.jsonl.tmp", out / "items.jsonl")
        return len(rows)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependency(
            "parquet export needs pyarrow: pip install 'lookalike[parquet]'"
        ) from None
    width = vectors.shape[1] if vectors.ndim == 2 else vectors_file.width
    value_type = pa.uint8() if binary else pa.float32()
    flat = pa.array(vectors.reshape(-1), type=value_type)
    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "path": [r["path"] for r in rows],
            "url": [r["url"] for r in rows],
            "label": [r["label"] for r in rows],
            "metadata": [json.dumps(r["metadata"], ensure_ascii=False) for r in rows],
            "width": pa.array([r["width"] for r in rows], type=pa.int64()),
            "height": pa.array([r["height"] for r in rows], type=pa.int64()),
            "phash": pa.array([r["phash"] for r in rows], type=pa.int64()),
            "vector": pa.FixedSizeListArray.from_arrays(flat, width),
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out.with_name(out.name + ".tmp")
    pq.write_table(table, tmp_path)
    os.replace(tmp_path, out)
    return len(rows)
