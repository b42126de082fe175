"""Planning a ``spark-index`` job on the driver: sources -> files -> shards.

Local sources (plain paths and ``file:`` URIs: folders, files, manifests) are read with
:func:`lookalike.ingest.sources.iter_entries`, so the job sees exactly the files, ids,
labels and metadata that ``lookalike index`` sees. Other filesystems (``hdfs:``, ``s3a:``...)
are listed with Spark's ``binaryFile`` source (recursive, image extensions only; the file
contents are not read here); a manifest there is fetched to the driver and read the same
way, its relative paths resolved against the manifest's folder.

Files go to shards by a hash of their location, so adding files changes only the shards they
fall in; the shard count is a power of two (about :data:`FILES_PER_SHARD` files each) unless
given. Each shard's name digests its file list (see :func:`shards.shard_name`).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import shards
from .sources import IMAGE_EXTENSIONS, Entry, is_manifest, iter_entries

FILES_PER_SHARD = 256

#: Columns of the task rows the executors receive (all strings).
TASK_COLUMNS = (
    "shard",
    "location",
    "path",
    "url",
    "source",
    "id",
    "label",
    "metadata",
    "reason",
    "detail",
    "size",
    "mtime_ns",
)


@dataclass
class FileTask:
    """One file (or one bad manifest row) of the job. A non-empty ``reason`` is a skip
    decided on the driver: the executor writes it without reading anything."""

    location: str  # what the executor reads: a local path or a URI
    path: str | None  # the item's path: the local path, None for remote files
    url: str | None
    source: str
    id: str
    label: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    detail: str = ""
    size: int | None = None
    mtime_ns: int | None = None

    def row(self, shard: str) -> tuple[Any, ...]:
        return (
            shard,
            self.location,
            self.path,
            self.url,
            self.source,
            self.id,
            self.label,
            json.dumps(self.metadata, ensure_ascii=False, default=str),
            self.reason,
            self.detail,
            None if self.size is None else str(self.size),  # strings: no float64 on the way
            None if self.mtime_ns is None else str(self.mtime_ns),
        )


@dataclass
class Shard:
    name: str
    tasks: list[FileTask]


def plan_tasks(spark: Any, sources: Sequence[str]) -> list[FileTask]:
    """Every file of ``sources`` as a task, with ids made unique as ``index`` does."""
    tasks: list[FileTask] = []
    ids = _Ids()
    for source in sources:
        text = os.fspath(source)
        if shards.local_path(text) is not None:
            tasks += _local_tasks(text, ids)
        elif is_manifest(Path(text.rstrip("/"))):
            tasks += _remote_manifest_tasks(text, ids)
        else:
            tasks += _remote_folder_tasks(spark, text, ids)
    return tasks


def plan_shards(tasks: list[FileTask], key: dict[str, Any], partitions: int | None) -> list[Shard]:
    """Tasks grouped into shards by a hash of their location; empty shards are dropped."""
    n = partitions or default_partitions(len(tasks))
    groups: list[list[FileTask]] = [[] for _ in range(n)]
    for task in tasks:
        digest = hashlib.sha256(task.location.encode()).digest()
        groups[int.from_bytes(digest[:8], "big") % n].append(task)
    out = []
    for group in groups:
        if group:
            group.sort(key=lambda t: t.location)
            files = [(t.location, t.size, t.mtime_ns) for t in group]
            out.append(Shard(shards.shard_name(key, files), group))
    return out


def default_partitions(files: int) -> int:
    """The power of two giving at most about FILES_PER_SHARD files per shard."""
    n = 1
    while n * FILES_PER_SHARD < files:
        n *= 2
    return n


class _Ids:
    """Unique item ids, as the indexer makes them: the manifest id or the relative path;
    on a clash ``<source folder name>/<id>``, then ``#2``, ``#3``..."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def __call__(self, wanted: str, source: str) -> str:
        candidate = wanted
        if candidate in self.taken:
            candidate = f"{posixpath.basename(source.rstrip('/'))}/{wanted}"
        base, n = candidate, 2
        while candidate in self.taken:
            candidate = f"{base}#{n}"
            n += 1
        self.taken.add(candidate)
        return candidate


