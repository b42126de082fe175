"""Exact, near- and similar-duplicate groups of a collection, found without an N x N matrix.

Levels:

``exact``
    Identical decoded pixels (``pixel_hash``) or identical file bytes (``content_hash``):
    a PNG re-saved from the same pixels counts, a JPEG re-encode does not.
``near``
    64-bit DCT perceptual hashes within a Hamming radius (multi-index hashing, see
    :mod:`lookalike.dedup.hamming`): resized, recompressed and lightly edited copies.
``similar``
    Embedding cosine >= threshold, by FAISS range search over the stored vectors in
    batches (a thresholded kNN graph); needs a collection built with an embedding model.

Groups are connected components of the "is a duplicate of" graph. Each group has a keeper
(highest resolution, then largest file, then oldest file, then smallest id); the others are
listed with their score against the keeper: 1.0 for exact, ``1 - hamming/64`` for near,
cosine for similar.

With ``against`` (another collection), only links between the two collections count: each
group is keyed on the other collection's best item, and lists the items of this collection
that duplicate it (a train/test leakage check).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import InvalidInput
from ..store.catalog import Item
from .edges import (
    combined_distance,
    combined_pairs,
    exact_edges,
    exact_keys,
    hamming,
    row,
    similar_edges,
    slots_and_phash,
    unit_rows,
)
from .hamming import (
    MAX_RADIUS,
    components,
    near_edges,
)
from .hashes import FIELDS, extra_hashes
from .source import DedupSource

log = logging.getLogger(__name__)

Level = Literal["exact", "near", "similar"]
LEVELS: tuple[str, ...] = ("exact", "near", "similar")
DEFAULT_NEAR_THRESHOLD = 12  # phash + dHash bits (of 128), min over the three views
DEFAULT_PHASH_THRESHOLD = 8  # phash bits (of 64), with hashes="phash"
DEFAULT_SIMILAR_THRESHOLD = 0.95


@dataclass
class Member:
    """One item of a duplicate group."""

    id: str
    path: str | None
    url: str | None
    label: str | None
    width: int | None
    height: int | None
    size: int | None
    mtime_ns: int | None
    content_hash: str | None
    collection: str
    score: float = 1.0
    keeper: bool = False
    against: bool = False  # True when the item belongs to the --against collection

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "url": self.url,
            "label": self.label,
            "width": self.width,
            "height": self.height,
            "size": self.size,
            "score": round(float(self.score), 6),
            "collection": self.collection,
        }


@dataclass
class Group:
    number: int
    level: str
    keeper: Member
    duplicates: list[Member] = field(default_factory=list)

    @property
    def members(self) -> list[Member]:
        return [self.keeper, *self.duplicates]

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.number,
            "level": self.level,
            "keeper": self.keeper.to_dict(),
            "duplicates": [m.to_dict() for m in self.duplicates],
        }


def keeper_sort_key(m: Member) -> tuple[Any, ...]:
    """Highest resolution first, then largest file, then oldest, then id."""
    pixels = (m.width or 0) * (m.height or 0)
    mtime = m.mtime_ns if m.mtime_ns is not None else 2**63
    return (-pixels, -(m.size or 0), mtime, m.id)


def check_threshold(level: str, threshold: float | None, hashes: str = "all") -> float | None:
    """Validate ``threshold`` for ``level`` (and the ``near`` hash set); fill in the default."""
    if level not in LEVELS:
        raise InvalidInput(f"unknown level {level!r}: use exact, near or similar")
    if hashes not in ("all", "phash"):
        raise InvalidInput(f"hashes must be 'all' or 'phash', not {hashes!r}")
    if level == "exact":
        if threshold is not None:
            raise InvalidInput("--threshold does not apply to --level exact (pixels are equal)")
        return None
    if level == "near":
        top = MAX_RADIUS if hashes == "phash" else 2 * MAX_RADIUS
        what = "phash bits" if hashes == "phash" else "phash + dHash bits"
        if threshold is None:
            return DEFAULT_NEAR_THRESHOLD if hashes == "all" else DEFAULT_PHASH_THRESHOLD
        if threshold != int(threshold) or not 0 <= threshold <= top:
            raise InvalidInput(
                f"near threshold is a Hamming distance ({what}), a whole number 0..{top}; "
                f"got {threshold}"
            )
        return int(threshold)
    if threshold is None:
        return DEFAULT_SIMILAR_THRESHOLD
    if not -1.0 <= threshold <= 1.0:
        raise InvalidInput(f"similar threshold is a cosine between -1 and 1; got {threshold}")
    return float(threshold)


# -- reading the catalog in bulk ----------------------------------------------------------


@dataclass
class _Part:
    """The items of one collection that take part, as arrays aligned by position."""

    coll: DedupSource
    slots: np.ndarray  # int64
    codes: np.ndarray | None = None  # uint64 phash (near)
    keys: list[tuple[bytes | None, str | None]] | None = None  # (pixel_hash, content_hash)


def find_duplicates(
    coll: DedupSource,
    level: str = "near",
    threshold: float | None = None,
    against: DedupSource | None = None,
    hashes: str = "all",
) -> list[Group]:
    """Duplicate groups of ``coll`` (see the module docs), largest groups first.

    ``hashes`` (level ``near``): ``"all"`` compares phash, dHash and the mirrored phash
    (see :mod:`lookalike.dedup.hashes`); ``"phash"`` compares the stored phash only (no file
    is read).
    """
    threshold = check_threshold(level, threshold, hashes)
    parts = [coll] if against is None else [coll, against]
    if level == "similar":
        for c in parts:
            if c.binary:
                raise InvalidInput(
                    f"level 'similar' needs embedding vectors, but collection {c.root} holds "
                    f"only {c.config['model']['name']} hashes; use --level near or exact, or "
                    "index with an embedding model"
                )
        if against is not None:
            mine = {k: coll.config["model"].get(k) for k in ("name", "dim")}
            theirs = {k: against.config["model"].get(k) for k in ("name", "dim")}
            if mine != theirs:
                raise InvalidInput(
                    f"--against {against.root} was built with {theirs['name']!r}, this collection "
                    f"with {mine['name']!r}; level 'similar' needs the same model in both"
                )

    # Positions 0..n0-1 belong to coll, n0.. to against.
    slot_parts: list[np.ndarray] = []
    codes_all: np.ndarray | None = None
    has: np.ndarray | None = None
    views: dict[str, np.ndarray] = {}
    vecs: list[np.ndarray] = []
    if level == "near":
        code_parts = []
        for c in parts:
            s, k = slots_and_phash(c)
            if len(c) and not len(s):
                raise InvalidInput(
                    f"collection {c.root} has no perceptual hashes (its items were added as "
                    "vectors); level 'near' needs them: use --level similar"
                )
            slot_parts.append(s)
            code_parts.append(k)
        codes_all = np.concatenate(code_parts)
        origin = np.arange(len(codes_all)) >= len(slot_parts[0])
        side = origin if against is not None else None
        radius = int(threshold or 0)
        if hashes == "phash":
            a, b = near_edges(codes_all, radius, side)
        else:
            extra = [extra_hashes(c, s) for c, s in zip(parts, slot_parts, strict=True)]
            has = np.concatenate([e[0] for e in extra])
            views = {f: np.concatenate([e[1][f] for e in extra]) for f in FIELDS}
            views["phash"] = codes_all
            a, b = combined_pairs(views, has, radius)
            if side is not None:
                cross = side[a] != side[b]
                a, b = a[cross], b[cross]
    elif level == "exact":
        key_parts: list[tuple[bytes | None, str | None]] = []
        for c in parts:
            s, keys = exact_keys(c)
            if len(c) and not len(s):
                raise InvalidInput(
                    f"collection {c.root} has no pixel or content hashes (its items were added "
                    "as vectors); level 'exact' needs image files"
                )
            slot_parts.append(s)
            key_parts.extend(keys)
        a, b = exact_edges(key_parts)
    else:
        for c in parts:
            s = np.asarray(c.catalog.slots(), dtype=np.int64)
            slot_parts.append(s)
            vecs.append(unit_rows(c, s))
        if against is None:
            a, b = similar_edges(vecs[0], vecs[0], float(threshold or 0.0), same=True)
        else:
            a, b = similar_edges(vecs[0], vecs[1], float(threshold or 0.0), same=False)
            b = b + len(slot_parts[0])
    n0 = len(slot_parts[0])
    if len(a) == 0:
        return []
    nodes = np.unique(np.concatenate([a, b]))
    labels = components(len(nodes), np.searchsorted(nodes, a), np.searchsorted(nodes, b))
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    member_lists = [nodes[g] for g in np.split(order, bounds)]
    if against is not None:  # only groups that link the two collections
        member_lists = [m for m in member_lists if (m < n0).any() and (m >= n0).any()]
    if not member_lists:
        return []
    items = _load_items(parts, slot_parts, np.concatenate(member_lists))
    groups: list[Group] = []
    for positions in member_lists:
        members = [items[int(p)] for p in positions]
        if against is not None:
            candidates = [m for m in members if m.against]
            dup_members = [m for m in members if not m.against]
        else:
            candidates = members
            dup_members = members
        keeper = min(candidates, key=keeper_sort_key)
        keeper.keeper = True
        kpos = int(positions[members.index(keeper)])
        rest = sorted((m for m in dup_members if m is not keeper), key=keeper_sort_key)
        for m in rest:
            mpos = int(positions[members.index(m)])
            if level == "near":
                assert codes_all is not None
                if has is None:
                    m.score = 1.0 - hamming(codes_all[kpos], codes_all[mpos]) / 64.0
                else:
                    dist = combined_distance(views, has, np.array([kpos]), np.array([mpos]))
                    m.score = 1.0 - float(dist[0]) / 128.0
            elif level == "similar":
                kv = row(vecs, slot_parts, kpos)
                mv = row(vecs, slot_parts, mpos)
                m.score = float(np.dot(kv, mv))
            else:
                m.score = 1.0
        groups.append(Group(0, level, keeper, rest))
    groups.sort(key=lambda g: (-len(g.duplicates), keeper_sort_key(g.keeper)))
    for number, g in enumerate(groups, 1):
        g.number = number
    return groups


def _load_items(
    parts: list[DedupSource], slot_parts: list[np.ndarray], positions: np.ndarray
) -> dict[int, Member]:
    out: dict[int, Member] = {}
    n0 = len(slot_parts[0])
    for which, c in enumerate(parts):
        offset = 0 if which == 0 else n0
        mine = positions[(positions >= offset) & (positions < offset + len(slot_parts[which]))]
        slots = slot_parts[which][mine - offset]
        by_slot = c.catalog.by_slots(slots.tolist())
        for pos, slot in zip(mine.tolist(), slots.tolist(), strict=True):
            out[pos] = _member(by_slot[slot], str(c.root), against=which == 1)
    return out


def _member(item: Item, root: str, against: bool) -> Member:
    return Member(
        id=item.id,
        path=item.path,
        url=item.url,
        label=item.label,
        width=item.width,
        height=item.height,
        size=item.size,
        mtime_ns=item.mtime_ns,
        content_hash=item.content_hash,
        collection=root,
        against=against,
    )
