"""The embedder interface. Backends implement ``_embed_batch``; batching and normalisation live here."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..registry import ModelSpec

if TYPE_CHECKING:
    from PIL import Image


class Preparer(Protocol):
    """Turns a decoded RGB image into one model input (no batch axis).

    Preparers are small picklable objects: they run in decode worker processes and must
    never load model weights.
    """

    def __call__(self, image: Image.Image) -> np.ndarray: ...

    def draft_size(self) -> tuple[int, int] | None:
        """Smallest (width, height) the decoder may scale a JPEG down to (DCT scaling)
        without changing what this preparer produces more than documented; None: no hint."""
        ...


class Embedder(ABC):
    """An image embedding model.

    ``embed`` takes prepared inputs (from ``preparer()``) and returns one row per input:
    float32 unit vectors for cosine models, packed uint8 bits for Hamming models.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def binary(self) -> bool:
        return self.spec.binary

    @property
    def row_dtype(self) -> np.dtype[Any]:
        return np.dtype(np.uint8) if self.binary else np.dtype(np.float32)

    @property
    def row_width(self) -> int:
        """Number of ``row_dtype`` elements in one stored vector."""
        return self.dim // 8 if self.binary else self.dim

    def identity(self) -> dict[str, Any]:
        """What a collection records to refuse queries from a different model."""
        return {"name": self.name, "dim": self.dim, "metric": self.spec.metric}

    @abstractmethod
    def preparer(self) -> Preparer:
        """The picklable function turning an RGB image into this model's input."""

    @property
    def gpu_device(self) -> str | None:
        """The GPU the model runs on (a torch device string, ``"cuda:0"``), known once
        loaded; None on the CPU."""
        return None

    @property
    def runs_on_gpu(self) -> bool:
        """Whether the model runs on a GPU: decoding then has every CPU core to itself."""
        return self.gpu_device is not None

    def ingest_preparer(self) -> Preparer:
        """The preparer of bulk indexing; its outputs go to ``embed`` as they are. Embedders
        that finish the preparation on their device override it (may load the model)."""
        return self.preparer()

    @abstractmethod
    def _embed_batch(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on a stacked batch; return (len(batch), dim) raw outputs
        (or packed bits for binary models)."""

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load weights now instead of on first use (lets the CLI report problems early)."""

    def embed(
        self, inputs: Sequence[np.ndarray] | Iterable[np.ndarray], batch_size: int = 32
    ) -> np.ndarray:
        rows: list[np.ndarray] = []
        batch: list[np.ndarray] = []
        for item in inputs:
            batch.append(item)
            if len(batch) >= batch_size:
                rows.append(self._finish(self._embed_batch(np.stack(batch))))
                batch = []
        if batch:
            rows.append(self._finish(self._embed_batch(np.stack(batch))))
        if not rows:
            return np.zeros((0, self.row_width), dtype=self.row_dtype)
        return np.concatenate(rows, axis=0)

    def _finish(self, out: np.ndarray) -> np.ndarray:
        if self.binary:
            return np.ascontiguousarray(out, dtype=np.uint8)
        out = np.asarray(out, dtype=np.float32)
        if out.ndim != 2 or out.shape[1] != self.dim:
            from ...errors import ModelUnavailable

            raise ModelUnavailable(
                f"model {self.name!r} returned shape {tuple(out.shape)}, expected (batch, {self.dim})"
            )
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return np.ascontiguousarray(out / norms, dtype=np.float32)
