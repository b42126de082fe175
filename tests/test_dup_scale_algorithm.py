"""The multi-index Hamming join and the component labelling agree with brute force."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.dedup.hamming import choose_blocks, components, hamming_pairs, near_edges
from lookalike.errors import InvalidInput


def _planted(n: int, seed: int) -> np.ndarray:
    """Random codes, half of them copies of others with 0-12 bits flipped."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**63, size=n // 2, dtype=np.int64).view(np.uint64)
    base = base ^ (rng.integers(0, 2, size=len(base), dtype=np.uint64) << np.uint64(63))
    src = rng.integers(0, len(base), size=n - len(base))
    flips = np.zeros(len(src), dtype=np.uint64)
    for k in range(len(src)):
        for bit in rng.choice(64, size=int(rng.integers(0, 13)), replace=False):
            flips[k] |= np.uint64(1) << np.uint64(bit)
    return np.concatenate([base, base[src] ^ flips])


def _brute(codes: np.ndarray, radius: int) -> set[tuple[int, int]]:
    dist = np.bitwise_count(codes[:, None] ^ codes[None, :])
    i, j = np.nonzero(np.triu(dist <= radius, 1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


@pytest.mark.parametrize(("n", "radius"), [(3000, 8), (2500, 0), (2000, 3), (1500, 12)])
def test_hamming_pairs_equal_brute_force(n: int, radius: int) -> None:
    codes = _planted(n, seed=radius)
    i, j, d = hamming_pairs(codes, radius)
    expected = _brute(codes, radius)
    assert len(expected) > 100  # the planted copies give plenty of true pairs
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == expected
    assert len(i) == len(expected)  # each pair once
    assert (d == np.bitwise_count(codes[i] ^ codes[j])).all()


def test_large_collections_use_long_blocks() -> None:
    blocks, r = choose_blocks(1_000_000, 8)
    assert [w for _, w in blocks] == [22, 21, 21] and r == 2
    blocks, r = choose_blocks(100, 8)
    assert len(blocks) > 3  # small n: more, shorter blocks, exact lookups


def test_near_edges_components_equal_brute_force_with_repeated_codes() -> None:
    codes = _planted(1200, seed=5)
    codes = np.concatenate([codes, codes[:300], codes[:50]])  # exact repeats
    a, b = near_edges(codes, 6)
    labels = components(len(codes), a, b)
    # brute-force union-find
    parent = list(range(len(codes)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in _brute(codes, 6):
        parent[find(x)] = find(y)
    roots = [find(x) for x in range(len(codes))]
    ours: dict[int, set[int]] = {}
    theirs: dict[int, set[int]] = {}
    for x in range(len(codes)):
        ours.setdefault(int(labels[x]), set()).add(x)
        theirs.setdefault(roots[x], set()).add(x)
    assert sorted(map(sorted, ours.values())) == sorted(map(sorted, theirs.values()))


def test_two_sided_edges_only_link_across() -> None:
    codes = np.array([0, 1, 3, 2**40, 2**40 + 1], dtype=np.uint64)
    side = np.array([False, False, True, False, False])
    a, b = near_edges(codes, 2, side)
    pairs = {tuple(sorted(p)) for p in zip(a.tolist(), b.tolist(), strict=True)}
    assert pairs and all(side[x] != side[y] for x, y in pairs)
    assert (0, 2) in pairs or (1, 2) in pairs


def test_radius_out_of_range() -> None:
    with pytest.raises(InvalidInput):
        hamming_pairs(np.zeros(3, dtype=np.uint64), 33)
