"""Every supported Hugging Face image processor against transformers' own PIL processor,
and the per-processor allow-list of preprocessor_config.json keys."""

from __future__ import annotations

import logging
from typing import Any

import imagegen
import numpy as np
import pytest
from PIL import Image

from lookalike.errors import ModelUnavailable
from lookalike.models.hf_config import SUPPORTED_PROCESSORS
from lookalike.models.preprocess import ImageProcessorSpec

TOLERANCE = 1e-4

#: (transformers module, PIL class) of each processor; transformers 4 names them without "Pil".
REFERENCE = {
    "CLIPImageProcessor": ("clip", "CLIPImageProcessorPil"),
    "BitImageProcessor": ("bit", "BitImageProcessorPil"),
    "ViTImageProcessor": ("vit", "ViTImageProcessorPil"),
    "DeiTImageProcessor": ("deit", "DeiTImageProcessorPil"),
    "SiglipImageProcessor": ("siglip", "SiglipImageProcessorPil"),
    "ConvNextImageProcessor": ("convnext", "ConvNextImageProcessorPil"),
    "MobileNetV1ImageProcessor": ("mobilenet_v1", "MobileNetV1ImageProcessorPil"),
    "MobileNetV2ImageProcessor": ("mobilenet_v2", "MobileNetV2ImageProcessorPil"),
    "BeitImageProcessor": ("beit", "BeitImageProcessorPil"),
    "EfficientNetImageProcessor": ("efficientnet", "EfficientNetImageProcessorPil"),
}

#: Configs as published on the hub (the ImageNet CNN/ViT exports), plus bare ones that
#: exercise the class defaults.
CONFIGS: list[tuple[str, dict[str, Any]]] = [
    (
        "google/mobilenet_v2_1.0_224",
        {
            "crop_pct": None,  # legacy key, null: harmless
            "crop_size": {"height": 224, "width": 224},
            "do_center_crop": True,
            "do_normalize": True,
            "do_reduce_labels": False,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "MobileNetV2ImageProcessor",
            "image_std": [0.5, 0.5, 0.5],
            "resample": 2,
            "rescale_factor": 0.00392156862745098,
            "size": {"shortest_edge": 256},
        },
    ),
    ("mobilenet-v2-bare", {"image_processor_type": "MobileNetV2ImageProcessor"}),
    (
        "google/mobilenet_v1_1.0_224",
        {
            "crop_size": {"height": 224, "width": 224},
            "do_center_crop": True,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "MobileNetV1ImageProcessor",
            "image_std": [0.5, 0.5, 0.5],
            "resample": 2,
            "rescale_factor": 0.00392156862745098,
            "size": {"shortest_edge": 256},
        },
    ),
    (
        "google/vit-base-patch16-224",
        {
            "do_normalize": True,
            "do_resize": True,
            "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "ViTImageProcessor",
            "image_std": [0.5, 0.5, 0.5],
            "resample": 2,
            "size": {"height": 224, "width": 224},
        },
    ),
    (
        "google/bit-50",
        {
            "crop_size": {"height": 224, "width": 224},
            "do_center_crop": True,
            "do_convert_rgb": True,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "BitImageProcessor",
            "image_std": [0.5, 0.5, 0.5],
            "resample": 3,
            "rescale_factor": 0.00392156862745098,
            "size": {"shortest_edge": 448},
        },
    ),
    (
        "facebook/convnext-tiny-224",
        {
            "crop_pct": 0.875,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": [0.485, 0.456, 0.406],
            "image_processor_type": "ConvNextImageProcessor",
            "image_std": [0.229, 0.224, 0.225],
            "resample": 3,
            "rescale_factor": 0.00392156862745098,
            "size": {"shortest_edge": 224},
        },
    ),
    (
        "microsoft/resnet-50 (ResNet alias)",
        {"image_processor_type": "ResNetImageProcessor", "size": {"shortest_edge": 224}},
    ),
    (
        "openai/clip-vit-base-patch32",
        {
            "crop_size": {"height": 224, "width": 224},
            "do_center_crop": True,
            "do_convert_rgb": True,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_processor_type": "CLIPImageProcessor",
            "image_std": [0.26862954, 0.26130258, 0.27577711],
            "processor_class": "CLIPProcessor",
            "resample": 3,
            "rescale_factor": 0.00392156862745098,
            "size": {"shortest_edge": 224},
        },
    ),
    (
        "facebook/deit-small-patch16-224",
        {
            "crop_size": {"height": 224, "width": 224},
            "do_center_crop": True,
            "do_normalize": True,
            "do_resize": True,
            "feature_extractor_type": "DeiTFeatureExtractor",
            "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225],
            "resample": 3,
            "size": 256,
        },
    ),
    ("deit-bare", {"image_processor_type": "DeiTImageProcessor"}),
    ("siglip-bare", {"image_processor_type": "SiglipImageProcessor"}),
    (
        "microsoft/beit-base-patch16-224",
        {
            "crop_size": {"height": 224, "width": 224},
            "do_center_crop": False,
            "do_normalize": True,
            "do_reduce_labels": False,
            "do_resize": True,
            "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "BeitImageProcessor",
            "image_std": [0.5, 0.5, 0.5],
            "resample": 2,
            "size": {"height": 224, "width": 224},
        },
    ),
    (
        "google/efficientnet-b0",
        {
            "crop_size": {"height": 289, "width": 289},
            "do_center_crop": False,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": [0.485, 0.456, 0.406],
            "image_processor_type": "EfficientNetImageProcessor",
            "image_std": [0.47853944, 0.4732864, 0.47434163],
            "include_top": True,
            "resample": 0,
            "rescale_factor": 0.00392156862745098,
            "rescale_offset": False,
            "size": {"height": 224, "width": 224},
        },
    ),
    (
        "efficientnet-offset-no-top",
        {
            "image_processor_type": "EfficientNetImageProcessor",
            "include_top": False,
            "resample": 3,
            "rescale_factor": 1 / 127.5,
            "rescale_offset": True,
            "size": {"height": 240, "width": 240},
            "do_center_crop": True,
            "crop_size": {"height": 200, "width": 200},
        },
    ),
]


