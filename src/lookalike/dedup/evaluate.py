"""Measuring a duplicate finder against a ground truth: pair and group precision/recall/F1.

Ground truth files
------------------
CSV with a header row and the columns ``path`` (or ``id``), ``group`` and optionally
``edit``. Rows with the same non-empty ``group`` are duplicates of one another; a row with
an empty ``group`` is an item with no duplicate (a distractor). ``edit`` names how the item
was made (``original``, ``resize``, ``flip``...); per-edit figures are reported when it is
present. Relative paths are relative to the CSV's folder. JSON is accepted too: a list of
groups, each a list of paths (or ids).

Predictions are the groups from the finder, or a file written by
``lookalike duplicates --out`` (CSV or JSON). Items are matched on resolved paths (or ids
when the ground truth has an ``id`` column instead of ``path``).

Metrics
-------
*Pairs*: a predicted pair is two items in the same predicted group (groups are connected
components, so a group of n gives n(n-1)/2 pairs); precision = true predicted pairs /
predicted pairs, recall = true predicted pairs / true pairs. Counted per group (no pair is
enumerated), so it scales to large groups. Per edit ``e``: when the ground truth marks
originals (``edit`` = ``original``), the pairs (copy made by ``e``, an original), i.e. recall
is the share of ``e`` copies put in their original's group and precision the share of
(``e`` item, original) pairs put together that are right; otherwise all pairs with at least
one member whose edit is ``e``.

*Groups*: a true group (2+ items) is found when a predicted group has exactly its members;
precision = found / predicted groups, recall = found / true groups.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from .finder import Group


@dataclass
class Truth:
    key: str  # "path" or "id"
    group: dict[str, str | None]  # item -> group name (None: no duplicates)
    edit: dict[str, str] = field(default_factory=dict)


@dataclass
class PRF:
    tp: int
    predicted: int
    actual: int

    @property
    def precision(self) -> float | None:
        return self.tp / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.tp / self.actual if self.actual else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict[str, Any]:
        def rnd(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            "precision": rnd(self.precision),
            "recall": rnd(self.recall),
            "f1": rnd(self.f1),
            "true_positives": self.tp,
            "predicted": self.predicted,
            "actual": self.actual,
        }


def _norm_path(p: str, base: Path) -> str:
    path = Path(p)
    if not path.is_absolute():
        path = base / path
    return str(path.resolve())


def read_ground_truth(path: str | Path) -> Truth:
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"ground truth {p} does not exist")
    base = p.parent
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"ground truth {p} is not readable JSON: {exc}") from None
        if isinstance(data, dict):
            data = data.get("groups")
        if not isinstance(data, list) or not all(isinstance(g, list) for g in data):
            raise InvalidInput(f"ground truth {p}: expected a JSON list of groups (lists)")
        groups: dict[str, str | None] = {}
        for n, g in enumerate(data):
            for item in g:
                groups[_norm_path(str(item), base)] = f"g{n}" if len(g) > 1 else None
        return Truth("path", groups)
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"ground truth {p} is not a readable CSV: {exc}") from None
    if not rows:
        raise InvalidInput(f"ground truth {p} has no rows")
    cols = set(rows[0])
    key = "path" if "path" in cols else "id" if "id" in cols else None
    if key is None or "group" not in cols:
        raise InvalidInput(f"ground truth {p} needs a 'path' (or 'id') column and a 'group' column")
    truth = Truth(key, {})
    for row in rows:
        item = row[key] or ""
        if not item:
            continue
        k = _norm_path(item, base) if key == "path" else item
        truth.group[k] = (row.get("group") or "").strip() or None
        if row.get("edit"):
            truth.edit[k] = row["edit"].strip()
    return truth


def groups_from_finder(groups: Sequence[Group], key: str) -> list[list[str]]:
    out = []
    for g in groups:
        if key == "path":
            out.append([str(Path(m.path).resolve()) for m in g.members if m.path])
        else:
            out.append([m.id for m in g.members])
    return out


def read_predictions(path: str | Path, key: str) -> list[list[str]]:
    """Groups from a file written by ``lookalike duplicates --out``."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"predictions {p} do not exist")
    base = p.parent

    def norm(v: str) -> str:
        return _norm_path(v, base) if key == "path" else v

    try:
        if p.suffix.lower() == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
            return [
                [norm(m[key]) for m in [g["keeper"], *g["duplicates"]] if m.get(key)] for g in data
            ]
        with open(p, newline="", encoding="utf-8") as fh:
            by_group: dict[str, list[str]] = {}
            for row in csv.DictReader(fh):
                if row.get(key):
                    by_group.setdefault(row["group"], []).append(norm(row[key]))
        return list(by_group.values())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"predictions {p} are not a duplicates --out file: {exc}") from None


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _pairs_with(sizes: Iterable[tuple[int, int]]) -> int:
    """Pairs with at least one marked member, for clusters of (size, marked)."""
    return sum(_pairs(n) - _pairs(n - k) for n, k in sizes)


