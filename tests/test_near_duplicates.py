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


def test_edited_copies_of_real_photos_find_their_original_first(
    tmp_path: Path, sample_set: list
) -> None:
    """The same on real photos: the public-domain/CC0 ones scikit-image ships
    (lookalike.samples), among 60 generated distractors. Queries: the sample set's own
    copies (crop, resize, recompress, brighter, caption) and this file's four edits of each
    original. JPEGs, so both the indexed originals and the queries go through drafted
    decoding."""
    from PIL import Image

    originals = [s for s in sample_set if s.edit == "original"]
    assert len(originals) >= 7
    distractors = tmp_path / "distractors"
    for i in range(N):
        imagegen.save(imagegen.photo_like(i), distractors / f"img{i:03d}.jpg", quality=90)
    # (query file, the id of its original): the file names say the expected answer
    queries = [(s.path, f"{s.original}/original.jpg") for s in sample_set if s.edit != "original"]
    for s in originals:
        image = Image.open(s.path).convert("RGB")
        for edit, edited in imagegen.near_duplicates(image).items():
            copy = imagegen.save(edited, tmp_path / "copies" / f"{s.original}--{edit}.jpg")
            queries.append((copy, f"{s.original}/original.jpg"))
    with Collection.open(tmp_path / "c", "phash") as c:
        sources = [originals[0].path.parents[1], distractors]  # OUT/originals: <photo>/original.jpg
        assert c.add(sources, workers=0).indexed == len(originals) + N
        wrong = []
        for query, expected in queries:
            hit = c.search(str(query), k=1)[0]
            if hit.id != expected:
                wrong.append((query.name, expected, hit.id, hit.score))
        assert wrong == []
        assert len(queries) == 9 * len(originals)
