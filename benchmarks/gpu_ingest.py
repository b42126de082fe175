"""GPU ingest: model-only, decode, end-to-end and upload-search figures side by side.

One script for the GPU machine (``scripts/gpu_bench.sh remote`` runs it); ``--quick`` is
a small CPU dry run that goes through every section here first.

    python benchmarks/gpu_ingest.py --images DIR --mobilenet MODEL_DIR [-n 50000] [--quick]
        [--out gpu_table.md] [--batch-size B] [--budget-s 480]

Models: a ResNet-50-shaped ONNX graph with random weights (built with onnx.helper on the
ResNet-18 builder of resnet18_onnx.py: same layers and FLOPs as torchvision's resnet50
with batch norm folded; residual branches scaled down so that fp16 does not overflow),
and the real MobileNetV2 int8 QDQ model at ``--mobilenet``.

Sections (each row of the table names its unit):

1. parity: the torch path (onnx2torch) against onnxruntime on the CPU, on real photos:
   max |difference| of the L2-normalised vectors, smallest cosine. For MobileNetV2's
   QDQ graph, both rewrites of torch_backend.dequantize_qdq (emulate, drop).
2. model only: img/s at batch B, inputs already on the GPU and from host memory through
   the runner's pinned buffers; fp32 (IEEE), tf32, fp16; onnxruntime on the CPU (all
   cores) and onnxruntime CUDA with I/O binding when onnxruntime-gpu is installed; a
   batch-size sweep.
3. CPU decode + preprocess: lookalike's own pipeline (pipeline.run: read, hash, decode,
   pixel hash, phash, preprocess, send back) at 1, 2, 4, 8, 16 worker processes, and bare
   decode + preprocess at the most workers.
4. GPU decode: torchvision.io.decode_jpeg(device="cuda") (nvJPEG) + resize on the GPU,
   img/s, and its difference from lookalike's CPU preprocessing (model-input units and
   the cosine of the resulting MobileNetV2 vectors).
5. end to end: `lookalike index DATA --device cuda` as a subprocess, img/s (wall time,
   start-up and index build included), and e2e / model-only.
6. upload-search latency: one photo, read + decode + preprocess + embed + search,
   CPU (onnxruntime) vs GPU (torch), median and p90 ms.

The data: the JPEGs under ``--images`` hard-linked (else symlinked) N times into a
temporary folder (lookalike embeds every new path, so repeats cost the same as new files).
The table is written to ``--out`` after every section, so a run cut short still leaves
its figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
if (REPO / "src").is_dir():
    sys.path.insert(0, str(REPO / "src"))

import onnx  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402
from resnet18_onnx import CLIP_LIKE_PREPROCESSOR, _Graph  # noqa: E402

from lookalike.ingest import pipeline  # noqa: E402
from lookalike.ingest.decode import DecodeLimits, decode_image  # noqa: E402
from lookalike.models.device import resolve_device  # noqa: E402
from lookalike.models.gpu_session import cuda_memory, suggest_batch_size  # noqa: E402
from lookalike.models.loader import load_embedder  # noqa: E402
from lookalike.models.preprocess import ImageProcessorSpec  # noqa: E402
from lookalike.models.torch_backend import (  # noqa: E402
    OrtCudaRunner,
    TorchRunner,
    cosine_similarities,
    dequantize_qdq,
    max_normalized_diff,
)

# -- the table -----------------------------------------------------------------------------


class Table:
    """Rows (section, what, value, unit, note), rewritten to ``out`` after each section."""

    def __init__(self, out: Path | None, header: list[str]) -> None:
        self.out = out
        self.header = header
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.notes: list[str] = []

    def add(self, section: str, what: str, value: Any, unit: str = "", note: str = "") -> None:
        if isinstance(value, float):
            text = f"{value:.4g}" if abs(value) < 1 else f"{value:,.1f}"
        else:
            text = str(value)
        self.rows.append((section, what, text, unit, note))
        print(f"  {section:<12} {what:<58} {text:>12} {unit:<8} {note}", flush=True)

    def note(self, text: str) -> None:
        if text in self.notes:
            return
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def markdown(self) -> str:
        lines = [
            *self.header,
            "",
            "| section | what | value | unit | note |",
            "|---|---|---:|---|---|",
        ]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in self.rows]
        if self.notes:
            lines += ["", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines) + "\n"

    def save(self) -> None:
        if self.out is not None:
            self.out.write_text(self.markdown())
            self.out.with_suffix(".json").write_text(
                json.dumps(
                    {"header": self.header, "rows": self.rows, "notes": self.notes}, indent=1
                )
            )


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def allows(self, seconds: float) -> bool:
        return self.left() > seconds


# -- machine -------------------------------------------------------------------------------


def machine_header(args: argparse.Namespace) -> list[str]:
    gpu = "no GPU (nvidia-smi not found)"
    if shutil.which("nvidia-smi"):
        try:
            gpu = (
                subprocess.run(
                    [
                        "nvidia-smi",
                        "--query-gpu=name,memory.total,driver_version",
                        "--format=csv,noheader",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=20,
                )
                .stdout.strip()
                .replace("\n", "; ")
                or "nvidia-smi printed nothing"
            )
        except (OSError, subprocess.SubprocessError) as exc:
            gpu = f"nvidia-smi failed: {exc}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = [
        f"python {platform.python_version()}",
        f"numpy {np.__version__}",
        f"onnx {onnx.__version__}",
    ]
    for name in ("onnxruntime", "torch", "torchvision", "onnx2torch", "faiss", "PIL"):
        try:
            module = __import__(name)
            versions.append(f"{name} {getattr(module, '__version__', '?')}")
        except Exception as exc:  # noqa: BLE001 - report whatever is there
            versions.append(f"{name} missing ({type(exc).__name__})")
    try:
        import torch

        if torch.cuda.is_available():
            versions.append(
                f"torch CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
            )
    except Exception:  # noqa: BLE001
        pass
    auto = resolve_device("auto")
    mode = "quick CPU dry run" if args.quick else "full run"
    return [
        f"# GPU ingest benchmark ({mode})",
        "",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- GPU: {gpu}",
        f"- CPU: {cpu}, {os.cpu_count()} cores",
        f"- software: {', '.join(versions)}",
        f"- lookalike device auto: {auto.describe()}" + (f" ({auto.note})" if auto.note else ""),
        f"- images: {args.n} files ({args.images}), batch {args.batch_size}",
    ]


# -- models --------------------------------------------------------------------------------


def _bottleneck(g: _Graph, x: str, cin: int, width: int, stride: int) -> str:
    h = g.conv(x, cin, width, 1, 1, relu=True)
    h = g.conv(h, width, width, 3, stride, relu=True)
    h = g.conv(h, width, width * 4, 1, 1, relu=False)
    # scale the branch's last conv (like zero-init residuals) so activations stay bounded
    w = g.inits[-2]
    g.inits[-2] = numpy_helper.from_array(numpy_helper.to_array(w) * np.float32(0.2), w.name)
    shortcut = (
        g.conv(x, cin, width * 4, 1, stride, relu=False) if stride != 1 or cin != width * 4 else x
    )
    s = g.name("add")
    g.nodes.append(helper.make_node("Add", [h, shortcut], [s]))
    r = g.name("relu")
    g.nodes.append(helper.make_node("Relu", [s], [r]))
    return r


def build_resnet50(seed: int = 0) -> onnx.ModelProto:
    """ResNet-50 v1.5 shape (stride on the 3x3), batch norm folded, 2048-d pooled output."""
    g = _Graph(seed)
    x = g.conv("pixel_values", 3, 64, 7, 2, relu=True)
    mp = g.name("pool")
    g.nodes.append(
        helper.make_node(
            "MaxPool", [x], [mp], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        )
    )
    x, cin = mp, 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            x = _bottleneck(g, x, cin, width, stride if b == 0 else 1)
            cin = width * 4
    gap = g.name("gap")
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], [gap]))
    g.nodes.append(helper.make_node("Flatten", [gap], ["image_embeds"], axis=1))
    graph = helper.make_graph(
        g.nodes,
        "resnet50",
        [
            helper.make_tensor_value_info(
                "pixel_values", onnx.TensorProto.FLOAT, ["batch", 3, 224, 224]
            )
        ],
        [helper.make_tensor_value_info("image_embeds", onnx.TensorProto.FLOAT, ["batch", 2048])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def write_resnet50(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(build_resnet50(), str(folder / "model.onnx"))
    (folder / "preprocessor_config.json").write_text(json.dumps(CLIP_LIKE_PREPROCESSOR, indent=2))
    return folder


# -- data ----------------------------------------------------------------------------------


def replicate(sources: list[Path], n: int, target: Path) -> list[Path]:
    """``n`` paths under ``target`` cycling through ``sources``: hard links, else symlinks."""
    out: list[Path] = []
    how = "link"
    for i in range(n):
        src = sources[i % len(sources)]
        dest = target / f"d{i // 1000:03d}" / f"{i:06d}.jpg"
        if i % 1000 == 0:
            dest.parent.mkdir(parents=True, exist_ok=True)
        if how == "link":
            try:
                os.link(src, dest)
            except OSError:
                how = "symlink"
        if how == "symlink":
            dest.symlink_to(src.resolve())
        out.append(dest)
    return out


def prepare_batch(files: list[Path], prep: Any) -> np.ndarray:
    return np.stack([prep(decode_image(f.read_bytes()).image) for f in files])


# -- timing --------------------------------------------------------------------------------


def sync() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    except ImportError:
        pass


def rate(step: Callable[[], Any], items_per_step: int, seconds: float, warmup: int = 2) -> float:
    """Items per second of ``step``, run until ``seconds`` have passed (after warm-up);
    the GPU is synchronised before the clock starts and before it stops."""
    for _ in range(warmup):
        step()
    sync()
    count = 0
    t0 = time.perf_counter()
    while True:
        step()
        count += 1
        if time.perf_counter() - t0 >= seconds:
            sync()
            return count * items_per_step / (time.perf_counter() - t0)


def torch_device() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    try:
        import onnx2torch  # noqa: F401
    except ImportError:
        return None
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def ort_cpu_session(path: Path) -> Any:
    from lookalike.models.embedders.session import create_session

    return create_session(path)


def ort_cuda_session(path: Path) -> Any | None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    from lookalike.models.device import cuda_provider_options
    from lookalike.models.gpu_session import check_session

    dev = resolve_device("cuda", backend="onnxruntime")
    session = ort.InferenceSession(
        str(path),
        providers=[("CUDAExecutionProvider", cuda_provider_options(0)), "CPUExecutionProvider"],
    )
    check_session(session, dev)
    return session


# -- sections ------------------------------------------------------------------------------


def run_section(t: Table, title: str, fn: Callable[[], Any]) -> None:
    """Run one section; a failure becomes a note (with the traceback on stderr) and the
    other sections still run: a GPU run is paid for once."""
    print(f"== {title}", flush=True)
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - report and go on
        import traceback

        traceback.print_exc()
        t.note(f"{title} failed: {type(exc).__name__}: {str(exc)[:300]}")
    t.save()


def section_parity(
    t: Table, models: dict[str, Path], photos: dict[str, np.ndarray], dev: str
) -> None:
    for name, path in models.items():
        x = photos[name]
        session = ort_cpu_session(path / "model.onnx")
        ref = session.run(None, {session.get_inputs()[0].name: x})[0]
        variants: list[tuple[str, dict[str, Any]]]
        if name == "mobilenet":
            variants = [
                ("emulate fp32", {"qdq": "emulate"}),
                ("drop fp32", {"qdq": "drop"}),
                ("drop fp16", {"qdq": "drop", "precision": "fp16"}),
            ]
            m = onnx.load(str(path / "model.onnx"))
            for mode in ("emulate", "drop"):
                s2 = ort_cpu_session_from_proto(dequantize_qdq(m, mode))  # type: ignore[arg-type]
                r2 = s2.run(None, {"pixel_values": x})[0]
                cos = cosine_similarities(ref, r2)
                t.add(
                    "parity",
                    f"{name}: onnxruntime CPU, QDQ {mode} graph vs int8 graph",
                    float(cos.min()),
                    "min cos",
                    f"mean {cos.mean():.5f}, max abs diff {max_normalized_diff(ref, r2):.2e}",
                )
        else:
            variants = [
                ("fp32", {}),
                ("tf32", {"precision": "tf32"}),
                ("fp16", {"precision": "fp16"}),
            ]
        if dev == "cpu":  # tf32/fp16 are GPU settings (and fp16 convolutions crawl on a CPU)
            variants = [v for v in variants if "precision" not in v[1]]
        for label, kw in variants:
            t0 = time.perf_counter()
            runner = TorchRunner(path / "model.onnx", device=dev, **kw)
            runner.load()
            convert_s = time.perf_counter() - t0
            got = runner.run(x)
            cos = cosine_similarities(ref, got)
            diff = max_normalized_diff(ref, got)
            verdict = "ok" if diff <= 1e-3 else "over 1e-3"
            t.add(
                "parity",
                f"{name}: torch {label} vs onnxruntime CPU, max abs diff of normalised vectors",
                diff,
                "",
                f"{verdict}; min cos {cos.min():.5f}, mean {cos.mean():.5f}; convert {convert_s:.1f}s",
            )
            runner.close()
        if name == "resnet50":
            cuda = ort_cuda_session(path / "model.onnx")
            if cuda is not None:
                got = OrtCudaRunner(cuda).run(x)
                t.add(
                    "parity",
                    f"{name}: onnxruntime CUDA vs CPU, max abs diff of normalised vectors",
                    max_normalized_diff(ref, got),
                )


def ort_cpu_session_from_proto(model: onnx.ModelProto) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def section_model_only(
    t: Table,
    models: dict[str, Path],
    dev: str | None,
    batch: int,
    seconds: float,
    budget: Budget,
    results: dict[tuple[str, str], float],
    tables: dict[str, np.ndarray],
) -> None:
    """Fills ``results`` {(model, variant): img/s} for the e2e ratio; ``"index path"`` is
    what ``index --device cuda`` runs: TorchRunner(precision="auto").run_pixels on uint8
    pixels from host memory, the lookup table (``tables``) applied on the device."""
    for name, path in models.items():
        x = np.random.default_rng(0).uniform(-1, 1, (batch, 3, 224, 224)).astype(np.float32)
        session = ort_cpu_session(path / "model.onnx")
        cpu_batch = min(batch, 32)
        feed = {session.get_inputs()[0].name: x[:cpu_batch]}
        r = rate(partial(session.run, None, feed), cpu_batch, seconds, warmup=1)
        t.add(
            "model only",
            f"{name}: onnxruntime CPU ({os.cpu_count()} threads), batch {cpu_batch}",
            r,
            "img/s",
        )
        results[(name, "ort-cpu")] = r
        del session
        cuda = ort_cuda_session(path / "model.onnx")
        if cuda is not None:
            ort_runner = OrtCudaRunner(cuda)
            r = rate(partial(ort_runner.run, x), batch, seconds)
            t.add(
                "model only",
                f"{name}: onnxruntime CUDA, I/O binding from host, batch {batch}",
                r,
                "img/s",
            )
            results[(name, "ort-cuda")] = r
            del cuda, ort_runner
        if dev is None:
            t.note("torch/onnx2torch not importable: torch model-only rows skipped")
            continue
        variants: list[tuple[str, dict[str, Any]]] = [
            ("fp32", {}),
            ("tf32", {"precision": "tf32"}),
            ("fp16", {"precision": "fp16"}),
        ]
        if name == "mobilenet":
            variants = [
                ("emulate fp32", {"qdq": "emulate"}),
                ("drop fp32", {"qdq": "drop"}),
                ("drop tf32", {"qdq": "drop", "precision": "tf32"}),
                ("drop fp16", {"qdq": "drop", "precision": "fp16"}),
            ]
        if dev == "cpu":
            variants = [v for v in variants if "precision" not in v[1]]
        for label, kw in variants:
            if not budget.allows(60):
                t.note(f"time budget: model-only {name} {label} skipped")
                break
            runner = TorchRunner(path / "model.onnx", device=dev, **kw)
            runner.load()
            on_dev = runner.to_device(x)
            r_dev = rate(partial(runner.forward, on_dev), batch, seconds)
            r_host = rate(partial(runner.run, x), batch, seconds)
            t.add(
                "model only",
                f"{name}: torch {label}, input on {dev}, batch {batch}",
                r_dev,
                "img/s",
            )
            t.add(
                "model only",
                f"{name}: torch {label}, from pinned host + copy back, batch {batch}",
                r_host,
                "img/s",
                f"{r_host / r_dev:.2f} of on-device",
            )
            results[(name, f"torch {label} dev")] = r_dev
            results[(name, f"torch {label} host")] = r_host
            del on_dev
            runner.close()
        if name in tables and budget.allows(60):
            runner = TorchRunner(path / "model.onnx", device=dev, precision="auto")
            runner.load()
            px = np.random.default_rng(2).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
            r = rate(partial(runner.run_pixels, px, tables[name]), batch, seconds)
            t.add(
                "model only",
                f"{name}: index path: torch auto ({runner.precision}), uint8 pixels from"
                f" pinned host, table on {dev}, copy back, batch {batch}",
                r,
                "img/s",
            )
            results[(name, "index path")] = r
            runner.close()
        if name == "resnet50" and dev != "cpu" and budget.allows(90):
            runner = TorchRunner(
                path / "model.onnx", device=dev, precision="fp16", channels_last=True
            )
            runner.load()
            on_dev = runner.to_device(x)
            r = rate(partial(runner.forward, on_dev), batch, seconds)
            t.add(
                "model only",
                f"{name}: torch fp16 channels_last, input on {dev}, batch {batch}",
                r,
                "img/s",
            )
            del on_dev
            runner.close()
            runner = TorchRunner(path / "model.onnx", device=dev)
            runner.load()
            for b in (32, 64, 128, 256, 512):
                xb = runner.to_device(
                    np.random.default_rng(1).uniform(-1, 1, (b, 3, 224, 224)).astype(np.float32)
                )
                r = rate(partial(runner.forward, xb), b, seconds / 2)
                t.add("model only", f"{name}: torch fp32 on device, batch sweep {b}", r, "img/s")
                del xb
            runner.close()


def _decode_prepare_chunk(args: tuple[list[str], Any]) -> int:
    paths, prep = args
    total = 0
    for p in paths:
        with open(p, "rb") as fh:
            arr = prep(decode_image(fh.read()).image)
        total += int(arr.shape[0])
    return total


def section_cpu_decode(
    t: Table,
    files: list[Path],
    preps: dict[str, Any],
    workers_list: list[int],
    per_worker: int,
    budget: Budget,
) -> dict[str, float]:
    limits = DecodeLimits()
    best: dict[str, float] = {}
    # What `index` runs on the torch GPU path: uint8 pixels back (the table on the GPU);
    # the float32 model input of the CPU path once, at the most workers, for comparison.
    deferred = dataclasses.replace(preps["resnet50"], defer_normalise=True)
    sweep = [(w, deferred, "uint8 pixels out") for w in workers_list]
    sweep.append((workers_list[-1], preps["resnet50"], "float32 input out"))
    for w, prep, out in sweep:
        if not budget.allows(30):
            t.note(f"time budget: CPU decode at {w} workers skipped")
            break
        subset = files[: min(len(files), per_worker * w)]
        tasks = [pipeline.Task(i, str(p)) for i, p in enumerate(subset)]
        t0 = time.perf_counter()
        n = sum(
            1
            for r in pipeline.run(tasks, prep, limits, workers=w, max_in_flight=max(256, 16 * w))
            if r.status == "ok"
        )
        elapsed = time.perf_counter() - t0
        t.add(
            "cpu decode",
            f"lookalike pipeline (resnet50 preprocessing, {out}), {w} processes",
            n / elapsed,
            "img/s",
            f"{n} images, spawn included",
        )
        if prep is deferred:
            best["resnet50"] = max(best.get("resnet50", 0.0), n / elapsed)
    w = workers_list[-1]
    subset = files[: min(len(files), per_worker * w)]
    for name, prep_m in preps.items():
        if not budget.allows(30):
            break
        import multiprocessing

        chunks = [([str(p) for p in subset[i : i + 16]], prep_m) for i in range(0, len(subset), 16)]
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(w) as pool:
            pool.map(_decode_prepare_chunk, chunks[: w * 2])  # start the workers
            t0 = time.perf_counter()
            done = sum(1 for _ in pool.imap_unordered(_decode_prepare_chunk, chunks))
            elapsed = time.perf_counter() - t0
        t.add(
            "cpu decode",
            f"bare decode + preprocess ({name}), {w} processes, nothing sent back",
            len(subset) / elapsed,
            "img/s",
            f"{done} chunks",
        )
    return best


def section_gpu_decode(
    t: Table,
    files: list[Path],
    specs: dict[str, ImageProcessorSpec],
    mobilenet: Path,
    workers: int,
    budget: Budget,
    quick: bool,
) -> None:
    """``--decode gpu`` (lookalike.ingest.gpu_decode) against the CPU path on the same
    photos: model pixels, perceptual hashes, MobileNetV2 vectors; and its throughput."""
    try:
        import torch
        import torchvision.io  # noqa: F401
    except ImportError as exc:
        t.note(f"GPU decode skipped: torchvision not importable ({exc})")
        return
    from lookalike.ingest.gpu_decode import READERS, run_gpu
    from lookalike.models.phash import hamming, phash_int_to_bits

    dev = "cuda:0" if torch.cuda.is_available() else ("cpu" if quick else None)
    if dev is None:
        t.note("GPU decode skipped: no CUDA device")
        return
    limits = DecodeLimits()
    tasks = [pipeline.Task(i, str(f)) for i, f in enumerate(files[:256])]
    session = ort_cpu_session(mobilenet / "model.onnx")
    for name, spec in specs.items():
        deferred = dataclasses.replace(spec, defer_normalise=True)
        gpu = list(run_gpu(tasks, deferred, limits, workers=workers, device=dev))
        cpu = [pipeline.process(task, deferred, limits) for task in tasks]
        pairs = [
            (g, c)
            for g, c in zip(gpu, cpu, strict=True)
            if g.status == c.status == "ok" and g.pixel_hash is None  # decoded on the GPU
        ]
        if not pairs:
            t.note(f"GPU decode {name}: no photo was decoded on {dev}")
            continue
        g_px = np.stack([g.prepared for g, _ in pairs]).astype(np.int16)  # type: ignore[misc]
        c_px = np.stack([c.prepared for _, c in pairs]).astype(np.int16)  # type: ignore[misc]
        levels = np.abs(g_px - c_px)
        t.add(
            "gpu decode",
            f"{name}: model pixels, --decode gpu ({dev}) vs CPU (libjpeg + Pillow), mean |diff|",
            float(levels.mean()),
            "levels",
            f"max {int(levels.max())} of 255; {np.mean(levels > 0) * 100:.1f}% of values differ;"
            f" {len(pairs)} of {len(tasks)} photos decoded on {dev}",
        )
        bits = [
            hamming(phash_int_to_bits(g.phash or 0), phash_int_to_bits(c.phash or 0))
            for g, c in pairs
        ]
        t.add(
            "gpu decode",
            f"{name}: perceptual hash, --decode gpu vs CPU, mean Hamming distance",
            float(np.mean(bits)),
            "bits",
            f"max {max(bits)} of 64",
        )
        if name == "mobilenet":
            feed = session.get_inputs()[0].name
            a = session.run(None, {feed: np.stack([spec.normalise(c.prepared) for _, c in pairs])})[
                0
            ]
            b = session.run(None, {feed: np.stack([spec.normalise(g.prepared) for g, _ in pairs])})[
                0
            ]
            cos = cosine_similarities(a, b)
            t.add(
                "gpu decode",
                "mobilenet vectors, --decode gpu vs CPU inputs",
                float(cos.min()),
                "min cos",
                f"mean {cos.mean():.5f}",
            )
        if not budget.allows(40):
            continue
        many = [pipeline.Task(i, str(f)) for i, f in enumerate(files[: 512 if quick else 16384])]
        list(run_gpu(many[:256], deferred, limits, workers=workers, device=dev))  # warm-up
        t0 = time.perf_counter()
        n = sum(1 for r in run_gpu(many, deferred, limits, workers=workers, device=dev))
        r = n / (time.perf_counter() - t0)
        t.add(
            "gpu decode",
            f"{name}: --decode gpu alone (read, hash, nvJPEG, resize, crop, phash, back to host),"
            f" {min(workers, READERS)} reader threads",
            r,
            "img/s",
            f"{n} files",
        )


def section_retrieval(
    t: Table,
    images: Path,
    queries: Path | None,
    mobilenet: Path,
    device: str,
    workers: int,
    work: Path,
    budget: Budget,
) -> None:
    """What --decode gpu does to retrieval: the distinct photos indexed with MobileNetV2 on
    ``device``, decoded on the CPU and with --decode gpu; held-out ``queries`` (label =
    folder) searched in both, queries decoded on the CPU as `search` does."""
    if queries is None or not queries.is_dir():
        t.note("retrieval skipped: no --queries folder")
        return
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    colls = {}
    for decode in ("processes", "gpu"):
        if not budget.allows(30):
            t.note(f"time budget: retrieval with --decode {decode} skipped")
            return
        coll = work / f"retrieval-{decode}"
        proc = subprocess.run(
            [*lookalike_cmd(), "index", str(images), "--model-path", str(mobilenet),
             "--collection", str(coll), "--device", device, "--decode", decode,
             "--workers", str(workers), "--json", "--no-progress"],
            capture_output=True, text=True, env=env, timeout=max(60, budget.left()),
        )  # fmt: skip
        if proc.returncode != 0:
            t.note(f"retrieval: index --decode {decode} failed: {proc.stderr.strip()[-300:]}")
            continue
        colls[decode] = coll
    if "processes" not in colls:
        return
    cmd = [*lookalike_cmd(), "evaluate", "retrieval", "--collection", str(colls["processes"]),
           "--queries", str(queries), "-k", "1,5,10", "--json"]  # fmt: skip
    if "gpu" in colls:
        cmd += ["--against", str(colls["gpu"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0:
        t.note(f"retrieval: evaluate failed: {proc.stderr.strip()[-300:]}")
        return
    report = json.loads(proc.stdout)
    for decode, result in zip(colls, report["results"], strict=False):
        m = result["metrics"]
        p1 = m["precision@1"]
        t.add(
            "retrieval",
            f"mobilenet, index --decode {decode}: precision@1 of {report['queries']} held-out"
            " photos by label",
            float(p1["value"]),
            "",
            f"95% CI {p1['ci_low']:.3f}-{p1['ci_high']:.3f}; precision@10"
            f" {m['precision@10']['value']:.3f}, mAP@10 {m['mAP@10']['value']:.3f}",
        )


def lookalike_cmd() -> list[str]:
    return [sys.executable, "-m", "lookalike"]


def cli_has_device_flag(env: dict[str, str]) -> bool:
    out = subprocess.run(
        [*lookalike_cmd(), "index", "--help"], capture_output=True, text=True, env=env
    )
    return "--device" in out.stdout


def section_e2e(
    t: Table,
    data: Path,
    models: dict[str, Path],
    model_only: dict[tuple[str, str], float],
    device: str,
    batch: int,
    workers: int,
    work: Path,
    budget: Budget,
    cpu_n: int,
    collections: dict[str, Path],
    kinds: set[str],
) -> None:
    """Fills ``collections`` {model: collection folder} for the latency section. ``kinds``:
    which runs (default, before, fp32, gpu-decode, cpu)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    has_flag = cli_has_device_flag(env)
    # (kind, model, device, sources, environment, extra flags, what it is)
    Run = tuple[str, str, str, list[Path], dict[str, str], list[str], str]
    fp32 = {"LOOKALIKE_GPU_PRECISION": "fp32"}
    runs: list[Run] = [("default", name, device, [data], {}, [], "") for name in models]
    if device != "cpu":
        folders = sorted(data.iterdir())
        runs[1:1] = [
            # the GPU path as it was before uint8 pixels, processes and fp16 (10,000 files)
            ("before", "resnet50", device, folders[:10], fp32, ["--decode", "threads"],
             "before: fp32, --decode threads, float32 inputs"),
            ("fp32", "resnet50", device, folders[:20], fp32, [], "fp32, 20,000 files"),
        ]  # fmt: skip
        for name in models:  # JPEGs decoded and resized on the GPU (inexact, opt-in)
            runs.append(
                ("gpu-decode", name, device, [data], {}, ["--decode", "gpu"], "--decode gpu")
            )
        if cpu_n:
            runs.append(("cpu", "mobilenet", "cpu", [data / "d000"], {}, [], ""))  # 1,000 files
    for kind, name, dev, sources, extra_env, extra_args, what in runs:
        if kind not in kinds:
            continue
        if not budget.allows(45):
            t.note(f"time budget: e2e {name} on {dev} {what} skipped")
            continue
        if dev != "cpu" and not has_flag:
            t.note(
                f"e2e {name} on {dev} skipped: this lookalike has no `index --device` flag yet (integration pending)"
            )
            continue
        coll = work / f"coll-{name}-{dev.replace(':', '')}-{len(what)}"
        cmd = [
            *lookalike_cmd(),
            "index",
            *[str(source) for source in sources],
            "--model-path",
            str(models[name]),
            "--collection",
            str(coll),
            "--batch-size",
            str(batch),
            "--workers",
            str(workers),
            "--json",
            "--no-progress",
            *extra_args,
        ]
        if has_flag:
            cmd += ["--device", dev]
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={**env, **extra_env},
            timeout=max(60, budget.left()),
        )
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            t.note(
                f"e2e {name} on {dev} failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}"
            )
            continue
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        indexed = int(report.get("indexed", 0))
        e2e = indexed / elapsed
        flag = "" if has_flag else " (no --device flag: default device)"
        title = f"lookalike index {name}, {dev}{flag}, {workers} workers, batch {batch}" + (
            f" ({what})" if what else ""
        )
        phases = report.get("seconds", {})
        shown = ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
        t.add(
            "end to end",
            title,
            e2e,
            "img/s",
            f"{indexed} indexed in {elapsed:.1f}s wall (start-up, model load, index build"
            f" included; phases, s: {shown or 'not reported'})",
        )
        if phases.get("embed"):
            t.add(
                "end to end",
                f"{title}: embed phase alone (decode, embed, commit)",
                indexed / phases["embed"],
                "img/s",
                "the report's seconds.embed",
            )
        if dev == "cpu":
            key = "ort-cpu"
        elif (name, "ort-cuda") in model_only:
            key = "ort-cuda"
        elif kind in ("before", "fp32"):
            key = f"torch {'emulate ' if name == 'mobilenet' else ''}fp32 host"
        else:
            key = "index path"
        if (name, key) in model_only and model_only[(name, key)] > 0:
            t.add(
                "end to end",
                f"e2e / model-only ({name}, {dev}, vs {key})",
                e2e / model_only[(name, key)],
                "ratio",
            )
        if what:
            continue
        if dev == device:
            collections[name] = coll


