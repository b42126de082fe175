from __future__ import annotations

import pickle

import imagegen
import numpy as np
import pytest
from PIL import Image

from lookalike.errors import InvalidInput, ModelUnavailable
from lookalike.models.embedders.phash import PhashEmbedder
from lookalike.models.phash import (
    PhashPreparer,
    gray32,
    hamming,
    phash_bits,
    phash_from_gray32,
    phash_int,
    phash_int_to_bits,
)
from lookalike.models.registry import MODELS


@pytest.fixture(scope="module")
def photos(sample_set: list) -> list[Image.Image]:
    """Real photos: the public-domain/CC0 ones scikit-image ships and their edited copies."""
    images = [Image.open(s.path).convert("RGB") for s in sample_set]
    assert len(images) >= 40
    return images


def _imagehash_dct_bits(pixels: np.ndarray) -> bytes:
    """The DCT + median step of imagehash.phash, verbatim."""
    fftpack = pytest.importorskip("scipy.fftpack")
    dct = fftpack.dct(fftpack.dct(pixels, axis=0), axis=1)
    low = dct[:8, :8]
    return np.packbits(low > np.median(low)).tobytes()


def _imagehash_int(image: Image.Image) -> int:
    imagehash = pytest.importorskip("imagehash")
    return int(str(imagehash.phash(image)), 16)


# -- exactness against imagehash ----------------------------------------------------------


def test_dct_part_is_bit_identical_to_imagehash(photos: list[Image.Image]) -> None:
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 256, (32, 32), dtype=np.uint8) for _ in range(300)]
    inputs += [
        np.asarray(p.convert("L").resize((32, 32), Image.Resampling.LANCZOS)) for p in photos
    ]
    inputs.append(np.full((32, 32), 77, dtype=np.uint8))  # flat
    half = rng.integers(0, 256, (32, 16), dtype=np.uint8)
    inputs.append(np.concatenate([half, half[:, ::-1]], axis=1))  # mirror-symmetric: many ties
    for pixels in inputs:
        assert phash_from_gray32(pixels) == _imagehash_dct_bits(pixels)
        assert phash_from_gray32(pixels.astype(np.float32)) == phash_from_gray32(pixels)


def test_equals_imagehash_when_no_reduction_happens() -> None:
    # Below 64 px per side the fast path does no box reduction: exactly imagehash.phash.
    for seed, size in enumerate([(63, 40), (32, 32), (50, 63), (20, 45)]):
        image = imagegen.photo_like(seed, size)
        assert int.from_bytes(phash_bits(image), "big") == _imagehash_int(image)


def test_fast_path_is_close_to_imagehash_on_photos(photos: list[Image.Image]) -> None:
    distances = [
        (int.from_bytes(phash_bits(p), "big") ^ _imagehash_int(p)).bit_count() for p in photos
    ]
    assert np.mean(distances) <= 1.0, distances
    assert max(distances) <= 6, distances


def test_bit_order_matches_imagehash_hex(photos: list[Image.Image]) -> None:
    imagehash = pytest.importorskip("imagehash")
    small = photos[0].resize((48, 64))  # no reduction: identical bits
    assert phash_bits(small).hex() == str(imagehash.phash(small))


# -- representations -----------------------------------------------------------------------------


def test_phash_int_is_a_signed_int64_of_the_same_bits(photos: list[Image.Image]) -> None:
    saw_negative = False
    for image in photos:
        bits = phash_bits(image)
        value = phash_int(image)
        assert -(2**63) <= value < 2**63
        assert phash_int_to_bits(value) == bits
        assert value & 0xFFFFFFFFFFFFFFFF == int.from_bytes(bits, "big")
        saw_negative |= value < 0
    assert saw_negative  # the DC bit is usually set, so most hashes are negative


