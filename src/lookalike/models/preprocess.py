"""Model input preparation that reproduces Hugging Face image processors exactly.

:class:`ImageProcessorSpec` is plain, picklable data read from a model's
``preprocessor_config.json`` (:meth:`ImageProcessorSpec.from_hf_config`). Called on an RGB
image it returns the float32 ``(3, H, W)`` array the model expects, equal to what the
slow (PIL/numpy) ``transformers`` processor of the same config returns: the same PIL
resize, the same integer crop offsets and, for the rescale/normalise step, a 3 x 256
lookup table computed with the very float operations ``transformers`` uses, so every
value matches bit for bit (tested to 1e-4 in tests/test_preprocess.py).

Supported processors: CLIPImageProcessor, BitImageProcessor (DINOv2), ViTImageProcessor,
ConvNextImageProcessor (``crop_pct``, also used by ResNet checkpoints), DeiTImageProcessor,
SiglipImageProcessor, MobileNetV1/V2ImageProcessor, BeitImageProcessor and
EfficientNetImageProcessor (``rescale_offset``, ``include_top``), including legacy configs (``"size": 224``,
``"crop_size": 224``, ``"feature_extractor_type"``). See docs/preprocessing.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

from ..errors import ModelUnavailable
from .hf_config import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    Triple,
    spec_kwargs,
)
from .preprocess_ops import (
    _center_crop_padded,
    _enhance,
    _fast_resize,
    _lookup_table,
    _shortest_edge_hw,
    _size_with_aspect_ratio,
)

__all__ = [
    "IMAGENET_DEFAULT_MEAN",
    "IMAGENET_DEFAULT_STD",
    "IMAGENET_STANDARD_MEAN",
    "IMAGENET_STANDARD_STD",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "ImageProcessorSpec",
    "ResizeMode",
]

logger = logging.getLogger(__name__)

ResizeMode = Literal["shortest_edge", "height_width", "crop_pct", "none"]


@dataclass(frozen=True)
class ImageProcessorSpec:
    """How to turn an RGB image into a model input (a ``Preparer``, see embedders/base.py).

    Steps, in ``transformers`` order, after two optional ones of lookalike's own (set by
    ``lookalike.json`` or the registry, part of the model identity; off by default):

    0. ``grayscale``: the image as 3 equal channels of its luma (PIL ``convert("L")``,
       ITU-R 601-2: ``L = 0.299 R + 0.587 G + 0.114 B``);
       ``clahe`` = (clip limit, tile grid): OpenCV CLAHE (``cv2.createCLAHE(clipLimit,
       (grid, grid))``) on the lightness: the L channel of CIE L*a*b* (8-bit, OpenCV's
       ``COLOR_RGB2LAB``) for a colour image, the gray channel after ``grayscale``. Needs
       ``opencv-python-headless``. Both run on the decoded image (at JPEG draft size).

    1. resize (PIL, filter ``resample``), depending on ``resize``:

       - ``"shortest_edge"``: shorter side to ``shortest_edge``, the longer one to
         ``int(shortest_edge * long / short)``; with ``longest_edge`` the longer side is
         capped first (``get_size_with_aspect_ratio``).
       - ``"height_width"``: to exactly ``height`` x ``width`` (aspect ratio not kept).
       - ``"crop_pct"`` (ConvNext/ResNet): shorter side to ``int(shortest_edge / crop_pct)``,
         then a ``shortest_edge`` square centre crop.
       - ``"none"``: no resizing.

    2. centre crop to ``crop_size`` = (height, width), if set (zero padding when the image
       is smaller, like ``transformers``);
    3. ``x * rescale_factor`` if set (minus 1 with ``rescale_offset``), then
       ``(x - image_mean) / image_std`` if set, then ``x / top_std`` if set.
    """

    resize: ResizeMode = "shortest_edge"
    shortest_edge: int = 224
    longest_edge: int | None = None
    height: int = 224
    width: int = 224
    crop_pct: float = 0.875
    resample: int = int(Image.Resampling.BICUBIC)
    crop_size: tuple[int, int] | None = (224, 224)
    rescale_factor: float | None = 1 / 255
    image_mean: Triple | None = OPENAI_CLIP_MEAN
    image_std: Triple | None = OPENAI_CLIP_STD
    rescale_offset: bool = False
    top_std: Triple | None = None
    processor: str = field(default="CLIPImageProcessor", compare=False)
    grayscale: bool = False
    clahe: tuple[float, int] | None = None
    fast_resize: bool = False  # opt-in: OpenCV's resize instead of the reference's (inexact)
    #: Return the cropped (H, W, 3) uint8 pixels instead of the normalised input: step 3
    #: is left to the model's runner (``lookup_table``, applied on the GPU). Not part of
    #: the model identity: the values the model sees are the same.
    defer_normalise: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.resize not in ("shortest_edge", "height_width", "crop_pct", "none"):
            problems.append(f"unknown resize mode {self.resize!r}")
        for name in ("shortest_edge", "height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if self.longest_edge is not None and self.longest_edge <= self.shortest_edge:
            problems.append("longest_edge must be greater than shortest_edge")
        if not 0 < self.crop_pct <= 10:
            problems.append(f"crop_pct must be in (0, 10], got {self.crop_pct!r}")
        try:
            Image.Resampling(self.resample)
        except ValueError:
            problems.append(f"unknown PIL resample filter {self.resample!r}")
        if self.crop_size is not None and (len(self.crop_size) != 2 or min(self.crop_size) < 1):
            problems.append(f"crop_size must be (height, width) > 0, got {self.crop_size!r}")
        if self.rescale_factor is not None and not self.rescale_factor > 0:
            problems.append(f"rescale_factor must be > 0, got {self.rescale_factor!r}")
        if (self.image_mean is None) != (self.image_std is None):
            problems.append("image_mean and image_std must be given together")
        if self.image_mean is not None and len(self.image_mean) != 3:
            problems.append("image_mean needs 3 values")
        if self.image_std is not None and (
            len(self.image_std) != 3 or any(s == 0 for s in self.image_std)
        ):
            problems.append("image_std needs 3 non-zero values")
        if self.top_std is not None and (
            len(self.top_std) != 3 or any(s == 0 for s in self.top_std)
        ):
            problems.append("top_std needs 3 non-zero values")
        if self.clahe is not None and (
            len(self.clahe) != 2 or not self.clahe[0] > 0 or int(self.clahe[1]) < 1
        ):
            problems.append(f"clahe must be (clip limit > 0, tile grid >= 1), got {self.clahe!r}")
        if self.rescale_offset and self.rescale_factor is None:
            problems.append("rescale_offset needs rescale_factor")
        if problems:
            raise ModelUnavailable(
                f"invalid image preprocessing settings ({self.processor}): " + "; ".join(problems)
            )

    # -- construction from preprocessor_config.json ------------------------------------

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any]) -> ImageProcessorSpec:
        """Read a Hugging Face ``preprocessor_config.json`` (as a dict).

        Values missing from the file (or null) take the processor class's defaults, as in
        ``transformers``. Raises :class:`ModelUnavailable` for processor types we cannot
        reproduce exactly and for invalid values.
        """
        try:
            return cls(**spec_kwargs(config))
        except ModelUnavailable:
            raise
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise ModelUnavailable(
                f"the model's preprocessor_config.json has an invalid value: {exc}"
            ) from exc

    # -- geometry --------------------------------------------------------------------

    def resize_size(self, width: int, height: int) -> tuple[int, int] | None:
        """The (width, height) the resize step produces for an input of this size
        (None: no resize)."""
        if self.resize == "none":
            return None
        if self.resize == "height_width":
            return self.width, self.height
        if self.resize == "crop_pct":
            h, w = _shortest_edge_hw(height, width, int(self.shortest_edge / self.crop_pct))
            return w, h
        if self.longest_edge is not None:
            h, w = _size_with_aspect_ratio(height, width, self.shortest_edge, self.longest_edge)
            return w, h
        h, w = _shortest_edge_hw(height, width, self.shortest_edge)
        return w, h

    def output_size(self) -> tuple[int, int] | None:
        """(height, width) of every output, or None when it depends on the input."""
        if self.crop_size is not None:
            return self.crop_size
        if self.resize == "crop_pct":
            return self.shortest_edge, self.shortest_edge
        if self.resize == "height_width":
            return self.height, self.width
        return None

    def draft_size(self) -> tuple[int, int] | None:
        """Smallest (width, height) a JPEG may be DCT-scaled to before :meth:`__call__`.

        Any drafted image at least this large in both dimensions is at least as large as
        the resize target, so the resize still only shrinks (or keeps) the image.
        The result then differs from full-resolution decoding only by the different
        downscaling path (measured in docs/preprocessing.md).
        """
        if self.resize == "none":
            return None
        if self.resize == "height_width":
            return self.width, self.height
        if self.resize == "crop_pct":
            edge = int(self.shortest_edge / self.crop_pct)
            return edge, edge
        return self.shortest_edge, self.shortest_edge

    # -- the preparer ------------------------------------------------------------------

    def __call__(self, image: Image.Image) -> np.ndarray:
        """The model input for one image: float32, shape (3, H, W), C-contiguous."""
        return self.prepare(image)[0]

    def prepare(self, image: Image.Image) -> tuple[np.ndarray, Image.Image]:
        """The model input and the resized RGB image it was cropped from (``image`` itself
        when nothing is resized): the indexer takes the perceptual hash from the latter
        instead of shrinking the full image a second time."""
        if image.mode != "RGB":
            from ..ingest.decode import to_rgb

            image = to_rgb(image)
        if self.takes_pixels:
            out, pixels = self.prepare_pixels(np.asarray(image))
            same = pixels.shape[:2] == (image.height, image.width)
            return out, image if same else Image.fromarray(pixels)
        if self.grayscale or self.clahe is not None:
            image = _enhance(image, self.grayscale, self.clahe)
        size = self.resize_size(image.width, image.height)
        if size is not None and size != image.size:
            image = image.resize(size, resample=Image.Resampling(self.resample))
        resized = image

        # Crops that stay inside the image are done by PIL before the pixels are copied out
        # (same integer offsets as transformers); ones that need padding go through numpy.
        pending = self._crops()
        while pending:
            ch, cw = pending[0]
            top, left = (image.height - ch) // 2, (image.width - cw) // 2
            if top < 0 or left < 0:
                break
            if (ch, cw) != (image.height, image.width):
                image = image.crop((left, top, left + cw, top + ch))
            pending.pop(0)

        pixels = np.asarray(image)
        for ch, cw in pending:
            pixels = _center_crop_padded(pixels, ch, cw)
        return self._finish(pixels), resized

    @property
    def takes_pixels(self) -> bool:
        """Whether :meth:`prepare_pixels` applies: ``fast_resize`` without the PIL-only
        enhancement steps. The indexer then copies a photo's pixels out of PIL once, for
        both the pixel hash and the model input."""
        return self.fast_resize and not self.grayscale and self.clahe is None

    def prepare_pixels(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`prepare` for an (H, W, 3) uint8 RGB array: the model input, and the
        resized array (``pixels`` itself when nothing is resized). Equal to :meth:`prepare`
        on the same pixels; when :attr:`takes_pixels`, without a round trip through PIL."""
        if not self.takes_pixels:
            out, image = self.prepare(Image.fromarray(pixels))
            return out, np.asarray(image)
        height, width = pixels.shape[:2]
        size = self.resize_size(width, height)
        if size is not None and size != (width, height):
            pixels = _fast_resize(pixels, size)
        resized = pixels
        for ch, cw in self._crops():
            pixels = _center_crop_padded(pixels, ch, cw)
        return self._finish(pixels), resized

    def _crops(self) -> list[tuple[int, int]]:
        """The centre crops after the resize, in order: (height, width) each."""
        crops: list[tuple[int, int]] = []
        if self.resize == "crop_pct":
            crops.append((self.shortest_edge, self.shortest_edge))
        if self.crop_size is not None:
            crops.append(self.crop_size)
        return crops

    def _finish(self, pixels: np.ndarray) -> np.ndarray:
        if self.defer_normalise:
            return np.ascontiguousarray(pixels, dtype=np.uint8)
        return self.normalise(pixels)

    def lookup_table(self) -> np.ndarray:
        """Step 3 as a (3, 256) float32 table: the input value of every (channel, uint8
        pixel value). ``normalise`` and the GPU runners' deferred step index it."""
        return _lookup_table(
            self.rescale_factor, self.image_mean, self.image_std, self.rescale_offset, self.top_std
        )

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """Rescale and normalise (H, W, 3) uint8 pixels into the (3, H, W) float32 input."""
        lut = self.lookup_table()
        out = np.empty((3, pixels.shape[0], pixels.shape[1]), dtype=np.float32)
        for c in range(3):
            np.take(lut[c], pixels[:, :, c], out=out[c], mode="clip")
        return out
