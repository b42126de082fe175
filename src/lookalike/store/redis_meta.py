"""Item metadata in Redis, shared by any number of API replicas and indexers.

Key layout (namespace ``NS``, default ``lookalike``): ``NS:meta`` (``format``, ``identity``
JSON, ``info:KEY`` JSON fields), ``NS:item:{id}`` hashes (``state`` pending|ready|deleting,
``token``, ``deadline``, the item's fields, perhaps its vector: :mod:`.redis_records`),
``NS:ids`` (sorted set of the ready ids, all scores 0, so lexicographic) and ``NS:labels``
(label -> number of ready items). Every change that touches several keys is one Lua script
(:mod:`.redis_scripts`), so it is atomic.

Optional fields are stored as "" for None. Labels are never "" in lookalike: an empty label
reads back as None (no label). Metadata is stored as JSON and reads back equal.

Connection failures, timeouts and a loading server become ``ServiceUnavailable`` (exit 3).
Each call retries once on a broken connection (after a Redis restart the pooled connections
are stale), never sleeps, and every socket operation has ``timeout`` seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import (
    BackendMismatch,
    InvalidInput,
    LookalikeError,
    MissingDependency,
    ServiceUnavailable,
)
from . import redis_records as records
from . import redis_scripts as scripts
from .catalog import Item
from .uris import RedisUri, parse_redis_uri, redis_password

FORMAT = "1"
# The identity fields compared by bind(); fields only one side has are not compared.
IDENTITY_KEYS = ("collection", "model", "model_sha256", "dim", "metric")
_MISSING_EXTRA = "--metadata redis://... needs the redis extra: pip install 'lookalike[redis]'"
# Error replies that mean "not available now" (or not to us) rather than a bug.
_UNAVAILABLE_REPLIES = {"OOM", "MISCONF", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY"}
_UNAVAILABLE_REPLIES |= {"NOPERM", "NOAUTH", "WRONGPASS"}


class ClaimLost(LookalikeError):
    """A commit found items no longer pending under its token (the lease ran out and another
    worker claimed them, or an owner wrote them). ``ids`` are those items; the others of the
    batch were committed."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        shown = ", ".join(repr(i) for i in self.ids[:5])
        more = f" and {len(self.ids) - 5} more" if len(self.ids) > 5 else ""
        super().__init__(f"the claim on {shown}{more} was lost before the commit")


def _import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise MissingDependency(_MISSING_EXTRA) from None
    return redis