def _latencies(fn: Callable[[Path], float], sample: list[Path]) -> tuple[float, float, int]:
    for f in sample[:3]:
        fn(f)  # warm-up
    times = sorted(fn(f) * 1000 for f in sample)
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.9))], len(times)


def section_latency(
    t: Table,
    files: list[Path],
    models: dict[str, Path],
    collections: dict[str, Path],
    dev: str | None,
    repeats: int,
) -> None:
    """One upload: read + decode + preprocess + embed (+ search when the e2e run left a
    collection), CPU onnxruntime embedder vs the torch runner on the GPU."""
    from lookalike.collection import Collection

    sample = files[:repeats]
    for name, path in models.items():
        coll = (
            Collection.open(collections[name], create=False, readonly=True)
            if name in collections
            else None
        )
        emb = load_embedder(model_path=path)
        emb.load()
        prep = emb.preparer()
        where = "embed + search" if coll is not None else "embed only (no collection)"

        def cpu_embed(x: np.ndarray, emb: Any = emb) -> np.ndarray:
            return emb.embed([x])

        cases: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [
            ("cpu (onnxruntime)", cpu_embed)
        ]
        runner = None
        if dev is not None and dev != "cpu":
            runner = TorchRunner(path / "model.onnx", device=dev, precision="auto")  # the CLI's
            runner.load()

            def gpu_embed(x: np.ndarray, runner: TorchRunner = runner) -> np.ndarray:
                out = runner.run(x[None])
                return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

            cases.append((f"{dev} (torch {runner.precision})", gpu_embed))
        for label, embed in cases:

            def one(
                f: Path,
                embed: Callable[[np.ndarray], np.ndarray] = embed,
                prep: Any = prep,
                coll: Any = coll,
            ) -> float:
                t0 = time.perf_counter()
                vec = embed(prep(decode_image(f.read_bytes()).image))
                if coll is not None:
                    coll.search_vector(vec, 10)
                return time.perf_counter() - t0

            median, p90, count = _latencies(one, sample)
            t.add(
                "upload",
                f"{name}: one photo, read + decode + preprocess + {where}, {label}",
                median,
                "ms",
                f"p90 {p90:.1f} ms, {count} photos",
            )
        if runner is not None:
            runner.close()
        if coll is not None:
            coll.close()


