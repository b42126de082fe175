"""lookalike: visual similarity search for image collections.

Importing this package is cheap: models, FAISS and onnxruntime load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Collection", "Hit", "__version__"]

if TYPE_CHECKING:
    from .collection import Collection, Hit


def __getattr__(name: str) -> Any:
    if name in ("Collection", "Hit"):
        from . import collection

        return getattr(collection, name)
    raise AttributeError(f"module 'lookalike' has no attribute {name!r}")
