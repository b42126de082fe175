"""Image embedder running an ONNX model with onnxruntime (CPU).

Nothing heavy happens at import time or in the constructor: the model files are resolved
(possibly downloaded) and the ``InferenceSession`` is created on the first call to
``load()``, ``embed()`` or anything that needs the model graph. ``preparer()`` only needs
the preprocessor config and never creates the session.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import InvalidInput, LookalikeError, ModelUnavailable
from ..registry import ModelSpec
from .base import Embedder, Preparer

if TYPE_CHECKING:
    import onnxruntime

    from ..device import Device
    from ..hub import ModelFiles

logger = logging.getLogger(__name__)

#: onnxruntime type strings of the inputs we can feed, and the numpy dtype to cast to.
INPUT_DTYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
}

#: What ``OnnxEmbedder`` calls to learn the spec of a model only known once its graph is
#: read (local folders): (resolved files, open session) -> spec.
SpecBuilder = Callable[["ModelFiles", "onnxruntime.InferenceSession"], ModelSpec]


def ort_message(exc: BaseException) -> str:
    """A one-line version of an onnxruntime error, without the ``[ONNXRuntimeError] : 7 :`` noise."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if text.startswith("[ONNXRuntimeError]"):
        # "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from X failed:Protobuf parsing failed."
        text = text.split(" : ", 3)[-1]
    if "failed:" in text:
        text = text.rsplit("failed:", 1)[-1].strip() or text
    return text if len(text) <= 200 else text[:197] + "..."


def create_session(
    model_path: Path,
    *,
    threads: int | None = None,
    fix_hint: str = "",
    device: Device | None = None,
) -> onnxruntime.InferenceSession:
    """Open ``model_path`` with onnxruntime on the CPU, or on ``device``'s CUDA provider
    (checked: onnxruntime never silently falls back to the CPU when CUDA was chosen).

    ``intra_op_num_threads`` is ``threads`` (default: every core). Thread spinning is
    disabled: by default onnxruntime's intra-op threads busy-wait for a while after each
    parallel section, which on a small machine steals the cores the image-decoding worker
    processes need to keep the model fed; without spinning, idle ORT threads sleep and
    the decoders run, which gives better end-to-end throughput for a small latency cost.

    Raises ``ModelUnavailable`` (with ``fix_hint`` appended) if the file cannot be loaded.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: the library never writes to stderr itself
    try:
        session = ort.InferenceSession(
            str(model_path),
            sess_options=options,
            providers=device.session_providers() if device else ["CPUExecutionProvider"],
        )
    except Exception as exc:  # onnxruntime's errors all derive from Exception directly
        kind = type(exc).__name__
        if kind == "InvalidProtobuf":
            what = f"{model_path} is not a valid ONNX model ({ort_message(exc)})."
            fix = "The file may be truncated or corrupted."
        elif kind == "NoSuchFile":
            what = f"{model_path} (or a file it references) does not exist ({ort_message(exc)})."
            fix = ""
        else:
            what = f"onnxruntime could not load {model_path}: {ort_message(exc)}."
            fix = "It may be corrupted, incomplete or use operators this onnxruntime lacks."
        message = "\n".join(line for line in (what, fix, fix_hint) if line)
        raise ModelUnavailable(message) from exc
    if device is not None and device.is_cuda:
        from ..gpu_session import check_session

        check_session(session, device)
    logger.debug("opened %s with %d intra-op threads", model_path, options.intra_op_num_threads)
    return session


def check_image_input(
    session: onnxruntime.InferenceSession, model_path: Path
) -> tuple[str, np.dtype[Any], list[int | str | None]]:
    """Check the model takes one (N, 3, H, W) float image tensor; return (name, dtype, shape)."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(f"{i.name} {i.shape}" for i in inputs)
        raise ModelUnavailable(
            f"{model_path} has {len(inputs)} inputs ({names}); lookalike feeds images to a"
            " model with exactly one input of shape (N, 3, H, W)."
        )
    first = inputs[0]
    shape = list(first.shape)
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
        raise ModelUnavailable(
            f"{model_path} takes input {first.name!r} of shape {shape}; lookalike needs an image"
            " model whose input is (N, 3, H, W) pixel values (channels first)."
        )
    dtype = INPUT_DTYPES.get(first.type)
    if dtype is None:
        raise ModelUnavailable(
            f"{model_path} takes input {first.name!r} of type {first.type}; lookalike feeds"
            " float32, float16 or float64 pixel values."
        )
    return first.name, dtype, shape


