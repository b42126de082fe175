"""The arithmetic of ``ImageProcessorSpec`` (preprocess.py): sizes and crops computed as
``transformers`` computes them, the rescale/normalise lookup table, and the two optional
steps of lookalike's own (CLAHE/greyscale enhancement, OpenCV's fast resize)."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image

from ..errors import ModelUnavailable
from .hf_config import Triple


def _shortest_edge_hw(height: int, width: int, size: int) -> tuple[int, int]:
    """transformers.image_transforms.get_resize_output_image_size(default_to_square=False)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def _size_with_aspect_ratio(height: int, width: int, size: int, max_size: int) -> tuple[int, int]:
    """transformers.image_transforms.get_size_with_aspect_ratio."""
    raw_size = None
    min_original = float(min(height, width))
    max_original = float(max(height, width))
    if max_original / min_original * size > max_size:
        raw_size = max_size * min_original / max_original
        size = int(round(raw_size))
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    if width < height:
        ow = size
        oh = int(raw_size * height / width) if raw_size is not None else int(size * height / width)
        return oh, ow
    oh = size
    ow = int(raw_size * width / height) if raw_size is not None else int(size * width / height)
    return oh, ow


def _center_crop_padded(pixels: np.ndarray, crop_h: int, crop_w: int) -> np.ndarray:
    """transformers.image_transforms.center_crop on an (H, W, C) array, padding with 0."""
    height, width = pixels.shape[:2]
    top = (height - crop_h) // 2
    left = (width - crop_w) // 2
    bottom, right = top + crop_h, left + crop_w
    if top >= 0 and bottom <= height and left >= 0 and right <= width:
        return pixels[top:bottom, left:right]
    new_h, new_w = max(crop_h, height), max(crop_w, width)
    padded = np.zeros((new_h, new_w, *pixels.shape[2:]), dtype=pixels.dtype)
    top_pad = math.ceil((new_h - height) / 2)
    left_pad = math.ceil((new_w - width) / 2)
    padded[top_pad : top_pad + height, left_pad : left_pad + width] = pixels
    top, bottom, left, right = top + top_pad, bottom + top_pad, left + left_pad, right + left_pad
    return padded[max(0, top) : min(new_h, bottom), max(0, left) : min(new_w, right)]


@lru_cache(maxsize=32)
def _lookup_table(
    rescale_factor: float | None,
    mean: Triple | None,
    std: Triple | None,
    rescale_offset: bool = False,
    top_std: Triple | None = None,
) -> np.ndarray:
    """Output value for every (channel, uint8 value), computed exactly like transformers:
    ``float32(float64(v) * rescale_factor)`` (minus 1 with ``rescale_offset``), then
    ``(x - float32(mean)) / float32(std)`` in float32, then ``x / float32(top_std)``
    (EfficientNet's ``include_top``)."""
    values = np.arange(256, dtype=np.float64)
    if rescale_factor is not None:
        values = values * rescale_factor
    x = values.astype(np.float32)
    if rescale_offset:
        x = x - np.float32(1)
    if mean is None or std is None:
        table = np.repeat(x[None, :], 3, axis=0)
    else:
        m = np.asarray(mean, dtype=np.float32)[:, None]
        s = np.asarray(std, dtype=np.float32)[:, None]
        table = (x[None, :] - m) / s
    if top_std is not None:
        table = table.astype(np.float32) / np.asarray(top_std, dtype=np.float32)[:, None]
    table = np.ascontiguousarray(table, dtype=np.float32)
    table.flags.writeable = False
    return table


def _enhance(image: Image.Image, grayscale: bool, clahe: tuple[float, int] | None) -> Image.Image:
    """Step 0 of :class:`ImageProcessorSpec`: grayscale, then CLAHE on the lightness."""
    if clahe is None:
        return image.convert("L").convert("RGB")
    try:
        import cv2
    except ImportError:
        raise ModelUnavailable(
            "the model's preprocessing uses CLAHE, which needs OpenCV: "
            "pip install 'lookalike[clahe]'"
        ) from None
    tool = cv2.createCLAHE(clipLimit=float(clahe[0]), tileGridSize=(int(clahe[1]),) * 2)
    if grayscale:
        gray = tool.apply(np.asarray(image.convert("L")))
        return Image.fromarray(np.ascontiguousarray(np.stack([gray] * 3, axis=-1)))
    lab = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2LAB)
    lab[..., 0] = tool.apply(np.ascontiguousarray(lab[..., 0]))
    return Image.fromarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))


def _fast_resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``fast_resize``: OpenCV's bilinear resize (area averaging when shrinking 2x or more)
    of (H, W, 3) pixels to ``size`` (width, height), several times faster than Pillow's
    filter, which the reference processors use and which widens its kernel with the scale.
    Pixels differ from the reference by one or two grey levels on average
    (docs/preprocessing.md has the measured retrieval effect)."""
    try:
        import cv2
    except ImportError:
        raise ModelUnavailable(
            "fast resizing needs OpenCV: pip install 'lookalike[fast]'"
        ) from None
    shrink = max(pixels.shape[1] / size[0], pixels.shape[0] / size[1])
    method = cv2.INTER_AREA if shrink >= 2 else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(pixels, size, interpolation=method))
