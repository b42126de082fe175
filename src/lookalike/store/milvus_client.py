"""Making a pymilvus client (imported lazily), quietly; reading its errors; the read-fence
protocol, and where else a re-rank may read a shortlist's raw vectors."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from lookalike.errors import MissingDependency
from lookalike.store.milvus_index import first_line


class Fence(Protocol):
    """Where the timestamp of the last write is shared by every process using the collection
    (Redis, or a folder's catalog): reads wait for that write, not for the newest moment."""

    def read(self) -> int: ...

    def advance(self, ts: int) -> None: ...


class KeptVectors(Protocol):
    """A copy of the stored vectors kept elsewhere (Redis, with ``index --redis-vectors``):
    an IVF_SQ8 re-rank reads its shortlist's raw vectors there, not from Milvus."""

    def kept_vectors(self, ids: Sequence[str]) -> list[bytes | None]:
        """The bytes Milvus stores for each id (as ``as_vectors`` writes them), or None."""
        ...


@contextmanager
def _lite_stderr_quiet(lite: bool) -> Iterator[None]:
    """Milvus Lite's server process inherits our stderr and writes glog lines to it (one
    "Process exit" error at every exit): it gets /dev/null instead while it is started."""
    if not lite:
        yield
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def new_client(uri: str, timeout: float, auth: dict[str, Any], *, lite: bool) -> Any:
    """A ``MilvusClient`` (a Milvus Lite file starts its server process here)."""
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise MissingDependency(
            "--store milvus needs the milvus extra: pip install 'lookalike[milvus]'"
        ) from None
    quiet = logging.getLogger("pymilvus")  # its DEBUG lines are not our users' business
    quiet.addHandler(logging.NullHandler())
    quiet.setLevel(max(quiet.getEffectiveLevel(), logging.WARNING))
    if lite:
        Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
    with _lite_stderr_quiet(lite):
        return MilvusClient(uri=uri, timeout=timeout, **auth)


def record_write(fence: Fence | None, lite: bool, collection: str) -> None:
    """Publish the last write's timestamp to the fence (call under the client's lock)."""
    if fence is not None and not lite:
        from pymilvus.client import ts_utils

        ts = ts_utils.get_collection_ts(collection)
        if ts:
            fence.advance(int(ts))


def read_options(fence: Fence | None, lite: bool) -> dict[str, Any]:
    """Read options: with a fence, see every write it recorded (and not wait for more, as
    Strong consistency does: up to a time tick, ~200 ms per search); without, the
    collection's Strong consistency."""
    if fence is None or lite:
        return {}
    return {"consistency_level": "Customized", "guarantee_timestamp": max(1, fence.read())}


def is_expr_error(exc: BaseException) -> bool:
    """Whether Milvus refused a filter expression (bad syntax, unknown field...)."""
    low = str(getattr(exc, "message", "") or exc).lower()
    return any(w in low for w in ("expr", "parse", "cannot", "field"))


# words of pymilvus errors that mean "not reachable now" (and so ServiceUnavailable)
UNAVAILABLE = (
    "refused",
    "fail connecting",
    "failed to connect",
    "unavailable",
    "deadline",
    "timeout",
    "timed out",
    "channel not available",
    "no available shard",
    "not ready",
    "not loaded",
)


def unavailable_detail(exc: BaseException, action: str, timeout: float) -> str | None:
    """The short reason when ``exc`` means Milvus cannot be reached now, else None."""
    message = str(getattr(exc, "message", "") or exc)
    code = getattr(exc, "code", None)
    low = f"{message} {code() if callable(code) else code}".lower()
    if not any(word in low for word in UNAVAILABLE):
        return None
    if "connection refused" in low:
        return "connection refused"
    if "fail connecting" in low:
        return f"no connection within {timeout:g} s"
    if any(w in low for w in ("deadline", "timeout", "timed out")):
        return f"no answer within {timeout:g} s ({action})"
    return first_line(message)
