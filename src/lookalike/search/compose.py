"""Composed queries: one search from weighted terms (images, ``id:`` items, URLs, texts,
raw vectors), combined as the weighted sum of their unit vectors, normalised again.

Pure functions (parsing, combining) and ``TermResolver``, which turns terms into vectors
with a ``QueryResolver`` (images, ids, URLs, vectors) and a text tower (texts).

Command-line syntax (as rclip's): terms separated by ``+`` or ``-`` (the sign of the next
term's weight), each with an optional weight prefix ``N:`` (``"2:red dress" + id:a.jpg -
blurry.jpg``). A bare term is, in order: ``text:...`` a text; ``id:...`` a stored item;
``http(s)://...`` a URL; an existing file an image; something that looks like a path (has
a ``/`` or ``\\``, or ends in a short extension such as ``.jpg``) an image (so a mistyped
file name is reported, not searched as text); anything else a text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import QueryError
from ..ingest.decode import DecodeLimits
from ..models.embedders.text import TextEmbedder
from ..store.catalog import Catalog
from .hits import Hit
from .query import QueryResolver

TermKind = Literal["image", "id", "url", "text", "vector", "bytes"]
TERM_KINDS: tuple[TermKind, ...] = ("image", "id", "url", "text", "vector", "bytes")
#: The most terms one composed query may have.
MAX_TERMS = 64
_WEIGHT = re.compile(r"^([-+]?[0-9.][0-9.eE+-]*):(.*)$", re.DOTALL)
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{2,5}$")


@dataclass(frozen=True)
class Term:
    """One weighted part of a query. ``value``: a path (image), an item id (id, without
    ``id:``), a URL, a text, a vector (sequence of floats) or encoded image bytes."""

    kind: TermKind
    value: Any
    weight: float = 1.0

    def describe(self) -> str:
        shown = {
            "id": f"id:{self.value}",
            "text": f"text:{self.value}",
            "vector": "vector",
            "bytes": "upload",
        }.get(self.kind, str(self.value))
        return shown if self.weight == 1 else f"{self.weight:g}:{shown}"


@dataclass
class ComposedQuery:
    """A resolved query: its unit vector (one row), the slots of positively weighted stored
    items (left out of the results) and a description."""

    vector: np.ndarray
    exclude: list[int] = field(default_factory=list)
    description: str = ""


def check_weight(weight: Any) -> float:
    """A term's weight as a finite, non-zero float; ``QueryError`` otherwise."""
    if isinstance(weight, bool) or not isinstance(weight, int | float | str):
        raise QueryError(f"a term's weight must be a number, not {weight!r}")
    try:
        value = float(weight)
    except ValueError:
        raise QueryError(f"a term's weight must be a number, not {weight!r}") from None
    if not math.isfinite(value) or value == 0:
        raise QueryError(f"a term's weight must be a finite non-zero number, not {weight!r}")
    return value


def classify(value: str, weight: float = 1.0) -> Term:
    """A bare command-line term (see the module docstring for the rules)."""
    if value.startswith("text:"):
        return Term("text", value[5:], weight)
    if value.startswith("id:"):
        return Term("id", value[3:], weight)
    if value.startswith(("http://", "https://")):
        return Term("url", value, weight)
    path = Path(value).expanduser()
    if path.is_file() or "/" in value or "\\" in value:
        return Term("image", value, weight)
    if " " not in value.strip() and _EXTENSION.search(value):
        return Term("image", value, weight)
    return Term("text", value, weight)


def parse_term(token: str, sign: float = 1.0) -> Term:
    """One command-line term with its optional ``N:`` weight prefix."""
    if Path(token).expanduser().is_file():
        return Term("image", token, sign)
    match = _WEIGHT.match(token)
    if match:
        return classify(match.group(2), sign * check_weight(match.group(1)))
    return classify(token, sign)


def parse_cli_terms(tokens: Sequence[str]) -> list[Term]:
    """``["2:red dress", "+", "id:a.jpg", "-", "b.jpg"]`` -> terms (``-`` negates the next)."""
    terms: list[Term] = []
    sign: float | None = 1.0  # None: an operator is expected before the next term
    operator = False  # the last token was an operator
    for token in tokens:
        if token in ("+", "-"):
            if operator:
                raise QueryError(f"two operators in a row before {token!r}")
            if not terms and token == "+":
                raise QueryError("a query cannot start with '+'")
            sign, operator = (-1.0 if token == "-" else 1.0), True
            continue
        operator = False
        if sign is None:
            raise QueryError(f"put '+' or '-' between query terms (before {token!r})")
        terms.append(parse_term(token, sign))
        sign = None
    if not terms:
        raise QueryError("the query has no terms")
    if sign is not None:
        raise QueryError("the query ends with an operator")
    return terms


def is_composed(tokens: Sequence[str]) -> bool:
    """Whether command-line queries use the ``+``/``-`` syntax."""
    return any(token in ("+", "-") for token in tokens)


_KEYS: dict[str, TermKind] = {
    "text": "text",
    "id": "id",
    "path": "image",
    "image": "image",
    "url": "url",
    "vector": "vector",
}


def term_from_mapping(data: Mapping[str, Any]) -> Term:
    """``{"text": ..., "weight": 2}``, ``{"id": ...}``, ``{"path": ...}``, ``{"url": ...}``
    or ``{"vector": [...]}`` (exactly one of these keys, and an optional weight)."""
    given = [key for key in data if key in _KEYS and data[key] is not None]
    unknown = sorted(set(data) - set(_KEYS) - {"weight"})
    if unknown:
        raise QueryError(f"unknown key {unknown[0]!r} in a query term")
    if len(given) != 1:
        raise QueryError("each term needs exactly one of 'text', 'id', 'path', 'url', 'vector'")
    key = given[0]
    weight = check_weight(data.get("weight", 1.0))
    return Term(_KEYS[key], data[key], weight)


