"""The SQLite catalog: one row per item, skipped files, and collection metadata.

The schema is versioned with ``PRAGMA user_version`` and upgraded by numbered migrations
(the pattern of llm's ``embeddings_migrations.py``). Every change is a transaction, so a
crash leaves the catalog as of the last commit.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CollectionError
from .migrations import LEGACY_PIXEL_HASH, MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)


@dataclass
class Item:
    id: str
    slot: int
    source: str
    path: str | None
    url: str | None
    label: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    size: int | None = None
    mtime_ns: int | None = None
    content_hash: str | None = None
    pixel_hash: bytes | None = None
    phash: int | None = None
    width: int | None = None
    height: int | None = None
    status: str = "ok"
    added_at: float = 0.0

    def public(self) -> dict[str, Any]:
        """JSON-friendly view (no hashes as bytes)."""
        return {
            "id": self.id,
            "path": self.path,
            "url": self.url,
            "label": self.label,
            "metadata": self.metadata,
            "width": self.width,
            "height": self.height,
            "size": self.size,
        }


_ITEM_COLUMNS = (
    "id, slot, source, path, url, label, metadata, size, mtime_ns, content_hash, "
    "pixel_hash, phash, width, height, status, added_at"
)


def _row_to_item(row: Sequence[Any]) -> Item:
    return Item(
        id=row[0],
        slot=row[1],
        source=row[2],
        path=row[3],
        url=row[4],
        label=row[5],
        metadata=json.loads(row[6]) if row[6] else {},
        size=row[7],
        mtime_ns=row[8],
        content_hash=row[9],
        pixel_hash=row[10],
        phash=row[11],
        width=row[12],
        height=row[13],
        status=row[14],
        added_at=row[15],
    )


@dataclass
class Skipped:
    path: str
    source: str
    reason: str
    detail: str
    size: int | None
    mtime_ns: int | None


class Catalog:
    """Thin typed wrapper around the collection's SQLite database."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        try:
            if readonly:
                self.db = sqlite3.connect(
                    f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False
                )
            else:
                self.db = sqlite3.connect(path, timeout=30, check_same_thread=False)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise CollectionError(
                f"catalog {path} is not a readable SQLite database: {exc}"
            ) from None
        if version > SCHEMA_VERSION:
            raise CollectionError(
                f"catalog {path} has schema version {version}, newer than this lookalike "
                f"understands ({SCHEMA_VERSION}); upgrade lookalike"
            )
        if version < SCHEMA_VERSION:
            if readonly:
                raise CollectionError(
                    f"catalog {path} needs a schema upgrade; open it once read-write"
                )
            self._migrate(version)

    def _migrate(self, version: int) -> None:
        for number in range(version, SCHEMA_VERSION):
            log.info("migrating catalog %s to schema %d", self.path, number + 1)
            with self.db:
                MIGRATIONS[number](self.db)
                self.db.execute(f"PRAGMA user_version = {number + 1}")

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self.db.close()

    # -- meta -----------------------------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @property
    def pixel_hash_kind(self) -> str:
        """How this collection's pixel hashes are computed (see ingest/decode.py)."""
        return self.get_meta("pixel_hash_kind", LEGACY_PIXEL_HASH) or LEGACY_PIXEL_HASH

    @property
    def generation(self) -> int:
        """Bumped by every committed change to the set of items or their vectors."""
        return int(self.get_meta("generation", "0") or 0)

    def bump_generation(self) -> int:
        gen = self.generation + 1
        self.set_meta("generation", str(gen))
        return gen

    @property
    def next_slot(self) -> int:
        return int(self.get_meta("next_slot", "0") or 0)

    def reserve_slots(self, n: int) -> int:
        """Return the first of ``n`` fresh vector slots (committed with the transaction)."""
        first = self.next_slot
        self.set_meta("next_slot", str(first + n))
        return first

    # -- items ----------------------------------------------------------------------------

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def get(self, item_id: str) -> Item | None:
        row = self.db.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = ?", (item_id,)
        ).fetchone()
        return _row_to_item(row) if row else None

    def by_path(self, path: str) -> Item | None:
        row = self.db.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE path = ?", (path,)
        ).fetchone()
        return _row_to_item(row) if row else None

    def by_slots(self, slots: Iterable[int]) -> dict[int, Item]:
        slots = [int(s) for s in slots]
        out: dict[int, Item] = {}
        for start in range(0, len(slots), 500):
            chunk = slots[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE slot IN ({marks})", chunk
            ):
                item = _row_to_item(row)
                out[item.slot] = item
        return out

    def by_content_hash(self, content_hash: str) -> list[Item]:
        rows = self.db.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE content_hash = ?", (content_hash,)
        )
        return [_row_to_item(r) for r in rows]

    def items(self, source: str | None = None) -> Iterator[Item]:
        if source is None:
            rows = self.db.execute(f"SELECT {_ITEM_COLUMNS} FROM items ORDER BY slot")
        else:
            rows = self.db.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE source = ? ORDER BY slot", (source,)
            )
        for row in rows:
            yield _row_to_item(row)

    def slots(self) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT slot FROM items ORDER BY slot")]

    def slots_with_label(self, label: str) -> list[int]:
        """The vector slots of the items with this label (uses the label index)."""
        return [r[0] for r in self.db.execute("SELECT slot FROM items WHERE label = ?", (label,))]

    def slots_where(self, condition: str, params: Sequence[Any]) -> list[int]:
        """The vector slots of the items matching a SQL ``condition`` on the items table."""
        sql = f"SELECT slot FROM items WHERE {condition} ORDER BY slot"
        return [r[0] for r in self.db.execute(sql, list(params))]

    def has_label(self, label: str) -> bool:
        row = self.db.execute("SELECT 1 FROM items WHERE label = ? LIMIT 1", (label,)).fetchone()
        return row is not None

    def labels(self) -> list[str]:
        """Every distinct label of the items (uses the label index)."""
        rows = self.db.execute("SELECT DISTINCT label FROM items WHERE label IS NOT NULL")
        return sorted(r[0] for r in rows)

    def page(self, offset: int, limit: int, label: str | None = None) -> list[Item]:
        """``limit`` items from ``offset`` in the order they were added (by slot)."""
        where, args = ("WHERE label = ?", (label,)) if label is not None else ("", ())
        rows = self.db.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items {where} ORDER BY slot LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [_row_to_item(r) for r in rows]

    def label_counts(self) -> dict[str | None, int]:
        """Items per label (None: no label), from the label index."""
        rows = self.db.execute("SELECT label, COUNT(*) FROM items GROUP BY label")
        return {r[0]: int(r[1]) for r in rows}

    def id_exists(self, item_id: str) -> bool:
        return (
            self.db.execute("SELECT 1 FROM items WHERE id = ?", (item_id,)).fetchone() is not None
        )

    def insert(self, item: Item) -> None:
        self.db.execute(
            f"INSERT INTO items({_ITEM_COLUMNS}) VALUES({','.join('?' * 16)})",
            (
                item.id,
                item.slot,
                item.source,
                item.path,
                item.url,
                item.label,
                json.dumps(item.metadata, ensure_ascii=False, default=str),
                item.size,
                item.mtime_ns,
                item.content_hash,
                item.pixel_hash,
                item.phash,
                item.width,
                item.height,
                item.status,
                item.added_at or time.time(),
            ),
        )

    def update_location(
        self,
        item_id: str,
        *,
        new_id: str,
        path: str | None,
        source: str,
        label: str | None,
        metadata: dict[str, Any],
        size: int | None,
        mtime_ns: int | None,
        url: str | None,
    ) -> None:
        """Rename/move an item without touching its vector."""
        self.db.execute(
            "UPDATE items SET id = ?, path = ?, source = ?, label = ?, metadata = ?, size = ?, "
            "mtime_ns = ?, url = ? WHERE id = ?",
            (
                new_id,
                path,
                source,
                label,
                json.dumps(metadata, ensure_ascii=False, default=str),
                size,
                mtime_ns,
                url,
                item_id,
            ),
        )

    def set_pixel_hash(self, item_id: str, value: bytes) -> None:
        """Record a full-resolution pixel hash computed after indexing (drafted items)."""
        self.db.execute("UPDATE items SET pixel_hash = ? WHERE id = ?", (value, item_id))

    def set_pixel_hashes(self, values: dict[str, bytes]) -> None:
        """Record several pixel hashes (by item id) in one transaction."""
        with self.transaction():
            for item_id, value in values.items():
                self.set_pixel_hash(item_id, value)

    def update_stat(self, item_id: str, size: int | None, mtime_ns: int | None) -> None:
        self.db.execute(
            "UPDATE items SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, item_id)
        )

    def delete(self, item_ids: Iterable[str]) -> list[int]:
        """Delete items; return the vector slots they used."""
        freed: list[int] = []
        for item_id in item_ids:
            row = self.db.execute("SELECT slot FROM items WHERE id = ?", (item_id,)).fetchone()
            if row is not None:
                freed.append(int(row[0]))
                self.db.execute("DELETE FROM items WHERE id = ?", (item_id,))
        return freed

    # -- skipped files --------------------------------------------------------------------

    def record_skip(self, skip: Skipped) -> None:
        self.db.execute(
            "INSERT INTO skipped(path, source, reason, detail, size, mtime_ns, at) "
            "VALUES(?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET source = excluded.source, "
            "reason = excluded.reason, detail = excluded.detail, size = excluded.size, "
            "mtime_ns = excluded.mtime_ns, at = excluded.at",
            (
                skip.path,
                skip.source,
                skip.reason,
                skip.detail,
                skip.size,
                skip.mtime_ns,
                time.time(),
            ),
        )

    def get_skip(self, path: str) -> Skipped | None:
        row = self.db.execute(
            "SELECT path, source, reason, detail, size, mtime_ns FROM skipped WHERE path = ?",
            (path,),
        ).fetchone()
        return Skipped(*row) if row else None

    def clear_skip(self, path: str) -> None:
        self.db.execute("DELETE FROM skipped WHERE path = ?", (path,))

    def skipped(self, source: str | None = None) -> list[Skipped]:
        sql = "SELECT path, source, reason, detail, size, mtime_ns FROM skipped"
        args: tuple[Any, ...] = ()
        if source is not None:
            sql += " WHERE source = ?"
            args = (source,)
        return [Skipped(*row) for row in self.db.execute(sql + " ORDER BY path", args)]

    def transaction(self) -> sqlite3.Connection:
        """``with catalog.transaction():`` commits on success, rolls back on error."""
        return self.db
