"""The torch path's self-check: its vectors against onnxruntime's on the CPU.

Float graphs must agree within a max absolute difference of the L2-normalised vectors;
rewritten quantized graphs by cosine (see :func:`check_parity`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelUnavailable

if TYPE_CHECKING:
    import onnxruntime


def _normalized_rows(values: np.ndarray) -> np.ndarray:
    rows = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return rows / norms


def max_normalized_diff(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Largest absolute difference between the L2-normalised rows of two outputs (what
    lookalike stores). 1e-3 is the tolerance the GPU paths are held to in fp32."""
    if np.shape(reference) != np.shape(candidate):
        raise ValueError(f"shapes differ: {np.shape(reference)} vs {np.shape(candidate)}")
    return float(np.max(np.abs(_normalized_rows(reference) - _normalized_rows(candidate))))


def cosine_similarities(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two outputs."""
    return np.sum(_normalized_rows(reference) * _normalized_rows(candidate), axis=1)


# -- the torch runner ----------------------------------------------------------------------


def check_parity(
    runner: Any,
    session: onnxruntime.InferenceSession,
    sample: np.ndarray,
    *,
    output: str | None = None,
    tolerance: float = 1e-3,
    min_cosine: float = 0.99,
    pixels: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[float, float]:
    """Run ``sample`` through ``runner`` and a reference onnxruntime ``session`` (CPU);
    return (:func:`max_normalized_diff`, smallest cosine). For a load-time self-check of
    the torch path on the first real batch.

    Float graphs must agree within ``tolerance`` (max abs difference of the normalised
    vectors). Rewritten quantized graphs (``runner.rewrote_qdq``) cannot: one rounding
    step flipped anywhere moves the vector by ~1e-2, so they are held to ``min_cosine``
    instead. Raises ``ModelUnavailable`` on failure (NaN included). ``pixels`` = (uint8
    pixels, lookup table): the runner is given these (``run_pixels``) instead of ``sample``,
    which must be their normalised input.
    """
    name = output or getattr(runner, "output_name", None) or session.get_outputs()[0].name
    first = session.get_inputs()[0]
    dtype = np.float16 if first.type == "tensor(float16)" else np.float32
    (reference,) = session.run([name], {first.name: np.asarray(sample, dtype=dtype)})
    got = runner.run(sample) if pixels is None else runner.run_pixels(*pixels)
    diff = max_normalized_diff(np.asarray(reference), got)
    cosine = float(np.min(cosine_similarities(np.asarray(reference), got)))
    if getattr(runner, "rewrote_qdq", False):
        ok, shown = cosine >= min_cosine, f"a cosine of {cosine:.4f} (minimum {min_cosine:g})"
    else:
        ok, shown = diff <= tolerance, f"{diff:.2e} (tolerance {tolerance:g})"
    if not ok:  # NaN fails both comparisons
        raise ModelUnavailable(
            f"the GPU path's vectors differ from onnxruntime's on the CPU by {shown};"
            " use --device cpu, or onnxruntime-gpu"
        )
    return diff, cosine
