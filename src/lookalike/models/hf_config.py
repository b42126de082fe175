"""Hugging Face ``preprocessor_config.json`` files: which transformers image processor they name, its class defaults, and the settings that reproduce it exactly."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
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
_STANDARD = {"image_mean": IMAGENET_STANDARD_MEAN, "image_std": IMAGENET_STANDARD_STD}
_NO_CROP = {"do_center_crop": None, "crop_size": None}
_MOBILENET_DEFAULTS: dict[str, Any] = {
    **_CLIP_DEFAULTS,
    **_STANDARD,
    "size": {"shortest_edge": 256},
    "resample": 2,
}

#: Keys that describe the processor or the output container without changing the pixel
#: values of an RGB image (lookalike always feeds RGB, channels first, one image at a time).
DESCRIPTIVE_KEYS = frozenset(
    {
        "image_processor_type",
        "feature_extractor_type",
        "processor_class",
        "_processor_class",
        "do_convert_rgb",
        "input_data_format",
        "return_tensors",
        "device",
        "disable_grouping",
        "image_seq_length",
        "model_input_names",
    }
)
#: Keys every processor applies (the common transformers ImagesKwargs), checked or applied.
COMMON_KEYS = frozenset(
    {
        "do_resize",
        "size",
        "default_to_square",
        "resample",
        "do_center_crop",
        "crop_size",
        "do_rescale",
        "rescale_factor",
        "do_normalize",
        "image_mean",
        "image_std",
        "do_pad",
        "pad_size",
        "data_format",
    }
)
#: Segmentation-label options: they change the labels, never ``pixel_values``.
_LABEL_KEYS = frozenset({"do_reduce_labels", "reduce_labels"})


@dataclass(frozen=True)
class _Processor:
    """Class defaults (transformers 5 PIL backend) and the extra keys a processor knows."""

    defaults: dict[str, Any]
    extra_keys: frozenset[str] = frozenset()
    #: Keys whose class default changed between transformers versions: the file must set them.
    required: tuple[str, ...] = ()


#: The supported transformers image processors (their PIL backends), by class name.
SUPPORTED_PROCESSORS: dict[str, _Processor] = {
    "CLIPImageProcessor": _Processor(_CLIP_DEFAULTS, frozenset({"use_square_size"})),
    "BitImageProcessor": _Processor(_CLIP_DEFAULTS),
    "ViTImageProcessor": _Processor(
        {
            **_CLIP_DEFAULTS,
            **_STANDARD,
            **_NO_CROP,
            "size": {"height": 224, "width": 224},
            "default_to_square": True,
            "resample": 2,
        }
    ),
    "DeiTImageProcessor": _Processor(
        {
            **_CLIP_DEFAULTS,
            **_STANDARD,
            "size": {"height": 256, "width": 256},
            "default_to_square": True,
        }
    ),
    "SiglipImageProcessor": _Processor(
        {**_CLIP_DEFAULTS, **_STANDARD, **_NO_CROP, "size": {"height": 224, "width": 224}}
    ),
    "ConvNextImageProcessor": _Processor(
        {
            **_CLIP_DEFAULTS,
            **_STANDARD,
            **_NO_CROP,
            "size": {"shortest_edge": 384},
            "crop_pct": 224 / 256,
        },
        frozenset({"crop_pct"}),
    ),
    "MobileNetV1ImageProcessor": _Processor(_MOBILENET_DEFAULTS),
    "MobileNetV2ImageProcessor": _Processor(_MOBILENET_DEFAULTS, _LABEL_KEYS),
    "BeitImageProcessor": _Processor(
        {
            **_CLIP_DEFAULTS,
            **_STANDARD,
            "size": {"height": 224, "width": 224},
            "default_to_square": True,
            "do_center_crop": False,
        },
        _LABEL_KEYS,
    ),
    "EfficientNetImageProcessor": _Processor(
        {
            **_CLIP_DEFAULTS,
            **_STANDARD,
            "size": {"height": 346, "width": 346},
            "default_to_square": True,
            "do_center_crop": False,
            "crop_size": {"height": 289, "width": 289},
            "rescale_offset": False,
            "include_top": True,
        },
        frozenset({"rescale_offset", "include_top"}),
        # transformers 4 defaulted to NEAREST and 1/127; 5 to BICUBIC and 1/255.
        required=("resample", "rescale_factor"),
    ),
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
            + ", ".join(sorted(SUPPORTED_PROCESSORS))
        )
    name = name.replace("FeatureExtractor", "ImageProcessor")
    known = {**SUPPORTED_PROCESSORS, **_ALIASES}
    for suffix in ("Fast", "Pil"):
        if name.endswith(suffix) and name[: -len(suffix)] in known:
            name = name[: -len(suffix)]
    name = _ALIASES.get(name, name)
    if name not in SUPPORTED_PROCESSORS:
        raise ModelUnavailable(
            f"the model uses the image processor {name!r}, which lookalike cannot reproduce; "
            "supported: " + ", ".join(sorted(SUPPORTED_PROCESSORS))
        )
    return name


def _check_keys(name: str, processor: _Processor, config: Mapping[str, Any]) -> None:
    """Refuse any key not on the processor's allow-list, naming it (never ignore one that
    might change the pixels)."""
    allowed = DESCRIPTIVE_KEYS | COMMON_KEYS | processor.extra_keys
    unknown = sorted(str(k) for k in config if k not in allowed)
    # A null unknown key means "not set" to transformers: harmless.
    unknown = [k for k in unknown if config.get(k) is not None]
    if unknown:
        raise ModelUnavailable(
            f"preprocessor_config.json ({name}) has key {unknown[0]!r}, which lookalike does"
            " not apply, so its images would differ from the model's; keys lookalike knows for"
            f" {name}: " + ", ".join(sorted(COMMON_KEYS | processor.extra_keys))
        )
    missing = [k for k in processor.required if config.get(k) is None]
    if missing:
        raise ModelUnavailable(
            f"preprocessor_config.json ({name}) must set {missing[0]!r}: its default differs"
            " between transformers versions"
        )
    if config.get("use_square_size"):
        raise ModelUnavailable(
            f"preprocessor_config.json ({name}): 'use_square_size' is not supported"
        )
    data_format = config.get("data_format")
    if data_format not in (None, "channels_first"):
        raise ModelUnavailable(
            f"preprocessor_config.json ({name}): 'data_format' {data_format!r} is not supported"
            " (lookalike feeds channels first)"
        )


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
    processor = SUPPORTED_PROCESSORS[name]
    _check_keys(name, processor, config)
    defaults = processor.defaults

    def get(key: str) -> Any:
        # transformers treats a missing key and an explicit null the same way.
        value = config.get(key)
        return defaults.get(key) if value is None else value

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
        kwargs["rescale_offset"] = bool(get("rescale_offset"))
    else:
        kwargs["rescale_factor"] = None

    if get("do_normalize"):
        kwargs["image_mean"] = _triple(get("image_mean"), "image_mean")
        kwargs["image_std"] = _triple(get("image_std"), "image_std")
    else:
        kwargs["image_mean"] = kwargs["image_std"] = None
    if get("include_top"):  # EfficientNet: divide by image_std once more
        kwargs["top_std"] = _triple(get("image_std"), "image_std")

    if get("do_pad"):
        # Without pad_size a batch is padded to its largest image: a no-op when every
        # output has the same size. lookalike cannot pad to a pad_size.
        fixed = kwargs["crop_size"] is not None or kwargs["resize"] in ("height_width", "crop_pct")
        if get("pad_size") is not None or not fixed:
            raise ModelUnavailable(
                f"preprocessor_config.json ({name}): 'do_pad' is not supported"
                + (
                    " with pad_size"
                    if get("pad_size") is not None
                    else " for variable-size outputs"
                )
            )

    logger.debug("image preprocessing from %s config: %s", name, kwargs)
    return kwargs
