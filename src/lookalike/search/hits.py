"""The result of a search: one ranked item, and the one shape every surface shows it in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The hit shape, in order: the same keys in `search --json`, `neighbors --json`, the
# `neighbors --all` table, `search --out`, the HTTP API and ``Hit.to_dict()``. ``path`` is a
# local file path, so it is shown by the command line and Python only, never over HTTP.
HIT_KEYS = ("rank", "id", "score", "label", "metadata", "url", "path")
PUBLIC_HIT_KEYS = HIT_KEYS[:-1]


@dataclass
class Hit:
    rank: int
    id: str
    score: float
    path: str | None
    label: str | None
    url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, include_path: bool = True) -> dict[str, Any]:
        """The hit shape: ``rank``, ``id``, ``score`` (rounded to 6 places), ``label``,
        ``metadata`` (the manifest's other columns), ``url`` (the item's source URL, if any)
        and, with ``include_path``, ``path`` (the local file)."""
        out: dict[str, Any] = {
            "rank": self.rank,
            "id": self.id,
            "score": round(float(self.score), 6),
            "label": self.label,
            "metadata": self.metadata,
            "url": self.url,
        }
        if include_path:
            out["path"] = self.path
        return out
