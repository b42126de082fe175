"""A sample set for the demo and the tests, made from photos scikit-image ships.

Only public-domain and CC0 photographs from ``skimage.data`` are used (their docstrings
give each one's source and licence; see :data:`PHOTOS`). Each one is written with edited
copies that a perceptual hash is meant to survive, originals and copies in two folders so
that either can be indexed alone::

    OUT/originals/<photo>/original.jpg   the photo
    OUT/copies/<photo>/crop.jpg          2% trimmed from each side
    OUT/copies/<photo>/resize.jpg        half the width and height
    OUT/copies/<photo>/recompress.jpg    saved again as a JPEG of quality 15
    OUT/copies/<photo>/brighter.jpg      brightness x 1.2
    OUT/copies/<photo>/caption.jpg       a line of text drawn near the bottom

The folder (the label lookalike gives these files) is the photo's name, so every file's
expected match is in its path. The output is deterministic. From a shell::

    python -m lookalike.samples OUT_DIR

scikit-image is imported only when a photo is loaded (``pip install 'lookalike[samples]'``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from .errors import InvalidInput, LookalikeError, MissingDependency


class PhotoInfo(NamedTuple):
    subject: str
    source: str
    licence: str


# Photographs in scikit-image's wheel whose docstrings say public domain or CC0. Left out:
# coins, immunohistochemistry, moon, page, stereo_motorcycle, logo (no licence stated, or
# only "no known copyright restrictions"); brick, grass, gravel (CC0 textures, no layout
# for a perceptual hash to hold on to); hubble_deep_field (public domain, but nearly black:
# the caption moves its hash by 22 of 128 bits); cell, microaneurysms, horse, text (not
# photographs, or 102 px wide); eagle, skin (not in the wheel: downloaded on first use).
PHOTOS: dict[str, PhotoInfo] = {
    "astronaut": PhotoInfo(
        "astronaut Eileen Collins", "NASA Great Images, https://flic.kr/p/r9qvLn", "public domain"
    ),
    "camera": PhotoInfo("man with a camera (grayscale)", "photographer Lav Varshney", "CC0"),
    "chelsea": PhotoInfo("Chelsea the cat", "photographer Stefan van der Walt", "CC0"),
    "clock": PhotoInfo(
        "motion-blurred wall clock (grayscale)", "photographer Stefan van der Walt", "public domain"
    ),
    "coffee": PhotoInfo("coffee cup", "photographer Rachel Michetti, Pikolo Espresso Bar", "CC0"),
    "retina": PhotoInfo(
        "fundus photograph of a retina",
        "Mikael Häggström, Wikimedia Commons (Fundus_photograph_of_normal_left_eye.jpg)",
        "CC0",
    ),
    "rocket": PhotoInfo(
        "Falcon 9 launching DSCOVR", "SpaceX Photos on Flickr (16511594820)", "public domain"
    ),
}

EDITS: tuple[str, ...] = ("crop", "resize", "recompress", "brighter", "caption")
CAPTION = "lookalike sample"
CROP_FRACTION = 0.02  # per side
BRIGHTNESS = 1.2
RECOMPRESS_QUALITY = 15
ORIGINAL_QUALITY = 95
QUALITY = 85  # the other copies


class Sample(NamedTuple):
    path: Path
    original: str  # the photo's name, also its folder and label
    edit: str  # "original" or one of EDITS


def load_photo(name: str) -> Image.Image:
    """One of :data:`PHOTOS` as a Pillow image (RGB, or L for the grayscale ones)."""
    if name not in PHOTOS:
        raise InvalidInput(f"unknown sample photo {name!r} (known: {', '.join(PHOTOS)})")
    try:
        import skimage.data
    except ImportError:
        raise MissingDependency(
            "the sample photos need scikit-image: pip install scikit-image"
        ) from None
    return Image.fromarray(getattr(skimage.data, name)())


def _caption(image: Image.Image) -> Image.Image:
    out = image.copy()
    w, h = out.size
    size = max(12, h // 16)
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont
    try:
        font = ImageFont.load_default(size=size)  # Pillow >= 10.1
    except TypeError:
        font = ImageFont.load_default()
    white, black = (255, 0) if out.mode == "L" else ((255, 255, 255), (0, 0, 0))
    draw = ImageDraw.Draw(out)
    draw.text(
        (round(w * 0.05), h - 2 * size),
        CAPTION,
        font=font,
        fill=white,
        stroke_width=max(1, size // 10),
        stroke_fill=black,
    )
    return out


def edit_image(image: Image.Image, edit: str) -> Image.Image:
    """``image`` with one of :data:`EDITS` applied (recompress is applied when saving)."""
    w, h = image.size
    if edit == "crop":
        dx, dy = round(w * CROP_FRACTION), round(h * CROP_FRACTION)
        return image.crop((dx, dy, w - dx, h - dy))
    if edit == "resize":
        return image.resize((w // 2, h // 2), Image.Resampling.LANCZOS)
    if edit == "brighter":
        return ImageEnhance.Brightness(image).enhance(BRIGHTNESS)
    if edit == "caption":
        return _caption(image)
    if edit in ("recompress", "original"):
        return image.copy()
    raise InvalidInput(f"unknown edit {edit!r} (known: {', '.join(EDITS)})")


def make_sample_set(out_dir: str | Path, photos: Iterable[str] | None = None) -> list[Sample]:
    """Write each photo (default: all of :data:`PHOTOS`) to ``out_dir/originals/<photo>/``
    and its edited copies to ``out_dir/copies/<photo>/``, as JPEGs. Returns what was
    written, per photo the original first."""
    out = Path(out_dir)
    written: list[Sample] = []
    for name in PHOTOS if photos is None else photos:
        image = load_photo(name)
        for edit in ("original", *EDITS):
            folder = out / ("originals" if edit == "original" else "copies") / name
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{edit}.jpg"
            quality = {"original": ORIGINAL_QUALITY, "recompress": RECOMPRESS_QUALITY}.get(
                edit, QUALITY
            )
            edit_image(image, edit).save(path, "JPEG", quality=quality)
            written.append(Sample(path, name, edit))
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m lookalike.samples OUT_DIR", file=sys.stderr)
        return 2
    try:
        samples = make_sample_set(args[0])
    except LookalikeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    photos = len({s.original for s in samples})
    print(
        f"wrote {len(samples)} images to {args[0]}: {photos} public-domain/CC0 photos from "
        f"scikit-image, each as original + {', '.join(EDITS)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
