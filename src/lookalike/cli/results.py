"""``search --out/--html/--plot``: the results of a search written as a table, a page or a
grid of images. The writing itself lives in ``search.table`` and ``report``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..report import ImageSource
    from ..search.hits import Hit


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        metavar="FILE",
        help="also write the results to FILE.csv or FILE.jsonl (one row per query and hit)",
    )
    p.add_argument(
        "--html",
        metavar="FILE",
        help="also write a self-contained HTML page (one row per query, thumbnails embedded)",
    )
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw the query and its results as a matplotlib grid (needs [plot])",
    )


def check(args: argparse.Namespace) -> None:
    """Refuse bad output names before searching."""
    from ..report import check_out_folder
    from ..search.table import table_format

    if args.out:
        table_format(args.out, ("csv", "jsonl"))
    for option, value in (("--html", args.html), ("--plot", args.plot)):
        if value:
            check_out_folder(option, Path(value))


def query_image(coll: Any, query: str) -> ImageSource:
    """The image to show for a query: the file, or the stored item's file for ``id:``."""
    if query.startswith("id:"):
        return coll.get(query[3:]).path
    if query.startswith(("http://", "https://")) or not Path(query).is_file():
        return None  # URLs, texts and composed queries have no image of their own
    return query


def write(
    args: argparse.Namespace, coll: Any, results: Sequence[tuple[str, Sequence[Hit]]]
) -> list[str]:
    """Write the outputs asked for; returns the files written."""
    written = []
    if args.out:
        from ..search.table import HitTable

        with HitTable(args.out, ("csv", "jsonl")) as table:
            for query, hits in results:
                table.write_hits(query, hits)
        written.append(args.out)
    images = [(query_image(coll, q), hits) for q, hits in results] if args.html or args.plot else []
    if args.html:
        from ..report import write_results_html

        write_results_html(images, args.html, names=[q for q, _ in results])
        written.append(args.html)
    if args.plot:
        from ..report import plot_results

        plot_results(images, args.plot)
        written.append(args.plot)
    return written
