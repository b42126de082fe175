"""The output of ``lookalike spark-index``: Parquet shards plus ``_lookalike.json``.

An output folder (local, ``file:``, ``hdfs:``, ``s3a:``...) holds

* ``shard-<digest>.parquet``: one per planned partition. The digest hashes the model
  identity, the decode settings and the sorted (path, size, mtime) list of the partition's
  files, so a rerun of the same job finds the shards it already wrote and redoes only the
  missing ones. Each shard is written under a temporary name and renamed into place, so a
  shard that exists is complete.
* ``_lookalike.json``: written last, when every shard exists: the model record (name, dims,
  metric, ONNX and preprocessing sha256), the decode limits and the list of shards. The
  import reads only the shards it lists, so leftovers of older runs are never imported.

Every shard has the columns of :data:`COLUMNS`: one row per file, ``status`` ``ok`` (with a
``vector``: ``list<float32>``, or ``binary`` packed bits for hash models) or ``skipped``
(with ``reason`` and ``detail``, no vector).

Files are reached through :func:`filesystem`: plain paths and ``file:`` URIs on the local
disk, anything else through ``pyarrow.fs`` (``s3a://`` is read as ``s3://``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import InvalidInput

FORMAT = "lookalike-spark/1"
JOB_FILE = "_lookalike.json"
SHARD_PREFIX = "shard-"
SHARD_SUFFIX = ".parquet"
TMP_MARK = ".tmp-"

#: (name, arrow type name) of every shard column; ``vector`` depends on the model.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "string"),
    ("path", "string"),
    ("url", "string"),
    ("source", "string"),
    ("label", "string"),
    ("metadata", "string"),
    ("status", "string"),
    ("reason", "string"),
    ("detail", "string"),
    ("size", "int64"),
    ("mtime_ns", "int64"),
    ("content_hash", "string"),
    ("pixel_hash", "binary"),
    ("phash", "int64"),
    ("width", "int32"),
    ("height", "int32"),
)


def has_scheme(text: str) -> bool:
    """True for ``scheme:...`` locations other than Windows drive letters."""
    head, sep, _ = text.partition(":")
    return bool(sep) and len(head) > 1 and head.replace("+", "").replace("-", "").isalnum()


def local_path(location: str) -> str | None:
    """The local path of a plain path or ``file:`` URI; None for other schemes."""
    if location.lower().startswith("file:"):
        return unquote(urlsplit(location).path)
    if has_scheme(location):
        return None
    return os.path.abspath(os.path.expanduser(location))


def filesystem(location: str) -> tuple[Any, str]:
    """(a ``pyarrow.fs.FileSystem``, the path on it) for a local path or URI."""
    from pyarrow import fs as pafs

    local = local_path(location)
    if local is not None:
        return pafs.LocalFileSystem(), local
    uri = location
    if uri.lower().startswith("s3a://") or uri.lower().startswith("s3n://"):
        uri = "s3://" + uri[6:]
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError / ArrowNotImplementedError
        raise InvalidInput(f"cannot open {location}: {exc}") from None


def read_bytes(location: str) -> bytes:
    fs, path = filesystem(location)
    with fs.open_input_file(path) as fh:
        return bytes(fh.read())


def write_atomic(location: str, data: bytes) -> None:
    """Write a small file under a temporary name and rename it into place."""
    fs, path = filesystem(location)
    tmp = f"{path}{TMP_MARK}{uuid.uuid4().hex}"
    with fs.open_output_stream(tmp) as fh:
        fh.write(data)
    fs.move(tmp, path)


def join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def list_names(folder: str) -> list[str]:
    """Names of the files directly in ``folder`` (empty when it does not exist)."""
    from pyarrow import fs as pafs

    fs, path = filesystem(folder)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(os.path.basename(i.path) for i in infos if i.type == pafs.FileType.File)


def make_dirs(folder: str) -> None:
    fs, path = filesystem(folder)
    fs.create_dir(path, recursive=True)


def delete(location: str) -> None:
    fs, path = filesystem(location)
    fs.delete_file(path)


def shard_name(key: dict[str, Any], files: Sequence[tuple[str, int | None, int | None]]) -> str:
    """The deterministic name of a shard: a digest of the job ``key`` (model, limits) and the
    sorted (location, size, mtime) list of its files."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    for location, size, mtime in sorted(files, key=lambda f: f[0]):
        digest.update(f"\0{location}\0{size}\0{mtime}".encode())
    return f"{SHARD_PREFIX}{digest.hexdigest()[:24]}{SHARD_SUFFIX}"


