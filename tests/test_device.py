"""Device selection (--device / LOOKALIKE_DEVICE) and the GPU runners.

No GPU is needed: the availability probes are plain functions, replaced here by ones
returning what a machine with (or without) a GPU, onnxruntime-gpu or torch would report.
The torch parity tests run where torch and onnx2torch import (on the CPU if no GPU).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny_models import make_pooling_model, make_token_model

import lookalike.models.cuda_probes as cuda_probes
import lookalike.models.device as device_mod
import lookalike.models.gpu_session as gpu_session
from lookalike.errors import InvalidInput, MissingDependency
from lookalike.models.device import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    CudaUnavailable,
    Device,
    DeviceRequest,
    DriverProbe,
    OrtProbe,
    Probes,
    TorchProbe,
    parse_backend,
    parse_device,
    resolve_device,
)
from lookalike.models.gpu_session import check_session, suggest_batch_size
from lookalike.models.onnx_rewrite import dequantize_qdq, has_qdq, prune_to_output
from lookalike.models.torch_backend import (
    OrtCudaRunner,
    cosine_similarities,
    max_normalized_diff,
)

# -- probe results for imagined machines ---------------------------------------------------

NO_DRIVER = DriverProbe(0, error="no NVIDIA driver (libcuda.so.1 not found)")
ONE_GPU = DriverProbe(1, ("NVIDIA H200",), (150_000_000_000,))
TWO_GPUS = DriverProbe(2, ("NVIDIA A100", "NVIDIA A100"), (80 << 30, 80 << 30))
UNKNOWN_DRIVER = DriverProbe(None, error="could not query the NVIDIA driver")

ORT_CPU = OrtProbe("1.32.0", ("AzureExecutionProvider", CPU_PROVIDER))
ORT_GPU = OrtProbe("1.32.0", ("TensorrtExecutionProvider", CUDA_PROVIDER, CPU_PROVIDER))
ORT_GPU_NO_LIBS = OrtProbe(
    "1.32.0",
    (CUDA_PROVIDER, CPU_PROVIDER),
    "libcudnn.so.9: cannot open shared object file: No such file or directory",
)

NO_TORCH = TorchProbe(None)
TORCH_CPU_BUILD = TorchProbe("2.13.0+cpu", None, 0, converter=True)
TORCH_CUDA = TorchProbe("2.11.0+cu130", "13.0", 1, converter=True)
TORCH_CUDA_NO_CONVERTER = TorchProbe("2.11.0+cu130", "13.0", 1, converter=False)


def probes(driver: DriverProbe, ort_probe: OrtProbe, torch_probe: TorchProbe) -> Probes:
    return Probes(lambda: driver, lambda: ort_probe, lambda: torch_probe)


def failing() -> Probes:
    def boom() -> DriverProbe:
        raise AssertionError("no probe should run")

    return Probes(boom, boom, boom)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOKALIKE_DEVICE", raising=False)
    monkeypatch.delenv("LOOKALIKE_GPU_BACKEND", raising=False)


# -- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "index"),
    [
        ("cpu", "cpu", None),
        ("CPU", "cpu", None),
        ("auto", "auto", None),
        ("cuda", "cuda", None),
        (" cuda:0 ", "cuda", 0),
        ("CUDA:3", "cuda", 3),
        ("cuda:12", "cuda", 12),
    ],
)
def test_parse_valid(text: str, kind: str, index: int | None) -> None:
    req = parse_device(text, environ={})
    assert (req.kind, req.index, req.origin) == (kind, index, "--device")


@pytest.mark.parametrize(
    "text", ["gpu", "cuda:", "cuda:-1", "cuda:x", "cuda:1.0", "cuda:\u0661", ""]
)
def test_parse_invalid(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_device(text, environ={})
    message = str(info.value)
    assert "\n" not in message
    assert "use cpu, cuda, cuda:N" in message
    assert info.value.exit_code == 2


def test_parse_env_and_default() -> None:
    assert parse_device(None, environ={}) == DeviceRequest("auto", None, "default")
    assert parse_device(None, environ={"LOOKALIKE_DEVICE": "  "}).kind == "auto"
    env = {"LOOKALIKE_DEVICE": "cuda:1"}
    assert parse_device(None, environ=env) == DeviceRequest("cuda", 1, "LOOKALIKE_DEVICE")
    # the argument wins over the environment
    assert parse_device("cpu", environ=env).kind == "cpu"
    with pytest.raises(InvalidInput, match="LOOKALIKE_DEVICE='gpu'"):
        parse_device(None, environ={"LOOKALIKE_DEVICE": "gpu"})


def test_parse_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_DEVICE", "cpu")
    assert parse_device().kind == "cpu"
    assert resolve_device(probes=failing()).kind == "cpu"


def test_parse_backend() -> None:
    assert parse_backend(environ={}) == "auto"
    assert parse_backend("TORCH", environ={}) == "torch"
    assert parse_backend(environ={"LOOKALIKE_GPU_BACKEND": "onnxruntime"}) == "onnxruntime"
    with pytest.raises(InvalidInput, match="LOOKALIKE_GPU_BACKEND"):
        parse_backend(environ={"LOOKALIKE_GPU_BACKEND": "tensorrt"})


# -- resolution ----------------------------------------------------------------------------


def test_cpu_runs_no_probe() -> None:
    dev = resolve_device("cpu", environ={}, probes=failing())
    assert dev == Device(request="cpu")
    assert not dev.is_cuda
    assert dev.providers == (CPU_PROVIDER,)
    assert dev.describe() == "cpu (onnxruntime)"
    assert dev.torch_device == "cpu"


def test_auto_without_driver_is_cpu_and_imports_nothing() -> None:
    calls: list[str] = []

    def driver() -> DriverProbe:
        calls.append("driver")
        return NO_DRIVER

    def other() -> OrtProbe:
        raise AssertionError("onnxruntime/torch must not be probed without a GPU")

    dev = resolve_device(None, environ={}, probes=Probes(driver, other, other))  # type: ignore[arg-type]
    assert dev.kind == "cpu" and dev.request == "auto" and dev.note == ""
    assert calls == ["driver"]


def test_auto_prefers_onnxruntime_cuda() -> None:
    dev = resolve_device("auto", environ={}, probes=probes(ONE_GPU, ORT_GPU, TORCH_CUDA))
    assert (dev.kind, dev.index, dev.backend) == ("cuda", 0, "onnxruntime")
    assert dev.providers == (CUDA_PROVIDER, CPU_PROVIDER)
    assert dev.provider_options[0]["device_id"] == "0"
    assert dev.provider_options[1] == {}
    assert dev.name == "NVIDIA H200"
    assert dev.describe() == "cuda:0 (onnxruntime CUDA, NVIDIA H200)"
    assert dev.torch_device == "cuda:0"


def test_auto_uses_torch_when_onnxruntime_is_cpu_only() -> None:
    dev = resolve_device("auto", environ={}, probes=probes(ONE_GPU, ORT_CPU, TORCH_CUDA))
    assert (dev.kind, dev.index, dev.backend) == ("cuda", 0, "torch")
    assert dev.providers == (CPU_PROVIDER,)  # onnxruntime then only reads the graph
    assert dev.describe() == "cuda:0 (torch CUDA via onnx2torch, NVIDIA H200)"


def test_auto_with_unusable_gpu_falls_back_with_a_note() -> None:
    dev = resolve_device("auto", environ={}, probes=probes(ONE_GPU, ORT_CPU, NO_TORCH))
    assert dev.kind == "cpu"
    assert "onnxruntime-gpu is not installed" in dev.note
    assert "torch is not installed" in dev.note
    assert not dev.note.startswith("device auto")


def test_auto_with_unknown_driver_still_tries_backends() -> None:
    dev = resolve_device("auto", environ={}, probes=probes(UNKNOWN_DRIVER, ORT_GPU, NO_TORCH))
    assert dev.is_cuda and dev.backend == "onnxruntime" and dev.name == ""


def test_cuda_n_provider_options() -> None:
    dev = resolve_device("cuda:1", environ={}, probes=probes(TWO_GPUS, ORT_GPU, NO_TORCH))
    assert dev.index == 1 and dev.request == "cuda:1"
    assert dev.provider_options[0]["device_id"] == "1"
    assert dev.session_providers() == [(CUDA_PROVIDER, dev.provider_options[0]), CPU_PROVIDER]
    assert dev.describe().startswith("cuda:1 (onnxruntime CUDA")
    assert dev.torch_device == "cuda:1"
    hash(dev)  # frozen and hashable despite the option dicts


def test_backend_forced_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_GPU_BACKEND", "torch")
    dev = resolve_device("cuda", probes=probes(ONE_GPU, ORT_GPU, TORCH_CUDA))
    assert dev.backend == "torch"
    dev = resolve_device("cuda", backend="onnxruntime", probes=probes(ONE_GPU, ORT_GPU, TORCH_CUDA))
    assert dev.backend == "onnxruntime"


# -- failures: one line, exit code 3, names what is missing ------------------------------------


def _fail(spec: str | None, p: Probes, **kw: object) -> CudaUnavailable:
    with pytest.raises(CudaUnavailable) as info:
        resolve_device(spec, probes=p, **kw)  # type: ignore[arg-type]
    exc = info.value
    assert isinstance(exc, MissingDependency)
    assert exc.exit_code == 3
    assert "\n" not in str(exc)
    return exc


def test_cuda_without_device() -> None:
    exc = _fail("cuda", probes(NO_DRIVER, ORT_GPU, TORCH_CUDA), environ={})
    assert exc.missing == "cuda-device"
    assert (
        str(exc)
        == "--device cuda: no CUDA device visible: no NVIDIA driver (libcuda.so.1 not found)"
    )


def test_cuda_index_out_of_range() -> None:
    exc = _fail("cuda:2", probes(TWO_GPUS, ORT_GPU, TORCH_CUDA), environ={})
    assert exc.missing == "device-index"
    assert "there is no cuda:2; 2 CUDA devices visible (cuda:0 to cuda:1)" in str(exc)
    exc = _fail("cuda:1", probes(ONE_GPU, ORT_GPU, TORCH_CUDA), environ={})
    assert "1 CUDA device visible (cuda:0)" in str(exc)


def test_cuda_without_onnxruntime_gpu_or_torch() -> None:
    exc = _fail("cuda", probes(ONE_GPU, ORT_CPU, NO_TORCH), environ={})
    assert exc.missing == "onnxruntime-gpu"
    message = str(exc)
    assert message.startswith("--device cuda: onnxruntime-gpu is not installed")
    assert "onnxruntime 1.32.0 offers AzureExecutionProvider, CPUExecutionProvider" in message
    assert "pip install 'lookalike[gpu]'" in message


def test_cuda_libraries_fail_to_load() -> None:
    exc = _fail("cuda", probes(ONE_GPU, ORT_GPU_NO_LIBS, NO_TORCH), environ={})
    assert exc.missing == "cuda-libraries"
    assert "cannot load its CUDA libraries (libcudnn.so.9: cannot open shared object" in str(exc)


def test_cuda_libraries_fail_but_torch_works() -> None:
    dev = resolve_device("cuda", environ={}, probes=probes(ONE_GPU, ORT_GPU_NO_LIBS, TORCH_CUDA))
    assert dev.backend == "torch"


@pytest.mark.parametrize(
    ("torch_probe", "missing", "text"),
    [
        (NO_TORCH, "torch", "torch is not installed"),
        (TORCH_CPU_BUILD, "torch-cuda", "torch 2.13.0+cpu is a CPU-only build"),
        (TORCH_CUDA_NO_CONVERTER, "onnx2torch", "onnx2torch (with torchvision) is not installed"),
        (
            TorchProbe("2.11.0+cu130", "13.0", 0, True, "driver too old"),
            "torch-cuda",
            "sees no CUDA device (driver too old)",
        ),
    ],
)
def test_torch_path_failures(torch_probe: TorchProbe, missing: str, text: str) -> None:
    exc = _fail("cuda", probes(ONE_GPU, ORT_GPU, torch_probe), environ={}, backend="torch")
    assert exc.missing == missing
    assert text in str(exc)
    assert "lookalike[torch-gpu]" in str(exc)


def test_env_request_is_named_in_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_DEVICE", "cuda:0")
    exc = _fail(None, probes(NO_DRIVER, ORT_CPU, NO_TORCH))
    assert str(exc).startswith("LOOKALIKE_DEVICE=cuda:0: no CUDA device visible")


def test_monkeypatched_module_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_mod, "probe_cuda_driver", lambda: ONE_GPU)
    monkeypatch.setattr(device_mod, "probe_onnxruntime", lambda: ORT_CPU)
    monkeypatch.setattr(device_mod, "probe_torch", lambda: TORCH_CUDA)
    assert resolve_device("cuda").backend == "torch"
    monkeypatch.setattr(device_mod, "probe_torch", lambda: NO_TORCH)
    with pytest.raises(CudaUnavailable, match="onnxruntime-gpu is not installed"):
        resolve_device("cuda")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF shared libraries")
def test_library_load_probe(tmp_path: Path) -> None:
    """What decides 'CUDA libraries fail to load': a missing dependency is reported with
    its name; any other load failure is left to check_session."""
    not_elf = tmp_path / "libnot_elf.so"
    not_elf.write_bytes(b"not a library")
    assert cuda_probes._try_load(str(not_elf)) == ""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler to build a library with a missing dependency")
    (tmp_path / "dep.c").write_text("int dep(void) { return 1; }\n")
    (tmp_path / "top.c").write_text("int dep(void);\nint top(void) { return dep(); }\n")
    subprocess.run(
        [
            gcc,
            "-shared",
            "-fPIC",
            "-o",
            str(tmp_path / "libcudnn_fake.so"),
            str(tmp_path / "dep.c"),
        ],
        check=True,
    )
    top = tmp_path / "libtop.so"
    subprocess.run(
        [
            gcc,
            "-shared",
            "-fPIC",
            "-o",
            str(top),
            str(tmp_path / "top.c"),
            f"-L{tmp_path}",
            "-lcudnn_fake",
        ],
        check=True,
    )
    (tmp_path / "libcudnn_fake.so").unlink()
    message = cuda_probes._try_load(str(top))
    assert message.startswith("libcudnn_fake.so: cannot open shared object file"), message


def test_real_probes_on_this_machine() -> None:
    driver = device_mod.probe_cuda_driver()
    assert isinstance(driver, DriverProbe)
    assert driver.count is None or driver.count >= 0
    probe = device_mod.probe_onnxruntime()
    assert probe.version == ort.__version__
    assert CPU_PROVIDER in probe.providers
    assert isinstance(device_mod.probe_torch(), TorchProbe)
    dev = resolve_device("auto", environ={})
    assert dev.kind in ("cpu", "cuda")
    if driver.count == 0:
        with pytest.raises(CudaUnavailable, match="no CUDA device visible"):
            resolve_device("cuda", environ={})


def test_import_is_light() -> None:
    code = (
        "import sys, lookalike.models.device, lookalike.models.torch_backend\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'onnx', 'onnx2torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- sessions and batch sizes ----------------------------------------------------------------


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=[CPU_PROVIDER])


def test_check_session_refuses_silent_cpu_fallback() -> None:
    session = _session(make_pooling_model(8))
    check_session(session, Device())  # CPU: fine
    cuda = resolve_device("cuda", environ={}, probes=probes(ONE_GPU, ORT_GPU, NO_TORCH))
    with pytest.raises(CudaUnavailable, match="without its CUDA provider") as info:
        check_session(session, cuda)
    assert info.value.missing == "cuda-libraries"
    torch_dev = resolve_device("cuda", environ={}, probes=probes(ONE_GPU, ORT_CPU, TORCH_CUDA))
    check_session(session, torch_dev)  # the torch path reads metadata from a CPU session


def test_suggest_batch_size() -> None:
    assert suggest_batch_size(None) == 64
    assert suggest_batch_size(140 << 30) == 256
    assert suggest_batch_size(6 << 30) == 64
    assert suggest_batch_size(200 << 20) == 8
    assert suggest_batch_size(140 << 30, (3, 224, 224), maximum=1024) == 1024
    big = suggest_batch_size(10 << 30, (3, 518, 518))
    assert big < suggest_batch_size(10 << 30, (3, 224, 224))
    assert gpu_session.batch_size_for(Device()) == 32


# -- graph rewriting and the onnxruntime I/O binding runner (no torch needed) ------------------


def _qdq_model(per_axis: bool = False, seed: int = 0) -> onnx.ModelProto:
    """x -> Q/DQ -> Conv(int8 weights, int32 bias) -> Relu -> Q/DQ -> pool -> (N, 4)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-100, 100, (4, 3, 3, 3)).astype(np.int8)
    w_scale = rng.uniform(0.002, 0.01, 4).astype(np.float32) if per_axis else np.float32(0.005)
    b = rng.integers(-500, 500, 4).astype(np.int32)
    inits = [
        numpy_helper.from_array(np.array(1 / 64, np.float32), "x_s"),
        numpy_helper.from_array(np.array(128, np.uint8), "x_z"),
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(np.asarray(w_scale, np.float32), "w_s"),
        numpy_helper.from_array(np.zeros(4 if per_axis else (), np.int8), "w_z"),
        numpy_helper.from_array(b, "b_q"),
        numpy_helper.from_array(np.asarray(w_scale, np.float32) / 64, "b_s"),
        numpy_helper.from_array(np.zeros(4 if per_axis else (), np.int32), "b_z"),
        numpy_helper.from_array(np.array(0.02, np.float32), "y_s"),
        numpy_helper.from_array(np.array(0, np.uint8), "y_z"),
    ]
    axis = {"axis": 0} if per_axis else {}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xf"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["wf"], **axis),
        helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["bf"], **axis),
        helper.make_node("Conv", ["xf", "wf", "bf"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "y_s", "y_z"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "y_s", "y_z"], ["rf"]),
        helper.make_node("GlobalAveragePool", ["rf"], ["p"]),
        helper.make_node("Flatten", ["p"], ["features"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _batch(n: int = 6, size: int = 8, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.5, 1.5, (n, 3, size, size)).astype(np.float32)


@pytest.mark.parametrize("per_axis", [False, True])
def test_dequantize_qdq_matches_onnxruntime(per_axis: bool) -> None:
    model = _qdq_model(per_axis)
    assert has_qdq(model)
    x = _batch()
    reference = _session(model).run(None, {"x": x})[0]
    emulated = dequantize_qdq(model, "emulate")
    dropped = dequantize_qdq(model, "drop")
    for rewritten in (emulated, dropped):
        assert not has_qdq(rewritten)
        onnx.checker.check_model(rewritten)
        assert not any(t.data_type != TensorProto.FLOAT for t in rewritten.graph.initializer)
    got = _session(emulated).run(None, {"x": x})[0]
    # fake quantization reproduces onnxruntime's int8 result up to rare rounding flips
    assert np.all(cosine_similarities(reference, got) > 0.999)
    # the activations' values are still multiples of the output scale
    steps = got.reshape(-1) * 64 / 0.02  # 8x8 mean of multiples of 0.02 -> k / 64 * 0.02
    assert np.allclose(steps, np.round(steps), atol=1e-3)
    plain = _session(dropped).run(None, {"x": x})[0]
    assert np.all(cosine_similarities(reference, plain) > 0.99)


def test_dequantize_folds_weights_exactly() -> None:
    model = _qdq_model(per_axis=True)
    folded = {t.name: numpy_helper.to_array(t) for t in dequantize_qdq(model).graph.initializer}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    expected = inits["w_q"].astype(np.float32) * inits["w_s"].reshape(4, 1, 1, 1)
    np.testing.assert_array_equal(folded["wf"], expected)
    np.testing.assert_array_equal(folded["bf"], inits["b_q"].astype(np.float32) * inits["b_s"])


def test_prune_to_output() -> None:
    model = make_pooling_model(8, extra_token_output=True)
    pruned = prune_to_output(model, "image_embeds")
    assert [o.name for o in pruned.graph.output] == ["image_embeds"]
    assert not any("tok" in n.output[0] for n in pruned.graph.node)
    x = _batch(3, 32)
    ref = _session(model).run(["image_embeds"], {"pixel_values": x})[0]
    np.testing.assert_array_equal(_session(pruned).run(None, {"pixel_values": x})[0], ref)


def test_ort_io_binding_runner_matches_session_run() -> None:
    model = make_pooling_model(8, extra_token_output=True)
    session = _session(model)
    x = _batch(5, 32)
    runner = OrtCudaRunner(session, output="image_embeds", device_type="cpu")
    ref = session.run(["image_embeds"], {"pixel_values": x})[0]
    np.testing.assert_array_equal(runner.run(x), ref)
    assert runner.output_name == "image_embeds"


def test_max_normalized_diff() -> None:
    a = np.array([[3.0, 4.0], [1.0, 0.0]])
    assert max_normalized_diff(a, a * 10) == pytest.approx(0.0, abs=1e-12)
    assert max_normalized_diff(a, np.array([[4.0, 3.0], [1.0, 0.0]])) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        max_normalized_diff(a, a[:1])


# -- the torch path (only where torch and onnx2torch import) -----------------------------------

_TORCH_MISSING = [
    m for m in ("torch", "onnx2torch", "torchvision") if importlib.util.find_spec(m) is None
]
needs_torch = pytest.mark.skipif(
    bool(_TORCH_MISSING),
    reason=f"torch path parity needs {', '.join(_TORCH_MISSING)} (pip install 'lookalike[torch-gpu]')",
)


def _torch_device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


@needs_torch
@pytest.mark.parametrize(
    ("model", "output", "size"),
    [
        (make_pooling_model(16), "image_embeds", 32),
        (make_pooling_model(16, extra_token_output=True), "image_embeds", 32),
        (make_token_model(8, 5), "last_hidden_state", 32),
        (make_pooling_model(16, dtype="float16"), "image_embeds", 32),
    ],
)
def test_torch_parity_with_onnxruntime_cpu(model: onnx.ModelProto, output: str, size: int) -> None:
    from lookalike.models.torch_backend import TorchRunner, check_parity

    session = _session(model)
    runner = TorchRunner(model, output=output, device=_torch_device())
    x = _batch(4, size)
    diff, cosine = check_parity(runner, session, x, output=output)
    assert diff <= 1e-3 and cosine > 0.9999
    got = runner.run(x[:1])  # pinned buffers are reused for a smaller batch
    assert got.shape[0] == 1 and got.dtype == np.float32
    assert not runner.rewrote_qdq


@needs_torch
@pytest.mark.parametrize("mode", ["emulate", "drop"])
def test_torch_runs_rewritten_qdq_graph(mode: str) -> None:
    from lookalike.models.torch_backend import TorchRunner, check_parity

    model = _qdq_model(per_axis=True)
    runner = TorchRunner(model, device=_torch_device(), qdq=mode)  # type: ignore[arg-type]
    x = _batch()
    _, cosine = check_parity(runner, _session(model), x)
    assert runner.rewrote_qdq and cosine > 0.99
    # against the same rewritten graph in onnxruntime, the float path is exact
    if mode == "drop":
        ref = _session(dequantize_qdq(model, "drop")).run(None, {"x": x})[0]
        assert max_normalized_diff(ref, runner.run(x)) < 1e-5


@needs_torch
def test_torch_unconvertible_model_is_model_unavailable() -> None:
    from lookalike.errors import ModelUnavailable
    from lookalike.models.torch_backend import TorchRunner

    nodes = [helper.make_node("Hardmax", ["x"], ["y"], axis=1)]
    graph = helper.make_graph(
        nodes,
        "odd",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelUnavailable, match="onnx2torch cannot convert"):
        TorchRunner(model, device="cpu").load()
