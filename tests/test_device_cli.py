"""--device through the real command line, on a machine without a GPU (CI has none).

The CUDA paths themselves are measured by benchmarks/gpu_ingest.py on a GPU machine; here:
a bad device is a one-line usage error, CUDA asked for without a usable GPU fails at once
with one line saying what is missing (exit 3, nothing indexed, no silent CPU fallback), and
cpu/auto index and search as before and show where the model runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tiny_models import make_pooling_model, write_local_model

from lookalike.models.device import resolve_device, set_default_device
from lookalike.models.loader import load_embedder

Cli = Callable[..., object]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_local_model(tmp_path / "model", make_pooling_model())


@pytest.fixture(autouse=True)
def _no_default_device() -> object:
    yield
    set_default_device(None)


def _no_gpu_here() -> None:
    if resolve_device().is_cuda:
        pytest.skip("this machine has a usable GPU")


def test_bad_device_is_a_one_line_usage_error(cli, photos: Path, model: Path) -> None:
    r = cli("index", str(photos), "--model-path", str(model), "--device", "gpu")
    assert r.code == 2
    assert r.err.count("\n") == 1 and "invalid device --device 'gpu'" in r.err


def test_cuda_without_a_gpu_fails_at_once_and_indexes_nothing(
    cli, photos: Path, model: Path, tmp_path: Path
) -> None:
    _no_gpu_here()
    coll = tmp_path / "coll"
    r = cli(
        "index", str(photos), "--model-path", str(model), "--collection", str(coll),
        "--device", "cuda", "--workers", "0",
    )  # fmt: skip
    assert r.code == 3, r.err
    assert r.err.count("\n") == 1 and r.err.startswith("lookalike: error: --device cuda")
    assert "indexed" not in r.out


def test_cuda_from_the_environment_is_named_so(
    cli, photos: Path, model: Path, tmp_path: Path
) -> None:
    _no_gpu_here()
    coll = tmp_path / "coll"
    assert cli("index", str(photos), "--model-path", str(model), "--collection", str(coll),
               "--workers", "0").code == 0  # fmt: skip
    from lookalike import Collection

    with Collection.open(coll) as c:
        item = next(c.items()).id
    r = cli("search", f"id:{item}", "--collection", str(coll), env={"LOOKALIKE_DEVICE": "cuda:1"})
    assert r.code == 0, r.err  # an id: query embeds nothing: it needs no device
    query = next(photos.rglob("*.jpg"))
    r = cli("search", str(query), "--collection", str(coll), env={"LOOKALIKE_DEVICE": "cuda:1"})
    assert r.code == 3 and "LOOKALIKE_DEVICE=cuda:1" in r.err and r.err.count("\n") == 1


def test_cpu_and_auto_index_search_and_show_the_device(
    cli, photos: Path, model: Path, tmp_path: Path
) -> None:
    _no_gpu_here()
    coll = tmp_path / "coll"
    r = cli("index", str(photos), "--model-path", str(model), "--collection", str(coll),
            "--device", "cpu", "--workers", "0")  # fmt: skip
    assert r.code == 0, r.err
    query = next(photos.rglob("*.jpg"))
    r = cli("search", str(query), "--collection", str(coll), "--device", "auto", "-k", "1")
    assert r.code == 0, r.err
    r = cli("info", "--collection", str(coll))
    assert r.code == 0 and "device:     cpu (onnxruntime)" in r.out


def test_the_embedder_reports_where_it_runs(model: Path) -> None:
    _no_gpu_here()
    set_default_device("cpu")
    embedder = load_embedder(model_path=model)
    embedder.load()
    assert embedder.device is not None and embedder.device.describe() == "cpu (onnxruntime)"  # type: ignore[attr-defined]
    set_default_device("cuda")
    from lookalike.models.device import CudaUnavailable

    with pytest.raises(CudaUnavailable, match="--device cuda"):
        load_embedder(model_path=model).load()
