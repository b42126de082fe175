"""``index --fast-resize``: OpenCV's resize instead of the reference filter, opt-in, recorded
in the collection's model identity and used for everything it embeds afterwards."""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tiny_models import make_pooling_model, tiny_preprocessor_config, write_local_model

from lookalike import Collection, samples
from lookalike.errors import ModelUnavailable
from lookalike.models.loader import load_embedder
from lookalike.models.preprocess import ImageProcessorSpec

pytest.importorskip("cv2", reason="--fast-resize needs OpenCV (lookalike[fast])")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    config = {**tiny_preprocessor_config(64), "resample": 2}  # bilinear, as MobileNetV2's
    return write_local_model(tmp_path / "model", make_pooling_model(dim=16), preprocessor=config)


def _photos() -> list[Image.Image]:
    return [samples.load_photo(name).convert("RGB") for name in samples.PHOTOS]


def test_fast_resize_is_close_to_the_reference_but_not_equal() -> None:
    exact = ImageProcessorSpec(shortest_edge=224, resample=2)
    fast = ImageProcessorSpec(shortest_edge=224, resample=2, fast_resize=True)
    assert exact != fast  # part of the preprocessing identity
    diffs = []
    for image in _photos():
        a, b = exact(image), fast(image)
        assert a.shape == b.shape == (3, 224, 224) and b.dtype == np.float32
        diffs.append(np.abs(a - b))
    d = np.concatenate([x.ravel() for x in diffs])
    assert d.max() > 1e-4  # it is another resize ...
    assert d.mean() < 0.05  # ... a grey level or two (0.008-0.016 units) from the reference


def test_fast_resize_needs_opencv_and_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_cv2(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "cv2":
            raise ImportError("no cv2")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cv2)
    with pytest.raises(ModelUnavailable, match=r"lookalike\[fast\]"):
        ImageProcessorSpec(shortest_edge=32, fast_resize=True)(_photos()[0])


def test_a_hash_model_refuses_fast_resize(cli: Callable[..., Any], photos: Path) -> None:
    r = cli("index", str(photos), "--model", "phash", "--fast-resize", "--no-progress")
    assert r.code == 2 and r.err.count("\n") == 1
    assert "--fast-resize is for neural image models" in r.err


def test_index_fast_resize_is_recorded_remembered_and_used_for_queries(
    cli: Callable[..., Any], photos: Path, model: Path, tmp_path: Path
) -> None:
    fast, exact = tmp_path / "fast", tmp_path / "exact"
    base = ("--model-path", str(model), "--no-progress")
    first = sorted(photos.glob("hat/*.jpg"))[:3]
    r = cli("index", *map(str, first), "--collection", str(fast), *base, "--fast-resize")
    assert r.code == 0, r.err
    assert cli("index", str(photos), "--collection", str(exact), *base).code == 0
    record = json.loads((fast / "collection.json").read_text())["model"]
    assert record["preprocess"]["fast_resize"] is True
    exact_record = json.loads((exact / "collection.json").read_text())["model"]
    assert "fast_resize" not in exact_record["preprocess"]  # older identities unchanged
    assert cli("info", "--collection", str(fast), "--json").json()["fast_resize"] is True
    assert "resize:     fast" in cli("info", "--collection", str(fast)).out
    assert "resize:" not in cli("info", "--collection", str(exact)).out

    # later runs (with or without the model flag) keep resizing fast
    assert cli("index", str(photos), "--collection", str(fast), "--no-progress").code == 0
    assert cli("index", str(photos), "--collection", str(fast), *base).code == 0
    embed_fast = load_embedder(model_path=model, fast_resize=True)
    embed_exact = load_embedder(model_path=model)
    query = sorted(photos.glob("shoes/*.jpg"))[0]
    image = Image.open(query).convert("RGB")
    png = tmp_path / "query.png"  # queries are not drafted as JPEGs are: the pixels as here
    image.save(png)
    v_fast = embed_fast.embed([embed_fast.preparer()(image)])[0]
    v_exact = embed_exact.embed([embed_exact.preparer()(image)])[0]
    assert not np.allclose(v_fast, v_exact, atol=1e-6)
    for coll, want in ((fast, v_fast), (exact, v_exact)):
        r = cli("search", str(query), "--collection", str(coll), "-k", "1", "--json")
        hit = r.json_lines()[0]["results"][0]
        assert hit["id"] == "shoes/" + query.name
        assert hit["score"] == pytest.approx(1.0, abs=1e-5)  # the stored vector: same resize
        with Collection.open(coll) as opened:  # a query is embedded as the items were
            got = opened.embed_image(png.read_bytes())
        assert np.allclose(np.ravel(got), want, atol=1e-5)

    # an exact collection is never switched: its vectors came from the reference resize
    r = cli("index", str(photos), "--collection", str(exact), *base, "--fast-resize")
    assert r.code != 0 and r.err.count("\n") == 1
    assert "built without --fast-resize" in r.err


def test_fast_preparers_take_pixel_arrays_with_the_image_path_results(tmp_path: Path) -> None:
    """The indexer hands a fast preparer the photo's pixels (one copy out of PIL, shared
    with the pixel hash); model input, phash and pixel hash equal the image path's."""
    from lookalike.ingest import pipeline
    from lookalike.ingest.decode import DecodeLimits, pixel_hash
    from lookalike.models.phash import phash_int

    fast = ImageProcessorSpec(shortest_edge=64, resample=2, fast_resize=True)
    exact = ImageProcessorSpec(shortest_edge=64, resample=2)
    assert fast.takes_pixels and not exact.takes_pixels
    assert not ImageProcessorSpec(shortest_edge=64, fast_resize=True, grayscale=True).takes_pixels
    for image in [*_photos(), Image.new("RGB", (40, 30), (9, 8, 7))]:  # and one grown
        for spec in (fast, exact):
            out, resized = spec.prepare(image)
            by_array, array = spec.prepare_pixels(np.asarray(image))
            assert np.array_equal(by_array, out) and np.array_equal(array, np.asarray(resized))
            assert np.array_equal(spec(image), out)

    image = _photos()[0]
    path = tmp_path / "photo.png"
    image.save(path)
    got = pipeline.process(pipeline.Task(0, str(path)), fast, DecodeLimits())
    assert got.status == "ok" and got.prepared is not None
    out, resized = fast.prepare(image)
    assert np.array_equal(got.prepared, out)
    assert got.pixel_hash == pixel_hash(image)
    assert got.phash == phash_int(resized)