class RedisMetadata:
    """The item records of one collection in one Redis namespace."""

    def __init__(
        self,
        uri: str | RedisUri,
        *,
        namespace: str = "lookalike",
        password: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.address = parse_redis_uri(uri) if isinstance(uri, str) else uri
        if not namespace or any(c.isspace() or c in ":*?[]\\" for c in namespace):
            raise InvalidInput(
                f"Redis namespace {namespace!r} must be non-empty, without spaces, ':' or "
                "glob characters (one namespace must never be a prefix of another's keys)"
            )
        self.namespace = namespace
        self.timeout = timeout
        redis = _import_redis()
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._errors = redis.exceptions
        names = ("ReadOnlyError", "OutOfMemoryError", "NoPermissionError", "MasterDownError")
        self._unavailable = tuple(
            getattr(redis.exceptions, n) for n in names if hasattr(redis.exceptions, n)
        )
        connect: dict[str, Any] = dict(
            username=self.address.username,
            password=password or redis_password(self.address),
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            # one immediate retry on a broken connection (a restarted server): never a sleep,
            # and never a retry after a timeout (the caller waited long enough)
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
            retry_on_error=[],
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self._client = redis.Redis.from_url(self.address.uri, decode_responses=True, **connect)
        # replies as bytes (kept vectors); like the other, it connects on first use
        self._bytes_client = redis.Redis.from_url(
            self.address.uri, decode_responses=False, **connect
        )
        self._k_meta = f"{namespace}:meta"
        self._k_ids = f"{namespace}:ids"
        self._k_labels = f"{namespace}:labels"
        reg = self._client.register_script
        self._claim = reg(scripts.CLAIM)
        self._commit = reg(scripts.COMMIT)
        self._put = reg(scripts.PUT)
        self._release = reg(scripts.RELEASE)
        self._begin_remove = reg(scripts.BEGIN_REMOVE)
        self._finish_remove = reg(scripts.FINISH_REMOVE)
        self._bind = reg(scripts.BIND)
        self._raise = reg(scripts.RAISE)
        self._read = reg(scripts.READ)
        self._read_one = self._bytes_client.register_script(scripts.READ_ONE)
        self._read_bytes = self._bytes_client.register_script(scripts.READ)

    def __repr__(self) -> str:
        return f"RedisMetadata({self.address.display!r}, namespace={self.namespace!r})"

    def close(self) -> None:
        self._client.close()
        self._bytes_client.close()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        errors = self._errors
        try:
            yield
        except errors.BusyLoadingError:
            raise self._down("Redis is loading its data set") from None
        except errors.AuthenticationError:
            raise self._down("authentication failed (check LOOKALIKE_REDIS_PASSWORD)") from None
        except errors.TimeoutError:
            raise self._down(f"no answer within {self.timeout:g} s") from None
        except errors.ConnectionError as exc:
            raise self._down(self._reason(exc)) from None
        except errors.ResponseError as exc:
            code = getattr(exc, "status_code", None) or str(exc).split(" ", 1)[0]
            if code in _UNAVAILABLE_REPLIES or isinstance(exc, self._unavailable):
                raise self._down(f"{code} {self._reason(exc)}") from None
            raise

    def _down(self, detail: str) -> ServiceUnavailable:
        return ServiceUnavailable("Redis", self.address.display, detail)

    @staticmethod
    def _reason(exc: BaseException) -> str:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        lowered = text.lower()
        for phrase in ("connection refused", "connection reset", "no such file or directory"):
            if phrase in lowered:
                return phrase
        if "closed by server" in lowered:
            return "connection closed by server"
        if "name or service not known" in lowered or "nodename nor servname" in lowered:
            return "unknown host"
        return text[:200]

    def _item_key(self, item_id: str) -> str:
        return f"{self.namespace}:item:{item_id}"

    # -- identity and info ------------------------------------------------------------------

    def ping(self) -> bool:
        with self._guard():
            return bool(self._client.ping())

    def bind(self, identity: dict[str, Any]) -> None:
        """Record ``identity`` on first use; later, refuse a different one (BackendMismatch)."""
        new = json.dumps(identity, sort_keys=True, ensure_ascii=False)
        with self._guard():
            stored_format, stored = self._bind(keys=[self._k_meta], args=[FORMAT, new])
        if stored_format != FORMAT:
            raise BackendMismatch(
                f"Redis {self.address.display} namespace {self.namespace!r} holds metadata "
                f"format {stored_format or '(none)'!r}; this lookalike writes format {FORMAT!r}"
            )
        old = json.loads(stored)
        differ = [k for k in IDENTITY_KEYS if k in old and k in identity and old[k] != identity[k]]
        if differ:
            raise BackendMismatch(
                f"Redis {self.address.display} namespace {self.namespace!r} holds "
                f"{_describe(old, differ)}; this is {_describe(identity, differ)}"
            )

    def identity(self) -> dict[str, Any] | None:
        with self._guard():
            stored = self._client.hget(self._k_meta, "identity")
        return json.loads(stored) if stored else None

    def set_info(self, key: str, value: Any) -> None:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False)
        with self._guard():
            self._client.hset(self._k_meta, f"info:{key}", encoded)

    def info(self) -> dict[str, Any]:
        with self._guard():
            fields = self._client.hgetall(self._k_meta)
        return {k[5:]: json.loads(v) for k, v in fields.items() if k.startswith("info:")}

    # -- writing ----------------------------------------------------------------------------

    def claim(self, ids: Sequence[str], token: str, lease_s: float = 60.0) -> str | None:
        """Mark every id pending under ``token`` for ``lease_s`` seconds, all or nothing.
        Returns None on success, else the first id that is ready or under another live claim
        (nothing changed then). Deleting ids and expired claims are taken over."""
        _check_token(token)
        if not ids:
            return None
        keys = [self._item_key(i) for i in ids]
        with self._guard():
            position = int(self._claim(keys=keys, args=[token, repr(float(lease_s))]))
        return ids[position - 1] if position else None

    def commit(
        self, token: str, items: Sequence[Item], vectors: Sequence[bytes | None] | None = None
    ) -> None:
        """Make the items still pending under ``token`` ready; raise ClaimLost naming the others
        (which are left as they are). ``vectors``: each item's vector bytes, kept with it."""
        _check_token(token)
        if not items:
            return
        args: list[str | bytes] = [token, *records.item_args(items, vectors)]
        keys = [self._k_ids, self._k_labels] + [self._item_key(i.id) for i in items]
        with self._guard():
            lost = self._commit(keys=keys, args=args)
        if lost:
            raise ClaimLost([items[int(p) - 1].id for p in lost])

    def release(self, token: str, ids: Sequence[str]) -> None:
        """Drop the pending claims on ``ids`` that ``token`` still holds."""
        if ids:
            with self._guard():
                self._release(keys=[self._item_key(i) for i in ids], args=[token])

    def put(self, items: Sequence[Item], vectors: Sequence[bytes | None] | None = None) -> None:
        """Write the items as ready whatever their state (the owner's upsert), atomically;
        ``vectors``: each item's vector bytes, kept with it (else any kept one is cleared)."""
        if not items:
            return
        args = records.item_args(items, vectors)
        keys = [self._k_ids, self._k_labels] + [self._item_key(i.id) for i in items]
        with self._guard():
            self._put(keys=keys, args=args)

    def begin_remove(self, ids: Sequence[str]) -> list[str]:
        """Hide the items at once (out of count, paging and label counts), marked deleting.
        Returns the ids that are neither ready nor deleting; if there are any, nothing changed."""
        if not ids:
            return []
        keys = [self._k_ids, self._k_labels] + [self._item_key(i) for i in ids]
        with self._guard():
            missing = self._begin_remove(keys=keys, args=list(ids))
        return [ids[int(p) - 1] for p in missing]

    def finish_remove(self, ids: Sequence[str]) -> None:
        """Delete the records of the ids still deleting (the vectors are gone by then)."""
        if ids:
            with self._guard():
                self._finish_remove(keys=[self._item_key(i) for i in ids], args=[])

    def flush_namespace(self) -> int:
        """Delete every ``NS:*`` key (tests and ``--reset``); returns how many."""
        pattern = self.namespace + ":*"  # the namespace holds no glob characters
        deleted = 0
        with self._guard():
            batch: list[str] = []
            for key in self._client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += int(self._client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(self._client.unlink(*batch))
        return deleted

    # -- reading ----------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> list[Item | None]:
        """The ready items, None for the others, in one round trip."""
        if not ids:
            return []
        with self._guard():
            rows = self._read(keys=[self._item_key(i) for i in ids], args=records.READ_FIELDS)
        return [records.read_item(i, row) for i, row in zip(ids, rows, strict=True)]

    def vector(self, item_id: str) -> tuple[bool, bytes | None]:
        """(whether the item is ready, its kept vector bytes or None: none kept)."""
        return self.vectors([item_id])[0]

    def vectors(self, ids: Sequence[str]) -> list[tuple[bool, bytes | None]]:
        """:meth:`vector` of each id, in one round trip."""
        if not ids:
            return []
        with self._guard():
            rows = self._read_bytes(keys=[self._item_key(i) for i in ids], args=["state", "vector"])
        return [(state == b"ready", raw or None) for state, raw in rows]

    def kept_vectors(self, ids: Sequence[str]) -> list[bytes | None]:
        """The kept vector bytes of ``ids`` (``--redis-vectors``), None where none is kept,
        in one round trip: what a re-rank reads instead of asking Milvus."""
        if not ids:
            return []
        with self._guard():
            kept = self._read_one(keys=[self._item_key(i) for i in ids], args=["vector"])
        return [raw or None for raw in kept]

    def high_water(self, name: str) -> int:
        """A value that only grows (``raise_high_water``), 0 before the first."""
        with self._guard():
            return int(self._client.get(f"{self.namespace}:hw:{name}") or 0)

    def raise_high_water(self, name: str, value: int) -> None:
        with self._guard():
            self._raise(keys=[f"{self.namespace}:hw:{name}"], args=[str(int(value))])

    def get_one(self, item_id: str) -> Item | None:
        return self.get([item_id])[0]

    def page_at(self, offset: int, limit: int) -> list[Item]:
        """Up to ``limit`` ready items from position ``offset`` in id order (browsing)."""
        with self._guard():
            ids = list(self._client.zrange(self._k_ids, offset, offset + limit - 1))
        return [item for item in self.get(ids) if item is not None]

    def count(self) -> int:
        with self._guard():
            return int(self._client.zcard(self._k_ids))

    def labels(self) -> dict[str, int]:
        with self._guard():
            counts = self._client.hgetall(self._k_labels)
        return {label: int(n) for label, n in sorted(counts.items()) if int(n) > 0}

    def _ids_after(self, after: str | None, limit: int) -> list[str]:
        low = "-" if after is None else "(" + after
        with self._guard():
            return list(self._client.zrangebylex(self._k_ids, low, "+", start=0, num=limit))

    def page(self, after: str | None, limit: int, label: str | None = None) -> list[Item]:
        """Up to ``limit`` ready items with ids after ``after``, in lexicographic id order;
        with ``label``, only those items (scanning the ids in chunks)."""
        if limit <= 0:
            return []
        found: list[Item] = []
        chunk = limit if label is None else max(4 * limit, 256)
        while len(found) < limit:
            ids = self._ids_after(after, chunk)
            if not ids:
                break
            for item in self.get(ids):
                if item is not None and (label is None or item.label == label):
                    found.append(item)
                    if len(found) == limit:
                        break
            if len(ids) < chunk:
                break
            after = ids[-1]
        return found

    def ids(self, batch: int = 1000) -> Iterator[str]:
        """Every ready id in lexicographic order, read ``batch`` at a time."""
        after: str | None = None
        while True:
            chunk = self._ids_after(after, batch)
            yield from chunk
            if len(chunk) < batch:
                return
            after = chunk[-1]


def _check_token(token: str) -> None:
    if not token:
        raise InvalidInput("a claim token must be a non-empty string")


def _describe(identity: dict[str, Any], differ: Sequence[str]) -> str:
    """``collection 'shoes' (clip-vit-b32, 512 dims, IP)`` plus what else differs."""
    parts = [str(identity[k]) for k in ("model",) if k in identity]
    if "dim" in identity:
        parts.append(f"{identity['dim']} dims")
    if "metric" in identity:
        parts.append(str(identity["metric"]))
    if "model_sha256" in differ:
        parts.append(f"model sha256 {str(identity['model_sha256'])[:12]}")
    name = f"collection {identity['collection']!r}" if "collection" in identity else "a collection"
    return f"{name} ({', '.join(parts)})" if parts else name
