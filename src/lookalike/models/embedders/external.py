"""A stand-in embedder for collections of precomputed vectors (``Collection.open_vectors``).

It knows the vectors' dimension and metric but has no model: image queries are refused
with a clear message; ``id:`` and vector queries work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import InvalidInput
from ..registry import Metric, ModelSpec
from .base import Embedder

if TYPE_CHECKING:
    from PIL import Image


class _NoPreparer:
    def __call__(self, image: Image.Image) -> np.ndarray:
        raise InvalidInput("this collection holds precomputed vectors and has no image model")

    def draft_size(self) -> tuple[int, int] | None:
        return None


class ExternalEmbedder(Embedder):
    def __init__(self, name: str, dim: int, metric: Metric) -> None:
        super().__init__(
            ModelSpec(name=name, kind="onnx", dim=dim, metric=metric, preprocessor_file=None)
        )

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "kind": "external"}

    def preparer(self) -> _NoPreparer:
        return _NoPreparer()

    def _embed_batch(self, batch: np.ndarray) -> np.ndarray:
        raise InvalidInput(
            f"collection model {self.name!r} holds precomputed vectors; query it by id: or by vector"
        )
