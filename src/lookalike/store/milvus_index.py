"""The Milvus store's pure parts: index planning (our index names and knobs -> Milvus index
types, build and search params, one-line refusals of what a target cannot do), the checks of
an existing collection, of ids, labels and rows, and the reading of pymilvus errors.

Our names: ``flat`` (FLAT / BIN_FLAT), ``ivf-flat`` (IVF_FLAT / BIN_IVF_FLAT: nlist, nprobe),
``ivf-sq8`` (IVF_SQ8: nlist, nprobe; float only), ``hnsw`` (HNSW: M, efConstruction, ef; float
only) and ``auto``: AUTOINDEX on Milvus Lite (BIN_FLAT for hamming), on a server HNSW with the
defaults below for float vectors (good recall without training, fast to update) and BIN_FLAT
for hamming codes (exact; scanning short codes is cheap).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import numpy as np

from lookalike.errors import BackendMismatch, InvalidInput

KINDS = ("flat", "ivf-flat", "ivf-sq8", "hnsw", "auto")
LITE_KINDS = {False: ("flat", "ivf-flat", "auto"), True: ("flat", "auto")}
FLOAT_ONLY = ("ivf-sq8", "hnsw")
# knob -> (default, low, high)
KNOBS = {"nlist": (512, 1, 65536), "nprobe": (16, 1, 65536), "M": (16, 2, 2048)}
KNOBS |= {"efConstruction": (200, 1, 2**31 - 1), "ef": (64, 1, 2**31 - 1)}
KIND_KNOBS = {"flat": (), "ivf-flat": ("nlist", "nprobe"), "ivf-sq8": ("nlist", "nprobe")}
KIND_KNOBS |= {"hnsw": ("M", "efConstruction", "ef"), "auto": ()}
BUILD_KNOBS = ("nlist", "M", "efConstruction")
MAX_K = 16384  # Milvus' top-k limit
QUERY_BATCH = 256  # query vectors per search request
EXPR_IDS = 1000  # ids per "id in [...]"
MAX_ID = 1024  # bytes, the VARCHAR max_length of id and label
BATCH_ROWS = 2000  # rows per upsert request
BATCH_BYTES = 16 << 20  # about this many bytes per upsert request (gRPC takes 64 MiB)
# A re-ranking index's shortlist: candidates per 10 results (as the embedded store's LSH
# counts it). Searched with the most, then tuned down to the fewest that reach the recall
# target (tuning.py): each candidate's raw vector travels from Milvus or Redis per query.
SHORTLIST = 30  # 2k+10 at k=10
SHORTLIST_STEPS = (11, 12, 14, 16, 20, 30)
_FLOAT_TYPES = {"flat": "FLAT", "ivf-flat": "IVF_FLAT", "ivf-sq8": "IVF_SQ8", "hnsw": "HNSW"}
_BINARY_TYPES = {"flat": "BIN_FLAT", "ivf-flat": "BIN_IVF_FLAT"}
_OUR_NAMES = {"FLAT": "flat", "BIN_FLAT": "flat", "IVF_FLAT": "ivf-flat", "HNSW": "hnsw"}
_OUR_NAMES |= {"BIN_IVF_FLAT": "ivf-flat", "IVF_SQ8": "ivf-sq8", "AUTOINDEX": "auto"}


@dataclass
class IndexPlan:
    """What to build (``milvus_type``, ``build``) and how to search it (``search``)."""

    kind: str  # our name of what is actually built ("auto" resolved on a server)
    milvus_type: str
    metric: str
    build: dict[str, int] = field(default_factory=dict)
    search: dict[str, int] = field(default_factory=dict)
    rerank: bool | None = None  # None: where the index quantises (see reranks)

    def search_params(self, k: int) -> dict[str, Any]:
        """Milvus search params for top ``k`` (HNSW's ef is raised to k when smaller)."""
        params: dict[str, Any] = self.index_knobs(self.search)
        if "ef" in params:
            params["ef"] = max(int(params["ef"]), k)
        return {"metric_type": self.metric, "params": params}

    @property
    def reranks(self) -> bool:
        """Whether a shortlist is rescored exactly from the raw vectors Milvus keeps: IVF_SQ8's
        8-bit codes misorder close neighbours (recall@10 0.94 on 200k x 512, nprobe 16)."""
        return self.milvus_type == "IVF_SQ8" if self.rerank is None else self.rerank

    def shortlist(self, k: int) -> int:
        """Candidates fetched for a top ``k``: ``shortlist`` per 10 results when re-ranking."""
        if not self.reranks:
            return k
        return min(MAX_K, max(k + 1, self.per_10 * max(k, 10) // 10))

    @property
    def per_10(self) -> int:
        """A re-rank's shortlist: candidates per 10 results."""
        return int(self.search.get("shortlist", SHORTLIST))

    @staticmethod
    def index_knobs(knobs: dict[str, int]) -> dict[str, int]:
        """The knobs Milvus' index takes (all but the re-rank's shortlist)."""
        return {n: v for n, v in knobs.items() if n != "shortlist"}

    def query_batch(self, k: int, dim: int, vectors: bool = True) -> int:
        """Query vectors per request: fewer when answers carry their shortlist's vectors
        (``vectors``: a re-rank that does not read them from a kept copy)."""
        if not (self.reranks and vectors):
            return QUERY_BATCH
        return max(1, min(QUERY_BATCH, BATCH_BYTES // (self.shortlist(k) * dim * 4)))

    def describe(self) -> dict[str, Any]:
        out = {"type": self.kind, "milvus_index": self.milvus_type, "params": self.params()}
        if not self.reranks:
            return out
        return out | {"rerank": f"exact, shortlist {self.per_10 / 10:g}k"}

    def params(self) -> dict[str, int]:
        """The index's knobs (the shortlist is the re-rank's: see ``describe``)."""
        return {**self.build, **self.index_knobs(self.search)}


def metric_for(binary: bool) -> str:
    return "HAMMING" if binary else "IP"


def _knob_value(name: str, value: Any) -> int:
    low, high = (SHORTLIST_STEPS[0], 1000) if name == "shortlist" else KNOBS[name][1:]
    if isinstance(value, bool) or not isinstance(value, int | str):
        value = repr(value)  # refused below
    number = int(value) if isinstance(value, int) or value.strip().isdigit() else None
    if number is None:
        raise InvalidInput(f"Milvus index parameter {name} must be an integer, not {value!r}")
    if not low <= number <= high:
        raise InvalidInput(f"Milvus index parameter {name} must be in {low}..{high}, not {number}")
    return number


def plan_index(kind: str, params: dict[str, Any] | None, *, binary: bool, lite: bool) -> IndexPlan:
    """Validate ``kind`` and ``params`` for this target and vector type; InvalidInput (one
    line) for what it cannot do."""
    params = dict(params or {})
    shortlist = _given_shortlist(params)
    params.pop("shortlist", None)
    if kind not in KINDS:
        raise InvalidInput(f"unknown Milvus index {kind!r}; choose one of {', '.join(KINDS)}")
    vectors = "a hamming collection" if binary else "a cosine collection"
    if binary and kind in FLOAT_ONLY:
        raise InvalidInput(
            f"{kind} is for float vectors; a hamming collection takes flat or ivf-flat"
        )
    if lite and kind not in LITE_KINDS[binary]:
        if binary:
            raise InvalidInput(
                f"Milvus Lite has only the flat and auto indexes for {vectors}; "
                f"{kind} needs a Milvus server"
            )
        raise InvalidInput(
            f"Milvus Lite has only the flat, ivf-flat and auto indexes; {kind} needs a Milvus server"
        )
    resolved = kind
    if kind == "auto" and (binary or not lite):
        resolved = "flat" if binary else "hnsw"
    # auto takes the search knobs (for an existing index it adopts), never build knobs
    takes = ("nprobe", "ef") if kind == "auto" else KIND_KNOBS[resolved]
    unknown = sorted(set(params) - set(takes))
    if unknown:
        what = f"takes {', '.join(takes)}" if takes else "takes no parameters"
        raise InvalidInput(f"Milvus index {kind} {what}, not {', '.join(unknown)}")
    allowed = KIND_KNOBS[resolved]
    values = {n: _knob_value(n, params[n]) for n in params if n in allowed}
    if "nlist" in allowed:
        nlist = values.get("nlist", KNOBS["nlist"][0])
        if "nprobe" in values and values["nprobe"] > nlist:
            raise InvalidInput(f"nprobe ({values['nprobe']}) cannot exceed nlist ({nlist})")
        values.setdefault("nlist", nlist)
        values.setdefault("nprobe", min(KNOBS["nprobe"][0], nlist))
    for name in allowed:
        values.setdefault(name, KNOBS[name][0])
    build = {n: v for n, v in values.items() if n in BUILD_KNOBS}
    search = {n: v for n, v in values.items() if n not in BUILD_KNOBS}
    if resolved == "auto":
        milvus_type = "AUTOINDEX"
    else:
        milvus_type = (_BINARY_TYPES if binary else _FLOAT_TYPES)[resolved]
    return _with_shortlist(
        IndexPlan(resolved, milvus_type, metric_for(binary), build, search), shortlist
    )


def _given_shortlist(params: dict[str, Any]) -> int | None:
    """The re-rank's shortlist in ``params`` (tuned and stored by the indexer, not an index
    knob), checked; None when not given."""
    value = params.get("shortlist")
    return None if value is None else _knob_value("shortlist", value)


def _with_shortlist(plan: IndexPlan, per_10: int | None) -> IndexPlan:
    """``plan``, with its shortlist (``per_10``, else the longest) when it re-ranks."""
    if plan.reranks:
        plan.search["shortlist"] = per_10 or SHORTLIST
    return plan


def adopt_index(
    description: dict[str, Any], params: dict[str, Any] | None, *, binary: bool
) -> IndexPlan:
    """The plan of an index that already exists (from ``describe_index``), with search knobs
    from ``params`` where given (nprobe, ef), else the defaults."""
    milvus_type = str(description.get("index_type", ""))
    kind = _OUR_NAMES.get(milvus_type, milvus_type.lower())
    build: dict[str, int] = {}
    for name in BUILD_KNOBS:
        if name in description:
            try:
                build[name] = int(description[name])
            except (TypeError, ValueError):
                continue
    search: dict[str, int] = {}
    given = params or {}
    if milvus_type in ("IVF_FLAT", "BIN_IVF_FLAT", "IVF_SQ8"):
        nlist = build.get("nlist", KNOBS["nlist"][0])
        search["nprobe"] = (
            _knob_value("nprobe", given["nprobe"])
            if "nprobe" in given
            else min(KNOBS["nprobe"][0], nlist)
        )
        if search["nprobe"] > nlist:
            raise InvalidInput(f"nprobe ({search['nprobe']}) cannot exceed nlist ({nlist})")
    elif milvus_type == "HNSW":
        search["ef"] = _knob_value("ef", given["ef"]) if "ef" in given else KNOBS["ef"][0]
    metric = str(description.get("metric_type", metric_for(binary)))
    return _with_shortlist(
        IndexPlan(kind, milvus_type, metric, build, search), _given_shortlist(given)
    )


FIELDS = ("id", "vector", "label", "meta")


def _size(binary: bool, dim: int, metric: str) -> str:
    return f"{dim} {'bits' if binary else 'dims'} ({metric})"


def check_collection(
    name: str,
    description: dict[str, Any],
    index: dict[str, Any] | None,
    *,
    binary: bool,
    dim: int,
    where: str,
) -> None:
    """BackendMismatch unless an existing collection has our fields, vector type, dims and
    metric (the message names both sides)."""
    fields = {f["name"]: f for f in description.get("fields", [])}
    if any(n not in fields for n in FIELDS) or not fields["id"].get("is_primary"):
        raise BackendMismatch(
            f"Milvus collection '{name}' at {where} is not a lookalike collection: it has the "
            f"fields {', '.join(fields) or 'none'} (needs id as primary key, vector, label, meta)"
        )
    vtype = fields["vector"]["type"]
    their_binary = getattr(vtype, "name", str(vtype)) == "BINARY_VECTOR"
    their_dim = int(fields["vector"].get("params", {}).get("dim", 0))
    their_metric = str(index["metric_type"]) if index else metric_for(their_binary)
    if (their_binary, their_dim, their_metric) != (binary, dim, metric_for(binary)):
        raise BackendMismatch(
            f"Milvus collection '{name}' has {_size(their_binary, their_dim, their_metric)}; "
            f"this collection's model has {_size(binary, dim, metric_for(binary))}"
        )


def check_adoption(
    name: str, existing: IndexPlan, wanted: IndexPlan, kind: str, given: dict[str, Any]
) -> None:
    """BackendMismatch when an explicit ``kind`` (not auto), or a build knob ``given``
    explicitly, differs from the index the collection already has."""
    if kind == "auto":
        return
    asked = {k: v for k, v in wanted.build.items() if k in given}
    if existing.milvus_type != wanted.milvus_type or any(
        existing.build.get(k) != v for k, v in asked.items()
    ):
        theirs = " ".join(f"{k}={v}" for k, v in existing.build.items())
        ours = " ".join(f"{k}={v}" for k, v in wanted.build.items())
        raise BackendMismatch(
            f"Milvus collection '{name}' has a {existing.milvus_type} index {theirs}".rstrip()
            + f"; --index {kind} asks for {wanted.milvus_type} {ours}".rstrip()
        )


def first_line(text: object, limit: int = 300) -> str:
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _literal(value: str) -> str:
    """A Milvus expression string literal."""
    return json.dumps(value, ensure_ascii=False)


def id_expr(ids: Sequence[str]) -> str:
    return f"id in [{', '.join(_literal(i) for i in ids)}]"


def check_text(kind: str, value: str) -> None:
    if not isinstance(value, str):
        raise InvalidInput(f"Milvus {kind}s are strings, not {type(value).__name__}")
    if len(value.encode("utf-8")) > MAX_ID:
        raise InvalidInput(f"Milvus {kind}s are at most {MAX_ID} bytes: {value[:40]!r}...")
    if any(ord(c) < 32 for c in value):
        raise InvalidInput(f"Milvus {kind}s may not hold control characters: {value[:40]!r}")


def check_ids(ids: Sequence[str], lite: bool) -> list[str]:
    out = list(ids)
    for item in out:
        check_text("id", item)
        if not item:
            raise InvalidInput("Milvus ids may not be empty")
        if lite and "'" in item:  # Milvus Lite's delete (and upsert) misquote them
            raise InvalidInput(f"Milvus Lite cannot hold ids with a ' (a server can): {item!r}")
    return out


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def split_credentials(uri: str) -> tuple[str, str, str]:
    """(uri without user:password@, user, password) of a server uri."""
    parts = urlsplit(uri)
    if "://" not in uri or not (parts.username or parts.password):
        return uri, "", ""
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, unquote(parts.username or ""), unquote(parts.password or "")


def check_setup(collection: str, dim: int, binary: bool, uri: str, lite: bool) -> None:
    if dim < 1 or (binary and dim % 8):
        what = "a positive multiple of 8 bits" if binary else "positive"
        raise InvalidInput(f"Milvus vector size must be {what}, not {dim}")
    if not collection or not collection.replace("_", "a").isalnum() or collection[0].isdigit():
        raise InvalidInput(
            f"Milvus collection names take letters, digits and _ (not first a digit): "
            f"{collection!r}"
        )
    if lite and not uri.endswith(".db"):
        raise InvalidInput(f"a Milvus Lite file name ends in .db: {uri}")


def as_vectors(vectors: np.ndarray, what: str, *, binary: bool, dim: int) -> np.ndarray:
    """Rows as float32 (dim floats) or packed uint8 (dim / 8 bytes); InvalidInput otherwise."""
    width = dim // 8 if binary else dim
    array = np.asarray(vectors)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != width:
        unit = "bytes of packed bits" if binary else "floats"
        shape = tuple(np.shape(vectors))
        raise InvalidInput(f"Milvus {what} here are {width} {unit}, not shape {shape}")
    return np.ascontiguousarray(array, dtype=np.uint8 if binary else np.float32)


def make_schema(*, binary: bool, dim: int) -> Any:
    """Our collection schema: id (VARCHAR primary key), vector, label, meta (JSON)."""
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID)
    vector_type = DataType.BINARY_VECTOR if binary else DataType.FLOAT_VECTOR
    schema.add_field("vector", vector_type, dim=dim)
    schema.add_field("label", DataType.VARCHAR, max_length=MAX_ID)
    schema.add_field("meta", DataType.JSON)
    return schema


def row_batches(
    ids: Sequence[str],
    array: np.ndarray,
    labels: Sequence[str | None],
    metas: Sequence[dict[str, Any]],
    *,
    binary: bool,
) -> Iterator[list[dict[str, Any]]]:
    """Checked rows in batches of BATCH_ROWS rows or about BATCH_BYTES (a later duplicate id
    wins)."""
    if not len(ids) == len(array) == len(labels) == len(metas):
        raise InvalidInput(
            "upsert needs as many ids, vectors, labels and metas: "
            f"{len(ids)}, {len(array)}, {len(labels)}, {len(metas)}"
        )
    last = {item: n for n, item in enumerate(ids)}
    rows: list[dict[str, Any]] = []
    size = 0
    for n, item in enumerate(ids):
        if last[item] != n:
            continue
        label = labels[n] or ""
        check_text("label", label)
        meta = metas[n] if metas[n] is not None else {}
        if not isinstance(meta, dict):
            raise InvalidInput(f"Milvus item metadata is a JSON object, not {meta!r:.60}")
        try:
            size += len(json.dumps(meta)) + array.shape[1] * array.itemsize + 2 * len(item)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"metadata of {item!r} is not JSON: {exc}") from None
        vector = array[n].tobytes() if binary else array[n].tolist()
        rows.append({"id": item, "vector": vector, "label": label, "meta": meta})
        if len(rows) >= BATCH_ROWS or size >= BATCH_BYTES:
            yield rows
            rows, size = [], 0
    if rows:
        yield rows
