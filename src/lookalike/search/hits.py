"""The result of a search: one ranked item."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Hit:
    rank: int
    id: str
    score: float
    path: str | None
    label: str | None
    url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "id": self.id,
            "path": self.path,
            "score": round(float(self.score), 6),
            "label": self.label,
            "url": self.url,
            "metadata": self.metadata,
        }
