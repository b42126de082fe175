from __future__ import annotations

import logging
import pickle
from typing import Any

import imagegen
import numpy as np
import pytest
from hf_configs import CLIP_CONFIG, DINOV2_CONFIG, LEGACY_CLIP_CONFIG, RESNET_CONFIG
from PIL import Image

from lookalike.errors import ModelUnavailable
from lookalike.ingest.decode import decode_image
from lookalike.models.preprocess import ImageProcessorSpec

TOLERANCE = 1e-4


def _parity_images(sample_set: list) -> list[Image.Image]:
    """Real photos (scikit-image's public-domain/CC0 ones and their edited copies, 150 to
    1411 px) plus generated pictures of odd sizes."""
    images = [Image.open(s.path).convert("RGB") for s in sample_set]
    assert len(images) >= 40
    sizes = [
        (301, 457),  # portrait, odd
        (457, 301),  # landscape, odd
        (224, 224),  # exactly the target
        (225, 223),
        (257, 255),
        (100, 37),  # small: upscaled
        (37, 100),
        (57, 57),
        (999, 1000),
        (333, 1000),  # tall
        (1280, 720),
    ]
    images += [imagegen.photo_like(200 + i, size) for i, size in enumerate(sizes)]
    return images


@pytest.fixture(scope="module")
def parity_images(sample_set: list) -> list[Image.Image]:
    return _parity_images(sample_set)


def _reference(processor_cls_path: str, config: dict[str, Any]) -> Any:
    pytest.importorskip("transformers")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    module_name, _, cls_name = processor_cls_path.rpartition(".")
    module = pytest.importorskip(module_name)
    return getattr(module, cls_name).from_dict(config)


# The PIL/numpy ("slow") processors of transformers 5; transformers 4 names them without "Pil".
PIL_PROCESSORS = {
    "clip": "transformers.models.clip.image_processing_pil_clip.CLIPImageProcessorPil",
    "bit": "transformers.models.bit.image_processing_pil_bit.BitImageProcessorPil",
    "convnext": "transformers.models.convnext.image_processing_pil_convnext.ConvNextImageProcessorPil",
}


@pytest.mark.parametrize(
    ("processor", "config"),
    [
        ("clip", CLIP_CONFIG),
        ("bit", DINOV2_CONFIG),
        ("convnext", RESNET_CONFIG),
        ("clip", LEGACY_CLIP_CONFIG),
    ],
    ids=["clip-vit-b32", "dinov2-small", "resnet-50", "legacy-clip"],
)
def test_parity_with_transformers(
    processor: str, config: dict[str, Any], parity_images: list[Image.Image]
) -> None:
    reference = _reference(PIL_PROCESSORS[processor], config)
    spec = ImageProcessorSpec.from_hf_config(config)
    for image in parity_images:
        expected = reference(image, return_tensors="np")["pixel_values"][0]
        actual = spec(image)
        assert actual.dtype == np.float32
        assert actual.flags.c_contiguous
        assert actual.shape == expected.shape == (3, 224, 224), image.size
        diff = float(np.abs(actual - expected).max())
        assert diff <= TOLERANCE, (image.size, diff)


