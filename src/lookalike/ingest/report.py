"""What one indexing run writes to (``Target``: a ``Collection`` is one) and what it
reports (``IndexReport``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..models.embedders.base import Embedder
from ..store.catalog import Catalog
from ..store.indexes import IndexManager
from ..store.vectors import VectorFile


class Target(Protocol):
    """What the indexer writes to (a ``Collection`` is one)."""

    root: Path
    catalog: Catalog
    vectors: VectorFile
    index: IndexManager
    embedder: Embedder


@dataclass
class IndexReport:
    indexed: int = 0
    unchanged: int = 0
    renamed: int = 0
    removed: int = 0
    skipped: int = 0
    skipped_files: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: wall seconds per phase: ``scan`` (listing, downloading, classifying files), ``model``
    #: (loading it), ``embed`` (decoding, embedding and committing the new files), ``index``
    #: (removals and the index update)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The counts (``index --json`` adds ``seconds``)."""
        return {
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "renamed": self.renamed,
            "removed": self.removed,
            "skipped": self.skipped,
        }
