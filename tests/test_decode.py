from __future__ import annotations

import io
import warnings

import imagegen
import numpy as np
import pytest
from PIL import Image

from lookalike.errors import ImageRejected, InvalidInput
from lookalike.ingest.decode import (
    PIXEL_HASH_KINDS,
    Decoded,
    DecodeLimits,
    decode_image,
    pixel_hash,
    to_rgb,
)


def _reason(data: bytes, **kw: object) -> str:
    with pytest.raises(ImageRejected) as info:
        decode_image(data, **kw)  # type: ignore[arg-type]
    return info.value.reason


def _close(actual: tuple[int, ...], expected: tuple[int, ...], tol: int = 0) -> bool:
    return all(abs(int(a) - int(e)) <= tol for a, e in zip(actual, expected, strict=True))


# -- rejected files -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(imagegen.BAD_FILES))
def test_bad_files_are_rejected_with_the_right_reason(name: str) -> None:
    factory, expected = imagegen.BAD_FILES[name]
    with pytest.raises(ImageRejected) as info:
        decode_image(factory())
    assert info.value.reason == expected, info.value.detail
    assert str(info.value).startswith(expected)


def test_bad_files_from_disk(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name, (factory, expected) in imagegen.BAD_FILES.items():
        path = imagegen.write_bytes(tmp_path / name, factory())
        assert _reason(path.read_bytes()) == expected, name


def test_size_limit_is_checked_on_the_header_before_decoding() -> None:
    # The pixel data of this file is broken (it would be "truncated"), but the size check
    # happens first, on the header alone.
    data = imagegen.truncated_jpeg(size=(320, 240))
    assert _reason(data) == "truncated"
    with pytest.raises(ImageRejected) as info:
        decode_image(data, DecodeLimits(max_megapixels=0.05))
    assert info.value.reason == "too-large"
    assert "320x240" in info.value.detail


def test_bomb_below_pillows_hard_limit_is_ours_to_reject() -> None:
    # 144 MP: above our default 100 MP, below Pillow's error threshold (~179 MP), above its
    # warning threshold. No warning may escape and nothing may be allocated.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageRejected) as info:
            decode_image(imagegen.png_bomb(12000, 12000))
    assert info.value.reason == "too-large"
    assert "limit 100" in info.value.detail


def test_size_limit_does_not_rely_on_pillows_global(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert _reason(imagegen.png_bomb(20000, 20000)) == "too-large"
    assert _reason(imagegen.png_bomb(3000, 3000), limits=DecodeLimits(max_megapixels=5)) == (
        "too-large"
    )


def test_pillow_decompression_bomb_error_becomes_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert _reason(imagegen.encode(Image.new("RGB", (100, 100)), "PNG")) == "too-large"


def test_any_pillow_exception_becomes_image_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    data = imagegen.encode(imagegen.photo_like(1, (32, 32)), "PNG")

    def explode(self: Image.Image) -> None:
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(Image.Image, "load", explode)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", explode)
    with pytest.raises(ImageRejected) as info:
        decode_image(data)
    assert info.value.reason == "corrupt"
    assert "decoder exploded" in info.value.detail


def test_eps_is_not_rendered() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    assert _reason(eps) == "not-an-image"


def test_limits_validate_their_values() -> None:
    with pytest.raises(InvalidInput):
        DecodeLimits(max_megapixels=0)
    with pytest.raises(InvalidInput):
        DecodeLimits(min_side=0)
    with pytest.raises(InvalidInput):
        DecodeLimits(max_aspect=0.5)


# -- filters --------------------------------------------------------------------------------


def test_aspect_and_min_side_filters() -> None:
    data = imagegen.banner((1000, 100))
    assert decode_image(data).image.size == (1000, 100)
    assert _reason(data, limits=DecodeLimits(max_aspect=4.0)) == "aspect"
    assert _reason(data, limits=DecodeLimits(min_side=101)) == "too-small"
    assert decode_image(data, DecodeLimits(min_side=100, max_aspect=10.0)).width == 1000


def test_filters_see_rotated_and_undrafted_dimensions() -> None:
    # Stored 40x64, displayed 64x40 (orientation 6): same shorter side, same aspect.
    rotated = imagegen.exif_rotated(6, size=(64, 40))
    assert decode_image(rotated, DecodeLimits(min_side=40, max_aspect=1.6)).image.size == (64, 40)
    assert _reason(rotated, limits=DecodeLimits(min_side=41)) == "too-small"
    assert _reason(rotated, limits=DecodeLimits(max_aspect=1.5)) == "aspect"

    big = imagegen.encode(imagegen.photo_like(3, (2000, 1500)), "JPEG", quality=85)
    drafted = decode_image(big, DecodeLimits(min_side=1500), draft=(224, 224))
    assert drafted.image.size == (500, 375)  # 1/4 DCT scaling
    assert _reason(big, limits=DecodeLimits(min_side=1501), draft=(224, 224)) == "too-small"


# -- normalisation to RGB ---------------------------------------------------------------------


def test_plain_rgb_jpeg() -> None:
    image = imagegen.photo_like(5, (320, 240))
    decoded = decode_image(imagegen.encode(image, "JPEG", quality=95))
    assert isinstance(decoded, Decoded)
    assert decoded.format == "JPEG"
    assert decoded.image.mode == "RGB"
    assert (decoded.width, decoded.height) == decoded.image.size == (320, 240)


def test_lossless_formats_keep_pixels_exactly() -> None:
    image = imagegen.photo_like(6, (97, 61))
    for fmt in ("PNG", "BMP", "TIFF", "WEBP"):
        kw = {"lossless": True} if fmt == "WEBP" else {}
        decoded = decode_image(imagegen.encode(image, fmt, **kw))
        assert decoded.format == fmt
        assert np.array_equal(np.asarray(decoded.image), np.asarray(image)), fmt


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation(orientation: int, fmt: str) -> None:
    decoded = decode_image(imagegen.exif_rotated(orientation, size=(64, 40), format=fmt))
    assert decoded.image.size == (64, 40)
    colors = imagegen.corner_colors(decoded.image)
    for corner, expected in imagegen.CORNER_COLORS.items():
        assert _close(colors[corner], expected, tol=12), (corner, colors[corner], expected)


def test_cmyk_jpeg() -> None:
    data = imagegen.cmyk_jpeg((64, 48))
    # libjpeg writes CMYK with an Adobe APP14 marker and inverted values (as Photoshop
    # does); Pillow undoes the inversion on reading. Check the colours come out right.
    assert b"Adobe" in data
    decoded = decode_image(data)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    assert decoded.image.mode == "RGB"
    assert _close(decoded.image.getpixel((4, 24)), (255, 0, 0), tol=8)  # type: ignore[arg-type]
    assert _close(decoded.image.getpixel((60, 24)), (0, 0, 255), tol=8)  # type: ignore[arg-type]


def test_palette_with_transparency_goes_over_white() -> None:
    image = decode_image(imagegen.palette_png_transparent((48, 32))).image
    assert image.getpixel((2, 2)) == (255, 255, 255)
    assert image.getpixel((45, 30)) == (0, 200, 0)


def test_palette_without_transparency() -> None:
    image = decode_image(imagegen.palette_png((48, 32))).image
    assert image.getpixel((2, 2)) == (255, 0, 0)
    assert image.getpixel((45, 30)) == (0, 0, 255)


def test_rgba_and_la_composited_over_white() -> None:
    image = decode_image(imagegen.rgba_png((48, 32))).image
    assert image.getpixel((2, 2)) == (255, 255, 255)  # transparent red -> white
    assert _close(image.getpixel((45, 30)), (127, 127, 127), tol=1)  # type: ignore[arg-type]
    image = decode_image(imagegen.la_png((48, 32))).image
    assert image.getpixel((2, 2)) == (255, 255, 255)
    assert image.getpixel((45, 30)) == (0, 0, 0)


def test_pa_mode_composited_over_white() -> None:
    pa = Image.new("PA", (8, 8))
    pa.putpalette([10, 20, 30] * 256)
    pa.putdata([(0, 0)] * 32 + [(0, 255)] * 32)
    image = to_rgb(pa)
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((7, 7)) == (10, 20, 30)


@pytest.mark.parametrize(
    "factory",
    [imagegen.png16, imagegen.tiff16_big_endian, imagegen.tiff_int32, imagegen.tiff_float],
)
def test_high_bit_depth_grey_is_scaled_to_8_bit(factory) -> None:  # type: ignore[no-untyped-def]
    image = decode_image(factory((64, 32))).image
    assert image.mode == "RGB"
    row = [image.getpixel((x, 5)) for x in range(64)]
    assert row[0] == (0, 0, 0)
    assert row[-1] == (255, 255, 255)
    middle = row[32][0]  # type: ignore[index]
    assert 120 <= middle <= 135  # a ramp, not clipped at 255
    assert all(r == g == b for r, g, b in row)  # type: ignore[misc]


def test_grayscale_and_bilevel() -> None:
    image = decode_image(imagegen.grayscale_jpeg((64, 48), level=100)).image
    assert image.mode == "RGB"
    assert _close(image.getpixel((10, 10)), (100, 100, 100), tol=1)  # type: ignore[arg-type]
    image = decode_image(imagegen.bilevel_png((32, 32))).image
    assert image.getpixel((2, 2)) == (0, 0, 0)
    assert image.getpixel((30, 30)) == (255, 255, 255)


def test_multi_frame_gives_the_first_frame() -> None:
    decoded = decode_image(imagegen.animated_gif((32, 32)))
    assert decoded.format == "GIF"
    assert decoded.image.getpixel((5, 5)) == (255, 0, 0)


# -- draft ----------------------------------------------------------------------------------


def test_draft_scales_jpeg_but_stays_large_enough() -> None:
    data = imagegen.encode(imagegen.photo_like(8, (2000, 1500)), "JPEG", quality=85)
    for draft in [(224, 224), (256, 256), (32, 32), (1000, 1000), (2000, 1500)]:
        decoded = decode_image(data, draft=draft)
        assert decoded.width >= draft[0] and decoded.height >= draft[1], draft
        assert (decoded.width, decoded.height) == decoded.image.size
    assert decode_image(data, draft=(32, 32)).image.size == (250, 188)  # 1/8
    assert decode_image(data).image.size == (2000, 1500)


def test_draft_respects_exif_rotation() -> None:
    # Stored 1600x400, displayed 400x1600 (orientation 8). A (300, 300) draft could shrink
    # the stored image by 4 along each axis; the displayed result must still cover it.
    display = imagegen.photo_like(9, (400, 1600))
    stored = display.transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 8
    data = imagegen.encode(stored, "JPEG", quality=90, exif=exif.tobytes())
    decoded = decode_image(data, draft=(100, 390))
    assert decoded.image.size == (100, 400)
    decoded = decode_image(data, draft=(390, 100))
    assert decoded.image.size == (400, 1600)


def test_draft_is_ignored_for_other_formats() -> None:
    data = imagegen.encode(imagegen.photo_like(10, (640, 480)), "PNG")
    assert decode_image(data, draft=(32, 32)).image.size == (640, 480)


# -- pixel hash -------------------------------------------------------------------------------


def test_pixel_hash_is_about_pixels_not_files() -> None:
    image = imagegen.photo_like(11, (120, 90))
    from_png = decode_image(imagegen.encode(image, "PNG")).image
    from_bmp = decode_image(imagegen.encode(image, "BMP")).image
    digest = pixel_hash(image)
    assert isinstance(digest, bytes) and len(digest) == 16
    assert pixel_hash(from_png) == pixel_hash(from_bmp) == digest
    # An image whose padding byte differs internally (resize leaves it 0) hashes the same.
    resized = image.resize((60, 45))
    roundtrip = decode_image(imagegen.encode(resized, "PNG")).image
    assert pixel_hash(resized) == pixel_hash(roundtrip)


def test_pixel_hash_sees_every_pixel_and_the_size() -> None:
    image = imagegen.photo_like(12, (120, 90))
    changed = image.copy()
    r, g, b = changed.getpixel((119, 89))  # type: ignore[misc]
    changed.putpixel((119, 89), (r ^ 1, g, b))
    assert pixel_hash(changed) != pixel_hash(image)
    flat = Image.new("RGB", (4, 4), (1, 2, 3))
    assert pixel_hash(flat) != pixel_hash(Image.new("RGB", (2, 8), (1, 2, 3)))
    assert pixel_hash(flat.convert("L")) == pixel_hash(flat.convert("L").convert("RGB"))


def test_pixel_hash_is_stable() -> None:
    # Pinned values: collections store these digests, so no kind's definition may drift.
    image = Image.new("RGB", (3, 2), (10, 20, 30))
    assert pixel_hash(image).hex() == PINNED_PIXEL_HASH["xxh3-128"]
    for kind, value in PINNED_PIXEL_HASH.items():
        assert pixel_hash(image, kind).hex() == value
    assert set(PINNED_PIXEL_HASH) == set(PIXEL_HASH_KINDS)


def test_pixel_hash_kinds_agree_on_equality() -> None:
    a = Image.new("RGB", (3, 2), (10, 20, 30))
    b = Image.new("RGB", (3, 2), (10, 20, 31))
    c = Image.new("RGB", (2, 3), (10, 20, 30))  # same bytes, other size
    for kind in PIXEL_HASH_KINDS:
        digests = {pixel_hash(x, kind) for x in (a, b, c)}
        assert len(digests) == 3
        assert pixel_hash(a.convert("RGBA"), kind) == pixel_hash(a, kind)
        assert len(pixel_hash(a, kind)) == 16
    with pytest.raises(InvalidInput):
        pixel_hash(a, "md5")


PINNED_PIXEL_HASH = {
    "xxh3-128": "8b696fab1b13237463428a824f547432",
    "sha1-16": "a27133776f02cd193de7b42b613c0882",  # collections made before XXH3
}


def test_pixel_hash_of_an_array_is_that_of_its_image() -> None:
    image = imagegen.photo_like(13, (61, 47))
    pixels = np.asarray(image)
    for kind in PIXEL_HASH_KINDS:
        assert pixel_hash(pixels, kind) == pixel_hash(image, kind)
        strided = np.repeat(pixels, 2, axis=1)[:, ::2]  # the same pixels, not contiguous
        assert not strided.flags.c_contiguous
        assert pixel_hash(strided, kind) == pixel_hash(image, kind)
    assert pixel_hash(pixels[:, :-1]) != pixel_hash(image)
    for bad in (pixels[:, :, :2], pixels.astype(np.uint16), pixels[:, :, 0]):
        with pytest.raises(InvalidInput, match="uint8"):
            pixel_hash(bad)
