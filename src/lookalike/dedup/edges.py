"""Edges between duplicate candidates: exact (same pixels), near (perceptual hash distance) and similar (cosine), never N x N."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from .hamming import (
    cross_pairs,
    hamming_pairs_items,
    popcount64,
)
from .source import DedupSource

log = logging.getLogger(__name__)

Level = Literal["exact", "near", "similar"]
LEVELS: tuple[str, ...] = ("exact", "near", "similar")

_RANGE_BATCH = 1024


def slots_and_phash(coll: DedupSource) -> tuple[np.ndarray, np.ndarray]:
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


def exact_keys(coll: DedupSource) -> tuple[np.ndarray, list[tuple[bytes | None, str | None]]]:
    rows = coll.catalog.db.execute(
        "SELECT slot, pixel_hash, content_hash, phash, width, height FROM items "
        "WHERE pixel_hash IS NOT NULL OR content_hash IS NOT NULL ORDER BY slot"
    ).fetchall()
    slots = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    keys: list[tuple[bytes | None, str | None]] = [(r[1], r[2]) for r in rows]
    for pos, value in recovered_pixel_hashes(coll, rows, slots).items():
        keys[pos] = (value, keys[pos][1])
    return slots, keys


def recovered_pixel_hashes(
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


def exact_edges(keys: Sequence[tuple[bytes | None, str | None]]) -> tuple[np.ndarray, np.ndarray]:
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


def unit_rows(coll: DedupSource, slots: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(coll.vectors.read(slots, coll.catalog.next_slot), dtype=np.float32)


def similar_edges(
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


def hamming(x: np.uint64, y: np.uint64) -> int:
    return (int(x) ^ int(y)).bit_count()


def bits(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return popcount64(np.bitwise_xor(x, y))


def combined_distance(
    v: dict[str, np.ndarray], has: np.ndarray, i: np.ndarray, j: np.ndarray
) -> np.ndarray:
    """128-bit distance of pairs (i, j): phash + dHash bits, the smallest over the images
    as they are, one against the other's mirror image, and both trimmed. Items without
    the extra hashes count twice their phash distance."""
    p, d = v["phash"], v["dhash"]
    plain = bits(p[i], p[j]) + bits(d[i], d[j])
    mirror1 = bits(p[i], v["mphash"][j]) + bits(d[i], v["mdhash"][j])
    mirror2 = bits(v["mphash"][i], p[j]) + bits(v["mdhash"][i], d[j])
    trimmed = bits(v["tphash"][i], v["tphash"][j]) + bits(v["tdhash"][i], v["tdhash"][j])
    best = np.minimum(np.minimum(plain, trimmed), np.minimum(mirror1, mirror2))
    both = has[i] & has[j]
    return np.where(both, best, 2 * bits(p[i], p[j]))


def combined_pairs(
    v: dict[str, np.ndarray], has: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs within ``radius`` by :func:`combined_distance`, without comparing all.

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
    keep = combined_distance(v, has, lo, hi) <= radius
    return lo[keep], hi[keep]


def row(vecs: list[np.ndarray], slot_parts: list[np.ndarray], pos: int) -> np.ndarray:
    n0 = len(slot_parts[0])
    return vecs[0][pos] if pos < n0 else vecs[1][pos - n0]
