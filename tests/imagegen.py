"""Deterministic image generators for the test suite (no network, no external data).

Good images: :func:`photo_like` makes textured, natural-looking pictures that differ per
seed (gradients, soft shapes, noise); :func:`near_duplicates` makes edited copies of one.
Special cases: CMYK JPEG, palette PNG with transparency, RGBA, 16-bit, grayscale, 1-bit,
EXIF-rotated JPEG, banners. Bad files: zero bytes, truncated JPEG, random bytes, text,
a PNG decompression bomb.

Everything is a pure function of its arguments (numpy ``default_rng(seed)`` + Pillow
drawing), so the same call gives the same pixels on every run.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

Size = tuple[int, int]

# Corner colours of the orientation test card (in display orientation).
CORNER_COLORS: dict[str, tuple[int, int, int]] = {
    "top_left": (230, 30, 30),
    "top_right": (30, 200, 30),
    "bottom_left": (30, 30, 230),
    "bottom_right": (240, 220, 20),
}

# The stored image for EXIF orientation n is display.transpose(_STORE[n]), so that applying
# the orientation (as decoders must) gives the display image back.
_STORE: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


# -- good images ----------------------------------------------------------------------


def photo_like(seed: int, size: Size = (320, 240)) -> Image.Image:
    """A natural-looking RGB picture: smooth colour field + gradient + soft shapes + grain.

    Different seeds give clearly different low-frequency structure, so perceptual hashes
    tell 50+ of them apart.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    # Low-frequency colour field: a tiny random grid upsampled with bicubic interpolation.
    grid = rng.integers(0, 256, size=(int(rng.integers(3, 6)), int(rng.integers(3, 6)), 3))
    field = Image.fromarray(grid.astype(np.uint8), "RGB").resize((w, h), Image.Resampling.BICUBIC)
    base = np.asarray(field, dtype=np.float32)
    # A linear gradient in a random direction.
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)[..., None]
    tint = rng.uniform(-90, 90, size=3).astype(np.float32)
    base = base * 0.6 + ramp * tint + 50
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")

    # Soft shapes on a transparent layer.
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(int(rng.integers(4, 8))):
        color = (*(int(c) for c in rng.integers(0, 256, size=3)), int(rng.integers(150, 256)))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.08, 0.35) * w, rng.uniform(0.08, 0.35) * h
        box = (cx - rx, cy - ry, cx + rx, cy + ry)
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse(box, fill=color)
        elif kind == 1:
            draw.rectangle(box, fill=color)
        else:
            n = int(rng.integers(3, 7))
            angles = np.sort(rng.uniform(0, 2 * np.pi, size=n))
            points = [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]
            draw.polygon(points, fill=color)
    image = Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")
    image = image.filter(ImageFilter.GaussianBlur(radius=1.2))

    # Film grain.
    grain = rng.normal(0.0, 5.0, size=(h, w, 1)).astype(np.float32)
    pixels = np.asarray(image, dtype=np.float32) + grain
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def test_card(size: Size = (64, 40)) -> Image.Image:
    """Four flat coloured quadrants (see CORNER_COLORS); asymmetric when width != height."""
    w, h = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, w // 2 - 1, h // 2 - 1), fill=CORNER_COLORS["top_left"])
    draw.rectangle((w // 2, 0, w - 1, h // 2 - 1), fill=CORNER_COLORS["top_right"])
    draw.rectangle((0, h // 2, w // 2 - 1, h - 1), fill=CORNER_COLORS["bottom_left"])
    draw.rectangle((w // 2, h // 2, w - 1, h - 1), fill=CORNER_COLORS["bottom_right"])
    return image


def corner_colors(image: Image.Image, inset: int = 4) -> dict[str, tuple[int, ...]]:
    """The pixel colours near the four corners of ``image``."""
    w, h = image.size
    rgb = image.convert("RGB")
    return {
        "top_left": rgb.getpixel((inset, inset)),  # type: ignore[dict-item]
        "top_right": rgb.getpixel((w - 1 - inset, inset)),  # type: ignore[dict-item]
        "bottom_left": rgb.getpixel((inset, h - 1 - inset)),  # type: ignore[dict-item]
        "bottom_right": rgb.getpixel((w - 1 - inset, h - 1 - inset)),  # type: ignore[dict-item]
    }


def near_duplicates(image: Image.Image) -> dict[str, Image.Image]:
    """Edited copies of ``image``: half size, JPEG quality 30, 5% centre crop, brighter."""
    w, h = image.size
    dx, dy = round(w * 0.025), round(h * 0.025)
    return {
        "half": image.resize((w // 2, h // 2), Image.Resampling.LANCZOS),
        "q30": Image.open(io.BytesIO(encode(image, "JPEG", quality=30))).convert("RGB"),
        "crop5": image.crop((dx, dy, w - dx, h - dy)),
        "bright": ImageEnhance.Brightness(image).enhance(1.06),
    }


# -- encoding helpers -----------------------------------------------------------------


def encode(image: Image.Image, format: str, **kw: Any) -> bytes:
    """``image`` saved in ``format`` (Pillow's name, e.g. "JPEG", "PNG") as bytes."""
    buf = io.BytesIO()
    image.save(buf, format=format, **kw)
    return buf.getvalue()


def save(image: Image.Image, path: Path | str, format: str | None = None, **kw: Any) -> Path:
    """Save ``image`` to ``path`` (creating folders); the format defaults to the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=format, **kw)
    return path


def write_bytes(path: Path | str, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- special (valid) images -------------------------------------------------------------


def cmyk_jpeg(size: Size = (64, 48)) -> bytes:
    """A CMYK JPEG: left half pure red (C=0 M=255 Y=255 K=0), right half pure blue."""
    w, h = size
    image = Image.new("CMYK", size, (255, 255, 0, 0))  # blue
    ImageDraw.Draw(image).rectangle((0, 0, w // 2 - 1, h - 1), fill=(0, 255, 255, 0))  # red
    return encode(image, "JPEG", quality=95)


def palette_png_transparent(size: Size = (48, 32)) -> bytes:
    """A palette PNG: left half transparent (index 0), right half opaque green (index 1)."""
    w, h = size
    image = Image.new("P", size, 0)
    image.putpalette([0, 0, 0, 0, 200, 0] + [0, 0, 0] * 254)
    ImageDraw.Draw(image).rectangle((w // 2, 0, w - 1, h - 1), fill=1)
    return encode(image, "PNG", transparency=0)


def palette_png(size: Size = (48, 32)) -> bytes:
    """A palette PNG without transparency: left half red, right half blue."""
    w, h = size
    image = Image.new("P", size, 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    ImageDraw.Draw(image).rectangle((w // 2, 0, w - 1, h - 1), fill=1)
    return encode(image, "PNG")


def rgba_png(size: Size = (48, 32)) -> bytes:
    """RGBA: left half fully transparent red, right half half-transparent black (alpha 128)."""
    w, h = size
    image = Image.new("RGBA", size, (255, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((w // 2, 0, w - 1, h - 1), fill=(0, 0, 0, 128))
    return encode(image, "PNG")


def la_png(size: Size = (48, 32)) -> bytes:
    """Grey + alpha: grey 0 with alpha 0 on the left, grey 0 opaque on the right."""
    w, h = size
    image = Image.new("LA", size, (0, 0))
    ImageDraw.Draw(image).rectangle((w // 2, 0, w - 1, h - 1), fill=(0, 255))
    return encode(image, "PNG")


def png16(size: Size = (64, 32)) -> bytes:
    """A 16-bit greyscale PNG: a horizontal ramp 0 .. 65535."""
    w, h = size
    ramp = np.linspace(0, 65535, w).round().astype(np.uint16)
    return encode(Image.fromarray(np.tile(ramp, (h, 1))), "PNG")


def tiff16_big_endian(size: Size = (64, 32)) -> bytes:
    """A 16-bit big-endian TIFF (mode I;16B): a horizontal ramp 0 .. 65535."""
    w, h = size
    ramp = np.linspace(0, 65535, w).round().astype(np.uint16)
    image = Image.frombytes("I;16B", size, np.tile(ramp, (h, 1)).astype(">u2").tobytes())
    return encode(image, "TIFF")


def tiff_float(size: Size = (64, 32)) -> bytes:
    """A 32-bit float TIFF (mode F): a horizontal ramp 0.0 .. 1.0."""
    w, h = size
    ramp = np.linspace(0.0, 1.0, w, dtype=np.float32)
    return encode(Image.fromarray(np.tile(ramp, (h, 1)), "F"), "TIFF")


def tiff_int32(size: Size = (64, 32)) -> bytes:
    """A 32-bit integer TIFF (mode I) holding 16-bit range values 0 .. 65535."""
    w, h = size
    ramp = np.linspace(0, 65535, w).round().astype(np.int32)
    return encode(Image.fromarray(np.tile(ramp, (h, 1)), "I"), "TIFF")


def grayscale_jpeg(size: Size = (64, 48), level: int = 100) -> bytes:
    return encode(Image.new("L", size, level), "JPEG", quality=95)


def bilevel_png(size: Size = (32, 32)) -> bytes:
    """A 1-bit PNG: black left half, white right half."""
    w, h = size
    image = Image.new("1", size, 0)
    ImageDraw.Draw(image).rectangle((w // 2, 0, w - 1, h - 1), fill=1)
    return encode(image, "PNG")


def animated_gif(size: Size = (32, 32)) -> bytes:
    """Three frames: red, green, blue (decoders must return the red first frame)."""
    frames = [Image.new("RGB", size, c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def exif_rotated(orientation: int, size: Size = (64, 40), format: str = "JPEG", **kw: Any) -> bytes:
    """The :func:`test_card` of ``size`` (display orientation), stored so that the EXIF
    orientation tag ``orientation`` (1-8) is needed to display it right."""
    display = test_card(size)
    method = _STORE[orientation]
    stored = display if method is None else display.transpose(method)
    exif = Image.Exif()
    exif[0x0112] = orientation
    if format == "JPEG":
        kw.setdefault("quality", 95)
    return encode(stored, format, exif=exif.tobytes(), **kw)


def banner(size: Size = (1000, 100), seed: int = 7) -> bytes:
    return encode(photo_like(seed, size), "JPEG", quality=90)


# -- bad files --------------------------------------------------------------------------


def truncated_jpeg(seed: int = 1, keep: float = 0.5, size: Size = (320, 240)) -> bytes:
    """A JPEG cut after ``keep`` of its bytes (headers intact, pixel data ends early)."""
    data = encode(photo_like(seed, size), "JPEG", quality=90)
    return data[: int(len(data) * keep)]


def truncated_png(seed: int = 2, keep: float = 0.5, size: Size = (96, 64)) -> bytes:
    data = encode(photo_like(seed, size), "PNG")
    return data[: int(len(data) * keep)]


def jpeg_bad_marker() -> bytes:
    """Starts like a JPEG (SOI + a complete JFIF APP0 segment), then no valid marker."""
    app0 = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return app0 + b"\x12\x34" * 100


def png_broken_idat(seed: int = 3) -> bytes:
    """A complete PNG whose compressed pixel data has been overwritten with zeros."""
    data = bytearray(encode(photo_like(seed, (64, 48)), "PNG"))
    start = data.index(b"IDAT") + 4 + 40
    data[start : start + 30] = bytes(30)
    return bytes(data)


def random_bytes(n: int = 4096, seed: int = 0) -> bytes:
    """Noise that is not any image format (does not start with a known signature)."""
    data = np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8).tobytes()
    return b"\x00\x17" + data[2:]


def text_file() -> bytes:
    return b"This is not an image.\nIt is a plain text file with a .jpg name.\n" * 20


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png_ihdr(width: int, height: int) -> bytes:
    return _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))  # 8-bit grey


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` grey pixels but holds four rows.

    A decoder that trusted it would allocate width * height bytes; the file is tiny.
    """
    rows = zlib.compress(b"\x00" * ((width + 1) * 4), 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_ihdr(width, height)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def png_first_rows(width: int, height: int, rows: int = 2) -> bytes:
    """A well-formed PNG header for ``width`` x ``height`` whose pixel data stops after
    ``rows`` rows (decoding it fails as truncated)."""
    data = zlib.compress(b"\x00" * ((width + 1) * rows), 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_ihdr(width, height)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


# name -> (bytes factory, expected ImageRejected.reason) for the decode tests
BAD_FILES: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty.jpg": (lambda: b"", "empty"),
    "truncated.jpg": (truncated_jpeg, "truncated"),
    "random.jpg": (random_bytes, "not-an-image"),
    "notes.jpg": (text_file, "not-an-image"),
    "bomb.png": (png_bomb, "too-large"),
    "truncated.png": (lambda: truncated_png(keep=0.5), "truncated"),
    "header-cut.jpg": (lambda: truncated_jpeg(keep=0.01), "truncated"),
    "bad-marker.jpg": (jpeg_bad_marker, "corrupt"),
    "broken-idat.png": (png_broken_idat, "corrupt"),
}
