"""Safe, single-pass image decoding.

Every file the library touches goes through :func:`decode_image` exactly once. It turns
arbitrary bytes into an RGB :class:`PIL.Image.Image` with the EXIF orientation applied, or
raises :class:`~lookalike.errors.ImageRejected` with a short machine-friendly ``reason``:

========================  ===========================================================
``empty``                 zero bytes
``not-an-image``          no known image format (text, random bytes, unsafe formats)
``corrupt``               looks like an image but cannot be parsed or decoded
``truncated``             the pixel data ends early
``too-large``             more pixels than ``DecodeLimits.max_megapixels`` (checked on
                          the header, before any pixel is decoded)
``too-small``             shorter side below ``DecodeLimits.min_side``
``aspect``                long/short side ratio above ``DecodeLimits.max_aspect``
========================  ===========================================================

Before any byte is read, the indexer also skips files that are not regular files
(``not-a-file``: FIFOs, devices, sockets), symlinks that lead nowhere (``broken-link``) and
files larger than ``DecodeLimits.max_file_mb`` (``too-big``).

Nothing here changes Pillow's global state (``ImageFile.LOAD_TRUNCATED_IMAGES`` and
``Image.MAX_IMAGE_PIXELS`` are left alone); warnings Pillow emits while decoding are
logged at debug level instead of being printed.

:func:`pixel_hash` is a fast 16-byte digest of the decoded pixels, used to recognise exact
duplicates whatever their container format.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
import warnings
from dataclasses import dataclass

import numpy as np
import xxhash
from PIL import Image

from ..errors import ImageRejected, InvalidInput

__all__ = [
    "DEFAULT_PIXEL_HASH",
    "LEGACY_PIXEL_HASH",
    "PIXEL_HASH_KINDS",
    "DecodeLimits",
    "Decoded",
    "decode_image",
    "pixel_hash",
    "to_rgb",
]

logger = logging.getLogger(__name__)

_ORIENTATION_TAG = 0x0112
_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = frozenset({5, 6, 7, 8})

# Formats Pillow can identify but that we refuse to load: EPS is rendered by running
# Ghostscript, which is not something a bulk image indexer should do on untrusted input.
_REFUSED_FORMATS = frozenset({"EPS"})

# Leading bytes of common raster formats: a file that starts like an image but cannot be
# opened is "corrupt", anything else is "not-an-image".
_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
    b"\x00\x00\x01\x00",  # ICO
    b"qoif",
)


@dataclass(frozen=True)
class DecodeLimits:
    """What :func:`decode_image` accepts.

    ``max_megapixels`` guards against decompression bombs and is checked on the header
    size before any pixel data is decoded (note that Pillow's own hard limit, twice
    ``Image.MAX_IMAGE_PIXELS`` or about 179 megapixels by default, applies on top).
    ``min_side`` and ``max_aspect`` are optional content filters on the original
    (undrafted) dimensions: the shorter side must be ``>= min_side`` and
    ``long side / short side <= max_aspect`` (drops banners and strips).
    ``max_file_mb``: files larger than this (in MiB) are skipped unread (``too-big``).
    """

    max_megapixels: float = 100.0
    min_side: int | None = None
    max_aspect: float | None = None
    max_file_mb: float = 256.0

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 2**20)

    def __post_init__(self) -> None:
        if not self.max_file_mb > 0:
            raise InvalidInput(f"max_file_mb must be > 0, got {self.max_file_mb!r}")
        if not self.max_megapixels > 0:
            raise InvalidInput(f"max_megapixels must be > 0, got {self.max_megapixels!r}")
        if self.min_side is not None and self.min_side < 1:
            raise InvalidInput(f"min_side must be >= 1, got {self.min_side!r}")
        if self.max_aspect is not None and not self.max_aspect >= 1:
            raise InvalidInput(f"max_aspect must be >= 1, got {self.max_aspect!r}")


def filter_problem(width: int, height: int, limits: DecodeLimits) -> tuple[str, str] | None:
    """``(reason, detail)`` when a ``width`` x ``height`` image breaks ``min_side`` or
    ``max_aspect``, else None. The detail starts with ``WxH:``."""
    short, long = min(width, height), max(width, height)
    if limits.min_side is not None and short < limits.min_side:
        return "too-small", f"{width}x{height}: shorter side < {limits.min_side}"
    if limits.max_aspect is not None and long / short > limits.max_aspect:
        return (
            "aspect",
            f"{width}x{height}: aspect ratio {long / short:.2f} > {limits.max_aspect:g}",
        )
    return None


@dataclass
class Decoded:
    """A decoded image: ``image`` is mode "RGB" with the EXIF orientation applied and
    ``width``/``height`` are its size (smaller than the file's when drafted).

    ``source_width``/``source_height`` are the file's full size in display orientation;
    ``drafted`` is true when the JPEG was decoded at a reduced scale, in which case the
    pixels are not the file's full-resolution pixels (no :func:`pixel_hash` of them)."""

    image: Image.Image
    width: int
    height: int
    format: str
    source_width: int
    source_height: int
    drafted: bool


_DEFAULT_LIMITS = DecodeLimits()


def decode_image(
    data: bytes,
    limits: DecodeLimits = _DEFAULT_LIMITS,
    draft: tuple[int, int] | None = None,
) -> Decoded:
    """Decode ``data`` into an RGB image, or raise :class:`ImageRejected`.

    ``draft`` (width, height), if given, lets JPEG files be decoded at a reduced scale
    (1/2, 1/4 or 1/8, libjpeg DCT scaling) while staying at least that large in both
    dimensions (in display orientation). Other formats ignore it. The filters in ``limits``
    always see the original dimensions.

    Only the first frame of animated or multi-page files is decoded. Any failure inside
    Pillow becomes an :class:`ImageRejected`; one bad file never stops a run.
    """
    if not data:
        raise ImageRejected("empty", "the file has zero bytes")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return _decode(data, limits, draft)
        except ImageRejected:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected("too-large", str(exc)) from exc
        except MemoryError as exc:
            raise ImageRejected("too-large", "out of memory while decoding") from exc
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a rejected file
            raise _classify_load_error(exc) from exc
        finally:
            for w in caught:
                logger.debug("pillow warning while decoding: %s", w.message)


def _decode(data: bytes, limits: DecodeLimits, draft: tuple[int, int] | None) -> Decoded:
    try:
        im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise
    except Image.UnidentifiedImageError as exc:
        if data.startswith(_MAGIC) or _looks_like_riff_image(data):
            raise ImageRejected("corrupt", "unreadable image header") from exc
        raise ImageRejected("not-an-image", "unrecognised file format") from exc
    except Exception as exc:  # noqa: BLE001 - e.g. "Truncated File Read" inside the header
        raise _classify_load_error(exc) from exc

    fmt = im.format or "unknown"
    if fmt in _REFUSED_FORMATS:
        raise ImageRejected("not-an-image", f"{fmt} files are not decoded")

    width, height = im.size
    if width < 1 or height < 1:
        raise ImageRejected("corrupt", f"invalid size {width}x{height}")
    max_pixels = limits.max_megapixels * 1_000_000
    if width * height > max_pixels:
        raise ImageRejected(
            "too-large",
            f"{width}x{height} is {width * height / 1e6:.1f} megapixels "
            f"(limit {limits.max_megapixels:g})",
        )
    # Rotation never changes the shorter side or the aspect ratio, so the filters can run
    # on the header size before anything is decoded.
    problem = filter_problem(width, height, limits)
    if problem is not None:
        raise ImageRejected(*problem)

    orientation: int | None = None
    if draft is not None and fmt in ("JPEG", "MPO"):
        orientation = _orientation(im)
        dw, dh = draft
        if orientation in _SWAPS_AXES:
            dw, dh = dh, dw
        if dw >= 1 and dh >= 1:
            im.draft("RGB", (dw, dh))

    im.load()
    drafted = im.size != (width, height)
    if orientation is None:
        orientation = _orientation(im)
    rgb = to_rgb(im)
    method = _TRANSPOSE.get(orientation)
    if method is not None:
        rgb = rgb.transpose(method)
    if orientation in _SWAPS_AXES:
        width, height = height, width
    return Decoded(
        image=rgb,
        width=rgb.width,
        height=rgb.height,
        format=fmt,
        source_width=width,
        source_height=height,
        drafted=drafted,
    )


def jpeg_header(data: bytes, limits: DecodeLimits = _DEFAULT_LIMITS) -> tuple[int, int, int] | None:
    """(width, height, EXIF orientation) of a complete RGB or greyscale JPEG within
    ``limits``, read from its header alone (nothing decoded); None for anything else (other
    formats and modes, no end marker, a limit broken, an unreadable header), which
    :func:`decode_image` then decodes or rejects with its reason. For GPU decoders."""
    if not data.startswith(b"\xff\xd8\xff") or not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            if im.format != "JPEG" or im.mode not in ("RGB", "L"):
                return None
            width, height = im.size
            orientation = _orientation(im)
    except Exception:  # noqa: BLE001 - decode_image reports it
        return None
    if not (0 < width * height <= limits.max_megapixels * 1_000_000):
        return None
    if filter_problem(width, height, limits) is not None:
        return None
    return width, height, orientation


def _looks_like_riff_image(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
        orientation = int(value)
    except Exception as exc:  # noqa: BLE001 - broken EXIF must not reject the image
        logger.debug("ignoring unreadable EXIF: %s", _describe(exc))
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _classify_load_error(exc: BaseException) -> ImageRejected:
    text = str(exc).lower()
    if isinstance(exc, EOFError) or "truncated" in text or "premature end" in text:
        return ImageRejected("truncated", _describe(exc))
    return ImageRejected("corrupt", _describe(exc))


# -- mode normalisation ---------------------------------------------------------------

_WHITE = (255, 255, 255, 255)


def to_rgb(im: Image.Image) -> Image.Image:
    """Normalise any Pillow mode to RGB: alpha (and palette/colour-key transparency) is
    composited over white, CMYK/YCbCr/1-bit/L are converted, 16-bit and 32-bit integer
    grey are scaled (``round(v / 257)``), float grey is scaled from [0, 1] (see
    ``_scale_float``). Returns ``im`` itself when it is already plain RGB."""
    mode = im.mode
    has_transparency = "transparency" in im.info
    if mode == "RGB" and not has_transparency:
        return im
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or has_transparency:
        return _over_white(im)
    if mode == "P":
        # A palette may carry alpha without a "transparency" entry (e.g. PNG tRNS in RGBA palettes).
        if im.palette is not None and im.palette.mode == "RGBA":
            return _over_white(im)
        return im.convert("RGB")
    if mode == "I" or mode.startswith("I;16"):
        return _gray_to_rgb(_scale_16bit(np.asarray(im)))
    if mode == "F":
        return _gray_to_rgb(_scale_float(np.asarray(im)))
    try:
        return im.convert("RGB")
    except Exception as exc:  # noqa: BLE001
        raise ImageRejected("corrupt", f"unsupported pixel mode {mode!r}") from exc


def _over_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _WHITE)
    return Image.alpha_composite(background, rgba).convert("RGB")


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    """16-bit (or 32-bit "I") grey to 8-bit: clip to 0..65535, then round(v / 257)."""
    v = np.clip(values, 0, 65535).astype(np.uint32)
    return ((v * 255 + 32767) // 65535).astype(np.uint8)


def _scale_float(values: np.ndarray) -> np.ndarray:
    """Float grey to 8-bit: images within [0, 1] are scaled by 255, [0, 255] kept,
    [0, 65535] treated as 16-bit; anything else is min-max stretched."""
    v = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0:
        v = v * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        pass
    elif lo >= 0.0 and hi <= 65535.0:
        v = v / 257.0
    else:
        v = (v - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(v)
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def _gray_to_rgb(gray8: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(gray8, dtype=np.uint8), mode="L").convert("RGB")


# -- the pixel hash ------------------------------------------------------------------

#: How a collection's pixel hashes are computed (recorded in its catalog, see
#: ``Catalog.pixel_hash_kind``): hashes of different kinds never compare equal, so one
#: collection keeps one kind. ``sha1-16`` is the kind of collections made before kinds were
#: recorded; new collections use ``xxh3-128``, about 20 times cheaper per photo.
PIXEL_HASH_KINDS = ("xxh3-128", "sha1-16")
DEFAULT_PIXEL_HASH = "xxh3-128"
LEGACY_PIXEL_HASH = "sha1-16"


def pixel_hash(image: Image.Image | np.ndarray, kind: str = DEFAULT_PIXEL_HASH) -> bytes:
    """16-byte digest of an image's RGB pixels and size.

    Two images get the same digest exactly when they have the same size and the same RGB
    values, whatever file format they came from. The digest is ``kind`` (see
    ``PIXEL_HASH_KINDS``) over a small size header and the packed RGB bytes: XXH3-128 (a
    fast non-cryptographic hash) or, for collections made before it, SHA-1 truncated to
    16 bytes. It identifies content; it is not a security measure. ``image`` may also be
    the pixels as an (H, W, 3) uint8 array (``np.asarray`` of an RGB image): same digest.
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidInput(f"expected (H, W, 3) uint8 pixels, got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        pixels: bytes | memoryview = np.ascontiguousarray(image).data
    else:
        if image.mode != "RGB":
            image = image.convert("RGB")
        width, height = image.size
        pixels = image.tobytes()
    header = struct.pack("<4sII", b"RGB8", width, height)
    if kind == "xxh3-128":
        fast = xxhash.xxh3_128(header)
        fast.update(pixels)
        return fast.digest()
    if kind == "sha1-16":
        digest = hashlib.sha1(header, usedforsecurity=False)
        digest.update(pixels)
        return digest.digest()[:16]
    raise InvalidInput(f"unknown pixel hash kind {kind!r} (known: {', '.join(PIXEL_HASH_KINDS)})")
