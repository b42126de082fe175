"""Search results you can look at: a matplotlib grid, a self-contained HTML page, and the
image helpers the duplicate reports share (thumbnails as data URIs, pyplot, atomic writes).

matplotlib is imported only when plotting (``pip install 'lookalike[plot]'``). The HTML page
embeds every thumbnail as a base64 JPEG data URI and loads nothing from anywhere else, so it
opens from disk and can be mailed as one file.

A query is an image file path, encoded image bytes, a PIL image, or None (no preview).
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from .errors import InvalidInput, MissingDependency

if TYPE_CHECKING:
    from PIL import Image

    from .search.hits import Hit

ImageSource: TypeAlias = "str | os.PathLike[str] | bytes | Image.Image | None"
THUMB = 160
QUERY_COLOR = "#e67e22"  # the outline that marks the query


# -- shared helpers ------------------------------------------------------------------------


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file, fsync it and rename it onto ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def check_out_folder(option: str, path: Path) -> None:
    if not path.parent.is_dir():
        raise InvalidInput(f"{option} {path}: folder {path.parent} does not exist")


def load_image(source: ImageSource, size: int) -> Image.Image | None:
    """An RGB copy of the image at most ``size`` pixels a side, or None if unreadable."""
    if source is None or source == "":
        return None
    from PIL import Image

    try:
        if isinstance(source, Image.Image):
            im = source.convert("RGB")
            im.thumbnail((size, size))
            return im
        opened = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        with opened as im:
            im.draft("RGB", (size, size))
            rgb = im.convert("RGB")
            rgb.thumbnail((size, size))
            return rgb
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def thumbnail_data_uri(source: ImageSource, size: int = THUMB) -> str | None:
    """A small JPEG of the image as a data URI, or None if it cannot be read."""
    thumb = load_image(source, size)
    if thumb is None:
        return None
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def pyplot(headless: bool) -> Any:
    """``matplotlib.pyplot`` (the Agg backend when ``headless``), or MissingDependency."""
    try:
        import matplotlib

        if headless:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependency(
            "plotting needs matplotlib: pip install 'lookalike[plot]'"
        ) from None
    return plt


def show_image(ax: Any, source: ImageSource, size: int = 400) -> None:
    """Draw the image on a matplotlib axis, or "no preview"."""
    im = load_image(source, size)
    if im is None:
        ax.text(0.5, 0.5, "no preview", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.imshow(im)


def _name(query: ImageSource) -> str:
    if isinstance(query, (str, os.PathLike)):
        return os.fspath(query)
    return "query"


# -- search results --------------------------------------------------------------------------


def plot_hits(
    query: ImageSource,
    hits: Sequence[Hit],
    out: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
) -> Any:
    """A matplotlib figure: the query image first (outlined), then each hit titled with its
    rank, score and label. Saved to ``out`` (PNG, ...) when given; returns the figure."""
    return plot_results([(query, hits)], out, title=title)


def plot_results(
    results: Sequence[tuple[ImageSource, Sequence[Hit]]],
    out: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
    cell: float = 2.4,
) -> Any:
    """Several queries' results as one grid, one row per query (see :func:`plot_hits`)."""
    if out is not None:
        check_out_folder("--plot", Path(out))
    plt = pyplot(headless=out is not None)
    rows = max(1, len(results))
    cols = 1 + max((len(h) for _, h in results), default=0)
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols, (cell + 0.45) * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for row, (query, hits) in zip(axes, results, strict=False):
        qax = row[0]
        show_image(qax, query)
        qax.set_frame_on(True)
        for spine in qax.spines.values():
            spine.set_edgecolor(QUERY_COLOR)
            spine.set_linewidth(4)
        qax.set_title(f"query\n{_name(query)[-28:]}", fontsize=8, color=QUERY_COLOR)
        for ax, hit in zip(row[1:], hits, strict=False):
            show_image(ax, hit.path)
            ax.set_title(f"#{hit.rank}  {hit.score:.3f}\n{(hit.label or '-')[:24]}", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if out is not None:
        fig.savefig(out, dpi=80)
        plt.close(fig)
    return fig


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
h1{font-size:1.4em} table{border-collapse:collapse} td{vertical-align:top;padding:.4em;
border-bottom:1px solid #ddd} figure{margin:0;width:170px;font-size:.75em;
word-break:break-all} figure img{max-width:160px;max-height:160px;display:block;
border:3px solid transparent} figure.query img{border-color:#e67e22} .score{font-weight:bold}
.missing{width:160px;height:100px;background:#eee;display:flex;align-items:center;
justify-content:center;color:#888}
"""


def _figure(source: ImageSource, caption: str, css_class: str) -> str:
    uri = thumbnail_data_uri(source)
    img = f'<img src="{uri}" alt="">' if uri else '<div class="missing">no preview</div>'
    return f'<figure class="{css_class}">{img}<figcaption>{caption}</figcaption></figure>'


def _hit_caption(hit: Hit) -> str:
    meta = ", ".join(f"{k}: {v}" for k, v in list(hit.metadata.items())[:3])
    return (
        f'#{hit.rank} <span class="score">{hit.score:.4f}</span> '
        f"{html.escape(hit.label or '-')}<br>{html.escape(hit.id)}"
        + (f"<br>{html.escape(meta)}" if meta else "")
    )


def write_results_html(
    results: Sequence[tuple[ImageSource, Sequence[Hit]]],
    out: str | os.PathLike[str],
    *,
    title: str = "lookalike search results",
    names: Sequence[str] | None = None,
) -> Path:
    """One self-contained page: one table row per query, the query (outlined) then its hits
    with rank, score, label and id. ``names`` caption the queries (default: their paths)."""
    path = Path(out)
    check_out_folder("--html", path)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(results)} queries; scores are similarities to the query "
        "(higher is closer).</p><table>",
    ]
    for n, (query, hits) in enumerate(results):
        name = names[n] if names is not None else _name(query)
        cells = [_figure(query, "query<br>" + html.escape(name), "query")]
        cells += [_figure(h.path, _hit_caption(h), "hit") for h in hits]
        if not hits:
            cells.append("<em>no results</em>")
        parts.append('<tr class="query-row">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append("</table></body></html>\n")
    atomic_write_text(path, "\n".join(parts))
    return path
