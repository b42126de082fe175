"""``lookalike search``: one search per query, or one composed search (``+``/``-`` terms,
``--mean``, ``--text``), printed as a table, JSON lines or bare paths (``--paths``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import InvalidInput


def _searches(args: argparse.Namespace) -> list[tuple[str, list[Any]]]:
    """(what to call the query, its terms) for each search the arguments ask for."""
    from ..search.compose import Term, is_composed, parse_cli_terms, parse_term

    queries: list[str] = args.queries
    if args.text is not None:
        if args.mean:
            raise InvalidInput("--mean averages QUERY terms; it does not go with --text")
        if queries:
            raise InvalidInput(
                "give --text or QUERY terms, not both (a text term in a query: 'text:...')"
            )
        return [(f"text:{args.text}", [Term("text", args.text)])]
    if not queries:
        raise InvalidInput("give a QUERY (image, id:ITEM, URL or text) or --text TEXT")
    if is_composed(queries):
        terms = parse_cli_terms(queries)
        return [(" ".join(queries), terms)]
    if args.mean:
        if len(queries) < 2:
            raise InvalidInput("--mean averages several queries: give at least two")
        return [(" + ".join(queries), [parse_term(q) for q in queries])]
    return [(q, [parse_term(q)]) for q in queries]


def cmd_search(args: argparse.Namespace) -> int:
    from . import results as outputs

    outputs.check(args)
    if args.paths and args.json:
        raise InvalidInput("--paths and --json do not go together: pick one output")
    searches = _searches(args)
    where = _where(args.where)
    from .commands import _open

    coll = _open(args, model=args.model)
    try:
        results = []
        for name, terms in searches:
            hits = coll.search(
                terms=terms,
                k=args.k,
                threshold=args.threshold,
                label=args.label,
                where=where,
                allow_urls=args.allow_urls,
            )
            results.append((name, hits))
            if args.paths:
                for h in hits:
                    if h.path or h.url:
                        print(h.path or h.url, flush=True)
            elif args.json:
                results_json = [h.to_dict() for h in hits]
                print(
                    json.dumps({"query": name, "results": results_json}, ensure_ascii=False),
                    flush=True,
                )
            else:
                print(f"{name}:")
                if not hits:
                    print("  (no results)")
                for h in hits:
                    print(f"  {h.rank:>3}  {h.score:.4f}  {h.label or '-':<12}  {h.id}")
        written = outputs.write(args, coll, results)
    finally:
        coll.close()
    for path in written:
        print(f"wrote {path}", file=sys.stderr if args.json or args.paths else sys.stdout)
    return 0


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The query options of ``lookalike search`` (besides -k, filters and outputs)."""
    p.add_argument(
        "queries",
        nargs="*",
        metavar="QUERY",
        help="image file, http(s) URL (with --allow-urls), id:ITEM_ID, or a text (models with"
        " a text tower: a term that is not a file, id: or URL and does not look like a path,"
        " or text:...). Terms joined by + or - make one composed search, each with an optional"
        ' weight prefix N: (e.g. "2:red dress" + id:a.jpg - blurry.jpg)',
    )
    p.add_argument(
        "--text",
        metavar="TEXT",
        help="search by a text (models with a text tower, e.g. clip-vit-b32)",
    )
    p.add_argument(
        "--mean",
        action="store_true",
        help="one search for the average of all the QUERY terms (more like these)",
    )
    p.add_argument(
        "--paths", action="store_true", help="print only the hits' paths, one a line (for xargs)"
    )


def _size(spec: Any) -> int | None:
    """Both towers' approximate download size in MB; None when unknown."""
    if spec.kind != "onnx":
        return 0
    sizes = [spec.size_mb, spec.text.size_mb if spec.text else 0]
    return None if None in sizes else sum(sizes)


def _where(text: str | None) -> Any:
    """``--where`` parsed before the collection opens; errors name the option."""
    from ..search.where import WhereError, parse_where

    if text is None:
        return None
    try:
        return parse_where(text)
    except WhereError as exc:
        raise WhereError(f"--where: {exc}") from None


def cmd_models(args: argparse.Namespace) -> int:
    from ..models.hub import hub_model_cached, hub_text_cached
    from ..models.registry import DEFAULT_MODEL, MODELS

    rows = []
    for spec in MODELS.values():
        text = hub_text_cached(spec)
        image_cached = hub_model_cached(spec)
        rows.append(
            {
                "name": spec.name,
                "dim": spec.dim,
                "metric": spec.metric,
                "size_mb": _size(spec),
                "license": spec.license,
                "cached": image_cached and text is not False,
                "text": spec.text is not None,
                "source": spec.repo
                or ("your own export, see docs/models.md" if spec.kind == "onnx" else "built in"),
                "text_source": spec.text.repo if spec.text else None,
                "default": spec.name == DEFAULT_MODEL,
            }
        )
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'model':<14} {'dims':>5}  {'size':>7}  {'offline':<7}  {'text':<4}  licence")
    for row in rows:
        size = f"{row['size_mb']} MB" if row["size_mb"] is not None else "-"
        offline = "yes" if row["cached"] else "no"
        tower = "yes" if row["text"] else "no"
        default = " (default)" if row["default"] else ""
        print(
            f"{row['name']:<14} {row['dim']:>5}  {size:>7}  {offline:<7}  {tower:<4}"
            f"  {row['license']}{default}"
        )
    return 0
