"""The ``lookalike`` command. The only place that prints and chooses exit codes."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import InvalidInput, LookalikeError
from . import results as search_outputs
from .argtypes import (
    add_device_argument,
    add_filter_arguments,
    int_or_auto,
    non_negative_int,
    number,
    positive_float,
    positive_int,
    score,
)
from .commands import cmd_export, cmd_index, cmd_info, cmd_remove
from .remote import add_store_arguments
from .search import add_search_arguments, cmd_models, cmd_search

EXIT_USAGE = 2

# store.planning.AUTO_EXACT_MAX, written out so that --help imports no store module
# (tests/test_help.py checks that the two agree).
AUTO_EXACT_MAX_HELP = 50_000

# Modules that add subcommands; importing them must stay cheap (no heavy imports at top level).
PLUGIN_COMMANDS: list[str] = [
    "lookalike.cli.serve",
    "lookalike.cli.dedup",
    "lookalike.cli.neighbors",
    "lookalike.cli.spark",
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


# (option, settings name, help): the knobs of `lookalike index`, remembered by the collection
KNOB_OPTIONS = [
    ("--hnsw-m", "hnsw_m", "hnsw: links per node, 2-256 (default 16; hnswlib's M)"),
    (
        "--ef-construction",
        "ef_construction",
        "hnsw: candidate list while building, 1-32768 (default 80)",
    ),
    (
        "--ef-search",
        "ef_search",
        "hnsw: candidate list while searching, 1-32768 (default: tuned to --recall-target; "
        "hnswlib's ef)",
    ),
    (
        "--nlist",
        "nlist",
        "ivf-sq8/ivf-pq: inverted lists, 1 up to the item count (default about 4*sqrt(N); "
        "a larger value is clamped to the item count, with a note)",
    ),
    (
        "--nprobe",
        "nprobe",
        "ivf-sq8/ivf-pq: lists searched per query, 1 up to nlist (default: tuned to "
        "--recall-target)",
    ),
    ("--pq-m", "pq_m", "ivf-pq: bytes per vector code, dividing the dimension (default dim/8)"),
]


def _index_knobs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--recall-target",
        type=number,
        metavar="R",
        help="recall@10 the search knob is tuned to, 0 < R <= 1 (default 0.95; remembered)",
    )
    for flag, dest, text in KNOB_OPTIONS:
        p.add_argument(
            flag,
            dest=dest,
            type=int_or_auto,
            metavar="N",
            help=text + "; used as given, remembered; auto forgets it",
        )


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
        help="folder, image file, or CSV/JSONL manifest (none: only apply the index options)",
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
    add_filter_arguments(p, remembered=True)
    p.add_argument(
        "--fast-resize",
        action="store_true",
        help="resize with OpenCV instead of the model's reference filter: faster ingest,"
        " slightly different vectors (a new collection's setting, remembered; needs"
        " lookalike[fast]; docs/preprocessing.md)",
    )
    p.add_argument(
        "--max-file-mb",
        type=positive_float,
        default=256.0,
        metavar="MB",
        help="skip files larger than MB mebibytes, unread (default 256)",
    )
    p.add_argument(
        "--workers",
        type=non_negative_int,
        metavar="N",
        help="decode workers (default: CPU count for phash, half of it for neural models; 0 = in-process)",
    )
    p.add_argument(
        "--decode",
        choices=("threads", "processes", "gpu"),
        default=None,
        help="decode workers are threads (default on the CPU: no copying of model inputs),"
        " processes (default with the model on a GPU; a decoder crash on a hostile file costs"
        " only that file), or gpu: JPEGs decoded and resized on the GPU (nvJPEG; needs torch"
        " and torchvision; inexact, see docs/gpu.md)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="N",
        help="model batch size (default 32 on the CPU; on a GPU, chosen from its free memory)",
    )
    add_device_argument(p)
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
        choices=["auto", "flat", "hnsw", "ivf-sq8", "ivf-pq", "lsh", "ivf-flat"],
        help=f"search index, remembered by the collection: auto (default: exact flat search "
        f"up to {AUTO_EXACT_MAX_HELP:,} items, then ivf-sq8, or ivf-pq when --max-memory is too "
        "small for ivf-sq8), flat (exact), hnsw, ivf-sq8, ivf-pq, lsh; with --store milvus: "
        "the Milvus index auto, flat, ivf-flat, ivf-sq8 or hnsw (--nlist, --nprobe, --hnsw-m, "
        "--ef-construction, --ef-search)",
    )
    p.add_argument(
        "--max-memory",
        type=_size,
        metavar="SIZE",
        help="memory budget for the index, e.g. 512MB or 2GB (remembered; vectors are "
        "memory-mapped apart)",
    )
    _index_knobs(p)
    add_store_arguments(p)
    p.add_argument("--json", action="store_true", help="print a one-line JSON summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("search", parents=[common], help="find the images most similar to a query")
    add_device_argument(p)
    add_search_arguments(p)
    p.add_argument("-k", type=positive_int, default=10, help="number of results (default 10)")
    p.add_argument("--threshold", type=score, metavar="S", help="only results with score >= S")
    p.add_argument("--label", help="only results with this label")
    p.add_argument(
        "--where",
        metavar="EXPR",
        help='only results this filter accepts, e.g. \'label in ("dress", "skirt") and '
        "price < 20' (label and metadata fields; =, !=, <, <=, >, >=, in (...), exists, "
        "and, or, not, parentheses); exactly the best k of the matching items",
    )
    p.add_argument(
        "--model", metavar="NAME", help="refuse unless the collection was built with this model"
    )
    p.add_argument(
        "--allow-urls", action="store_true", help="allow http(s) URL queries to be fetched"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per query per line")
    search_outputs.add_arguments(p)

    p = sub.add_parser("info", parents=[common], help="describe a collection")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the description as one JSON object (the index under `index`)",
    )

    p = sub.add_parser("remove", parents=[common], help="remove items by id")
    p.add_argument(
        "ids", nargs="+", metavar="ID", help="id of an item to remove (several may be given)"
    )

    p = sub.add_parser(
        "export", parents=[common], help="export ids, paths, labels, metadata and vectors"
    )
    p.add_argument(
        "--format",
        required=True,
        choices=["npy", "parquet"],
        help="npy: OUT is a folder with vectors.npy and items.jsonl (row i = line i); "
        "parquet: OUT is one file with a vector column",
    )
    p.add_argument(
        "out", metavar="OUT", help="file to write (--format parquet) or folder (--format npy)"
    )

    p = sub.add_parser(
        "models",
        parents=[common],
        help="list the models: dims, size, licence, whether cached (usable offline), text tower",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per model per line")

    # Commands of other parts (server, duplicates, neighbours...) register themselves:
    # each module has ``register(sub, common)`` adding a parser with ``set_defaults(func=...)``.
    for module_name in PLUGIN_COMMANDS:
        importlib.import_module(module_name).register(sub, common)
    return parser


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="lookalike: %(levelname)s: %(message)s")
    if verbose < 2:  # other libraries' chatter only with -vv
        for handler in logging.getLogger().handlers:
            handler.addFilter(_ours_or_warning)


# Client libraries whose failures come back as lookalike's one-line errors (ServiceUnavailable)
_WRAPPED = ("pymilvus", "milvus_lite", "redis")


def _ours_or_warning(record: logging.LogRecord) -> bool:
    if record.name.startswith("lookalike"):
        return True
    return record.levelno >= logging.WARNING and not record.name.startswith(_WRAPPED)


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
        if getattr(args, "device", None) is not None:
            from ..models.device import set_default_device

            set_default_device(args.device)
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