def test_parity_for_padding_and_capped_sizes() -> None:
    """Rarer geometry: crops larger than the resized image (zero padding), crop_pct > 1,
    shortest+longest edge, ConvNext at 384 (warp), exact height/width (ViT)."""
    cases: list[tuple[str, dict[str, Any]]] = [
        (
            "clip",
            {
                "image_processor_type": "CLIPImageProcessor",
                "size": {"shortest_edge": 100},
                "crop_size": {"height": 150, "width": 90},
            },
        ),
        (
            "convnext",
            {
                "image_processor_type": "ConvNextImageProcessor",
                "size": {"shortest_edge": 224},
                "crop_pct": 1.2,
            },
        ),
        (
            "convnext",
            {"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 384}},
        ),
        (
            "clip",
            {
                "image_processor_type": "CLIPImageProcessor",
                "size": {"shortest_edge": 224, "longest_edge": 300},
                "do_center_crop": False,
            },
        ),
        (
            "clip",
            {"feature_extractor_type": "ViTFeatureExtractor", "size": 224, "resample": 2},
        ),
    ]
    images = [
        imagegen.photo_like(300 + i, size)
        for i, size in enumerate([(300, 200), (120, 333), (64, 64)])
    ]
    for processor, config in cases:
        spec = ImageProcessorSpec.from_hf_config(config)
        if processor == "clip" and "ViT" in str(config.get("feature_extractor_type")):
            processor_path = "transformers.models.vit.image_processing_pil_vit.ViTImageProcessorPil"
        else:
            processor_path = PIL_PROCESSORS[processor]
        reference = _reference(processor_path, config)
        for image in images:
            expected = reference(image, return_tensors="np")["pixel_values"][0]
            actual = spec(image)
            assert actual.shape == expected.shape, (config, image.size)
            assert float(np.abs(actual - expected).max()) <= TOLERANCE, (config, image.size)


# -- from_hf_config ---------------------------------------------------------------------------


def test_from_hf_config_reads_the_shipped_models() -> None:
    clip = ImageProcessorSpec.from_hf_config(CLIP_CONFIG)
    assert clip.resize == "shortest_edge" and clip.shortest_edge == 224
    assert clip.crop_size == (224, 224)
    assert clip.resample == 3
    assert clip.image_mean == (0.48145466, 0.4578275, 0.40821073)

    dino = ImageProcessorSpec.from_hf_config(DINOV2_CONFIG)
    assert dino.shortest_edge == 256 and dino.crop_size == (224, 224)
    assert dino.image_std == (0.229, 0.224, 0.225)

    resnet = ImageProcessorSpec.from_hf_config(RESNET_CONFIG)
    assert resnet.resize == "crop_pct" and resnet.shortest_edge == 224
    assert resnet.crop_pct == 0.875 and resnet.crop_size is None
    assert resnet.output_size() == (224, 224)

    assert ImageProcessorSpec.from_hf_config(LEGACY_CLIP_CONFIG) == clip


def test_from_hf_config_defaults_and_aliases() -> None:
    # Missing keys and nulls take the processor's defaults, as in transformers.
    bare = ImageProcessorSpec.from_hf_config({"image_processor_type": "CLIPImageProcessorFast"})
    assert bare == ImageProcessorSpec.from_hf_config(CLIP_CONFIG)
    nulls = dict(CLIP_CONFIG, size=None, image_mean=None)
    assert ImageProcessorSpec.from_hf_config(nulls) == bare

    vit = ImageProcessorSpec.from_hf_config({"image_processor_type": "ViTImageProcessor"})
    assert vit.resize == "height_width" and (vit.height, vit.width) == (224, 224)
    assert vit.crop_size is None and vit.resample == 2
    assert vit.image_mean == (0.5, 0.5, 0.5)

    no_norm = ImageProcessorSpec.from_hf_config(dict(CLIP_CONFIG, do_normalize=False))
    assert no_norm.image_mean is None and no_norm.image_std is None
    out = no_norm(Image.new("RGB", (300, 300), (255, 0, 51)))
    assert np.allclose(out[:, 0, 0], [1.0, 0.0, 0.2])

    raw = ImageProcessorSpec.from_hf_config(
        dict(
            CLIP_CONFIG, do_normalize=False, do_rescale=False, do_resize=False, do_center_crop=False
        )
    )
    out = raw(Image.new("RGB", (30, 20), (255, 0, 51)))
    assert out.shape == (3, 20, 30) and out[0, 0, 0] == 255.0

    scalar = ImageProcessorSpec.from_hf_config(dict(CLIP_CONFIG, image_mean=0.5, image_std=0.5))
    assert scalar.image_mean == (0.5, 0.5, 0.5)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"image_processor_type": "DetrImageProcessor"},
        {"feature_extractor_type": "Wav2Vec2FeatureExtractor"},
        dict(CLIP_CONFIG, size={"longest_edge": 224}),
        dict(CLIP_CONFIG, size={"max_height": 224, "max_width": 224}),
        dict(CLIP_CONFIG, crop_size={"shortest_edge": 224}),
        dict(CLIP_CONFIG, size="224"),
        dict(CLIP_CONFIG, image_mean=[0.5, 0.5]),
        dict(CLIP_CONFIG, image_std=[0.0, 1.0, 1.0]),
        dict(CLIP_CONFIG, resample=42),
        dict(CLIP_CONFIG, resample="bicubic"),
        dict(CLIP_CONFIG, rescale_factor=-1.0),
        dict(CLIP_CONFIG, size={"shortest_edge": 0}),
        dict(CLIP_CONFIG, do_pad=True, pad_size={"height": 300, "width": 300}),
        {"image_processor_type": "ConvNextImageProcessor", "size": {"height": 224, "width": 224}},
    ],
)
def test_from_hf_config_rejects_what_it_cannot_reproduce(config: dict[str, Any]) -> None:
    with pytest.raises(ModelUnavailable):
        ImageProcessorSpec.from_hf_config(config)


