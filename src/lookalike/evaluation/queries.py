"""The queries of a retrieval evaluation and what is relevant to each.

Queries are held-out images (a folder; each image's label is its parent folder's name, its
name is its path relative to the folder, e.g. ``dress/0a1b.jpg``) or items of the collection
left out one at a time (named by their id; the item itself is never among its results nor
counted relevant).

Relevance comes from labels (an item is relevant when its label is the query's) or from a
ground-truth file naming each query's relevant item ids:

* JSON: an object ``{"QUERY": ["ID", ...], ...}``;
* CSV: a header row with the columns ``query`` and ``relevant_id``, one row per (query,
  relevant item); a query with several relevant items has several rows.

QUERY is a query name as above: the image's path relative to ``--queries DIR``, or an item id
(leave-one-out queries). Every id must be in the evaluated collection(s).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidInput, SourceError


@dataclass(frozen=True)
class RetrievalQuery:
    """One query: a held-out image (``path``) or a stored item left out (``item_id``)."""

    name: str
    label: str | None
    path: Path | None = None
    item_id: str | None = None


Truth = dict[str, set[str]]


def read_truth(path: str | os.PathLike[str]) -> Truth:
    """A ground-truth file (JSON object or CSV ``query,relevant_id``) as query -> ids."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"--truth {p}: no such file")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"--truth {p}: cannot read it ({exc})") from None
    if p.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"--truth {p}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or not all(
            isinstance(v, list) and all(isinstance(i, str) for i in v) for v in data.values()
        ):
            raise InvalidInput(f'--truth {p}: expected a JSON object {{"query": ["id", ...]}}')
        return {str(q): set(ids) for q, ids in data.items()}
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or not {"query", "relevant_id"} <= set(reader.fieldnames):
        raise InvalidInput(f"--truth {p}: a CSV needs the header columns query,relevant_id")
    truth: Truth = {}
    for line, row in enumerate(reader, 2):
        query, item = (row.get("query") or "").strip(), (row.get("relevant_id") or "").strip()
        if not query:
            raise InvalidInput(f"--truth {p}: line {line} has no query")
        truth.setdefault(query, set())
        if item:
            truth[query].add(item)
    return truth


def folder_queries(directory: str | os.PathLike[str]) -> list[RetrievalQuery]:
    """Every image under ``directory`` (recursively), labelled by its parent folder."""
    from ..ingest.sources import iter_entries

    root = Path(directory)
    if not root.is_dir():
        raise InvalidInput(f"--queries {root}: not a folder")
    try:
        entries = list(iter_entries([root]))
    except SourceError as exc:
        raise InvalidInput(f"--queries {root}: {exc}") from None
    queries = [
        RetrievalQuery(e.relpath, e.label if e.relpath.count("/") else None, path=e.path)
        for e in entries
        if e.path is not None
    ]
    if not queries:
        raise InvalidInput(f"--queries {root}: no images in this folder")
    return queries


def sample_items(
    items: dict[str, str | None], n: int, seed: int, truth: Truth | None
) -> list[RetrievalQuery]:
    """``n`` items (``id -> label``) drawn without replacement with ``default_rng(seed)``
    from those that can be judged: items whose label another item shares (labels), or the
    truth file's queries (truth). All of them when there are fewer than ``n``."""
    if n < 1:
        raise InvalidInput("--sample needs a positive number of queries")
    if truth is not None:
        candidates = sorted(truth)
        unknown = [c for c in candidates if c not in items]
        if unknown:
            raise InvalidInput(
                f"--truth names query {unknown[0]!r}, which is not an item of the collection "
                f"({len(unknown)} such queries); with --sample, queries are item ids"
            )
    else:
        counts: dict[str, int] = {}
        for label in items.values():
            if label is not None:
                counts[label] = counts.get(label, 0) + 1
        candidates = sorted(i for i, lab in items.items() if lab is not None and counts[lab] > 1)
        if not candidates:
            raise InvalidInput("--sample: no two items of the collection share a label")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(candidates), min(n, len(candidates)), replace=False))
    return [
        RetrievalQuery(candidates[i], items[candidates[i]], item_id=candidates[i]) for i in chosen
    ]


def truth_queries(truth: Truth, items: dict[str, str | None]) -> list[RetrievalQuery]:
    """The truth file's own queries, without ``--queries`` or ``--sample``: each an item id of
    the collection (left out) or an image file path."""
    queries = []
    for name in sorted(truth):
        if name in items:
            queries.append(RetrievalQuery(name, items[name], item_id=name))
        elif Path(name).is_file():
            queries.append(RetrievalQuery(name, None, path=Path(name)))
        else:
            raise InvalidInput(
                f"--truth names query {name!r}, neither an item id of the collection nor an "
                "image file (give --queries DIR for paths relative to a folder)"
            )
    if not queries:
        raise InvalidInput("--truth: the file names no query")
    return queries


def select_truth_queries(queries: list[RetrievalQuery], truth: Truth) -> list[RetrievalQuery]:
    """The folder's queries that the truth file names; every name must be one of them."""
    names = {q.name for q in queries}
    unknown = sorted(set(truth) - names)
    if unknown:
        raise InvalidInput(
            f"--truth names query {unknown[0]!r}, which is not an image of --queries "
            f"({len(unknown)} such names; use paths relative to the folder, e.g. "
            f"{next(iter(sorted(names)))!r})"
        )
    return [q for q in queries if q.name in truth]


def check_truth_ids(truth: Truth, items: dict[str, str | None], where: str) -> None:
    """Every relevant id of the truth file must be an item of the collection."""
    unknown = sorted({i for ids in truth.values() for i in ids} - items.keys())
    if unknown:
        raise InvalidInput(
            f"--truth names item {unknown[0]!r}, which is not in {where} "
            f"({len(unknown)} unknown ids)"
        )