def load_preparer(preprocessor_config: Path | None, model_name: str) -> Preparer:
    """Build the image preparer from a Hugging Face ``preprocessor_config.json``."""
    if preprocessor_config is None:
        raise ModelUnavailable(
            f"model {model_name!r} has no preprocessor_config.json, so lookalike does not know"
            " how to resize and normalise images for it.\nAdd a Hugging Face image-processor"
            " preprocessor_config.json next to the model."
        )
    try:
        config = json.loads(Path(preprocessor_config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelUnavailable(
            f"could not read the preprocessor config of model {model_name!r} at"
            f" {preprocessor_config}: {exc}"
        ) from exc
    if not isinstance(config, dict):
        raise ModelUnavailable(
            f"the preprocessor config {preprocessor_config} of model {model_name!r} is not a"
            " JSON object."
        )
    from ..preprocess import ImageProcessorSpec

    try:
        return ImageProcessorSpec.from_hf_config(config)
    except LookalikeError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelUnavailable(
            f"the preprocessor config {preprocessor_config} of model {model_name!r} is not"
            f" usable: {exc}"
        ) from exc


def pool_output(out: np.ndarray, pooling: str) -> np.ndarray:
    """Reduce a model output to (batch, dim): "cls" takes token 0, "mean" averages tokens,
    "none" keeps it (squeezing trailing size-1 axes, as in (N, C, 1, 1) CNN features)."""
    if pooling == "cls":
        if out.ndim != 3:
            raise ModelUnavailable(
                f"CLS pooling needs a (batch, tokens, dim) output, got shape {out.shape}"
            )
        return out[:, 0, :]
    if pooling == "mean":
        if out.ndim != 3:
            raise ModelUnavailable(
                f"mean pooling needs a (batch, tokens, dim) output, got shape {out.shape}"
            )
        return out.mean(axis=1)
    if out.ndim > 2 and all(size == 1 for size in out.shape[2:]):
        return out.reshape(out.shape[0], -1)
    return out


def probe_output_shapes(
    session: onnxruntime.InferenceSession, sample: np.ndarray
) -> dict[str, tuple[int, ...]]:
    """Run ``sample`` (one prepared image, (3, H, W)) through the model; return every
    output's actual shape. Used when the graph declares symbolic sizes."""
    name = session.get_inputs()[0].name
    dtype = INPUT_DTYPES.get(session.get_inputs()[0].type, np.dtype(np.float32))
    batch = np.ascontiguousarray(sample[None], dtype=dtype)
    try:
        outputs = session.run(None, {name: batch})
    except Exception as exc:
        raise ModelUnavailable(
            f"a test inference with an input of shape {batch.shape} failed: {ort_message(exc)}"
        ) from exc
    return {
        meta.name: tuple(np.asarray(value).shape)
        for meta, value in zip(session.get_outputs(), outputs, strict=True)
    }


class OnnxEmbedder(Embedder):
    """An ONNX image model run by onnxruntime.

    ``resolver`` returns the model's files (it may download them) and is called once, on
    first use. ``preprocessor_resolver`` (optional) returns only the preprocessor config,
    so ``preparer()`` works without fetching the weights. When ``spec`` is None (a local
    folder whose output size is read from the graph), ``spec_builder`` makes it once the
    session is open; reading ``spec``/``dim``/``name`` then loads the model.

    ``source`` is a stable description of where the model comes from (recorded in
    ``identity()``); ``fix_hint`` is appended to load errors (how to repair the files).
    """

    def __init__(
        self,
        spec: ModelSpec | None,
        resolver: Callable[[], ModelFiles],
        *,
        threads: int | None = None,
        preprocessor_resolver: Callable[[], Path | None] | None = None,
        spec_builder: SpecBuilder | None = None,
        source: str = "",
        fix_hint: str = "",
        device: str | None = None,
    ) -> None:
        # Embedder.__init__ only stores the spec; ours may not be known yet, so it lives
        # behind the ``spec`` property instead.
        if spec is None and spec_builder is None:
            raise ValueError("OnnxEmbedder needs a spec or a spec_builder")
        if threads is not None and threads < 1:
            raise InvalidInput(f"threads must be at least 1, got {threads}")
        self._spec = spec
        self._resolver = resolver
        self._preprocessor_resolver = preprocessor_resolver
        self._spec_builder = spec_builder
        self._threads = threads
        self._source = source
        self._fix_hint = fix_hint
        self._lock = threading.RLock()
        self._files: ModelFiles | None = None
        self._session: onnxruntime.InferenceSession | None = None
        self._preparer: Preparer | None = None
        self._input_name = ""
        self._input_dtype: np.dtype[Any] = np.dtype(np.float32)
        self._input_hw: tuple[int | None, int | None] = (None, None)
        self._output_name = ""
        self._device_spec = device  # None: the process default, LOOKALIKE_DEVICE, else auto
        self._device: Device | None = None
        self._runner: Any = None  # a GPU runner (OrtCudaRunner / TorchRunner) or None
        self._parity_pending = False

    # -- spec --------------------------------------------------------------------------

    @property
    def spec(self) -> ModelSpec:
        if self._spec is None:
            self.load()
        assert self._spec is not None
        return self._spec

    @spec.setter
    def spec(self, value: ModelSpec) -> None:
        self._spec = value

    @property
    def loaded(self) -> bool:
        """Whether the onnxruntime session exists (the weights are in memory)."""
        return self._session is not None

    @property
    def threads(self) -> int | None:
        return self._threads

    @property
    def files(self) -> ModelFiles:
        """The resolved model files (resolving, possibly downloading, them if needed)."""
        with self._lock:
            if self._files is None:
                self._files = self._resolver()
            return self._files

    @property
    def output_name(self) -> str:
        """The ONNX output used as the embedding (loads the model)."""
        self.load()
        return self._output_name

    @property
    def source(self) -> str:
        """Where the model comes from; after loading, includes the hub commit."""
        if self._files is not None:
            return self._files.source
        return self._source

    def identity(self) -> dict[str, Any]:
        """name + dim + metric (what collections compare) and the stable model ``source``."""
        ident = super().identity()
        if self._source:
            ident["source"] = self._source
        return ident

    # -- loading -----------------------------------------------------------------------

    def load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            files = self.files
            from ..device import resolve_device

            device = resolve_device(self._device_spec)
            session = create_session(
                files.model_path,
                threads=self._threads,
                fix_hint=self._fix_hint,
                device=device if device.backend == "onnxruntime" else None,
            )
            name, dtype, shape = check_image_input(session, files.model_path)
            if self._spec is None:
                assert self._spec_builder is not None
                self._spec = self._spec_builder(files, session)
            spec = self._spec
            outputs = [o.name for o in session.get_outputs()]
            if spec.output is None:
                output = outputs[0]
            elif spec.output in outputs:
                output = spec.output
            else:
                raise ModelUnavailable(
                    f"model {spec.name!r} ({files.model_path}) has no output {spec.output!r};"
                    f" its outputs are: {', '.join(outputs)}."
                )
            self._input_name = name
            self._input_dtype = dtype
            height, width = shape[2], shape[3]
            self._input_hw = (
                height if isinstance(height, int) else None,
                width if isinstance(width, int) else None,
            )
            self._output_name = output
            self._runner = self._gpu_runner(device, session, files.model_path, output)
            self._device = device
            self._session = session
            logger.info("loaded model %s from %s on %s", spec.name, files.source, device.describe())

    def _gpu_runner(self, device: Device, session: Any, model_path: Path, output: str) -> Any:
        """The runner that feeds ``device``'s GPU, or None on the CPU."""
        if not device.is_cuda:
            return None
        from ..torch_backend import OrtCudaRunner, TorchRunner

        if device.backend == "onnxruntime":
            return OrtCudaRunner(session, output=output, device_id=device.index or 0)
        runner = TorchRunner(model_path, output=output, device=device.torch_device)
        runner.load()
        self._parity_pending = True  # checked against onnxruntime on the first batch
        return runner

    @property
    def device(self) -> Device | None:
        """Where the model runs, once loaded."""
        return self._device

    def preparer(self) -> Preparer:
        with self._lock:
            if self._preparer is None:
                if self._preprocessor_resolver is not None:
                    path = self._preprocessor_resolver()
                else:
                    path = self.files.preprocessor_config
                label = self._spec.name if self._spec is not None else self._source
                self._preparer = load_preparer(path, label)
            return self._preparer

    # -- inference ---------------------------------------------------------------------

    def _embed_batch(self, batch: np.ndarray) -> np.ndarray:
        self.load()
        session = self._session
        assert session is not None
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise InvalidInput(
                f"expected a batch of prepared images (N, 3, H, W), got shape {batch.shape}"
            )
        self._check_size(batch.shape[2], batch.shape[3])
        x = np.ascontiguousarray(batch, dtype=self._input_dtype)
        if self._runner is not None:
            return pool_output(self._run_gpu(session, x), self.spec.pooling)
        try:
            (out,) = session.run([self._output_name], {self._input_name: x})
        except Exception as exc:
            raise ModelUnavailable(
                f"model {self.name!r} failed on a batch of shape {x.shape}: {ort_message(exc)}"
            ) from exc
        return pool_output(np.asarray(out), self.spec.pooling)

    def _run_gpu(self, session: Any, x: np.ndarray) -> np.ndarray:
        if self._parity_pending:
            from ..torch_backend import check_parity

            with self._lock:
                if self._parity_pending:
                    check_parity(self._runner, session, x[:4], output=self._output_name)
                    self._parity_pending = False
        return np.asarray(self._runner.run(x))

    def _check_size(self, height: int, width: int) -> None:
        want = self._input_hw
        if (want[0] is not None and want[0] != height) or (
            want[1] is not None and want[1] != width
        ):
            raise ModelUnavailable(
                f"model {self.name!r} expects {want[0]}x{want[1]} images but its preprocessor"
                f" config produces {height}x{width}; fix crop_size/size in"
                " preprocessor_config.json."
            )

    def __repr__(self) -> str:
        label = self._spec.name if self._spec is not None else self._source
        return f"OnnxEmbedder({label!r}, loaded={self.loaded})"