def test_from_hf_config_rejects_non_objects() -> None:
    with pytest.raises(ModelUnavailable):
        ImageProcessorSpec.from_hf_config(["not", "a", "dict"])  # type: ignore[arg-type]


# -- the preparer -------------------------------------------------------------------------------


def test_spec_is_a_picklable_preparer() -> None:
    spec = ImageProcessorSpec.from_hf_config(DINOV2_CONFIG)
    clone = pickle.loads(pickle.dumps(spec))
    assert clone == spec
    image = imagegen.photo_like(1, (300, 260))
    assert np.array_equal(clone(image), spec(image))


def test_output_is_float32_chw_contiguous_for_any_input_mode() -> None:
    spec = ImageProcessorSpec.from_hf_config(CLIP_CONFIG)
    rgb = imagegen.photo_like(2, (320, 240))
    for image in (rgb, rgb.convert("L"), rgb.convert("RGBA"), rgb.convert("P")):
        out = spec(image)
        assert out.shape == (3, 224, 224) and out.dtype == np.float32
        assert out.flags.c_contiguous and out.flags.writeable


def test_draft_size() -> None:
    assert ImageProcessorSpec.from_hf_config(CLIP_CONFIG).draft_size() == (224, 224)
    assert ImageProcessorSpec.from_hf_config(DINOV2_CONFIG).draft_size() == (256, 256)
    assert ImageProcessorSpec.from_hf_config(RESNET_CONFIG).draft_size() == (256, 256)
    vit = ImageProcessorSpec(resize="height_width", height=200, width=300, crop_size=None)
    assert vit.draft_size() == (300, 200)
    assert ImageProcessorSpec(resize="none", crop_size=None).draft_size() is None


@pytest.fixture(scope="module")
def large_jpeg() -> bytes:
    return imagegen.encode(imagegen.photo_like(21, (1600, 1200)), "JPEG", quality=90)


@pytest.mark.parametrize("config", [CLIP_CONFIG, DINOV2_CONFIG, RESNET_CONFIG])
def test_drafted_decoding_stays_close(config: dict[str, Any], large_jpeg: bytes) -> None:
    """Query-time drafting (JPEG DCT scaling) changes the input slightly, never the shape.
    The measured numbers are in docs/preprocessing.md; this guards against regressions."""
    spec = ImageProcessorSpec.from_hf_config(config)
    full = spec(decode_image(large_jpeg).image)
    drafted_image = decode_image(large_jpeg, draft=spec.draft_size()).image
    assert drafted_image.width < 1600
    drafted = spec(drafted_image)
    assert drafted.shape == full.shape
    assert float(np.abs(drafted - full).mean()) < 0.05
