"""A near-duplicate test set from any image folder, with known edits and a ground truth.

``make_duplicate_set(SRC, OUT)`` picks ``originals`` images and ``distractors`` other images
from ``SRC`` (seeded), copies them into ``OUT/originals`` and ``OUT/distractors``, and writes
one edited copy of every original per edit into ``OUT/edited/EDIT/``:

=====================  =================================================================
``copy``               the same bytes
``lossless``           the decoded pixels re-saved as PNG (identical pixels, other bytes)
``resize``             scaled to 30-70 %
``recompress``         JPEG quality 15-35
``crop``               5-20 % of the width and of the height cut away
``flip``               mirrored left-right
``rotate``             rotated by 1-5 degrees either way (white corners)
``brightness_contrast`` brightness and contrast changed by 10-25 %
``text``               a line of caption text drawn over the picture
``logo``               an opaque logo box in a corner (about 15 % of the width)
``pad``                letterboxed with black bars to a different aspect ratio
``border``             a screenshot-like frame: window title bar and grey border
=====================  =================================================================

``OUT/ground_truth.csv`` has ``path,group,edit`` (see :mod:`lookalike.dedup.evaluate`): an
original and its copies share a group; distractors have none. Everything is a pure
function of the inputs and the seed.
"""

from __future__ import annotations

import csv
import io
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from ..errors import ImageRejected, InvalidInput
from ..ingest.decode import DecodeLimits, decode_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}

Edit = Callable[[Image.Image, random.Random], Image.Image]


def _resize(im: Image.Image, rng: random.Random) -> Image.Image:
    s = rng.uniform(0.3, 0.7)
    return im.resize(
        (max(8, round(im.width * s)), max(8, round(im.height * s))), Image.Resampling.LANCZOS
    )


def _crop(im: Image.Image, rng: random.Random) -> Image.Image:
    w, h = im.size
    fx, fy = rng.uniform(0.05, 0.20), rng.uniform(0.05, 0.20)
    cw, ch = round(w * fx), round(h * fy)
    left, top = rng.randint(0, cw), rng.randint(0, ch)
    return im.crop((left, top, left + w - cw, top + h - ch))


def _flip(im: Image.Image, rng: random.Random) -> Image.Image:
    return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def _rotate(im: Image.Image, rng: random.Random) -> Image.Image:
    angle = rng.uniform(1.0, 5.0) * rng.choice((-1, 1))
    return im.rotate(angle, Image.Resampling.BICUBIC, expand=False, fillcolor=(255, 255, 255))


