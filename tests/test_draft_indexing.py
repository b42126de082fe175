"""Hash-model and --fast-resize indexing decode JPEGs at reduced scale; exactness is recovered
on demand."""

from __future__ import annotations

import io
from pathlib import Path

import imagegen
import numpy as np
import pytest
import tiny_models
from PIL import Image

from lookalike import Collection
from lookalike.ingest.decode import decode_image, pixel_hash


def _jpeg_and_its_png(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True)
    jpeg = imagegen.encode(imagegen.photo_like(5, (800, 600)), "JPEG", quality=90)
    jpg_path = imagegen.write_bytes(folder / "original.jpg", jpeg)
    # A lossless copy of the JPEG's decoded pixels: the same picture, another file format.
    png_path = imagegen.save(Image.open(io.BytesIO(jpeg)).convert("RGB"), folder / "copy.png")
    return jpg_path, png_path


def test_phash_collection_drafts_jpegs_and_recovers_exact_pixel_hashes(tmp_path: Path) -> None:
    jpg, png = _jpeg_and_its_png(tmp_path / "pics")
    with Collection.open(tmp_path / "c", "phash") as coll:
        coll.add([tmp_path / "pics"], workers=0)
        items = {Path(i.path or "").name: i for i in coll.items()}
        drafted, lossless = items["original.jpg"], items["copy.png"]
        # The JPEG was decoded at a reduced scale: sizes are still the file's full size,
        # but there is no full-resolution pixel hash yet.
        assert drafted.pixel_hash is None
        assert (drafted.width, drafted.height) == (800, 600)
        assert lossless.pixel_hash is not None
        # The drafted phash stays within a few bits of the full-resolution one.
        assert drafted.phash is not None and lossless.phash is not None
        assert ((drafted.phash ^ lossless.phash) & (2**64 - 1)).bit_count() <= 6

        hashes = coll.pixel_hashes([drafted, lossless])
        expected = pixel_hash(decode_image(jpg.read_bytes()).image)
        assert hashes == {drafted.id: expected, lossless.id: expected}
    # ...and it was saved in the catalog for next time.
    with Collection.open(tmp_path / "c") as coll:
        assert coll.get(drafted.id).pixel_hash == expected


def test_changed_or_missing_files_get_no_pixel_hash(tmp_path: Path) -> None:
    jpg, png = _jpeg_and_its_png(tmp_path / "pics")
    with Collection.open(tmp_path / "c", "phash") as coll:
        coll.add([tmp_path / "pics"], workers=2)
        items = {Path(i.path or "").name: i for i in coll.items()}
        assert items["original.jpg"].pixel_hash is None  # drafted in a worker process too
        jpg.write_bytes(imagegen.encode(imagegen.photo_like(6, (800, 600)), "JPEG"))
        assert coll.pixel_hashes([items["original.jpg"]]) == {}
        png.unlink()
        stored = items["copy.png"].pixel_hash
        assert coll.pixel_hashes([items["copy.png"]]) == {items["copy.png"].id: stored}
    with Collection.open(tmp_path / "c") as coll:
        assert coll.get(items["original.jpg"].id).pixel_hash is None


def test_float_models_index_full_resolution(tmp_path: Path) -> None:
    _jpeg_and_its_png(tmp_path / "pics")
    model = tiny_models.write_local_model(tmp_path / "tiny", tiny_models.make_pooling_model(dim=8))
    with Collection.open(tmp_path / "c", model_path=model) as coll:
        coll.add([tmp_path / "pics"], workers=0)
        items = list(coll.items())
        assert len(items) == 2
        assert all(i.pixel_hash is not None for i in items)
        assert len({i.pixel_hash for i in items}) == 1  # the JPEG and its PNG copy


def test_exact_duplicates_see_through_drafted_decoding(tmp_path: Path) -> None:
    """A JPEG (drafted at indexing) and a PNG of its pixels are exact duplicates; a JPEG
    re-encode of the same picture is not (its pixels differ)."""
    jpg, png = _jpeg_and_its_png(tmp_path / "pics")
    reencoded = Image.open(jpg).convert("RGB")
    imagegen.save(reencoded, tmp_path / "pics" / "reencoded_q70.jpg", quality=70)
    imagegen.save(imagegen.photo_like(9, (800, 600)), tmp_path / "pics" / "other.jpg")
    with Collection.open(tmp_path / "c", "phash") as coll:
        coll.add([tmp_path / "pics"], workers=0)
        groups = coll.duplicates(level="exact")
        names = [sorted(Path(m.path or "").name for m in [g.keeper, *g.duplicates]) for g in groups]
        assert names == [["copy.png", "original.jpg"]]
        # Only the candidates were decoded in full: the unrelated JPEG still has no pixel hash.
        by_name = {Path(i.path or "").name: i for i in coll.items()}
        assert by_name["original.jpg"].pixel_hash is not None
        assert by_name["other.jpg"].pixel_hash is None


def test_fast_resize_collections_draft_and_still_find_exact_duplicates(tmp_path: Path) -> None:
    """``--fast-resize`` opts out of the reference's pixels, so its JPEGs are drafted too
    (the 800x600 photo is decoded at 1/8 for a 64-px model, still above the resize target),
    with the same vectors as a full decode would give after drafting by hand."""
    pytest.importorskip("cv2", reason="--fast-resize needs OpenCV")
    jpg, png = _jpeg_and_its_png(tmp_path / "pics")
    config = tiny_models.tiny_preprocessor_config(64)
    model = tiny_models.write_local_model(
        tmp_path / "tiny", tiny_models.make_pooling_model(dim=8), preprocessor=config
    )
    with Collection.open(tmp_path / "c", model_path=model, fast_resize=True) as coll:
        coll.add([tmp_path / "pics"], workers=0)
        by_name = {Path(i.path or "").name: i for i in coll.items()}
        assert by_name["original.jpg"].pixel_hash is None  # drafted: computed on demand
        assert (by_name["original.jpg"].width, by_name["original.jpg"].height) == (800, 600)
        assert by_name["copy.png"].pixel_hash is not None
        groups = coll.duplicates(level="exact")
        names = [sorted(Path(m.path or "").name for m in [g.keeper, *g.duplicates]) for g in groups]
        assert names == [["copy.png", "original.jpg"]]
        drafted = decode_image(jpg.read_bytes(), draft=(64, 64)).image
        assert drafted.size == (100, 75)
        prep = coll.embedder.preparer()
        want = coll.embedder.embed([prep(drafted)])[0]
        got = coll.vectors.read([by_name["original.jpg"].slot], coll.catalog.next_slot)[0]
        assert np.allclose(got, want, atol=1e-6)
