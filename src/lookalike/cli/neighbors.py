"""``lookalike neighbors``: one item's nearest items, or the similar-items table of all."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import InvalidInput


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    from .argtypes import positive_int

    p = sub.add_parser(
        "neighbors",
        parents=[common],
        help="the most similar items of one item, or a table of them for every item",
    )
    p.add_argument("item", nargs="?", metavar="ID", help="item id (without --all)")
    p.add_argument(
        "--all", action="store_true", help="every item (writes --out FILE.parquet, .csv or .jsonl)"
    )
    p.add_argument("-k", type=positive_int, default=10, help="neighbours per item (default 10)")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="the table for --all: .parquet, .csv or .jsonl (the hit shape, plus query)",
    )
    p.add_argument("--json", action="store_true", help="JSON output (one item)")
    p.set_defaults(func=cmd_neighbors)


def cmd_neighbors(args: argparse.Namespace) -> int:
    import sys

    from ..collection import Collection
    from ..neighbors import neighbors_of, write_neighbors_table

    if args.all == (args.item is not None):
        raise InvalidInput("give one item ID, or --all --out FILE.parquet|.csv|.jsonl")
    if args.all and not args.out:
        raise InvalidInput("--all needs --out FILE.parquet|.csv|.jsonl")
    if args.all:
        from ..search.table import table_format

        table_format(args.out)  # refuse an unknown extension before opening anything
    coll = Collection.open(args.collection, create=False)
    try:
        if args.all:
            from .progress import Progress

            progress = Progress() if sys.stderr.isatty() else None
            try:
                n = write_neighbors_table(coll, args.k, args.out, progress=progress)
            finally:
                if progress:
                    progress.close()
            print(f"wrote {n} rows ({len(coll)} items, k={args.k}) to {args.out}")
            return 0
        hits = neighbors_of(coll, args.item, args.k)
    finally:
        coll.close()
    if args.json:
        print(json.dumps({"id": args.item, "neighbors": [h.to_dict() for h in hits]}))
    else:
        for h in hits:
            print(f"  {h.rank:>3}  {h.score:.4f}  {h.label or '-':<12}  {h.id}")
    return 0