def schema(binary: bool, model: dict[str, Any]) -> Any:
    """The Arrow schema of a shard; the model record rides in its metadata."""
    import pyarrow as pa

    fields = [pa.field(name, getattr(pa, kind)()) for name, kind in COLUMNS]
    fields.append(pa.field("vector", pa.binary() if binary else pa.list_(pa.float32())))
    meta = {b"lookalike": json.dumps({"format": FORMAT, "model": model}).encode()}
    return pa.schema(fields, metadata=meta)


class ShardWriter:
    """Writes one shard: row groups to a temporary file, renamed into place on ``commit``."""

    def __init__(self, folder: str, name: str, schema: Any) -> None:
        import pyarrow.parquet as pq

        self.fs, base = filesystem(folder)
        self.final = join(base, name)
        self.tmp = f"{join(base, name)}{TMP_MARK}{uuid.uuid4().hex}"
        self.schema = schema
        self.stream = self.fs.open_output_stream(self.tmp)
        self.writer = pq.ParquetWriter(self.stream, schema, compression="zstd")
        self.ok = 0
        self.skipped = 0

    def write(self, rows: dict[str, list[Any]]) -> None:
        import pyarrow as pa

        table = pa.Table.from_pydict(rows, schema=self.schema)
        self.writer.write_table(table)
        statuses = rows["status"]
        self.ok += sum(1 for s in statuses if s == "ok")
        self.skipped += sum(1 for s in statuses if s != "ok")

    def commit(self) -> None:
        self.writer.add_key_value_metadata(
            {"lookalike.counts": json.dumps({"ok": self.ok, "skipped": self.skipped})}
        )
        self.writer.close()
        self.stream.close()
        self.fs.move(self.tmp, self.final)

    def abort(self) -> None:
        try:
            self.writer.close()
            self.stream.close()
            self.fs.delete_file(self.tmp)
        except Exception:  # best effort: a leftover temp file is removed by the next run
            pass


def shard_counts(folder: str, name: str) -> dict[str, int]:
    """The ok/skipped counts recorded in a shard's footer."""
    import pyarrow.parquet as pq

    fs, base = filesystem(folder)
    with fs.open_input_file(join(base, name)) as fh:
        meta = pq.ParquetFile(fh).metadata.metadata or {}
    counts = json.loads(meta.get(b"lookalike.counts", b"{}"))
    return {"ok": int(counts.get("ok", 0)), "skipped": int(counts.get("skipped", 0))}


def write_job(folder: str, job: dict[str, Any]) -> None:
    record = {"format": FORMAT, "finished_at": time.time(), **job}
    write_atomic(join(folder, JOB_FILE), json.dumps(record, indent=1).encode())


def read_job(folder: str) -> dict[str, Any]:
    """The ``_lookalike.json`` of a finished job; ``InvalidInput`` when there is none."""
    try:
        data = json.loads(read_bytes(join(folder, JOB_FILE)))
    except FileNotFoundError:
        raise InvalidInput(
            f"{folder} has no {JOB_FILE}: not the output of a finished `lookalike spark-index`"
            " (rerun the job: it redoes only the missing shards)"
        ) from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {join(folder, JOB_FILE)}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidInput(f"{join(folder, JOB_FILE)} is not a {FORMAT} job record")
    return data