def _bad_row(where: str, why: str, ids: _Ids) -> FileTask:
    source = where.rsplit(":", 1)[0]
    return FileTask(
        where, None, None, source, ids(where, source), None, {}, "bad-manifest-row", why
    )


def _local_tasks(source: str, ids: _Ids) -> list[FileTask]:
    bad: list[tuple[str, str]] = []
    entries = list(iter_entries([source], on_error=lambda where, why: bad.append((where, why))))
    tasks = [_bad_row(where, why, ids) for where, why in bad]
    for e in entries:
        wanted = e.id or e.relpath
        if e.path is None:  # a URL row: downloading is `lookalike index`'s job
            tasks.append(_url_task(e, ids(wanted, e.source)))
            continue
        path = str(e.path)
        size: int | None
        mtime: int | None
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size = mtime = None  # the executor reports it as unreadable
        tasks.append(
            FileTask(
                path, path, e.url, e.source, ids(wanted, e.source), e.label, e.metadata, "", "",
                size, mtime,
            )
        )  # fmt: skip
    return tasks


def _url_task(e: Entry, item_id: str) -> FileTask:
    url = e.url or ""
    return FileTask(
        url, None, url, e.source, item_id, e.label, e.metadata, "url-not-fetched",
        "spark-index reads files only; index URL rows with `lookalike index`",
    )  # fmt: skip


def _remote_folder_tasks(spark: Any, source: str, ids: _Ids) -> list[FileTask]:
    exts = sorted({e.lstrip(".") for e in IMAGE_EXTENSIONS})
    glob = "*.{" + ",".join(exts + [e.upper() for e in exts]) + "}"
    df = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .option("pathGlobFilter", glob)
        .load(source)
        .select("path", "length", "modificationTime")
    )
    root = urlparts_path(source).rstrip("/")
    tasks = []
    for row in sorted(df.collect(), key=lambda r: r["path"]):
        location = row["path"]
        rel_full = urlparts_path(location)
        rel = rel_full[len(root) :].lstrip("/") if rel_full.startswith(root) else rel_full
        if any(part.startswith(".") for part in rel.split("/")):
            continue  # hidden, as a local walk skips them
        if os.path.splitext(rel)[1].lower() not in IMAGE_EXTENSIONS:
            continue
        parent = posixpath.basename(posixpath.dirname(rel_full)) or None
        mtime = row["modificationTime"]
        mtime_ns = int(mtime.timestamp() * 1_000_000) * 1000 if mtime is not None else None
        tasks.append(
            FileTask(
                location, None, location, source, ids(rel, source), parent, {}, "", "",
                int(row["length"]), mtime_ns,
            )
        )  # fmt: skip
    return tasks


def urlparts_path(location: str) -> str:
    """The path part of a URI (unquoted), or the location itself."""
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(location).path) if shards.has_scheme(location) else location


def _remote_manifest_tasks(source: str, ids: _Ids) -> list[FileTask]:
    from urllib.parse import urlsplit

    name = posixpath.basename(urlsplit(source).path)
    parent = source.rstrip("/").rsplit("/", 1)[0]
    split = urlsplit(source)
    with tempfile.TemporaryDirectory(prefix="lookalike-manifest-") as tmp:
        local = Path(tmp) / name
        local.write_bytes(shards.read_bytes(source))
        bad: list[tuple[str, str]] = []
        entries = list(iter_entries([local], on_error=lambda where, why: bad.append((where, why))))
    tasks = [_bad_row(source + ":" + where.rsplit(":", 1)[1], why, ids) for where, why in bad]
    for e in entries:
        e.source = source
        wanted = e.id or e.relpath
        if e.path is None:
            tasks.append(_url_task(e, ids(wanted, source)))
            continue
        written = e.relpath
        if shards.has_scheme(written):
            location = written
        elif written.startswith("/"):
            location = f"{split.scheme}://{split.netloc}{written}"
        else:
            location = f"{parent}/{written}"
        tasks.append(
            FileTask(
                location, None, e.url or location, source, ids(wanted, source), e.label,
                e.metadata,
            )
        )  # fmt: skip
    return tasks