def as_terms(items: Iterable[Any]) -> list[Term]:
    """Terms from ``Term`` objects, mappings, or plain queries (strings, paths, bytes,
    vectors: as ``Collection.search(query)`` takes them; a text is a ``Term`` or mapping)."""
    terms: list[Term] = []
    for item in items:
        if isinstance(item, Term):
            terms.append(replace(item, weight=check_weight(item.weight)))
        elif isinstance(item, Mapping):
            terms.append(term_from_mapping(item))
        elif isinstance(item, bytes):
            terms.append(Term("bytes", item))
        elif isinstance(item, np.ndarray):
            terms.append(Term("vector", item))
        elif isinstance(item, Path):
            terms.append(Term("image", str(item)))
        elif isinstance(item, str):  # as Collection.search(query) takes it: never a text
            kind: TermKind = "id" if item.startswith("id:") else "image"
            terms.append(Term(kind, item[3:] if kind == "id" else item))
        else:
            raise QueryError(f"unsupported query term {type(item).__name__}")
    if not terms:
        raise QueryError("the query has no terms")
    if len(terms) > MAX_TERMS:
        raise QueryError(f"a query may have at most {MAX_TERMS} terms, not {len(terms)}")
    return terms


def combine(vectors: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The weighted sum of the unit vectors, normalised: one (1, dim) float32 row."""
    total = np.zeros(vectors[0].reshape(-1).shape, dtype=np.float64)
    for vec, weight in zip(vectors, weights, strict=True):
        row = np.asarray(vec, dtype=np.float64).reshape(-1)
        norm = float(np.linalg.norm(row))
        if norm == 0 or not math.isfinite(norm):
            raise QueryError("a query term has a zero or non-finite vector")
        total += weight * row / norm
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise QueryError(
            "the weighted terms add up to a zero vector (they cancel out): change the weights"
        )
    return (total / norm).astype(np.float32).reshape(1, -1)


def describe(terms: Sequence[Term]) -> str:
    """The terms in the command-line syntax (``2:text:red + id:a.jpg - b.jpg``)."""
    return " ".join(
        (("- " if t.weight < 0 else "+ ") if n else ("-" if t.weight < 0 else ""))
        + replace(t, weight=abs(t.weight)).describe()
        for n, t in enumerate(terms)
    )


def embed_texts(terms: Sequence[Term], text_embedder: Callable[[], TextEmbedder]) -> list[Term]:
    """``terms`` with each text replaced by its vector (a "vector" term of the same weight),
    embedded in one batch; ``text_embedder`` is only called when there is a text. Lets a
    caller embed texts before taking a lock that the rest of the query needs."""
    texts = [t for t in terms if t.kind == "text"]
    if not texts:
        return list(terms)
    rows = iter(text_embedder().embed_texts([str(t.value) for t in texts]))
    return [Term("vector", next(rows), t.weight) if t.kind == "text" else t for t in terms]


class TermResolver:
    """Resolves terms against one collection: images, ids, URLs and vectors through its
    ``QueryResolver``, texts through its model's text tower (``text_embedder`` is called
    only when a text term is present; it raises ``NoTextTower`` for models without one)."""

    def __init__(self, queries: QueryResolver, text_embedder: Callable[[], TextEmbedder]) -> None:
        self.queries = queries
        self.text_embedder = text_embedder

    def resolve(
        self,
        terms: Sequence[Term],
        *,
        allow_urls: bool = False,
        limits: DecodeLimits | None = None,
    ) -> ComposedQuery:
        description = describe(terms)
        terms = embed_texts(terms, self.text_embedder)  # NoTextTower before anything else
        if self.queries.binary and (len(terms) > 1 or terms[0].weight != 1):
            raise QueryError(
                "a hash model (phash) answers one image, id: or vector query at a time:"
                " weighted combinations need a neural model"
            )
        vectors: list[np.ndarray] = []
        exclude: list[int] = []
        for term in terms:
            query: Any = term.value
            if term.kind == "id":
                query = f"id:{term.value}"
            elif term.kind == "vector":
                query = _vector(term.value)
            elif term.kind == "image":
                query = str(term.value)
            vec, slot, _ = self.queries.resolve(query, allow_urls=allow_urls, limits=limits)
            if slot is not None and term.weight > 0:
                exclude.append(slot)
            vectors.append(vec)
        if self.queries.binary:
            return ComposedQuery(vectors[0], exclude, description)
        vector = combine(vectors, [t.weight for t in terms])
        return ComposedQuery(vector, exclude, description)


def _vector(value: Any) -> np.ndarray:
    try:
        vec = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise QueryError("a query vector must be a list of numbers") from None
    if vec.ndim != 1 or not np.all(np.isfinite(vec)):
        raise QueryError("a query vector must be a flat list of finite numbers")
    return vec


def ranked_without(
    search: Callable[..., list[Hit]],
    query: ComposedQuery,
    k: int,
    threshold: float | None,
    label: str | None,
    catalog: Catalog,
) -> list[Hit]:
    """``search(vec, k, threshold=, label=, exclude_slot=)`` leaving out every slot of
    ``query.exclude``: one slot is left out by the index, more by asking for extra hits."""
    if len(query.exclude) <= 1:
        slot = query.exclude[0] if query.exclude else None
        return search(query.vector, k, threshold=threshold, label=label, exclude_slot=slot)
    drop = {item.id for item in catalog.by_slots(query.exclude).values()}
    hits = search(query.vector, k + len(drop), threshold=threshold, label=label)
    kept = [h for h in hits if h.id not in drop][:k]
    return [replace(h, rank=n) for n, h in enumerate(kept, 1)]
