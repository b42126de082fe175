"""Model input preparation that reproduces Hugging Face image processors exactly.

:class:`ImageProcessorSpec` is plain, picklable data read from a model's
``preprocessor_config.json`` (:meth:`ImageProcessorSpec.from_hf_config`). Called on an RGB
image it returns the float32 ``(3, H, W)`` array the model expects, equal to what the
slow (PIL/numpy) ``transformers`` processor of the same config returns: the same PIL
resize, the same integer crop offsets and, for the rescale/normalise step, a 3 x 256
lookup table computed with the very float operations ``transformers`` uses, so every
value matches bit for bit (tested to 1e-4 in tests/test_preprocess.py).

Supported processors: CLIPImageProcessor, BitImageProcessor (DINOv2), ViTImageProcessor,
ConvNextImageProcessor (``crop_pct``, also used by ResNet checkpoints),
DeiTImageProcessor and SiglipImageProcessor, including legacy configs (``"size": 224``,
``"crop_size": 224``, ``"feature_extractor_type"``). See docs/preprocessing.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from PIL import Image

from ..errors import ModelUnavailable

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

Triple = tuple[float, float, float]
ResizeMode = Literal["shortest_edge", "height_width", "crop_pct", "none"]

OPENAI_CLIP_MEAN: Triple = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD: Triple = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_DEFAULT_MEAN: Triple = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD: Triple = (0.229, 0.224, 0.225)
IMAGENET_STANDARD_MEAN: Triple = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD: Triple = (0.5, 0.5, 0.5)

# ConvNext resizes with crop_pct only below this size and warps to a square at or above it.
_CONVNEXT_CROP_BELOW = 384


@dataclass(frozen=True)
class ImageProcessorSpec:
    """How to turn an RGB image into a model input (a ``Preparer``, see embedders/base.py).

    Steps, in ``transformers`` order:

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
    3. ``x * rescale_factor`` if set, then ``(x - image_mean) / image_std`` if set.
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
    processor: str = field(default="CLIPImageProcessor", compare=False)

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
            return _from_hf_config(cls, config)
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
        if image.mode != "RGB":
            from ..ingest.decode import to_rgb

            image = to_rgb(image)
        size = self.resize_size(image.width, image.height)
        if size is not None and size != image.size:
            image = image.resize(size, resample=Image.Resampling(self.resample))

        crops: list[tuple[int, int]] = []
        if self.resize == "crop_pct":
            crops.append((self.shortest_edge, self.shortest_edge))
        if self.crop_size is not None:
            crops.append(self.crop_size)

        # Crops that stay inside the image are done by PIL before the pixels are copied out
        # (same integer offsets as transformers); ones that need padding go through numpy.
        pending = list(crops)
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

        lut = _lookup_table(self.rescale_factor, self.image_mean, self.image_std)
        out = np.empty((3, pixels.shape[0], pixels.shape[1]), dtype=np.float32)
        for c in range(3):
            np.take(lut[c], pixels[:, :, c], out=out[c], mode="clip")
        return out


# -- helpers reproducing transformers' arithmetic -------------------------------------


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
    rescale_factor: float | None, mean: Triple | None, std: Triple | None
) -> np.ndarray:
    """Output value for every (channel, uint8 value), computed exactly like transformers:
    ``float32(float64(v) * rescale_factor)``, then ``(x - float32(mean)) / float32(std)``
    in float32."""
    values = np.arange(256, dtype=np.float64)
    if rescale_factor is not None:
        values = values * rescale_factor
    x = values.astype(np.float32)
    if mean is None or std is None:
        table = np.repeat(x[None, :], 3, axis=0)
    else:
        m = np.asarray(mean, dtype=np.float32)[:, None]
        s = np.asarray(std, dtype=np.float32)[:, None]
        table = (x[None, :] - m) / s
    table = np.ascontiguousarray(table, dtype=np.float32)
    table.flags.writeable = False
    return table


# -- preprocessor_config.json ----------------------------------------------------------

_CLIP_DEFAULTS: dict[str, Any] = {
    "do_resize": True,
    "size": {"shortest_edge": 224},
    "default_to_square": False,
    "resample": 3,
    "do_center_crop": True,
    "crop_size": {"height": 224, "width": 224},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": OPENAI_CLIP_MEAN,
    "image_std": OPENAI_CLIP_STD,
}

# Class defaults of the supported transformers processors (their PIL backends).
_PROCESSOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "CLIPImageProcessor": _CLIP_DEFAULTS,
    "BitImageProcessor": _CLIP_DEFAULTS,
    "ViTImageProcessor": {
        **_CLIP_DEFAULTS,
        "size": {"height": 224, "width": 224},
        "default_to_square": True,
        "resample": 2,
        "do_center_crop": None,
        "crop_size": None,
        "image_mean": IMAGENET_STANDARD_MEAN,
        "image_std": IMAGENET_STANDARD_STD,
    },
    "DeiTImageProcessor": {
        **_CLIP_DEFAULTS,
        "size": {"height": 256, "width": 256},
        "default_to_square": True,
        "image_mean": IMAGENET_STANDARD_MEAN,
        "image_std": IMAGENET_STANDARD_STD,
    },
    "SiglipImageProcessor": {
        **_CLIP_DEFAULTS,
        "size": {"height": 224, "width": 224},
        "do_center_crop": None,
        "crop_size": None,
        "image_mean": IMAGENET_STANDARD_MEAN,
        "image_std": IMAGENET_STANDARD_STD,
    },
    "ConvNextImageProcessor": {
        **_CLIP_DEFAULTS,
        "size": {"shortest_edge": 384},
        "crop_pct": 224 / 256,
        "do_center_crop": None,
        "crop_size": None,
        "image_mean": IMAGENET_STANDARD_MEAN,
        "image_std": IMAGENET_STANDARD_STD,
    },
}