def evaluate(predicted: Sequence[Sequence[str]], truth: Truth) -> dict[str, Any]:
    """Pair and group precision/recall/F1, overall and per edit (see the module docs)."""
    pred_of: dict[str, int] = {}
    for n, g in enumerate(predicted):
        for item in g:
            pred_of[item] = n
    universe = set(truth.group) | set(pred_of)
    true_of: dict[str, str] = {}
    for item in universe:
        name = truth.group.get(item)
        true_of[item] = name if name is not None else f"\0single:{item}"
        pred_of.setdefault(item, -1 - len(pred_of))  # unpredicted items are singletons

    edits = sorted({truth.edit[i] for i in universe if i in truth.edit})
    clusters: dict[str, Counter[tuple[Any, ...]]] = {"pred": Counter(), "true": Counter()}
    cells: Counter[tuple[Any, ...]] = Counter()
    marked: dict[str, dict[str, Counter[Any]]] = {
        e: {"pred": Counter(), "true": Counter(), "cell": Counter()} for e in edits
    }
    for item in universe:
        p, t = pred_of[item], true_of[item]
        clusters["pred"][(p,)] += 1
        clusters["true"][(t,)] += 1
        cells[(p, t)] += 1
        e = truth.edit.get(item)
        if e is not None:
            marked[e]["pred"][(p,)] += 1
            marked[e]["true"][(t,)] += 1
            marked[e]["cell"][(p, t)] += 1

    pairs = PRF(
        sum(_pairs(n) for n in cells.values()),
        sum(_pairs(n) for n in clusters["pred"].values()),
        sum(_pairs(n) for n in clusters["true"].values()),
    )
    per_edit: dict[str, PRF] = {}
    if "original" in edits:
        # pairs (copy made by edit e, its original): does the finder put each copy with it?
        orig = marked["original"]
        for e in edits:
            if e == "original":
                continue
            m = marked[e]
            per_edit[e] = PRF(
                sum(k * orig["cell"][c] for c, k in m["cell"].items()),
                sum(k * orig["pred"][c] for c, k in m["pred"].items()),
                sum(k * orig["true"][c] for c, k in m["true"].items()),
            )
    else:
        for e in edits:
            m = marked[e]
            per_edit[e] = PRF(
                _pairs_with((cells[c], k) for c, k in m["cell"].items()),
                _pairs_with((clusters["pred"][c], k) for c, k in m["pred"].items()),
                _pairs_with((clusters["true"][c], k) for c, k in m["true"].items()),
            )

    true_groups: dict[str, set[str]] = {}
    for item, name in truth.group.items():
        if name is not None:
            true_groups.setdefault(name, set()).add(item)
    true_sets = {frozenset(s) for s in true_groups.values() if len(s) > 1}
    pred_sets = {frozenset(g) for g in predicted if len(set(g)) > 1}
    found = len(true_sets & pred_sets)
    return {
        "items": len(universe),
        "pairs": pairs,
        "groups": PRF(found, len(pred_sets), len(true_sets)),
        "per_edit": per_edit,
    }


def report_to_dict(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "items": result["items"],
        "pairs": result["pairs"].to_dict(),
        "groups": result["groups"].to_dict(),
        "per_edit": {e: prf.to_dict() for e, prf in result["per_edit"].items()},
    }


def format_table(result: dict[str, Any]) -> str:
    def f(x: float | None) -> str:
        return "   -  " if x is None else f"{x:6.3f}"

    lines = [f"{'':<28} {'prec':>6} {'recall':>6} {'F1':>6}  {'true pairs':>10}"]
    rows = [("pairs (all)", result["pairs"]), ("groups (exact match)", result["groups"])]
    rows += [(f"  edit: {e}", prf) for e, prf in result["per_edit"].items()]
    for name, prf in rows:
        lines.append(f"{name:<22} {f(prf.precision)} {f(prf.recall)} {f(prf.f1)}  {prf.actual:>8}")
    return "\n".join(lines)
