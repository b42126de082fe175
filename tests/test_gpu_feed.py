"""Feeding a GPU model: uint8 pixels from the decode workers, the last preprocessing step
(a lookup table) on the device, decoding in processes on every core, reduced precision
with a checked fall back to fp32.

The CPU stands in for the GPU: a runner with ``run_pixels`` (here one in numpy, and the
real ``TorchRunner`` on the CPU where torch imports) is what the torch GPU path plugs in.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

import imagegen
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tiny_models
from onnx import TensorProto, helper, numpy_helper

from lookalike import Collection
from lookalike.errors import InvalidInput, ModelUnavailable
from lookalike.ingest import pipeline
from lookalike.models.embedders.onnx import gpu_precision
from lookalike.models.identity import canonical_preprocess
from lookalike.models.preprocess import ImageProcessorSpec

SPEC = ImageProcessorSpec.from_hf_config(tiny_models.tiny_preprocessor_config(24))


@pytest.fixture
def photo() -> Any:
    return imagegen.photo_like(3, (61, 45))


# -- the deferred last step ------------------------------------------------------------


@pytest.mark.parametrize("fast_resize", [False, True])
def test_deferred_pixels_normalise_to_the_same_input(photo: Any, fast_resize: bool) -> None:
    spec = dataclasses.replace(SPEC, fast_resize=fast_resize)
    deferred = dataclasses.replace(spec, defer_normalise=True)
    full, _ = spec.prepare(photo)
    pixels, _ = deferred.prepare(photo)
    assert pixels.dtype == np.uint8 and pixels.shape == (24, 24, 3)
    assert pixels.flags.c_contiguous
    np.testing.assert_array_equal(deferred.normalise(pixels), full)  # bit for bit
    table = spec.lookup_table()
    assert table.shape == (3, 256) and table.dtype == np.float32
    np.testing.assert_array_equal(
        table[np.arange(3)[:, None, None], pixels.transpose(2, 0, 1)], full
    )


def test_deferring_is_not_part_of_the_model_identity() -> None:
    deferred = dataclasses.replace(SPEC, defer_normalise=True)
    assert deferred == SPEC
    assert canonical_preprocess(deferred, "y", "none") == canonical_preprocess(SPEC, "y", "none")


# -- defaults when the model is on a GPU ---------------------------------------------------


def test_decoding_gets_processes_and_every_core_when_the_model_is_on_a_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert pipeline.default_decode(model_on_gpu=True) == "processes"
    assert pipeline.default_decode(model_on_gpu=False) == "threads"
    assert pipeline.default_workers(model_uses_cores=True) == 8
    assert pipeline.default_workers(model_uses_cores=False) == 16


@pytest.mark.parametrize("value", ["fp32", "tf32", "fp16", "auto", " FP16 ", ""])
def test_gpu_precision_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LOOKALIKE_GPU_PRECISION", value)
    assert gpu_precision() == (value.strip().lower() or "auto")


def test_unknown_gpu_precision_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_GPU_PRECISION", "bf16")
    with pytest.raises(InvalidInput, match="LOOKALIKE_GPU_PRECISION must be one of .*'bf16'"):
        gpu_precision()


# -- indexing through a runner that takes pixels -------------------------------------------


class PixelRunner:
    """What the torch GPU path offers the embedder, in numpy on the CPU: ``run`` on model
    inputs, ``run_pixels`` on uint8 pixels plus the lookup table. Records what it got."""

    def __init__(self, session: ort.InferenceSession, output: str) -> None:
        self.session, self.output_name = session, output
        self.input = session.get_inputs()[0].name
        self.pixel_batches: list[tuple[int, ...]] = []
        self.float_batches = 0

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.float_batches += 1
        return np.asarray(self.session.run([self.output_name], {self.input: batch})[0])

    def run_pixels(self, pixels: np.ndarray, table: np.ndarray) -> np.ndarray:
        assert pixels.dtype == np.uint8
        self.pixel_batches.append(pixels.shape)
        x = table[np.arange(3)[None, :, None, None], pixels.transpose(0, 3, 1, 2)]
        return np.asarray(self.session.run([self.output_name], {self.input: x})[0])


def _vectors(coll: Collection) -> dict[str, np.ndarray]:
    rows = coll.vectors.read([i.slot for i in coll.catalog.items()], coll.catalog.next_slot)
    return {Path(i.path or "").name: v for i, v in zip(coll.catalog.items(), rows, strict=True)}


def _on_gpu(coll: Collection, monkeypatch: pytest.MonkeyPatch, runner_type: Any = None) -> Any:
    emb = coll.embedder
    emb.load()
    session = emb._session  # type: ignore[attr-defined]
    runner = (runner_type or PixelRunner)(session, emb.output_name)
    monkeypatch.setattr(emb, "_runner", runner)
    monkeypatch.setattr(emb, "_parity_pending", True)
    monkeypatch.setattr(type(emb), "gpu_device", property(lambda self: "cpu"))
    return runner


def test_a_gpu_runner_gets_uint8_pixels_decoded_in_processes(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_models.write_local_model(tmp_path / "m", tiny_models.make_pooling_model(dim=8))
    with Collection.open(tmp_path / "cpu", model_path=model) as c:
        assert c.add(photos, workers=0).indexed == 60
        reference = _vectors(c)
    modes: list[str] = []
    real_run = pipeline.run

    def spy(*args: Any, **kwargs: Any) -> Any:
        modes.append(kwargs["mode"])
        return real_run(*args, **kwargs)

    monkeypatch.setattr(pipeline, "run", spy)
    with Collection.open(tmp_path / "gpu", model_path=model) as c:
        runner = _on_gpu(c, monkeypatch)
        assert c.add(photos, workers=2, batch_size=16).indexed == 60
        got = _vectors(c)
    assert modes == ["processes"]
    # every batch came as pixels (N, 32, 32, 3); the parity check ran once, on 4 of them
    assert [shape[1:] for shape in runner.pixel_batches] == [(32, 32, 3)] * 5
    assert sorted(shape[0] for shape in runner.pixel_batches) == [4, 12, 16, 16, 16]
    assert runner.float_batches == 0
    assert got.keys() == reference.keys()
    for name, vec in got.items():
        np.testing.assert_array_equal(vec, reference[name])  # the same inputs, bit for bit


def test_a_runner_that_cannot_take_pixels_gets_model_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_models.write_local_model(tmp_path / "m", tiny_models.make_pooling_model(dim=8))
    with Collection.open(tmp_path / "c", model_path=model) as c:
        _on_gpu(c, monkeypatch)
        deferred = c.embedder.ingest_preparer()
        assert isinstance(deferred, ImageProcessorSpec) and deferred.defer_normalise
        monkeypatch.setattr(c.embedder, "_runner", object())  # e.g. onnxruntime-gpu's runner
        plain = c.embedder.ingest_preparer()
        assert isinstance(plain, ImageProcessorSpec) and not plain.defer_normalise


def test_a_pixel_batch_without_a_gpu_runner_is_refused(tmp_path: Path) -> None:
    model = tiny_models.write_local_model(tmp_path / "m", tiny_models.make_pooling_model(dim=8))
    with (
        Collection.open(tmp_path / "c", model_path=model) as c,
        pytest.raises(InvalidInput, match="uint8 pixel batches need the torch GPU path"),
    ):
        c.embedder.embed([np.zeros((32, 32, 3), np.uint8)])


# -- the torch runner (where torch imports; on the CPU when there is no GPU) ----------------

needs_torch = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "onnx2torch", "torchvision")),
    reason="the torch path needs torch, onnx2torch and torchvision",
)


def _scale_model(factor: float) -> onnx.ModelProto:
    """x (N, 3, H, W) -> mean over H, W, times ``factor`` (fp16 overflows for 1e6)."""
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("Mul", ["m", "k"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(np.array([factor], np.float32), "k")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@needs_torch
def test_torch_runner_normalises_pixels_on_the_device_exactly(photo: Any) -> None:
    from lookalike.models.torch_backend import TorchRunner

    deferred = dataclasses.replace(SPEC, defer_normalise=True)
    pixels = np.stack([deferred.prepare(photo)[0], deferred.prepare(photo.rotate(90))[0]])
    x = np.stack([SPEC.normalise(p) for p in pixels])
    runner = TorchRunner(_scale_model(1.0), device="cpu")
    np.testing.assert_array_equal(runner.run_pixels(pixels, SPEC.lookup_table()), runner.run(x))
    assert runner.precision == "fp32"  # auto on the CPU


@needs_torch
def test_auto_precision_keeps_quantized_graphs_and_the_cpu_in_fp32() -> None:
    from lookalike.models.torch_backend import TorchRunner

    runner = TorchRunner(_scale_model(1.0), device="cpu", precision="auto")
    runner.load()
    assert (runner.requested_precision, runner.precision) == ("auto", "fp32")
    assert not runner.fall_back()


@needs_torch
def test_an_fp16_overflow_is_run_again_in_fp32() -> None:
    from lookalike.models.torch_backend import TorchRunner

    x = np.full((2, 3, 4, 4), 0.5, np.float32)
    runner = TorchRunner(_scale_model(1e6), device="cpu", precision="fp16")
    out = runner.run(x)
    assert runner.precision == "fp32"
    np.testing.assert_allclose(out, np.full((2, 3), 5e5, np.float32))
    assert not runner.fall_back()


@needs_torch
def test_a_failed_parity_check_in_reduced_precision_falls_back_to_fp32(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike.models import torch_backend
    from lookalike.models.torch_backend import TorchRunner

    checked: list[str] = []
    real_check = torch_backend.check_parity

    def strict_in_tf32(runner: Any, *args: Any, **kwargs: Any) -> Any:
        checked.append(runner.precision)
        if runner.precision != "fp32":
            raise ModelUnavailable("differs")
        return real_check(runner, *args, **kwargs)

    monkeypatch.setattr(torch_backend, "check_parity", strict_in_tf32)
    model_proto = tiny_models.make_pooling_model(dim=8)
    model = tiny_models.write_local_model(tmp_path / "m", model_proto)

    def torch_runner(session: Any, output: str) -> TorchRunner:
        return TorchRunner(model / "model.onnx", output=output, device="cpu", precision="tf32")

    with Collection.open(tmp_path / "c", model_path=model) as c:
        runner = _on_gpu(c, monkeypatch, torch_runner)
        assert c.add(photos, workers=1, batch_size=32).indexed == 60
    assert checked == ["tf32", "fp32"] and runner.precision == "fp32"
