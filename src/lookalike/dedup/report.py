"""Writing duplicate groups out: CSV, JSON, a static HTML contact sheet, a matplotlib grid.

The HTML report is one self-contained file (thumbnails embedded as base64 JPEG data URIs),
so it opens from disk with no server. matplotlib is imported only by :func:`plot_group`
(``pip install 'lookalike[plot]'``).
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..report import atomic_write_text, pyplot, show_image, thumbnail_data_uri
from .finder import Group, Member

CSV_COLUMNS = [
    "group",
    "role",
    "id",
    "path",
    "score",
    "width",
    "height",
    "size",
    "label",
    "collection",
]


def groups_to_rows(groups: Sequence[Group]) -> list[dict[str, Any]]:
    rows = []
    for g in groups:
        for m in g.members:
            d = m.to_dict()
            d["group"] = g.number
            d["role"] = "keeper" if m is g.keeper else "duplicate"
            rows.append({k: d.get(k) for k in CSV_COLUMNS})
    return rows


def write_groups(groups: Sequence[Group], out: str | os.PathLike[str]) -> Path:
    """Write ``groups`` as ``.csv`` (one row per item) or ``.json`` (a list of groups)."""
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise InvalidInput(f"--out {path}: use a .csv or .json file name")
    if not path.parent.is_dir():
        raise InvalidInput(f"--out {path}: folder {path.parent} does not exist")
    if suffix == ".json":
        text = json.dumps([g.to_dict() for g in groups], indent=1, ensure_ascii=False) + "\n"
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(groups_to_rows(groups))
        text = buf.getvalue()
    atomic_write_text(path, text)
    return path


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
h1{font-size:1.4em} .group{background:#fff;border:1px solid #ddd;border-radius:6px;
margin:1em 0;padding:.6em} .group h2{font-size:1em;margin:.2em 0 .6em}
.items{display:flex;flex-wrap:wrap;gap:.6em} figure{margin:0;width:170px;font-size:.75em;
word-break:break-all} figure img{max-width:160px;max-height:160px;display:block;
border:3px solid transparent} figure.keeper img{border-color:#2a8} .score{font-weight:bold}
.missing{width:160px;height:100px;background:#eee;display:flex;align-items:center;
justify-content:center;color:#888}
"""


def _figure(m: Member, keeper: bool) -> str:
    uri = thumbnail_data_uri(m.path)
    name = html.escape(m.path or m.url or m.id)
    img = (
        f'<img src="{uri}" alt="{html.escape(m.id)}">'
        if uri
        else '<div class="missing">no preview</div>'
    )
    dims = f"{m.width}x{m.height}" if m.width and m.height else "?"
    size = f"{m.size:,} B" if m.size is not None else "?"
    role = "keeper" if keeper else f'score <span class="score">{m.score:.4f}</span>'
    return (
        f'<figure class="{"keeper" if keeper else "dup"}">{img}<figcaption>{role}<br>'
        f"{dims}, {size}<br>{name}</figcaption></figure>"
    )


def write_html(
    groups: Sequence[Group],
    out: str | os.PathLike[str],
    *,
    title: str = "lookalike duplicates",
    max_groups: int = 1000,
) -> Path:
    """A static contact sheet: one box per group, keeper first (green frame), with scores."""
    path = Path(out)
    if not path.parent.is_dir():
        raise InvalidInput(f"--html {path}: folder {path.parent} does not exist")
    shown = list(groups)[:max_groups]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(groups)} groups, {sum(len(g.duplicates) for g in groups)} duplicates"
        + (f" (showing the first {len(shown)})" if len(shown) < len(groups) else "")
        + ". The keeper (green frame) has the highest resolution, then the largest file, "
        "then the oldest date; scores are against the keeper.</p>",
    ]
    for g in shown:
        parts.append(
            f'<section class="group" id="group-{g.number}"><h2>Group {g.number} '
            f"({len(g.members)} items, level {html.escape(g.level)})</h2><div class=items>"
        )
        parts.append(_figure(g.keeper, True))
        parts.extend(_figure(m, False) for m in g.duplicates)
        parts.append("</div></section>")
    parts.append("</body></html>\n")
    atomic_write_text(path, "\n".join(parts))
    return path


def plot_group(group: Group, out: str | os.PathLike[str] | None = None, columns: int = 5) -> Any:
    """A matplotlib figure with one group as a grid of images (keeper first, scores in the
    titles). Saved to ``out`` when given; returns the figure."""
    plt = pyplot(headless=out is not None)
    members = group.members
    cols = max(1, min(columns, len(members)))
    rows = (len(members) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, m in zip(axes.ravel(), members, strict=False):
        show_image(ax, m.path)
        caption = "keeper" if m is group.keeper else f"score {m.score:.3f}"
        ax.set_title(f"{caption}\n{m.id[-30:]}", fontsize=8)
    fig.suptitle(f"group {group.number} ({group.level})")
    fig.tight_layout()
    if out is not None:
        fig.savefig(out, dpi=80)
        plt.close(fig)
    return fig
