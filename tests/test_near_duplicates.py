"""phash search finds the original of every edited copy at rank 1 (>= 50 images)."""

from __future__ import annotations

from pathlib import Path

import imagegen

from lookalike import Collection

N = 60


def test_edited_copies_find_their_original_first(tmp_path: Path) -> None:
    originals = tmp_path / "originals"
    copies = tmp_path / "copies"
    originals.mkdir()
    copies.mkdir()
    for i in range(N):
        image = imagegen.photo_like(i)
        imagegen.save(image, originals / f"img{i:03d}.png")
        for edit, edited in imagegen.near_duplicates(image).items():
            # the file name says the expected answer: <original>--<edit>.jpg
            imagegen.save(edited, copies / f"img{i:03d}--{edit}.jpg", quality=95)
    with Collection.open(tmp_path / "c", "phash") as c:
        assert c.add(originals, workers=0).indexed == N
        wrong = []
        for copy in sorted(copies.iterdir()):
            expected = copy.name.split("--")[0] + ".png"
            hit = c.search(str(copy), k=1)[0]
            if hit.id != expected:
                wrong.append((copy.name, hit.id, hit.score))
        assert wrong == []
        assert len(list(copies.iterdir())) == 4 * N


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


def test_edited_copies_of_real_photos_find_their_original_first(tmp_path: Path) -> None:
    """The same on the 60 CC0 product photos shipped in examples/images (JPEGs, so both
    the indexed originals and the queries go through drafted decoding)."""
    from PIL import Image

    photos = sorted(EXAMPLES.glob("*/*.jpg"))
    assert len(photos) >= 50
    copies = tmp_path / "copies"
    copies.mkdir()
    for photo in photos:
        image = Image.open(photo).convert("RGB")
        for edit, edited in imagegen.near_duplicates(image).items():
            imagegen.save(edited, copies / f"{photo.parent.name}__{photo.stem}--{edit}.jpg")
    with Collection.open(tmp_path / "c", "phash") as c:
        assert c.add(EXAMPLES, workers=0).indexed == len(photos)
        wrong = []
        for copy in sorted(copies.iterdir()):
            label, stem = copy.name.split("--")[0].split("__")
            hit = c.search(str(copy), k=1)[0]
            if hit.id != f"{label}/{stem}.jpg":
                wrong.append((copy.name, hit.id, hit.score))
        assert wrong == []