# Old "feature extractor" names and other spellings of the same processors.
_ALIASES = {
    "ResNetImageProcessor": "ConvNextImageProcessor",
    "Dinov2ImageProcessor": "BitImageProcessor",
}


def _processor_name(config: Mapping[str, Any]) -> str:
    name = config.get("image_processor_type") or config.get("feature_extractor_type")
    if not isinstance(name, str) or not name:
        raise ModelUnavailable(
            "the model's preprocessor_config.json does not say which image processor it uses "
            "(no 'image_processor_type' or 'feature_extractor_type'); supported: "
            + ", ".join(sorted(_PROCESSOR_DEFAULTS))
        )
    name = name.replace("FeatureExtractor", "ImageProcessor")
    for suffix in ("Fast", "Pil"):
        if name.endswith(suffix) and name[: -len(suffix)] in {**_PROCESSOR_DEFAULTS, **_ALIASES}:
            name = name[: -len(suffix)]
    name = _ALIASES.get(name, name)
    if name not in _PROCESSOR_DEFAULTS:
        raise ModelUnavailable(
            f"the model uses the image processor {name!r}, which lookalike cannot reproduce; "
            "supported: " + ", ".join(sorted(_PROCESSOR_DEFAULTS))
        )
    return name


def _size_dict(value: Any, default_to_square: bool, what: str) -> dict[str, int]:
    """transformers.image_processing_utils.get_size_dict."""
    if isinstance(value, bool):
        raise ModelUnavailable(f"invalid {what} {value!r} in preprocessor_config.json")
    if isinstance(value, int):
        if default_to_square:
            return {"height": value, "width": value}
        return {"shortest_edge": value}
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return {"height": int(value[0]), "width": int(value[1])}
    if isinstance(value, Mapping):
        out = {str(k): v for k, v in value.items()}
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in out.values()):
            raise ModelUnavailable(f"invalid {what} {value!r} in preprocessor_config.json")
        return out
    raise ModelUnavailable(f"invalid {what} {value!r} in preprocessor_config.json")


def _triple(value: Any, what: str) -> Triple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),) * 3
    if isinstance(value, (list, tuple)) and len(value) == 3:
        a, b, c = (float(v) for v in value)
        return a, b, c
    raise ModelUnavailable(f"invalid {what} {value!r} in preprocessor_config.json (need 3 values)")


def _from_hf_config(cls: type[ImageProcessorSpec], config: Mapping[str, Any]) -> ImageProcessorSpec:
    if not isinstance(config, Mapping):
        raise ModelUnavailable("preprocessor_config.json must contain a JSON object")
    name = _processor_name(config)
    defaults = _PROCESSOR_DEFAULTS[name]

    def get(key: str) -> Any:
        # transformers treats a missing key and an explicit null the same way.
        value = config.get(key)
        return defaults.get(key) if value is None else value

    if get("do_pad") and get("pad_size") is not None:
        raise ModelUnavailable(f"{name} with do_pad/pad_size is not supported")

    kwargs: dict[str, Any] = {"processor": name}
    resample = get("resample")
    if isinstance(resample, bool) or not isinstance(resample, int):
        raise ModelUnavailable(f"invalid resample {resample!r} in preprocessor_config.json")
    kwargs["resample"] = resample

    if get("do_resize"):
        size = _size_dict(get("size"), bool(get("default_to_square")), "size")
        keys = set(size)
        if name == "ConvNextImageProcessor":
            if "shortest_edge" not in keys:
                raise ModelUnavailable(f"{name} needs size.shortest_edge, got {size!r}")
            edge = size["shortest_edge"]
            if edge < _CONVNEXT_CROP_BELOW:
                crop_pct = float(get("crop_pct"))
                kwargs.update(resize="crop_pct", shortest_edge=edge, crop_pct=crop_pct)
            else:
                kwargs.update(resize="height_width", height=edge, width=edge)
        elif keys == {"height", "width"}:
            kwargs.update(resize="height_width", height=size["height"], width=size["width"])
        elif keys == {"shortest_edge"}:
            kwargs.update(resize="shortest_edge", shortest_edge=size["shortest_edge"])
        elif keys == {"shortest_edge", "longest_edge"}:
            kwargs.update(
                resize="shortest_edge",
                shortest_edge=size["shortest_edge"],
                longest_edge=size["longest_edge"],
            )
        else:
            raise ModelUnavailable(f"unsupported size {size!r} in {name} config")
    else:
        kwargs["resize"] = "none"

    if get("do_center_crop"):
        crop = get("crop_size")
        if crop is None:
            raise ModelUnavailable(f"{name} config has do_center_crop but no crop_size")
        crop_dict = _size_dict(crop, True, "crop_size")
        if set(crop_dict) != {"height", "width"}:
            raise ModelUnavailable(f"crop_size needs height and width, got {crop_dict!r}")
        kwargs["crop_size"] = (crop_dict["height"], crop_dict["width"])
    else:
        kwargs["crop_size"] = None

    if get("do_rescale"):
        factor = get("rescale_factor")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            raise ModelUnavailable(f"invalid rescale_factor {factor!r} in preprocessor_config.json")
        kwargs["rescale_factor"] = float(factor)
    else:
        kwargs["rescale_factor"] = None

    if get("do_normalize"):
        kwargs["image_mean"] = _triple(get("image_mean"), "image_mean")
        kwargs["image_std"] = _triple(get("image_std"), "image_std")
    else:
        kwargs["image_mean"] = kwargs["image_std"] = None

    spec = cls(**kwargs)
    logger.debug("image preprocessing from %s config: %s", name, spec)
    return spec
