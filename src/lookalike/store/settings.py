"""The index settings a collection remembers (``index/settings.json``): the requested index
type, the memory budget, the recall target of the tuner, and explicit knobs.

A knob given explicitly is used as given (never tuned); the others are chosen (build
parameters) or tuned to the recall target (the search knob). Each knob applies to some index
types only; asking for one that does not apply to the requested type is an error, and
switching the type drops the knobs of the old one (with a note).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from . import planning
from .planning import INDEX_TYPES, write_json_atomic

IVF = ("ivf-sq8", "ivf-pq")
AUTO = "auto"  # a knob value that forgets an explicit setting (back to chosen / tuned)


@dataclass(frozen=True)
class Knob:
    param: str  # its name in the store's params (info --json: index.params)
    kinds: tuple[str, ...]  # the index types it applies to
    low: int
    high: int
    flag: str  # the CLI option
    search: bool  # a search-time knob (the one the tuner would set) or a build parameter


KNOBS: dict[str, Knob] = {
    "hnsw_m": Knob("M", ("hnsw",), 2, 256, "--hnsw-m", False),
    "ef_construction": Knob("ef_construction", ("hnsw",), 1, 32768, "--ef-construction", False),
    "ef_search": Knob("ef", ("hnsw",), 1, 32768, "--ef-search", True),
    "nlist": Knob("nlist", IVF, 1, 65536, "--nlist", False),
    "nprobe": Knob("nprobe", IVF, 1, 65536, "--nprobe", True),
    "pq_m": Knob("pq_m", ("ivf-pq",), 1, 4096, "--pq-m", False),
}


def _kinds(knob: Knob) -> str:
    return "/".join(knob.kinds)


def default_settings() -> dict[str, Any]:
    """``recall_target`` None: the default, :data:`planning.RECALL_TARGET`."""
    return {"requested": AUTO, "max_memory": None, "recall_target": None, "knobs": {}}


def target_of(settings: dict[str, Any]) -> float:
    """The recall@10 the tuner aims for: the collection's own, or the default."""
    value = settings.get("recall_target")
    return float(value) if value is not None else float(planning.RECALL_TARGET)


def read_settings(path: Path) -> dict[str, Any]:
    """The stored settings, defaults for anything missing or unreadable."""
    out = default_settings()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return out
    if not isinstance(data, dict) or data.get("requested") not in INDEX_TYPES:
        return out
    out["requested"] = data["requested"]
    if isinstance(data.get("max_memory"), int):
        out["max_memory"] = data["max_memory"]
    target = data.get("recall_target")
    if isinstance(target, (int, float)) and 0 < target <= 1:
        out["recall_target"] = float(target)
    knobs = data.get("knobs")
    if isinstance(knobs, dict):
        out["knobs"] = {
            k: int(v)
            for k, v in knobs.items()
            if k in KNOBS and isinstance(v, int) and out["requested"] in KNOBS[k].kinds
        }
    return out


def write_settings(path: Path, settings: dict[str, Any]) -> None:
    path.parent.mkdir(exist_ok=True)
    write_json_atomic(path, settings)


def check_recall_target(value: float) -> float:
    if not 0 < value <= 1:
        raise InvalidInput(f"--recall-target must be above 0 and at most 1, got {value:g}")
    return float(value)


def merge_settings(
    old: dict[str, Any],
    requested: str | None,
    max_memory: int | None,
    recall_target: float | None,
    knobs: dict[str, int | str | None],
    dim: int,
) -> tuple[dict[str, Any], list[str]]:
    """The new settings (``None`` keeps a stored value, ``"auto"`` forgets a knob) and notes
    for the user. Raises :class:`InvalidInput` (one line) for a knob that does not apply to
    the requested type or is out of range."""
    if requested is not None and requested not in INDEX_TYPES:
        raise InvalidInput(
            f"unknown index type {requested!r}; choose from {', '.join(INDEX_TYPES)}"
        )
    kind = requested or old["requested"]
    notes: list[str] = []
    new_knobs = dict(old["knobs"])
    dropped = [k for k in new_knobs if kind not in KNOBS[k].kinds]
    for k in dropped:
        del new_knobs[k]
    if dropped:
        flags = ", ".join(KNOBS[k].flag for k in dropped)
        notes.append(
            f"{flags} no longer set: {'it applies' if len(dropped) == 1 else 'they apply'}"
            f" to {_kinds(KNOBS[dropped[0]])}, not {kind}"
        )
    for name, value in knobs.items():
        if value is None:
            continue
        if name not in KNOBS:
            raise InvalidInput(f"unknown index knob {name!r}; known: {', '.join(KNOBS)}")
        knob = KNOBS[name]
        if value == AUTO:
            new_knobs.pop(name, None)
            continue
        if kind not in knob.kinds:
            hint = f" (give --index {knob.kinds[0]})" if kind in (AUTO, "flat") else ""
            raise InvalidInput(f"{knob.flag} applies to {_kinds(knob)}, not {kind}{hint}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{knob.flag} must be a whole number or auto, got {value!r}")
        if not knob.low <= value <= knob.high:
            raise InvalidInput(f"{knob.flag} must be {knob.low}..{knob.high}, got {value}")
        new_knobs[name] = value
    if "pq_m" in new_knobs and dim % new_knobs["pq_m"]:
        raise InvalidInput(
            f"--pq-m must divide the vector dimension {dim}, got {new_knobs['pq_m']}"
        )
    if "nprobe" in new_knobs and "nlist" in new_knobs and new_knobs["nprobe"] > new_knobs["nlist"]:
        raise InvalidInput(
            f"--nprobe must be 1..nlist ({new_knobs['nlist']}), got {new_knobs['nprobe']}"
        )
    new = {
        "requested": kind,
        "max_memory": max_memory if max_memory is not None else old["max_memory"],
        "recall_target": (
            check_recall_target(recall_target)
            if recall_target is not None
            else old["recall_target"]
        ),
        "knobs": new_knobs,
    }
    return new, notes


def build_key(settings: dict[str, Any]) -> dict[str, Any]:
    """What an index was built from (saved in its metadata): one whose key differs from
    the current settings is rebuilt."""
    return {
        "requested": settings["requested"],
        "max_memory": settings["max_memory"],
        "recall_target": settings["recall_target"],
        "knobs": dict(sorted(settings["knobs"].items())),
    }


def describe_change(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """``"nlist 512 -> 256, recall target 0.95 -> 0.99"``, or None when nothing changed."""
    parts = []
    if old["requested"] != new["requested"]:
        parts.append(f"index {old['requested']} -> {new['requested']}")
    if old["max_memory"] != new["max_memory"]:
        parts.append(f"max memory {old['max_memory']} -> {new['max_memory']}")
    if old["recall_target"] != new["recall_target"]:
        parts.append(f"recall target {target_of(old):g} -> {target_of(new):g}")
    for name in KNOBS:
        a, b = old["knobs"].get(name), new["knobs"].get(name)
        if a != b:
            parts.append(
                f"{KNOBS[name].param} {a if a is not None else AUTO} -> "
                f"{b if b is not None else AUTO}"
            )
    return ", ".join(parts) or None


def built_from(meta: dict[str, Any]) -> dict[str, Any]:
    """The settings a saved index was built from (older indexes: type and budget only)."""
    saved = meta.get("settings")
    if isinstance(saved, dict):
        return saved
    return build_key(
        {
            "requested": meta.get("requested"),
            "max_memory": meta.get("max_memory"),
            "recall_target": None,
            "knobs": {},
        }
    )
