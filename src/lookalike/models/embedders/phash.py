"""The "phash" model: a weight-free 64-bit perceptual hash searched by Hamming distance."""

from __future__ import annotations

import numpy as np

from ...errors import InvalidInput, ModelUnavailable
from ..phash import HASH_BYTES, PhashPreparer
from ..registry import MODELS, ModelSpec
from .base import Embedder

__all__ = ["PhashEmbedder"]


class PhashEmbedder(Embedder):
    """All the work happens in the preparer (which runs in the decode workers); embedding
    just stacks the packed hashes: rows of ``uint8[8]``."""

    def __init__(self, spec: ModelSpec | None = None) -> None:
        spec = MODELS["phash"] if spec is None else spec
        if spec.kind != "phash" or spec.dim != HASH_BYTES * 8 or not spec.binary:
            raise ModelUnavailable(
                f"model {spec.name!r} is not a {HASH_BYTES * 8}-bit perceptual hash model"
            )
        super().__init__(spec)

    def preparer(self) -> PhashPreparer:
        return PhashPreparer()

    def _embed_batch(self, batch: np.ndarray) -> np.ndarray:
        if batch.ndim != 2 or batch.shape[1] != HASH_BYTES or batch.dtype != np.uint8:
            raise InvalidInput(
                f"phash inputs must be uint8 rows of {HASH_BYTES} bytes, "
                f"got {batch.dtype} array of shape {tuple(batch.shape)}"
            )
        return batch
