"""Image embedder running an ONNX model with onnxruntime (CPU).

Nothing heavy happens at import time or in the constructor: the model files are resolved
(possibly downloaded) and the ``InferenceSession`` is created on the first call to
``load()``, ``embed()`` or anything that needs the model graph. ``preparer()`` only needs
the preprocessor config and never creates the session.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import InvalidInput, ModelUnavailable
from ..registry import ModelSpec
from .base import Embedder, Preparer
from .session import (
    check_image_input,
    create_session,
    load_preparer,
    ort_message,
    pool_output,
)

if TYPE_CHECKING:
    import onnxruntime

    from ..device import Device
    from ..hub import ModelFiles

logger = logging.getLogger(__name__)


def gpu_precision() -> Any:
    """The torch path's precision: ``LOOKALIKE_GPU_PRECISION`` (fp32, tf32, fp16 or auto,
    the default; see torch_backend.TorchRunner)."""
    from ..torch_backend import PRECISIONS

    value = os.environ.get("LOOKALIKE_GPU_PRECISION", "auto").strip().lower() or "auto"
    if value not in PRECISIONS:
        raise InvalidInput(
            f"LOOKALIKE_GPU_PRECISION must be one of {', '.join(PRECISIONS)}, got {value!r}"
        )
    return value


#: What ``OnnxEmbedder`` calls to learn the spec of a model only known once its graph is
#: read (local folders): (resolved files, open session) -> spec.
SpecBuilder = Callable[["ModelFiles", "onnxruntime.InferenceSession"], ModelSpec]


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
        expose: str | None = None,
        steps: dict[str, Any] | None = None,
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
        self._expose = expose  # a tensor to expose before the spec is known (lookalike.json)
        self._steps = steps  # preprocessing step 0 from lookalike.json (grayscale, clahe)
        self.fast_resize = False  # set before the first preparer(): see ImageProcessorSpec

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
                expose=self._spec.output if self._spec is not None else self._expose,
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
        runner = TorchRunner(
            model_path, output=output, device=device.torch_device, precision=gpu_precision()
        )
        runner.load()
        self._parity_pending = True  # checked against onnxruntime on the first batch
        return runner

    @property
    def device(self) -> Device | None:
        """Where the model runs, once loaded."""
        return self._device

    @property
    def gpu_device(self) -> str | None:
        device = self._device
        return device.torch_device if device is not None and device.is_cuda else None

    def ingest_preparer(self) -> Preparer:
        """The preparer of bulk indexing (loads the model): on the torch GPU path, one that
        leaves the last step (a lookup table) to the GPU, so decode workers send back uint8
        pixels, a quarter of the float input's bytes (runners with ``run_pixels``)."""
        from ..preprocess import ImageProcessorSpec

        self.load()
        preparer = self.preparer()
        if (
            hasattr(self._runner, "run_pixels")
            and isinstance(preparer, ImageProcessorSpec)
            and self._input_dtype == np.float32
        ):
            return dataclasses.replace(preparer, defer_normalise=True)
        return preparer

    def preparer(self) -> Preparer:
        with self._lock:
            if self._preparer is None:
                if self._preprocessor_resolver is not None:
                    path = self._preprocessor_resolver()
                else:
                    path = self.files.preprocessor_config
                label = self._spec.name if self._spec is not None else self._source
                preparer = load_preparer(path, label)
                steps = self._steps
                if steps is None and self._spec is not None:
                    steps = {"grayscale": self._spec.grayscale, "clahe": self._spec.clahe}
                if self.fast_resize:
                    steps = {**(steps or {}), "fast_resize": True}
                if steps and dataclasses.is_dataclass(preparer):
                    preparer = dataclasses.replace(preparer, **steps)  # type: ignore[type-var]
                self._preparer = preparer
            return self._preparer

    # -- inference ---------------------------------------------------------------------

    def _embed_batch(self, batch: np.ndarray) -> np.ndarray:
        self.load()
        session = self._session
        assert session is not None
        if batch.dtype == np.uint8 and batch.ndim == 4 and batch.shape[3] == 3:
            return self._embed_pixels(session, batch)
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

    def _embed_pixels(self, session: Any, pixels: np.ndarray) -> np.ndarray:
        """A batch from :meth:`ingest_preparer`: (N, H, W, 3) uint8, normalised on the GPU."""
        from ..preprocess import ImageProcessorSpec

        preparer = self.preparer()
        if not isinstance(preparer, ImageProcessorSpec) or self._runner is None:
            raise InvalidInput("uint8 pixel batches need the torch GPU path")
        self._check_size(pixels.shape[1], pixels.shape[2])
        table = preparer.lookup_table()
        if self._parity_pending:
            sample = np.stack([preparer.normalise(p) for p in pixels[:4]])
            self._check_parity(session, sample, (pixels[:4], table))
        return pool_output(np.asarray(self._runner.run_pixels(pixels, table)), self.spec.pooling)

    def _run_gpu(self, session: Any, x: np.ndarray) -> np.ndarray:
        if self._parity_pending:
            self._check_parity(session, x[:4])
        return np.asarray(self._runner.run(x))

    def _check_parity(self, session: Any, sample: np.ndarray, pixels: Any = None) -> None:
        """The torch path's first batch against onnxruntime on the CPU; a runner in reduced
        precision that fails it falls back to fp32 and is checked again."""
        from ..torch_backend import check_parity

        with self._lock:
            while self._parity_pending:
                try:
                    check_parity(
                        self._runner, session, sample, output=self._output_name, pixels=pixels
                    )
                except ModelUnavailable:
                    fall_back = getattr(self._runner, "fall_back", None)
                    if fall_back is None or not fall_back():
                        raise
                    continue
                self._parity_pending = False

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
