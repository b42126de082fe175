"""The outbox: which items changed locally and must still be published to a remote store.

A collection whose vectors live in Milvus (and metadata perhaps in Redis) keeps its ingest
bookkeeping in the local catalog. Triggers on the catalog's ``items`` table write the id of
every inserted, deleted or changed item into ``outbox`` **in the same transaction** as the
change, so no committed change can be forgotten, whatever is killed when. The publisher
(``distributed/publisher.py``) reads the outbox in order, makes the remote side match the
catalog for those ids (idempotently), and only then deletes the rows it handled. A crash
in between leaves the rows: the next write operation publishes them again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

_TRIGGERS = {
    "outbox_insert": "AFTER INSERT ON items BEGIN INSERT INTO outbox(id) VALUES (NEW.id); END",
    "outbox_delete": "AFTER DELETE ON items BEGIN INSERT INTO outbox(id) VALUES (OLD.id); END",
    # What a remote copy shows: id, vector (slot), location, label, metadata and sizes. A
    # renamed item (new id) is published as the old id removed and the new one added.
    "outbox_update": (
        "AFTER UPDATE OF id, slot, source, path, url, label, metadata, size, width, height"
        " ON items BEGIN"
        " INSERT INTO outbox(id) SELECT OLD.id WHERE OLD.id IS NOT NEW.id;"
        " INSERT INTO outbox(id) VALUES (NEW.id); END"
    ),
}


def enable(db: sqlite3.Connection, *, backfill: bool) -> None:
    """Install the triggers (idempotent). ``backfill``: queue every stored item as well, for
    a collection that gets a remote store after items were added."""
    with db:
        for name, body in _TRIGGERS.items():
            db.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")
        if backfill:
            db.execute("INSERT INTO outbox(id) SELECT id FROM items ORDER BY slot")


def enabled(db: sqlite3.Connection) -> bool:
    row = db.execute(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'outbox_%'"
    ).fetchone()
    return int(row[0]) == len(_TRIGGERS)


def pending(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def next_batch(db: sqlite3.Connection, limit: int) -> tuple[list[str], int]:
    """Up to ``limit`` queued rows, oldest first: (their distinct ids, the last seq read);
    (``[]``, 0) when the outbox is empty."""
    rows = db.execute("SELECT seq, id FROM outbox ORDER BY seq LIMIT ?", (limit,)).fetchall()
    if not rows:
        return [], 0
    return list(dict.fromkeys(r[1] for r in rows)), int(rows[-1][0])


def done(db: sqlite3.Connection, upto: int) -> None:
    """Forget the queued rows up to seq ``upto`` (they are published)."""
    with db:
        db.execute("DELETE FROM outbox WHERE seq <= ?", (upto,))


def queue(db: sqlite3.Connection, ids: Sequence[str]) -> None:
    """Queue ``ids`` again (e.g. to republish them)."""
    with db:
        db.executemany("INSERT INTO outbox(id) VALUES (?)", [(i,) for i in ids])
