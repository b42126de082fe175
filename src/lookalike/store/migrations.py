"""The catalog's numbered schema migrations (the pattern of llm's
``embeddings_migrations.py``): position i+1 of :data:`MIGRATIONS` upgrades to schema version
i+1. Append, never edit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable


def _m001_initial(db: sqlite3.Connection) -> None:
    db.executescript(
        """
        CREATE TABLE items (
            id TEXT PRIMARY KEY,
            slot INTEGER NOT NULL UNIQUE,
            source TEXT NOT NULL,
            path TEXT UNIQUE,
            url TEXT,
            label TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            size INTEGER,
            mtime_ns INTEGER,
            content_hash TEXT,
            pixel_hash BLOB,
            phash INTEGER,
            width INTEGER,
            height INTEGER,
            status TEXT NOT NULL DEFAULT 'ok',
            added_at REAL NOT NULL
        );
        CREATE INDEX items_content_hash ON items(content_hash);
        CREATE INDEX items_source ON items(source);
        CREATE INDEX items_label ON items(label);
        CREATE TABLE skipped (
            path TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            size INTEGER,
            mtime_ns INTEGER,
            at REAL NOT NULL
        );
        CREATE INDEX skipped_source ON skipped(source);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """
    )


# Pixel hash kinds (the functions are in ingest/decode.py): catalogs from before schema 2
# hold SHA-1 pixel hashes and keep that kind; new catalogs use XXH3-128.
LEGACY_PIXEL_HASH = "sha1-16"
CURRENT_PIXEL_HASH = "xxh3-128"


def _m002_pixel_hash_kind(db: sqlite3.Connection) -> None:
    """Record how pixel hashes are computed, so one collection never mixes two kinds (an
    older lookalike, which knows only SHA-1, refuses the newer schema)."""
    stored = db.execute("SELECT 1 FROM items WHERE pixel_hash IS NOT NULL LIMIT 1").fetchone()
    kind = LEGACY_PIXEL_HASH if stored else CURRENT_PIXEL_HASH
    db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('pixel_hash_kind', ?)", (kind,))


def _m003_outbox(db: sqlite3.Connection) -> None:
    """The ids whose items changed and are not yet published to a remote store (Milvus,
    Redis): filled by triggers in the same transaction as the change, emptied once the
    change is published (``store/outbox.py``). Collections without a remote store have the
    table but no triggers."""
    db.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL)")


# Numbered migrations: position i+1 is schema version i+1. Append, never edit.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _m001_initial,
    _m002_pixel_hash_kind,
    _m003_outbox,
]
SCHEMA_VERSION = len(MIGRATIONS)
