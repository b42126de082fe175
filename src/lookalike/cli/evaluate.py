"""``lookalike evaluate retrieval``: precision, recall, mAP and nDCG at k of a collection on
held-out or left-out queries, optionally side by side with another collection and with exact
search. The ``evaluate`` group itself is registered by ``cli.dedup``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import InvalidInput
from .argtypes import positive_int


def register_retrieval(evsub: Any, common: argparse.ArgumentParser) -> None:
    p = evsub.add_parser(
        "retrieval",
        parents=[common],
        help="precision/recall/mAP/nDCG at k on labelled or ground-truth queries",
        description=(
            "Relevance: an item is relevant to a query when it has the query's label (the "
            "item labels are their folder names), or when --truth lists it. Queries: images "
            "of --queries DIR (label = parent folder name), or --sample N items of the "
            "collection left out one at a time. mAP@K is the mean over queries of AP@K, K "
            "the largest k: the sum of precision@i over the relevant ranks i <= K, divided by "
            "min(relevant items, K). 95%% intervals: percentile bootstrap over queries."
        ),
    )
    p.add_argument("--queries", metavar="DIR", help="folder of held-out query images")
    p.add_argument(
        "--sample",
        type=positive_int,
        metavar="N",
        help="N items of the collection as queries, each left out of its own results",
    )
    p.add_argument(
        "--truth",
        metavar="FILE",
        help="relevant ids per query: JSON {query: [ids]} or CSV query,relevant_id",
    )
    p.add_argument("-k", default="1,5,10", metavar="K,K,...", help="cut-offs (default 1,5,10)")
    p.add_argument(
        "--against",
        metavar="OTHER_DIR",
        action="append",
        default=[],
        help="also evaluate this collection on the same queries (repeatable)",
    )
    p.add_argument(
        "--exact",
        action="store_true",
        help="also answer the queries by exact search over the stored vectors (what the "
        "ANN index costs)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --sample and the bootstrap")
    p.add_argument(
        "--resamples", type=positive_int, default=1000, metavar="N", help="bootstrap resamples"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_evaluate_retrieval)


def cmd_evaluate_retrieval(args: argparse.Namespace) -> int:
    from ..collection import Collection
    from ..evaluation import queries as qmod
    from ..evaluation.metrics import parse_ks
    from ..evaluation.runner import evaluate_retrieval

    ks = parse_ks(args.k)
    if args.queries and args.sample:
        raise InvalidInput("give --queries DIR or --sample N, not both")
    if not (args.queries or args.sample or args.truth):
        raise InvalidInput("give --queries DIR, --sample N or --truth FILE")
    truth = qmod.read_truth(args.truth) if args.truth else None
    colls = [Collection.open(args.collection, create=False, readonly=True)]
    try:
        for other in args.against:
            colls.append(Collection.open(other, create=False, readonly=True))
        items = colls[0].catalog.db.execute("SELECT id, label FROM items").fetchall()
        labels = {r[0]: r[1] for r in items}
        if args.queries:
            queries = qmod.folder_queries(args.queries)
            if truth is not None:
                queries = qmod.select_truth_queries(queries, truth)
            source = f"images of {args.queries}"
        elif args.sample:
            queries = qmod.sample_items(labels, args.sample, args.seed, truth)
            source = f"items left out one at a time (sample of {args.sample}, seed {args.seed})"
        else:
            assert truth is not None
            queries = qmod.truth_queries(truth, labels)
            source = f"the queries of {args.truth}"
        report = evaluate_retrieval(
            colls,
            queries,
            ks,
            truth=truth,
            exact=args.exact,
            resamples=args.resamples,
            seed=args.seed,
        )
    finally:
        for c in colls:
            c.close()
    if args.json:
        print(json.dumps({"queries_from": source, **report.to_dict()}, ensure_ascii=False))
        return 0
    _print_report(report, source, args.truth)
    return 0


def _print_report(report: Any, source: str, truth: str | None) -> None:
    relevance = f"listed in {truth}" if truth else "same label"
    print(f"queries:   {report.queries} ({source}); relevant = {relevance}")
    if report.left_out:
        print(f"           {report.left_out} left out: no relevant item in the collection")
    for col in report.columns:
        if col.search == "index":
            print(f"{col.name}:  {col.collection} ({col.model}, {col.index} index)")
    print(
        f"95% CI:    percentile bootstrap over queries ({report.resamples} resamples, "
        f"seed {report.seed}); mAP@{report.depth} = mean AP@{report.depth}"
    )
    print()
    width = max(len(m) for m in report.metric_names())
    cell = 23
    print(f"{'metric':<{width}}  " + "".join(f"{c.name[:cell]:<{cell}}  " for c in report.columns))
    for metric in report.metric_names():
        cells = []
        for col in report.columns:
            value, low, high = col.metrics[metric]
            cells.append(f"{value:.3f} [{low:.3f}, {high:.3f}]".ljust(cell))
        print(f"{metric:<{width}}  " + "  ".join(cells))
    agreement = [c for c in report.columns if c.agreement is not None]
    for col in agreement:
        print(
            f"{col.name}: {col.agreement:.1%} of the index's top {report.depth} is the exact "
            f"top {report.depth}"
        )
    if report.labels:
        _print_labels(report)


def _print_labels(report: Any) -> None:
    if len(report.columns) == 1:
        metrics = [f"precision@{k}" for k in report.ks] + [f"mAP@{report.depth}"]
        heads = [m.replace("precision", "P") for m in metrics]
        cols = [(report.columns[0], m) for m in metrics]
    else:
        first = f"precision@{report.ks[0]}"
        mapk = f"mAP@{report.depth}"
        cols = [(c, m) for c in report.columns for m in (first, mapk)]
        heads = [f"{c.name[:14]} {m.replace('precision', 'P')}" for c, m in cols]
    label_w = max(len("label"), *(len(lab) for lab in report.labels))
    print()
    print(f"{'label':<{label_w}}  queries  " + "  ".join(f"{h:>{max(len(h), 6)}}" for h in heads))
    for label, n in report.labels.items():
        row = [
            f"{col.per_label[label][m]:>{max(len(h), 6)}.3f}"
            for (col, m), h in zip(cols, heads, strict=True)
        ]
        print(f"{label:<{label_w}}  {n:>7}  " + "  ".join(row))
