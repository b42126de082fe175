"""Preprocessing step 0: ``grayscale`` and ``clahe`` (lookalike.json / registry), in the identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.errors import ModelUnavailable
from lookalike.models.identity import canonical_preprocess
from lookalike.models.preprocess import ImageProcessorSpec


def picture() -> Image.Image:
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 64)[None, :, None] * np.array([200, 120, 60])[None, None, :]
    x = x + rng.normal(0, 8, (48, 64, 3))
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


def plain(**kw: object) -> ImageProcessorSpec:
    return ImageProcessorSpec(
        resize="none", crop_size=None, rescale_factor=None, image_mean=None, image_std=None, **kw
    )  # type: ignore[arg-type]


def test_grayscale_gives_three_equal_luma_channels() -> None:
    img = picture()
    out = plain(grayscale=True)(img)
    assert out.shape == (3, 48, 64)
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2])
    assert np.array_equal(out[0], np.asarray(img.convert("L"), dtype=np.float32))


def test_clahe_on_lightness_and_on_gray() -> None:
    cv2 = pytest.importorskip("cv2")
    img = picture()
    gray = plain(grayscale=True, clahe=(2.0, 4))(img)
    tool = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))
    assert np.array_equal(gray[0], tool.apply(np.asarray(img.convert("L"))).astype(np.float32))
    colour = plain(clahe=(2.0, 4))(img)
    assert not np.array_equal(colour[0], colour[1])  # still a colour image
    assert not np.array_equal(colour, plain()(img))  # contrast changed
    lab = cv2.cvtColor(colour.transpose(1, 2, 0).astype(np.uint8), cv2.COLOR_RGB2LAB)
    before = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2LAB)
    assert lab[..., 0].std() > before[..., 0].std()  # lightness spread out
    with pytest.raises(ModelUnavailable, match="clahe"):
        plain(clahe=(0.0, 8))


def test_steps_are_part_of_the_identity_only_when_on() -> None:
    base = canonical_preprocess(plain(), "out", "none")
    assert "grayscale" not in base and "clahe" not in base  # existing identities unchanged
    g = canonical_preprocess(plain(grayscale=True), "out", "none")
    c = canonical_preprocess(plain(clahe=(2.0, 8)), "out", "none")
    assert g["grayscale"] is True and c["clahe"] == [2.0, 8]
    assert len({str(base), str(g), str(c)}) == 3


def test_lookalike_json_sets_the_steps(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from test_expose_output import classifier
    from tiny_models import write_local_model

    from lookalike.models.loader import load_embedder

    folder = write_local_model(
        tmp_path / "m",
        classifier(),
        lookalike={"output": "pooled", "grayscale": True, "clahe": {"clip_limit": 3}},
    )
    prep = load_embedder(None, model_path=folder).preparer()
    assert prep.grayscale is True and prep.clahe == (3.0, 8)  # type: ignore[attr-defined]
    bad = write_local_model(tmp_path / "b", classifier(), lookalike={"clahe": {"tile": 2}})
    with pytest.raises(ModelUnavailable, match="clahe"):
        load_embedder(None, model_path=bad).preparer()
