"""Building one index from the stored vectors: create the FAISS structure with the
collection's knobs, add every live vector, then tune the search knob to the recall target
(or, when the user set it, measure the recall it gives) on a held-out sample."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .base import VectorStore
from .flat import FlatStore
from .planning import ADD_CHUNK, HNSW_EF_CONSTRUCTION, HNSW_M, SAMPLE_SIZE
from .settings import KNOBS, target_of

log = logging.getLogger(__name__)

Rows = Callable[[np.ndarray], np.ndarray]

# the settings name of each type's search knob (the one the tuner sets)
SEARCH_KNOB = {"hnsw": "ef_search", "ivf-sq8": "nprobe", "ivf-pq": "nprobe"}


def build_index(
    kind: str,
    dim: int,
    binary: bool,
    slots: np.ndarray,
    rows: Rows,
    read_any: Rows,
    settings: dict[str, Any],
) -> tuple[VectorStore, dict[str, Any]]:
    """A fresh index of the vectors of ``slots``, tuned and measured. The measurements
    (``params``, ``recall_at_10``, ``latency_ms``...) come back with ``notes`` and
    ``warnings`` for the user."""
    from .tuning import Sample, latency_ms, tune

    started = time.perf_counter()
    if kind == "flat":
        flat = FlatStore(dim, binary)
        flat.add(slots, read_any(slots))
        measured: dict[str, Any] = {"recall_at_10": 1.0, "params": {}}
        if len(slots):
            rng = np.random.default_rng(0)
            q = read_any(rng.choice(slots, min(100, len(slots)), replace=False))
            measured["latency_ms"] = latency_ms(flat, q, n=100)
        measured["build_seconds"] = round(time.perf_counter() - started, 3)
        return flat, measured
    knobs: dict[str, int] = settings["knobs"]
    target = target_of(settings)
    notes: list[str] = []
    store = new_ann(kind, dim, slots, rows, knobs, notes)
    for start in range(0, len(slots), ADD_CHUNK):
        part = slots[start : start + ADD_CHUNK]
        store.add(part, rows(part))
    sample = Sample.draw(rows, slots, SAMPLE_SIZE)
    given = SEARCH_KNOB.get(kind)
    warnings: list[str] = []
    if given in knobs:
        value = knobs[str(given)]
        nlist = int(store.params.get("nlist", value))
        if store.knob == "nprobe" and value > nlist:
            notes.append(f"--nprobe {value} is more than the index's nlist: using {nlist}")
            value = nlist
        store.params[store.knob] = value
        got = sample.measure(store)
        if got < target:
            warnings.append(
                f"{kind} measures recall@10 {got:.3f} with the given {store.knob}={value}, "
                f"below the {target:g} target"
            )
    else:
        value, got = tune(store, sample, target)
        if got < target:
            warnings.append(
                f"{kind} reaches recall@10 {got:.3f} at best ({store.knob}={value}), below "
                f"the {target:g} target: give a lower --recall-target, or other build knobs"
            )
    for w in warnings:  # shown to the user through the index metadata (`info`)
        log.info("%s", w)
    measured = {
        "params": dict(store.params),
        "explicit": sorted(KNOBS[k].param for k in knobs),
        "recall_at_10": round(got, 4),
        "recall_queries": len(sample.slots),
        "latency_ms": latency_ms(store, sample.vectors),
        "build_seconds": round(time.perf_counter() - started, 3),
        "notes": notes,
        "warnings": warnings,
    }
    return store, measured


def new_ann(
    kind: str, dim: int, slots: np.ndarray, rows: Rows, knobs: dict[str, int], notes: list[str]
) -> Any:
    """An empty, trained ANN store of ``kind`` with the given build knobs."""
    from .ann import HnswStore, IvfStore, LshStore, default_nlist

    rng = np.random.default_rng(0)
    n = len(slots)
    nlist: int | None = None
    if kind in ("ivf-sq8", "ivf-pq"):
        nlist = knobs.get("nlist")
        if nlist is not None and nlist > n:
            notes.append(f"--nlist {nlist} is more than the {n} items: using nlist {n}")
            nlist = n
        n_train = min(n, max((nlist or default_nlist(n)) * 40, 10_000))
    else:
        n_train = min(n, 20_000)
    train = rows(np.sort(rng.choice(slots, n_train, replace=False)))
    if kind == "hnsw":
        m = knobs.get("hnsw_m", HNSW_M)
        efc = knobs.get("ef_construction", HNSW_EF_CONSTRUCTION)
        return HnswStore.create(dim, train, rows, m, efc)
    if kind in ("ivf-sq8", "ivf-pq"):
        return IvfStore.create(
            dim, train, rows, n, pq=kind == "ivf-pq", nlist=nlist, pq_m=knobs.get("pq_m")
        )
    return LshStore.create(dim, train, rows)
