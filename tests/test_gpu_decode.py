"""``--decode gpu``: JPEGs decoded, turned and resized by torch (nvJPEG on a GPU), every
other file on the CPU with its usual reasons for skipping.

Without torch (CI): which files qualify (``jpeg_header``), which preprocessing the GPU can
follow, and the one-line error of the command. Where torch and torchvision import, the
decoder itself runs on the CPU (``decode_jpeg(device="cpu")``, libjpeg-turbo): images
named by their EXIF orientation must come out the way Pillow turns them, and the model
inputs and perceptual hashes must stay close to the CPU path's.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
from pathlib import Path
from typing import Any

import imagegen
import numpy as np
import pytest
import tiny_models
from PIL import Image

from lookalike.errors import InvalidInput
from lookalike.ingest import pipeline
from lookalike.ingest.decode import DecodeLimits, decode_image, jpeg_header
from lookalike.ingest.gpu_decode import check_preparer
from lookalike.models.phash import PhashPreparer, hamming, phash_int_to_bits
from lookalike.models.preprocess import ImageProcessorSpec

SPEC = ImageProcessorSpec.from_hf_config(tiny_models.tiny_preprocessor_config(24))


def jpeg(image: Image.Image, orientation: int = 1, **kw: Any) -> bytes:
    out = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    image.save(out, "JPEG", quality=92, exif=exif.tobytes(), **kw)
    return out.getvalue()


# -- which files go to the GPU -------------------------------------------------------------


def test_jpeg_header_reads_size_and_orientation_without_decoding() -> None:
    photo = imagegen.photo_like(1, (64, 40))
    assert jpeg_header(jpeg(photo)) == (64, 40, 1)
    assert jpeg_header(jpeg(photo, 6)) == (64, 40, 6)  # the file's size; the caller turns it
    assert jpeg_header(jpeg(photo.convert("L"))) == (64, 40, 1)
    assert jpeg_header(jpeg(photo) + b"\0\0") == (64, 40, 1)  # padding after the end marker


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(imagegen.encode(imagegen.photo_like(1, (64, 40)), "PNG"), id="png"),
        pytest.param(imagegen.cmyk_jpeg(), id="cmyk"),
        pytest.param(jpeg(imagegen.photo_like(1, (64, 40)))[:-300], id="truncated"),
        pytest.param(b"\xff\xd8\xff" + b"junk" * 20 + b"\xff\xd9", id="corrupt"),
        pytest.param(b"not an image", id="text"),
        pytest.param(b"", id="empty"),
    ],
)
def test_other_files_stay_on_the_cpu(data: bytes) -> None:
    assert jpeg_header(data) is None


def test_files_outside_the_limits_stay_on_the_cpu() -> None:
    data = jpeg(imagegen.photo_like(1, (64, 40)))
    assert jpeg_header(data, DecodeLimits(min_side=41)) is None
    assert jpeg_header(data, DecodeLimits(max_aspect=1.5)) is None
    assert jpeg_header(data, DecodeLimits(max_megapixels=0.002)) is None


@pytest.mark.parametrize(
    ("preparer", "message"),
    [
        (PhashPreparer(), "needs a neural model"),
        (dataclasses.replace(SPEC, grayscale=True), "cannot do this model's grayscale"),
        (dataclasses.replace(SPEC, fast_resize=True), "cannot do this model's fast_resize"),
        (dataclasses.replace(SPEC, resample=0), "cannot do this model's resample filter 0"),
    ],
)
def test_preprocessing_the_gpu_cannot_follow_is_refused(preparer: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_preparer(preparer)


def test_the_command_fails_in_one_line_without_a_gpu(cli, photos: Path, tmp_path: Path) -> None:
    torch_ok = importlib.util.find_spec("torch") is not None
    if torch_ok:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a usable GPU")
    model = tiny_models.write_local_model(tmp_path / "m", tiny_models.make_pooling_model(dim=8))
    r = cli("index", str(photos), "--model-path", str(model), "--collection",
            str(tmp_path / "c"), "--decode", "gpu")  # fmt: skip
    assert r.code == 3, r.err
    assert r.err.count("\n") == 1 and r.err.startswith("lookalike: error: --decode gpu")
    expected = "torch sees no CUDA device" if torch_ok else "needs torch with CUDA and torchvision"
    assert expected in r.err


# -- the decoder, on the CPU ---------------------------------------------------------------

needs_torch = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "torchvision")),
    reason="GPU decoding needs torch and torchvision",
)


def _decoder(spec: ImageProcessorSpec = SPEC) -> Any:
    import torch

    from lookalike.ingest.gpu_decode import GpuDecoder

    return GpuDecoder(spec, "cpu", torch)


@needs_torch
@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_exif_orientation_turns_the_image_as_pillow_does(orientation: int) -> None:
    data = jpeg(imagegen.photo_like(4, (48, 30)), orientation, subsampling=0)
    decoder = _decoder()
    (image,) = decoder.decode([data])
    got = decoder.orient(image, orientation).permute(1, 2, 0).numpy()
    want = np.asarray(decode_image(data).image)
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 1.0


@needs_torch
def test_a_mixed_folder_keeps_its_order_and_reasons(tmp_path: Path) -> None:
    from lookalike.ingest.gpu_decode import run_gpu

    files = {
        "rgb.jpg": jpeg(imagegen.photo_like(1, (80, 60))),
        "turned-6.jpg": jpeg(imagegen.photo_like(2, (80, 60)), 6),
        "gray.jpg": jpeg(imagegen.photo_like(3, (70, 50)).convert("L")),
        "cpu.png": imagegen.encode(imagegen.photo_like(4, (80, 60)), "PNG"),
        "cpu-cmyk.jpg": imagegen.cmyk_jpeg((64, 48)),
        "skipped-truncated.jpg": jpeg(imagegen.photo_like(5, (80, 60)))[:-400],
        "skipped-not-an-image.jpg": b"hello",
        "upscaled.jpg": jpeg(imagegen.photo_like(6, (16, 12))),
    }
    tasks = []
    for key, (name, data) in enumerate(files.items()):
        (tmp_path / name).write_bytes(data)
        tasks.append(pipeline.Task(key, str(tmp_path / name)))
    deferred = dataclasses.replace(SPEC, defer_normalise=True)
    got = list(run_gpu(tasks, deferred, DecodeLimits(), workers=2, device="cpu"))
    cpu = [pipeline.process(t, deferred, DecodeLimits()) for t in tasks]
    assert [r.key for r in got] == list(range(len(files)))
    for name, g, c in zip(files, got, cpu, strict=True):
        assert (g.status, g.reason, g.size, g.content_hash) == (
            c.status,
            c.reason,
            c.size,
            c.content_hash,
        ), name
        if g.status != "ok":
            assert name.startswith("skipped-")
            continue
        assert (g.width, g.height) == (c.width, c.height), name
        assert g.prepared is not None and c.prepared is not None
        assert g.prepared.dtype == np.uint8 and g.prepared.shape == c.prepared.shape == (24, 24, 3)
        diff = np.abs(g.prepared.astype(int) - c.prepared.astype(int))
        assert diff.mean() < 2.0, name  # the resize differs by a level here and there
        assert hamming(phash_int_to_bits(g.phash or 0), phash_int_to_bits(c.phash or 0)) <= 8
        on_gpu = not name.startswith("cpu")
        assert (g.pixel_hash is None) == on_gpu, name  # exact hash: from the file, on demand


@needs_torch
def test_unchanged_files_are_not_decoded_and_float_inputs_are_normalised(tmp_path: Path) -> None:
    from lookalike.ingest.gpu_decode import run_gpu

    data = jpeg(imagegen.photo_like(7, (80, 60)))
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    first = next(
        run_gpu([pipeline.Task(0, str(path))], SPEC, DecodeLimits(), workers=1, device="cpu")
    )
    assert first.prepared is not None and first.prepared.dtype == np.float32
    assert first.prepared.shape == (3, 24, 24)
    reference = SPEC(decode_image(data).image)
    assert np.abs(first.prepared - reference).mean() < 0.05
    again = pipeline.Task(1, str(path), expect_hash=first.content_hash)
    same = next(run_gpu([again], SPEC, DecodeLimits(), workers=1, device="cpu"))
    assert same.status == "same" and same.prepared is None


@needs_torch
def test_a_failing_gpu_batch_is_decoded_on_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from lookalike.ingest import gpu_decode

    def out_of_memory(self: Any, reads: Any, defer: bool) -> Any:
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(gpu_decode.GpuDecoder, "results", out_of_memory)
    tasks = []
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(jpeg(imagegen.photo_like(i, (80, 60))))
        tasks.append(pipeline.Task(i, str(tmp_path / f"{i}.jpg")))
    got = list(gpu_decode.run_gpu(tasks, SPEC, DecodeLimits(), workers=1, device="cpu"))
    assert [r.status for r in got] == ["ok"] * 3
    assert all(r.pixel_hash is not None for r in got)  # decoded by Pillow
    assert "GPU decoding failed (RuntimeError: CUDA out of memory)" in caplog.text
