"""All pairs of 64-bit codes within a Hamming radius, without an N x N matrix.

Multi-index hashing (Norouzi et al., "Fast search in Hamming space with multi-index
hashing", 2012). The 64 bits are cut into ``m`` blocks; if two codes differ in at most
``d`` bits, then by the pigeonhole principle some block differs in at most ``d // m`` bits.
For each block the codes are bucketed by the block's value (a counting sort into a
direct-address table); each code then looks up the buckets of its block value with every
pattern of at most ``d // m`` flipped bits, and only those candidates are verified with a
popcount. The number of blocks is chosen by a cost model from ``n`` and ``d``: few long
blocks for large collections (fewer false candidates), many short ones for small ones
(fewer lookups).

Identical codes are collapsed first (:func:`near_edges`), so a bucket of 10,000 copies of
one hash costs 10,000 edges, not 50 million pairs.

Connected components use hook-and-compress label propagation on numpy arrays.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from ..errors import InvalidInput

BITS = 64
MAX_RADIUS = 32
_MAX_BLOCK_BITS = 22  # direct-address tables of at most 4M entries
_CHUNK = 1 << 22  # candidate pairs verified at a time (bounds memory)


def popcount64(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (numpy >= 2 has a native ufunc)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    x = x.astype(np.uint64)
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return ((x * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.int64)


def _volume(bits: int, radius: int) -> int:
    return sum(math.comb(bits, k) for k in range(radius + 1))


def _blocks(m: int) -> list[tuple[int, int]]:
    """(shift, width) of ``m`` near-equal blocks covering 64 bits."""
    widths = [BITS // m + (1 if i < BITS % m else 0) for i in range(m)]
    out, shift = [], 0
    for w in widths:
        out.append((shift, w))
        shift += w
    return out


def choose_blocks(n: int, radius: int) -> tuple[list[tuple[int, int]], int]:
    """The block layout with the lowest estimated cost, and the per-block radius."""
    best: tuple[float, list[tuple[int, int]], int] | None = None
    m_min = math.ceil(BITS / _MAX_BLOCK_BITS)
    for m in range(m_min, min(radius + 1, BITS) + 1 if radius + 1 >= m_min else m_min + 1):
        blocks = _blocks(m)
        r = radius // m
        lookups = sum(_volume(w, r) for _, w in blocks) * float(n)
        candidates = sum(_volume(w, r) / 2.0**w for _, w in blocks) * float(n) * n / 2.0
        cost = lookups + 4.0 * candidates
        if best is None or cost < best[0]:
            best = (cost, blocks, r)
    assert best is not None
    return best[1], best[2]


@lru_cache(maxsize=64)
def _flip_masks(width: int, radius: int) -> tuple[int, ...]:
    masks = [0]
    for k in range(1, radius + 1):
        for combo in itertools.combinations(range(width), k):
            masks.append(sum(1 << b for b in combo))
    return tuple(masks)


def _check_radius(radius: int) -> None:
    if not 0 <= radius <= MAX_RADIUS:
        raise InvalidInput(f"Hamming threshold must be between 0 and {MAX_RADIUS}, not {radius}")


def hamming_pairs(codes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` with ``popcount(codes[i] ^ codes[j]) <= radius``.

    Returns ``(i, j, distance)`` as int64 arrays, sorted by ``(i, j)``. Memory is
    O(n + pairs found); candidates are verified in bounded chunks.
    """
    _check_radius(radius)
    codes = np.ascontiguousarray(codes, dtype=np.uint64)
    n = len(codes)
    empty = np.zeros(0, dtype=np.int64)
    if n < 2:
        return empty, empty.copy(), empty.copy()
    blocks, r = choose_blocks(n, radius)
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    found_d: list[np.ndarray] = []
    for shift, width in blocks:
        keys = ((codes >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        skeys = keys[order]
        scodes = codes[order]
        counts = np.bincount(skeys, minlength=1 << width)
        starts = np.zeros(len(counts), dtype=np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        for flip in _flip_masks(width, r):
            qkeys = skeys ^ flip if flip else skeys
            c = counts[qkeys]
            for qi, cj in _expand(c, starts[qkeys]):
                # each unordered pair once per (block, flip): keep position qi < cj
                keep = order[qi] < order[cj] if flip else qi < cj
                qi, cj = qi[keep], cj[keep]
                d = popcount64(scodes[qi] ^ scodes[cj])
                ok = d <= radius
                found_i.append(order[qi[ok]])
                found_j.append(order[cj[ok]])
                found_d.append(d[ok])
    if not found_i:
        return empty, empty.copy(), empty.copy()
    i = np.concatenate(found_i)
    j = np.concatenate(found_j)
    d = np.concatenate(found_d)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    key, first = np.unique(lo * n + hi, return_index=True)
    return lo[first], hi[first], d[first]


def _expand(counts: np.ndarray, starts: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(query position, candidate position) pairs for queries with ``counts[q]`` candidates
    starting at ``starts[q]``, in chunks of about ``_CHUNK`` pairs."""
    sel = np.flatnonzero(counts)
    if len(sel) == 0:
        return
    c = counts[sel]
    cum = np.cumsum(c)
    lo = 0
    while lo < len(sel):
        base = int(cum[lo - 1]) if lo else 0
        hi = int(np.searchsorted(cum, base + _CHUNK, side="right"))
        hi = max(hi, lo + 1)
        cs = c[lo:hi]
        q = np.repeat(sel[lo:hi], cs)
        offsets = np.arange(len(q), dtype=np.int64) - np.repeat(
            np.concatenate(([0], np.cumsum(cs)[:-1])), cs
        )
        yield q, np.repeat(starts[sel[lo:hi]], cs) + offsets
        lo = hi


def near_edges(
    codes: np.ndarray, radius: int, side: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Edges whose connected components are exactly those of "Hamming distance <= radius".

    Identical codes are collapsed before the pair search and chained to their first
    occurrence, so the edge list stays O(n + distinct pairs). With ``side`` (a boolean per
    code: which of two collections it comes from), pairs of distinct codes are kept only
    when they link the two sides, so every item in a component holding both sides is
    within ``radius`` of an item of the other side or identical to one.
    """
    _check_radius(radius)
    codes = np.ascontiguousarray(codes, dtype=np.uint64)
    if len(codes) < 2:
        e = np.zeros(0, dtype=np.int64)
        return e, e.copy()
    uniq, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    rep = first[inverse]  # first item holding the same code
    same = np.flatnonzero(rep != np.arange(len(codes)))
    ui, uj, _ = hamming_pairs(uniq, radius)
    if side is not None:
        side = np.asarray(side, dtype=bool)
        has_a = np.zeros(len(uniq), dtype=bool)
        has_b = np.zeros(len(uniq), dtype=bool)
        has_a[inverse[~side]] = True
        has_b[inverse[side]] = True
        cross = (has_a[ui] & has_b[uj]) | (has_b[ui] & has_a[uj])
        ui, uj = ui[cross], uj[cross]
    a = np.concatenate([rep[same], first[ui]])
    b = np.concatenate([same, first[uj]])
    return a.astype(np.int64), b.astype(np.int64)


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component label (the smallest member index) of each of ``n`` nodes, given edges."""
    labels = np.arange(n, dtype=np.int64)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if len(a) == 0:
        return labels
    while True:
        la, lb = labels[a], labels[b]
        m = np.minimum(la, lb)
        new = labels.copy()
        np.minimum.at(new, la, m)
        np.minimum.at(new, lb, m)
        while True:  # pointer jumping until every node points at a root
            nxt = new[new]
            if np.array_equal(nxt, new):
                break
            new = nxt
        if np.array_equal(new, labels):
            return labels
        labels = new


def hamming_pairs_items(codes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of items within ``radius``, identical codes included.

    Like :func:`hamming_pairs` but codes may repeat: the search runs on the distinct codes
    and each matching pair of codes expands to all pairs of their items.
    """
    _check_radius(radius)
    codes = np.ascontiguousarray(codes, dtype=np.uint64)
    e = np.zeros(0, dtype=np.int64)
    if len(codes) < 2:
        return e, e.copy()
    uniq, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    starts = np.zeros(len(uniq), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    ui, uj, _ = hamming_pairs(uniq, radius)
    rep = np.flatnonzero(counts > 1)
    u = np.concatenate([rep, ui])
    v = np.concatenate([rep, uj])
    cu, cv = counts[u].astype(np.int64), counts[v].astype(np.int64)
    sizes = cu * cv
    total = int(sizes.sum())
    if total == 0:
        return e, e.copy()
    which = np.repeat(np.arange(len(u)), sizes)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    a_off, b_off = within // cv[which], within % cv[which]
    i = order[starts[u[which]] + a_off]
    j = order[starts[v[which]] + b_off]
    keep = i != j
    if len(rep):
        same = u[which] == v[which]
        keep &= ~same | (a_off < b_off)
    i, j = i[keep], j[keep]
    return np.minimum(i, j), np.maximum(i, j)


def cross_pairs(x: np.ndarray, y: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ``(i, j)`` with ``hamming(x[i], y[j]) <= radius`` (``x`` and ``y`` aligned
    views of the same items, e.g. hashes and hashes of the mirror images; ``i == j``
    left out)."""
    k = len(x)
    i, j = hamming_pairs_items(np.concatenate([x, y]), radius)
    keep = (i < k) & (j >= k)
    i, j = i[keep], j[keep] - k
    keep = i != j
    return i[keep], j[keep]