def _processor_of(config: dict[str, Any]) -> str:
    name = str(config.get("image_processor_type") or config.get("feature_extractor_type"))
    name = name.replace("FeatureExtractor", "ImageProcessor")
    return {"ResNetImageProcessor": "ConvNextImageProcessor"}.get(name, name)


def _reference(processor: str, config: dict[str, Any]) -> Any:
    pytest.importorskip("transformers")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    folder, cls_name = REFERENCE[processor]
    module = pytest.importorskip(f"transformers.models.{folder}.image_processing_pil_{folder}")
    return getattr(module, cls_name).from_dict(config)


def _photos() -> list[Image.Image]:
    """Real photos (scikit-image's bundled ones when installed) and generated odd sizes."""
    images: list[Image.Image] = []
    try:
        from skimage import data as skdata

        for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry"):
            images.append(Image.fromarray(getattr(skdata, name)()).convert("RGB"))
    except ImportError:
        pass
    sizes = [(301, 457), (457, 301), (224, 224), (100, 37), (999, 1000), (1280, 720)]
    images += [imagegen.photo_like(500 + i, size) for i, size in enumerate(sizes)]
    return images


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return _photos()


def test_every_supported_processor_has_a_parity_case() -> None:
    assert {_processor_of(c) for _, c in CONFIGS} == set(SUPPORTED_PROCESSORS)


@pytest.mark.parametrize(("repo", "config"), CONFIGS, ids=[r for r, _ in CONFIGS])
def test_processor_parity(repo: str, config: dict[str, Any], photos: list[Image.Image]) -> None:
    reference = _reference(_processor_of(config), config)
    spec = ImageProcessorSpec.from_hf_config(config)
    for image in photos:
        expected = reference(image, return_tensors="np")["pixel_values"][0]
        actual = spec(image)
        assert actual.dtype == np.float32 and actual.flags.c_contiguous
        assert actual.shape == expected.shape, (repo, image.size)
        diff = float(np.abs(actual - expected).max())
        assert diff <= TOLERANCE, (repo, image.size, diff)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        (
            {"image_processor_type": "MobileNetV2ImageProcessor", "do_convert_grayscale": True},
            "do_convert_grayscale",
        ),
        ({"image_processor_type": "CLIPImageProcessor", "crop_pct": 0.9}, "crop_pct"),
        (
            {"image_processor_type": "ViTImageProcessor", "do_flip_channel_order": True},
            "do_flip_channel_order",
        ),
        (
            {"image_processor_type": "ConvNextImageProcessor", "rescale_offset": True},
            "rescale_offset",
        ),
        (
            {
                "image_processor_type": "BitImageProcessor",
                "auto_map": {"AutoImageProcessor": "x.Y"},
            },
            "auto_map",
        ),
        (
            {"image_processor_type": "CLIPImageProcessor", "use_square_size": True},
            "use_square_size",
        ),
        (
            {"image_processor_type": "ViTImageProcessor", "data_format": "channels_last"},
            "data_format",
        ),
        (
            {
                "image_processor_type": "ViTImageProcessor",
                "do_pad": True,
                "pad_size": {"height": 300, "width": 300},
            },
            "do_pad",
        ),
        (
            {"image_processor_type": "CLIPImageProcessor", "do_center_crop": False, "do_pad": True},
            "do_pad",
        ),
        (
            {
                "image_processor_type": "EfficientNetImageProcessor",
                "size": {"height": 224, "width": 224},
            },
            "resample",
        ),
    ],
)
def test_a_key_lookalike_cannot_apply_is_an_error_naming_it(
    config: dict[str, Any], key: str
) -> None:
    with pytest.raises(ModelUnavailable, match=f"'{key}'"):
        ImageProcessorSpec.from_hf_config(config)


def test_descriptive_and_label_only_keys_are_accepted() -> None:
    base = ImageProcessorSpec.from_hf_config({"image_processor_type": "MobileNetV2ImageProcessor"})
    noisy = ImageProcessorSpec.from_hf_config(
        {
            "image_processor_type": "MobileNetV2ImageProcessor",
            "processor_class": "MobileNetV2Processor",
            "_processor_class": None,
            "feature_extractor_type": "MobileNetV2FeatureExtractor",
            "do_reduce_labels": True,  # segmentation labels only, never the pixels
            "do_convert_rgb": True,
            "data_format": "channels_first",
            "do_pad": False,
        }
    )
    assert noisy == base
    # do_pad without pad_size pads a batch to its largest image: a no-op at a fixed size.
    padded = ImageProcessorSpec.from_hf_config(
        {"image_processor_type": "ViTImageProcessor", "do_pad": True}
    )
    assert padded == ImageProcessorSpec.from_hf_config(
        {"image_processor_type": "ViTImageProcessor"}
    )
