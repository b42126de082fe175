"""What the duplicate finder reads from a collection.

The finder sits beside the facade, not above it: it takes anything with these attributes
(``lookalike.Collection`` has them), so ``collection.py`` can call into ``dedup/`` without
an import circle.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from ..store.catalog import Catalog, Item
from ..store.vectors import VectorFile


class DedupSource(Protocol):
    root: Path
    config: dict[str, Any]
    catalog: Catalog
    vectors: VectorFile
    readonly: bool

    @property
    def binary(self) -> bool: ...

    @property
    def dim(self) -> int: ...

    def pixel_hashes(self, items: Iterable[Item]) -> dict[str, bytes]: ...

    def __len__(self) -> int: ...