def test_hamming() -> None:
    assert hamming(b"\x00" * 8, b"\x00" * 8) == 0
    assert hamming(b"\xff" * 8, b"\x00" * 8) == 64
    assert hamming(b"\x80\x00\x00\x00\x00\x00\x00\x01", b"\x00" * 8) == 2
    with pytest.raises(InvalidInput):
        hamming(b"\x00" * 8, b"\x00" * 7)


def test_gray32_and_input_modes() -> None:
    image = imagegen.photo_like(3, (320, 240))
    thumb = gray32(image)
    assert thumb.mode == "L" and thumb.size == (32, 32)
    assert phash_bits(image.convert("L")) == phash_bits(image)
    assert len(phash_bits(image.convert("RGBA"))) == 8
    with pytest.raises(InvalidInput):
        phash_from_gray32(np.zeros((32, 31)))


# -- near duplicates ----------------------------------------------------------------------------

N_ORIGINALS = 52
MAX_DISTANCE = {"half": 4, "q30": 6, "bright": 6, "crop5": 12}


def test_near_duplicates_find_their_original() -> None:
    originals = {f"photo-{seed:02d}": imagegen.photo_like(seed) for seed in range(N_ORIGINALS)}
    hashes = {name: phash_bits(image) for name, image in originals.items()}
    names = list(hashes)
    closest_pair = min(
        hamming(hashes[a], hashes[b]) for i, a in enumerate(names) for b in names[i + 1 :]
    )
    assert closest_pair >= 14  # distinct originals are far apart

    for name, image in originals.items():
        for edit, copy in imagegen.near_duplicates(image).items():
            copy_name = f"{name}--{edit}"  # the expected answer is in the name
            h = phash_bits(copy)
            distances = {other: hamming(h, hashes[other]) for other in names}
            best = min(distances, key=lambda other: distances[other])
            assert copy_name.startswith(best + "--"), (copy_name, best, distances[best])
            assert distances[name] <= MAX_DISTANCE[edit], (copy_name, distances[name])
            runner_up = min(d for other, d in distances.items() if other != name)
            assert runner_up > distances[name], copy_name


# -- preparer and embedder ----------------------------------------------------------------------------


def test_preparer() -> None:
    preparer = PhashPreparer()
    image = imagegen.photo_like(4)
    row = preparer(image)
    assert row.dtype == np.uint8 and row.shape == (8,)
    assert row.tobytes() == phash_bits(image)
    assert preparer.draft_size() == (32, 32)
    clone = pickle.loads(pickle.dumps(preparer))
    assert np.array_equal(clone(image), row)


def test_embedder_passes_hashes_through() -> None:
    embedder = PhashEmbedder()
    assert embedder.spec is MODELS["phash"]
    assert embedder.binary and embedder.dim == 64 and embedder.row_width == 8
    assert embedder.row_dtype == np.uint8
    preparer = embedder.preparer()
    rows = [preparer(imagegen.photo_like(seed, (96, 64))) for seed in range(5)]
    out = embedder.embed(rows, batch_size=2)
    assert out.dtype == np.uint8 and out.shape == (5, 8)
    assert np.array_equal(out, np.stack(rows))
    assert embedder.embed([]).shape == (0, 8)
    assert embedder.identity() == {"name": "phash", "dim": 64, "metric": "hamming"}
    with pytest.raises(InvalidInput):
        embedder.embed([np.zeros(7, dtype=np.uint8)])


def test_embedder_refuses_other_models() -> None:
    with pytest.raises(ModelUnavailable):
        PhashEmbedder(MODELS["clip-vit-b32"])


def test_many_hashes_at_once_are_the_single_hashes() -> None:
    from lookalike.models.phash import phash_from_gray32, phash_ints_from_gray32

    rng = np.random.default_rng(3)
    grays = rng.integers(0, 256, (6, 32, 32)).astype(np.float64)
    grays[0] = 128.0  # flat: ties everywhere
    grays[1] = np.tile(np.arange(32.0), (32, 1))  # symmetric
    got = phash_ints_from_gray32(grays)
    assert got == [int.from_bytes(phash_from_gray32(g), "big", signed=True) for g in grays]
