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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import InvalidInput
from ..store.catalog import Item
from .hamming import (
    MAX_RADIUS,
    components,
    cross_pairs,
    hamming_pairs_items,
    near_edges,
    popcount64,
)
from .hashes import FIELDS, extra_hashes
from .source import DedupSource

log = logging.getLogger(__name__)

Level = Literal["exact", "near", "similar"]
LEVELS: tuple[str, ...] = ("exact", "near", "similar")
DEFAULT_NEAR_THRESHOLD = 12  # phash + dHash bits (of 128), min over the three views
DEFAULT_PHASH_THRESHOLD = 8  # phash bits (of 64), with hashes="phash"
DEFAULT_SIMILAR_THRESHOLD = 0.95
_RANGE_BATCH = 1024


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


def _slots_and_phash(coll: DedupSource) -> tuple[np.ndarray, np.ndarray]:
    """Slots and 64-bit phashes of every item that has one.

    Items added as precomputed vectors have no phash column; in a 64-bit binary collection
    (the ``phash`` model) their vector is the hash.
    """
    rows = coll.catalog.db.execute("SELECT slot, phash FROM items ORDER BY slot").fetchall()
    if not rows:
        z = np.zeros(0, dtype=np.int64)
        return z, z.view(np.uint64)
    slots = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    has = np.fromiter((r[1] is not None for r in rows), dtype=bool, count=len(rows))
    codes = np.fromiter(
        (r[1] if r[1] is not None else 0 for r in rows), dtype=np.int64, count=len(rows)
    ).view(np.uint64)
    del rows
    if not has.all() and coll.binary and coll.dim == 64:
        missing = np.flatnonzero(~has)
        vecs = coll.vectors.read(slots[missing], coll.catalog.next_slot)
        codes[missing] = np.frombuffer(np.ascontiguousarray(vecs).tobytes(), dtype=">u8")
        has[missing] = True
    return slots[has], codes[has]


# A JPEG indexed by a hash model was decoded at reduced scale and has no full-resolution
# pixel hash in the catalog. An item with identical pixels has the same size and a phash a
# few bits away (drafting moves at most ~6 bits, measured in docs/preprocessing.md), so only
# such candidates are fully decoded, once, to get their pixel hash.
_EXACT_CANDIDATE_RADIUS = 8


def _exact_keys(coll: DedupSource) -> tuple[np.ndarray, list[tuple[bytes | None, str | None]]]:
    rows = coll.catalog.db.execute(
        "SELECT slot, pixel_hash, content_hash, phash, width, height FROM items "
        "WHERE pixel_hash IS NOT NULL OR content_hash IS NOT NULL ORDER BY slot"
    ).fetchall()
    slots = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    keys: list[tuple[bytes | None, str | None]] = [(r[1], r[2]) for r in rows]
    for pos, value in _recovered_pixel_hashes(coll, rows, slots).items():
        keys[pos] = (value, keys[pos][1])
    return slots, keys


def _recovered_pixel_hashes(
    coll: DedupSource, rows: Sequence[Sequence[Any]], slots: np.ndarray
) -> dict[int, bytes]:
    """Full-resolution pixel hashes, by row position, for the rows without one that could
    have a pixel-identical partner (same size, phash within the candidate radius)."""
    from .hamming import hamming_pairs

    if all(r[1] is not None for r in rows):  # float-model collections: nothing was drafted
        return {}
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, r in enumerate(rows):
        if r[3] is not None and r[4] is not None and r[5] is not None:
            by_size.setdefault((r[4], r[5]), []).append(i)
    wanted: set[int] = set()
    for members in by_size.values():
        if len(members) < 2 or all(rows[i][1] is not None for i in members):
            continue
        idx = np.asarray(members, dtype=np.int64)
        codes = np.asarray([rows[i][3] for i in members], dtype=np.int64).view(np.uint64)
        a, b, _ = hamming_pairs(codes, _EXACT_CANDIDATE_RADIUS)
        for x, y in zip(idx[a].tolist(), idx[b].tolist(), strict=True):
            if rows[x][1] is None or rows[y][1] is None:
                wanted.update((x, y))
    todo = sorted(i for i in wanted if rows[i][1] is None)
    if not todo:
        return {}
    items = coll.catalog.by_slots(int(slots[i]) for i in todo)
    found = coll.pixel_hashes(items.values())
    out: dict[int, bytes] = {}
    for i in todo:
        item = items.get(int(slots[i]))
        if item is not None and item.id in found:
            out[i] = found[item.id]
    log.info("exact: decoded %d drafted items in full to compare their pixels", len(out))
    return out


# -- edges per level ----------------------------------------------------------------------


def _exact_edges(keys: Sequence[tuple[bytes | None, str | None]]) -> tuple[np.ndarray, np.ndarray]:
    first_pixels: dict[bytes, int] = {}
    first_bytes: dict[str, int] = {}
    a: list[int] = []
    b: list[int] = []
    for i, (pixels, content) in enumerate(keys):
        if pixels is not None:
            j = first_pixels.setdefault(bytes(pixels), i)
            if j != i:
                a.append(j)
                b.append(i)
        if content is not None:
            j = first_bytes.setdefault(content, i)
            if j != i:
                a.append(j)
                b.append(i)
    return np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)


