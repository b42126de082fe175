"""How an item's record is written to its Redis hash and read back (``redis_meta.py``).

The hash holds the :data:`~.redis_scripts.ITEM_FIELDS`, as text, plus ``vector``: the item's
stored vector as raw bytes (float32 rows, or packed bits for hashes) when the collection keeps
its vectors in Redis too (``--redis-vectors``), else "". Records are read field by field
(HMGET), never whole (HGETALL), so the vector bytes are only read where they are asked for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from . import redis_scripts as scripts
from .catalog import Item

# What a record read returns: the state first, then every field but the vector.
READ_FIELDS = ("state",) + tuple(f for f in scripts.ITEM_FIELDS if f != "vector")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _opt_int(value: str | None) -> int | None:
    return int(value) if value else None


def fields(item: Item, vector: bytes | None = None) -> list[str | bytes]:
    """The id and the ITEM_FIELDS values of an item, as the scripts take them."""
    metadata = json.dumps(item.metadata or {}, ensure_ascii=False, allow_nan=False)
    values: dict[str, str | bytes] = {
        "path": _text(item.path),
        "url": _text(item.url),
        "label": _text(item.label),
        "metadata": metadata,
        "source": _text(item.source),
        "size": _text(item.size),
        "width": _text(item.width),
        "height": _text(item.height),
        "added_at": repr(float(item.added_at or 0.0)),
        "vector": vector or b"",
    }
    return [item.id] + [values[name] for name in scripts.ITEM_FIELDS]


def item_args(items: Sequence[Item], vectors: Sequence[bytes | None] | None) -> list[str | bytes]:
    """The scripts' per-item arguments for ``items``, each with its vector bytes (or none)."""
    args: list[str | bytes] = []
    for item, vector in zip(items, vectors or [None] * len(items), strict=True):
        args += fields(item, vector)
    return args


def read_item(item_id: str, values: list[str | None]) -> Item | None:
    """The ready item whose READ_FIELDS values (HMGET's reply) are ``values``; else None."""
    row = dict(zip(READ_FIELDS, values, strict=True))
    if row["state"] != "ready":
        return None
    return Item(
        id=item_id,
        slot=-1,
        source=row["source"] or "",
        path=row["path"] or None,
        url=row["url"] or None,
        label=row["label"] or None,
        metadata=json.loads(row["metadata"]) if row["metadata"] else {},
        size=_opt_int(row["size"]),
        width=_opt_int(row["width"]),
        height=_opt_int(row["height"]),
        status="ok",
        added_at=float(row["added_at"] or 0.0),
    )
