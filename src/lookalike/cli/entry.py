"""The ``lookalike`` command. The only place that prints and chooses exit codes."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import InvalidInput, LookalikeError
from .argtypes import non_negative_int, positive_float, positive_int, score
from .commands import cmd_export, cmd_index, cmd_info, cmd_models, cmd_remove, cmd_search

EXIT_USAGE = 2

# Modules that add subcommands; importing them must stay cheap (no heavy imports at top level).
PLUGIN_COMMANDS: list[str] = [
    "lookalike.cli.serve",
    "lookalike.cli.dedup",
    "lookalike.cli.neighbors",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"lookalike: error: {message}\n(see `{self.prog} --help`)\n")


def _size(text: str) -> int:
    from ..store.planning import parse_size

    try:
        return parse_size(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--collection",
        metavar="DIR",
        help="collection folder (default: $LOOKALIKE_COLLECTION or ./.lookalike)",
    )
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log output")

    parser = _Parser(
        prog="lookalike", description="Visual similarity search for image collections."
    )
    parser.add_argument("--version", action="version", version=f"lookalike {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "index", parents=[common], help="add folders, files or manifests to a collection"
    )
    p.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="folder, image file, or CSV/JSONL manifest (none: only apply --index/--max-memory)",
    )
    model = p.add_mutually_exclusive_group()
    model.add_argument(
        "--model",
        metavar="NAME",
        help="registry model (default clip-vit-b32; see `lookalike models`)",
    )
    model.add_argument(
        "--model-path",
        metavar="DIR",
        help="local model folder with model.onnx + preprocessor_config.json",
    )
    p.add_argument(
        "--min-side",
        type=positive_int,
        metavar="PX",
        help="skip images whose shorter side is below PX",
    )
    p.add_argument(
        "--max-aspect",
        type=positive_float,
        metavar="R",
        help="skip images longer than R times their width (banners)",
    )
    p.add_argument(
        "--max-megapixels",
        type=positive_float,
        default=100.0,
        metavar="MP",
        help="decompression-bomb limit (default 100)",
    )
    p.add_argument(
        "--workers",
        type=non_negative_int,
        metavar="N",
        help="decode workers (default: CPU count for phash, half of it for neural models; 0 = in-process)",
    )
    p.add_argument(
        "--decode",
        choices=("threads", "processes"),
        default=None,
        help="decode workers are threads (default: no copying of model inputs) or processes"
        " (a decoder crash on a hostile file costs only that file)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        metavar="N",
        help="model batch size (default 32)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="model inference threads (default: CPU count)",
    )
    p.add_argument(
        "--download-workers",
        type=positive_int,
        default=16,
        metavar="N",
        help="parallel URL downloads (default 16)",
    )
    p.add_argument(
        "--download-timeout",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="per-file download timeout in seconds (default 30)",
    )
    p.add_argument(
        "--index",
        dest="index_type",
        choices=["auto", "flat", "hnsw", "ivf-sq8", "ivf-pq", "lsh"],
        help="search index: auto (default; exact up to ~50k items, then HNSW or IVF), "
        "flat (exact), hnsw, ivf-sq8, ivf-pq, lsh; remembered by the collection",
    )
    p.add_argument(
        "--max-memory",
        type=_size,
        metavar="SIZE",
        help="memory budget for the index, e.g. 512MB or 2GB (remembered; vectors are "
        "memory-mapped apart)",
    )
    p.add_argument("--json", action="store_true", help="print a one-line JSON summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("search", parents=[common], help="find the images most similar to a query")
    p.add_argument(
        "queries",
        nargs="+",
        metavar="QUERY",
        help="image file, http(s) URL (with --allow-urls) or id:ITEM_ID",
    )
    p.add_argument("-k", type=positive_int, default=10, help="number of results (default 10)")
    p.add_argument("--threshold", type=score, metavar="S", help="only results with score >= S")
    p.add_argument("--label", help="only results with this label")
    p.add_argument(
        "--model", metavar="NAME", help="refuse unless the collection was built with this model"
    )
    p.add_argument(
        "--allow-urls", action="store_true", help="allow http(s) URL queries to be fetched"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per query per line")

    p = sub.add_parser("info", parents=[common], help="describe a collection")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("remove", parents=[common], help="remove items by id")
    p.add_argument("ids", nargs="+", metavar="ID")

    p = sub.add_parser(
        "export", parents=[common], help="export ids, paths, labels, metadata and vectors"
    )
    p.add_argument("--format", required=True, choices=["npy", "parquet"])
    p.add_argument("out", metavar="OUT")

    sub.add_parser("models", parents=[common], help="list the models in the registry")

    # Commands of other parts (server, duplicates, neighbours...) register themselves:
    # each module has ``register(sub, common)`` adding a parser with ``set_defaults(func=...)``.
    for module_name in PLUGIN_COMMANDS:
        importlib.import_module(module_name).register(sub, common)
    return parser


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="lookalike: %(levelname)s: %(message)s")


COMMANDS = {
    "index": cmd_index,
    "search": cmd_search,
    "info": cmd_info,
    "remove": cmd_remove,
    "export": cmd_export,
    "models": cmd_models,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        handler = COMMANDS.get(args.command) or args.func
        return int(handler(args))
    except LookalikeError as exc:
        message = str(exc).strip() or type(exc).__name__
        print(f"lookalike: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lookalike: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    _entry()


__all__ = ["main", "build_parser", "InvalidInput"]