def _unit_rows(coll: DedupSource, slots: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(coll.vectors.read(slots, coll.catalog.next_slot), dtype=np.float32)


def _similar_edges(
    queries: np.ndarray, base: np.ndarray, threshold: float, same: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (query row, base row) with inner product >= threshold, by FAISS range search
    in batches; with ``same`` (queries are the base) only pairs q < b."""
    import faiss

    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    a_parts: list[np.ndarray] = []
    b_parts: list[np.ndarray] = []
    radius = float(threshold) - 1e-6
    for start in range(0, len(queries), _RANGE_BATCH):
        batch = queries[start : start + _RANGE_BATCH]
        lims, sims, ids = index.range_search(batch, radius)
        q = np.repeat(np.arange(len(batch), dtype=np.int64) + start, np.diff(lims).astype(np.int64))
        ids = ids.astype(np.int64)
        keep = sims >= radius
        if same:
            keep &= q < ids
        a_parts.append(q[keep])
        b_parts.append(ids[keep])
    if not a_parts:
        e = np.zeros(0, dtype=np.int64)
        return e, e.copy()
    return np.concatenate(a_parts), np.concatenate(b_parts)


# -- the finder ---------------------------------------------------------------------------


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
            s, k = _slots_and_phash(c)
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
            a, b = _combined_pairs(views, has, radius)
            if side is not None:
                cross = side[a] != side[b]
                a, b = a[cross], b[cross]
    elif level == "exact":
        key_parts: list[tuple[bytes | None, str | None]] = []
        for c in parts:
            s, keys = _exact_keys(c)
            if len(c) and not len(s):
                raise InvalidInput(
                    f"collection {c.root} has no pixel or content hashes (its items were added "
                    "as vectors); level 'exact' needs image files"
                )
            slot_parts.append(s)
            key_parts.extend(keys)
        a, b = _exact_edges(key_parts)
    else:
        for c in parts:
            s = np.asarray(c.catalog.slots(), dtype=np.int64)
            slot_parts.append(s)
            vecs.append(_unit_rows(c, s))
        if against is None:
            a, b = _similar_edges(vecs[0], vecs[0], float(threshold or 0.0), same=True)
        else:
            a, b = _similar_edges(vecs[0], vecs[1], float(threshold or 0.0), same=False)
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
                    m.score = 1.0 - _hamming(codes_all[kpos], codes_all[mpos]) / 64.0
                else:
                    dist = _combined_distance(views, has, np.array([kpos]), np.array([mpos]))
                    m.score = 1.0 - float(dist[0]) / 128.0
            elif level == "similar":
                kv = _row(vecs, slot_parts, kpos)
                mv = _row(vecs, slot_parts, mpos)
                m.score = float(np.dot(kv, mv))
            else:
                m.score = 1.0
        groups.append(Group(0, level, keeper, rest))
    groups.sort(key=lambda g: (-len(g.duplicates), keeper_sort_key(g.keeper)))
    for number, g in enumerate(groups, 1):
        g.number = number
    return groups


def _hamming(x: np.uint64, y: np.uint64) -> int:
    return (int(x) ^ int(y)).bit_count()


def _bits(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return popcount64(np.bitwise_xor(x, y))


def _combined_distance(
    v: dict[str, np.ndarray], has: np.ndarray, i: np.ndarray, j: np.ndarray
) -> np.ndarray:
    """128-bit distance of pairs (i, j): phash + dHash bits, the smallest over the images
    as they are, one against the other's mirror image, and both trimmed. Items without
    the extra hashes count twice their phash distance."""
    p, d = v["phash"], v["dhash"]
    plain = _bits(p[i], p[j]) + _bits(d[i], d[j])
    mirror1 = _bits(p[i], v["mphash"][j]) + _bits(d[i], v["mdhash"][j])
    mirror2 = _bits(v["mphash"][i], p[j]) + _bits(v["mdhash"][i], d[j])
    trimmed = _bits(v["tphash"][i], v["tphash"][j]) + _bits(v["tdhash"][i], v["tdhash"][j])
    best = np.minimum(np.minimum(plain, trimmed), np.minimum(mirror1, mirror2))
    both = has[i] & has[j]
    return np.where(both, best, 2 * _bits(p[i], p[j]))


def _combined_pairs(
    v: dict[str, np.ndarray], has: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs within ``radius`` by :func:`_combined_distance`, without comparing all.

    Candidates: a sum of two distances is <= r only if one of them is <= r // 2
    (pigeonhole), so every view's phash and dHash are joined at r // 2 (mirror views as a
    two-sided join) and the candidates are verified with the full distance. Items without
    the extra hashes are joined by phash at r // 2.
    """
    half = radius // 2
    idx = np.flatnonzero(has)
    cand_i: list[np.ndarray] = []
    cand_j: list[np.ndarray] = []

    def add(i: np.ndarray, j: np.ndarray) -> None:
        cand_i.append(idx[i])
        cand_j.append(idx[j])

    if len(idx) > 1:
        sub = {f: a[idx] for f, a in v.items()}
        for f in ("phash", "dhash", "tphash", "tdhash"):
            add(*hamming_pairs_items(sub[f], half))
        add(*cross_pairs(sub["phash"], sub["mphash"], half))
        add(*cross_pairs(sub["dhash"], sub["mdhash"], half))
    if not has.all():
        i, j = hamming_pairs_items(v["phash"], half)
        keep = ~(has[i] & has[j])
        cand_i.append(i[keep])
        cand_j.append(j[keep])
    e = np.zeros(0, dtype=np.int64)
    if not cand_i:
        return e, e.copy()
    a, b = np.concatenate(cand_i), np.concatenate(cand_j)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    n = len(has)
    _, first = np.unique(lo * n + hi, return_index=True)
    lo, hi = lo[first], hi[first]
    keep = _combined_distance(v, has, lo, hi) <= radius
    return lo[keep], hi[keep]


def _row(vecs: list[np.ndarray], slot_parts: list[np.ndarray], pos: int) -> np.ndarray:
    n0 = len(slot_parts[0])
    return vecs[0][pos] if pos < n0 else vecs[1][pos - n0]


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