# -- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--images", type=Path, required=True, help="folder of JPEGs (searched recursively)"
    )
    ap.add_argument("--mobilenet", type=Path, required=True, help="MobileNetV2 QDQ model folder")
    ap.add_argument(
        "--queries", type=Path, default=None, help="held-out labelled photos (label = folder)"
    )
    ap.add_argument(
        "-n", type=int, default=None, help="files to index (default 50000; --quick 200)"
    )
    ap.add_argument("--quick", action="store_true", help="small CPU dry run of every section")
    ap.add_argument("--device", default=None, help="device for e2e (default cuda; --quick cpu)")
    ap.add_argument(
        "--batch-size", type=int, default=None, help="default: from free GPU memory (--quick 16)"
    )
    ap.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="time per throughput measure (default 2; --quick 0.3)",
    )
    ap.add_argument(
        "--workers",
        default=None,
        help="CPU decode sweep, e.g. 1,2,4,8,16 (default: powers of 2 up to the core count)",
    )
    ap.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="skip sections past this many seconds (default 480; --quick 300)",
    )
    ap.add_argument(
        "--out", type=Path, default=None, help="write the markdown table here (and .json beside)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument(
        "--only",
        default="parity,model-only,cpu-decode,gpu-decode,e2e,retrieval,latency",
        help="sections to run (comma-separated)",
    )
    ap.add_argument(
        "--e2e",
        default="default,before,fp32,gpu-decode,cpu",
        help="end-to-end runs: default, before (fp32, threads, 10k files), fp32 (20k files),"
        " gpu-decode, cpu (mobilenet on the CPU, 1k files)",
    )
    args = ap.parse_args(argv)

    quick = args.quick
    args.n = args.n or (200 if quick else 50_000)
    device = args.device or ("cpu" if quick else "cuda")
    seconds = args.seconds or (0.3 if quick else 2.0)
    started = time.monotonic()
    budget = Budget(args.budget_s or (300 if quick else 480))
    cores = os.cpu_count() or 1
    if args.workers:
        workers_list = [int(w) for w in args.workers.split(",")]
    else:
        workers_list = [w for w in (1, 2, 4, 8, 16, 32, 64) if w <= cores] or [1]
        if quick:
            workers_list = workers_list[:2]
    tdev = torch_device()
    if quick and tdev is not None:
        tdev = "cpu"
    if args.batch_size is None:
        memory = cuda_memory(0) if tdev and tdev.startswith("cuda") else None
        args.batch_size = 16 if quick else suggest_batch_size(memory[0] if memory else None)
    batch = args.batch_size

    sources = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if not sources:
        sys.exit(f"no JPEG files under {args.images}")
    if not (args.mobilenet / "model.onnx").is_file():
        sys.exit(f"no model.onnx in {args.mobilenet}")

    t = Table(args.out, machine_header(args))
    t.add("setup", "torch device for the torch path", tdev or "none")
    t.add("setup", "batch size (suggest_batch_size from free GPU memory unless given)", batch)
    t.add("setup", "distinct source photos", len(sources))
    work = Path(tempfile.mkdtemp(prefix="lookalike-gpu-"))
    try:
        models = {
            "resnet50": write_resnet50(work / "resnet50"),
            "mobilenet": args.mobilenet.resolve(),
        }
        t0 = time.perf_counter()
        files = replicate(sources, args.n, work / "data")
        t.add(
            "setup",
            f"replicated {len(sources)} photos to {len(files)} files",
            time.perf_counter() - t0,
            "s",
        )
        preps = {name: load_embedder(model_path=path).preparer() for name, path in models.items()}
        specs = {name: p for name, p in preps.items() if isinstance(p, ImageProcessorSpec)}
        tables = {name: spec.lookup_table() for name, spec in specs.items()}
        sample = sources[:: max(1, len(sources) // (8 if quick else 64))][: 8 if quick else 64]
        photos = {name: prepare_batch(sample, prep) for name, prep in preps.items()}
        t.save()

        def parity() -> None:
            if tdev is None:
                t.note("parity skipped: torch and onnx2torch are not both importable")
            else:
                section_parity(t, models, photos, tdev)

        model_only: dict[tuple[str, str], float] = {}
        collections: dict[str, Path] = {}
        only = set(args.only.split(","))
        if "parity" in only:
            run_section(t, "parity", parity)
        if "model-only" in only:
            run_section(
                t,
                "model only",
                lambda: section_model_only(
                    t, models, tdev, batch, seconds, budget, model_only, tables
                ),
            )
        if "cpu-decode" in only:
            run_section(
                t,
                "CPU decode",
                lambda: section_cpu_decode(
                    t, files, preps, workers_list, 64 if quick else 400, budget
                ),
            )
        if "gpu-decode" in only and budget.allows(60):
            run_section(
                t,
                "GPU decode",
                lambda: section_gpu_decode(
                    t, files, specs, models["mobilenet"], cores, budget, quick
                ),
            )
        if "e2e" in only:
            run_section(
                t,
                "end to end",
                lambda: section_e2e(
                    t,
                    work / "data",
                    models,
                    model_only,
                    device,
                    batch,
                    max(workers_list[-1], cores),
                    work,
                    budget,
                    0 if quick else 1000,
                    collections,
                    set(args.e2e.split(",")),
                ),
            )
        if "retrieval" in only:
            run_section(
                t,
                "retrieval",
                lambda: section_retrieval(
                    t, args.images, args.queries, models["mobilenet"], device, cores, work, budget
                ),
            )
        if "latency" in only and budget.allows(20):
            run_section(
                t,
                "upload latency",
                lambda: section_latency(t, sources, models, collections, tdev, 10 if quick else 30),
            )
        t.add("setup", "total benchmark time", time.monotonic() - started, "s")
        t.save()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(t.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