def _brightness_contrast(im: Image.Image, rng: random.Random) -> Image.Image:
    def factor() -> float:
        return 1.0 + rng.uniform(0.10, 0.25) * rng.choice((-1, 1))

    return ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(factor())).enhance(factor())


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _text(im: Image.Image, rng: random.Random) -> Image.Image:
    out = im.copy()
    draw = ImageDraw.Draw(out)
    words = rng.choice(
        ["SALE -30%", "NEW ARRIVAL", "www.shop.example", "Free shipping", "(c) 2026"]
    )
    size = max(10, out.height // 12)
    x = rng.randint(0, max(1, out.width // 3))
    y = rng.randint(0, max(1, out.height - size - 2))
    color = tuple(rng.randint(0, 255) for _ in range(3))
    draw.text((x, y), words, font=_font(size), fill=color, stroke_width=2, stroke_fill=(0, 0, 0))
    return out


def _logo(im: Image.Image, rng: random.Random) -> Image.Image:
    out = im.copy()
    draw = ImageDraw.Draw(out)
    side = max(8, out.width * 15 // 100)
    corner = rng.randint(0, 3)
    x = 4 if corner in (0, 2) else out.width - side - 4
    y = 4 if corner in (0, 1) else out.height - side - 4
    color = tuple(rng.randint(0, 255) for _ in range(3))
    draw.rectangle((x, y, x + side, y + side), fill=color)
    draw.ellipse(
        (x + side // 5, y + side // 5, x + 4 * side // 5, y + 4 * side // 5), fill=(255,) * 3
    )
    return out


def _pad(im: Image.Image, rng: random.Random) -> Image.Image:
    w, h = im.size
    if rng.random() < 0.5:  # bars left and right
        new_w, new_h = round(w * rng.uniform(1.2, 1.5)), h
    else:
        new_w, new_h = w, round(h * rng.uniform(1.2, 1.5))
    canvas = Image.new("RGB", (new_w, new_h), (0, 0, 0))
    canvas.paste(im, ((new_w - w) // 2, (new_h - h) // 2))
    return canvas


def _border(im: Image.Image, rng: random.Random) -> Image.Image:
    w, h = im.size
    bar = max(12, h // 14)
    edge = max(3, w // 60)
    canvas = Image.new("RGB", (w + 2 * edge, h + bar + edge), (200, 200, 205))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, canvas.width, bar), fill=(60, 63, 70))
    for k, color in enumerate([(237, 106, 94), (245, 191, 79), (98, 197, 84)]):
        cx = edge + bar // 2 + k * bar
        draw.ellipse((cx - bar // 4, bar // 4, cx + bar // 4, 3 * bar // 4), fill=color)
    draw.text(
        (edge + 4 * bar, bar // 4), "photo.jpg - Viewer", font=_font(bar // 2), fill=(230,) * 3
    )
    canvas.paste(im, (edge, bar))
    return canvas


EDITS: dict[str, Edit | None] = {
    "copy": None,  # byte copy
    "lossless": None,  # PNG of the decoded pixels
    "resize": _resize,
    "recompress": None,  # JPEG quality 15-35 of the decoded pixels
    "crop": _crop,
    "flip": _flip,
    "rotate": _rotate,
    "brightness_contrast": _brightness_contrast,
    "text": _text,
    "logo": _logo,
    "pad": _pad,
    "border": _border,
}


def list_images(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def make_duplicate_set(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    originals: int = 200,
    distractors: int = 400,
    edits: list[str] | None = None,
    seed: int = 0,
) -> Path:
    """Build the test set (see the module docs); returns the ground truth CSV's path."""
    src_dir, out_dir = Path(src), Path(out)
    if not src_dir.is_dir():
        raise InvalidInput(f"{src_dir} is not a folder")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InvalidInput(f"{out_dir} is not empty; give a new folder for the test set")
    chosen = list(EDITS) if edits is None else edits
    unknown = [e for e in chosen if e not in EDITS]
    if unknown:
        raise InvalidInput(f"unknown edit {unknown[0]!r}; known: {', '.join(EDITS)}")
    files = list_images(src_dir)
    rng = random.Random(seed)
    rng.shuffle(files)
    rows: list[tuple[str, str, str]] = []
    limits = DecodeLimits()
    n_orig = 0
    used = 0
    for path in files:
        if n_orig >= originals:
            break
        used += 1
        try:
            image = decode_image(path.read_bytes(), limits).image
        except (ImageRejected, OSError):
            continue
        n_orig += 1
        group = f"g{n_orig:05d}"
        stem = f"{group}-{path.stem}"
        orig_rel = f"originals/{stem}{path.suffix.lower()}"
        _copy(path, out_dir / orig_rel)
        rows.append((orig_rel, group, "original"))
        for edit in chosen:
            rel = f"edited/{edit}/{stem}"
            erng = random.Random(f"{seed}/{stem}/{edit}")
            if edit == "copy":
                rel += path.suffix.lower()
                _copy(path, out_dir / rel)
            elif edit == "lossless":
                rel += ".png"
                _save(image, out_dir / rel, "PNG")
            elif edit == "recompress":
                rel += ".jpg"
                _save(image, out_dir / rel, "JPEG", quality=erng.randint(15, 35))
            else:
                fn = EDITS[edit]
                assert fn is not None
                rel += ".jpg"
                _save(fn(image, erng), out_dir / rel, "JPEG", quality=90)
            rows.append((rel, group, edit))
    if n_orig < originals:
        raise InvalidInput(f"{src_dir} has only {n_orig} usable images; {originals} requested")
    for n_dist, path in enumerate(files[used : used + distractors]):
        rel = f"distractors/d{n_dist:05d}-{path.stem}{path.suffix.lower()}"
        _copy(path, out_dir / rel)
        rows.append((rel, "", "distractor"))
    truth = out_dir / "ground_truth.csv"
    with open(truth, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["path", "group", "edit"])
        writer.writerows(rows)
    return truth


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)


def _save(image: Image.Image, dest: Path, fmt: str, **kw: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, fmt, **kw)
    dest.write_bytes(buf.getvalue())
