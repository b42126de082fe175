"""Hugging Face ``preprocessor_config.json`` files: which transformers image processor they name, its class defaults, and the settings that reproduce it exactly."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..errors import ModelUnavailable

logger = logging.getLogger(__name__)

Triple = tuple[float, float, float]

OPENAI_CLIP_MEAN: Triple = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD: Triple = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_DEFAULT_MEAN: Triple = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD: Triple = (0.229, 0.224, 0.225)
IMAGENET_STANDARD_MEAN: Triple = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD: Triple = (0.5, 0.5, 0.5)

# ConvNext resizes with crop_pct only below this size and warps to a square at or above it.
_CONVNEXT_CROP_BELOW = 384

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


def spec_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``ImageProcessorSpec`` keyword arguments that reproduce a transformers image
    processor's ``preprocessor_config.json``."""
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

    logger.debug("image preprocessing from %s config: %s", name, kwargs)
    return kwargs
