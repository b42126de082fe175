"""CLI commands ``lookalike duplicates`` and ``lookalike evaluate`` (registered through
``cli.PLUGIN_COMMANDS``). Heavy modules are imported inside the handlers."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import InvalidInput
from .argtypes import non_negative_int


def _threshold(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


LEVEL = "exact, near (default) or similar: see the description above"
THRESHOLD = (
    "exact: not used (pixels or bytes are equal); near: the largest Hamming distance, a whole "
    "number 0-64 of the 128 phash + dHash bits (default 12), or with --hashes phash 0-32 of "
    "the 64 phash bits (default 8); similar: the smallest embedding cosine, -1 to 1 "
    "(default 0.95)"
)
HASHES = (
    "near: all = phash + dHash of the image, its mirror and its trimmed content "
    "(reads each file once, then cached); phash = the stored phash only (fastest)"
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "duplicates",
        parents=[common],
        help="find exact, near and similar duplicates; optionally move them aside",
        description=(
            "Groups of duplicates (connected components), each with a suggested keeper "
            "(highest resolution, then largest file, then oldest). Levels: exact = identical "
            "pixels or bytes; near = perceptual hashes within a Hamming distance (default 12); "
            "similar = embedding cosine >= threshold (default 0.95)."
        ),
    )
    p.add_argument("--level", choices=["exact", "near", "similar"], default="near", help=LEVEL)
    p.add_argument("--threshold", type=_threshold, metavar="T", help=THRESHOLD)
    p.add_argument(
        "--hashes",
        choices=["all", "phash"],
        default="all",
        help=HASHES,
    )
    p.add_argument(
        "--against",
        metavar="OTHER_DIR",
        help="only items of this collection duplicated in OTHER_DIR (train/test leakage check)",
    )
    p.add_argument("--out", metavar="FILE", help="write the groups to FILE.csv or FILE.json")
    p.add_argument("--html", metavar="FILE", help="write a static HTML contact sheet")
    p.add_argument(
        "--html-max-groups",
        type=non_negative_int,
        default=1000,
        metavar="N",
        help="groups shown in the HTML report (default 1000)",
    )
    p.add_argument(
        "--plot",
        nargs=2,
        metavar=("GROUP", "FILE.png"),
        help="draw group number GROUP as a matplotlib grid into FILE.png (needs [plot])",
    )
    p.add_argument(
        "--move-to",
        metavar="DIR",
        help="move the non-keepers into DIR/group-N/ (a dry run unless --apply)",
    )
    p.add_argument(
        "--apply",
        action="store_true",
        help="with --move-to: really move them, writing DIR/lookalike-undo.json",
    )
    p.add_argument(
        "--undo", metavar="MANIFEST", help="move back the files listed in an undo manifest"
    )
    p.add_argument("--json", action="store_true", help="print the groups as JSON")
    p.set_defaults(func=cmd_duplicates)

    ev = sub.add_parser("evaluate", help="measure quality against a ground truth")
    evsub = ev.add_subparsers(dest="evaluate_command", metavar="WHAT")
    evsub.required = True
    d = evsub.add_parser(
        "duplicates",
        parents=[common],
        help="precision, recall and F1 of the duplicate finder (per pair, per group, per edit)",
    )
    d.add_argument(
        "--ground-truth",
        required=True,
        metavar="FILE",
        help="CSV with path (or id), group[, edit] columns, or a JSON list of groups",
    )
    d.add_argument(
        "--level",
        choices=["exact", "near", "similar"],
        default="near",
        help="level of the finder to evaluate (default near)",
    )
    d.add_argument("--threshold", type=_threshold, metavar="T", help=THRESHOLD)
    d.add_argument("--hashes", choices=["all", "phash"], default="all", help=HASHES)
    d.add_argument(
        "--predictions",
        metavar="FILE",
        help="evaluate a `duplicates --out` file instead of running the finder",
    )
    d.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    d.set_defaults(func=cmd_evaluate_duplicates)

    m = evsub.add_parser(
        "make-duplicates",
        parents=[common],
        help="build a near-duplicate test set with known edits from an image folder",
    )
    m.add_argument("src", metavar="SRC_DIR", help="folder of images to pick from")
    m.add_argument(
        "out",
        metavar="OUT_DIR",
        help="new (or empty) folder for originals/, distractors/, edited/ and ground_truth.csv",
    )
    m.add_argument(
        "--originals",
        type=non_negative_int,
        default=200,
        metavar="N",
        help="images that get edited copies (default 200)",
    )
    m.add_argument(
        "--distractors",
        type=non_negative_int,
        default=400,
        metavar="N",
        help="images without any duplicate (default 400)",
    )
    m.add_argument(
        "--seed", type=int, default=0, help="random seed: same seed, same set (default 0)"
    )
    m.set_defaults(func=cmd_make_duplicates)

    from .evaluate import register_retrieval

    register_retrieval(evsub, common)


def _open(directory: str | None) -> Any:
    from ..collection import Collection

    return Collection.open(directory, create=False)


def cmd_duplicates(args: argparse.Namespace) -> int:
    from ..dedup.actions import apply_moves, plan_moves, undo_moves

    if args.undo:
        if args.move_to or args.apply:
            raise InvalidInput("--undo cannot be combined with --move-to or --apply")
        ureport = undo_moves(args.undo)
        print(f"restored {ureport.restored}, not moved {ureport.not_moved}")
        for path, back in ureport.renamed:
            print(f"  {path} existed: restored as {back}")
        for path, why in ureport.skipped:
            print(f"  skipped {path}: {why}")
        return 1 if ureport.skipped else 0
    if args.apply and not args.move_to:
        raise InvalidInput("--apply needs --move-to DIR (nothing is ever deleted)")
    coll = _open(args.collection)
    other = None
    try:
        if args.against:
            other = _open(args.against)
        groups = coll.duplicates(args.level, args.threshold, against=other, hashes=args.hashes)
        if args.out:
            from ..dedup.report import write_groups

            write_groups(groups, args.out)
        if args.html:
            from ..dedup.report import write_html

            write_html(groups, args.html, max_groups=args.html_max_groups)
        if args.plot:
            from ..dedup.report import plot_group

            number, png = args.plot
            chosen = [g for g in groups if str(g.number) == number]
            if not chosen:
                raise InvalidInput(f"--plot: no group {number} (there are {len(groups)} groups)")
            plot_group(chosen[0], png)
        n_dups = sum(len(g.duplicates) for g in groups)
        if args.json:
            print(json.dumps([g.to_dict() for g in groups], ensure_ascii=False))
        elif not (args.out or args.html or args.move_to or args.plot):
            _print_groups(groups)
        if not args.json:
            what = "duplicated in " + str(other.root) if other is not None else "duplicates"
            print(f"{len(groups)} groups, {n_dups} {what} (level {args.level})")
            if args.out:
                print(f"wrote {args.out}")
            if args.html:
                print(f"wrote {args.html}")
            if args.plot:
                print(f"wrote {args.plot[1]}")
        if args.move_to:
            moves = plan_moves(groups, args.move_to)
            if not args.apply:
                total = sum(m.size or 0 for m in moves)
                print(f"dry run: would move {len(moves)} files ({total:,} bytes) to {args.move_to}")
                for mv in moves:
                    print(f"  {mv.src} -> {mv.dest}")
                print("nothing was moved; add --apply to move them")
                return 0
            report = apply_moves(moves, args.move_to, str(coll.root))
            print(
                f"moved {len(report.moved)}, already moved {len(report.already)}, "
                f"skipped {len(report.skipped)}; undo manifest: {report.manifest}"
            )
            for mv, why in report.skipped:
                print(f"  skipped {mv.src}: {why}")
            if report.moved:
                print("run `lookalike index` on the sources again to drop the moved items")
            return 1 if report.skipped else 0
    finally:
        coll.close()
        if other is not None:
            other.close()
    return 0


def _print_groups(groups: list[Any]) -> None:
    for g in groups:
        k = g.keeper
        print(f"group {g.number} ({len(g.members)} items)")
        print(f"  keeper  {_dims(k)}  {k.path or k.id}")
        for m in g.duplicates:
            print(f"  {m.score:.4f}  {_dims(m)}  {m.path or m.id}")


def _dims(m: Any) -> str:
    return f"{m.width}x{m.height}" if m.width and m.height else "?"


def cmd_evaluate_duplicates(args: argparse.Namespace) -> int:
    from ..dedup.evaluate import (
        evaluate,
        format_table,
        groups_from_finder,
        read_ground_truth,
        read_predictions,
        report_to_dict,
    )

    truth = read_ground_truth(args.ground_truth)
    if args.predictions:
        predicted = read_predictions(args.predictions, truth.key)
        label = args.predictions
    else:
        coll = _open(args.collection)
        try:
            groups = coll.duplicates(args.level, args.threshold, hashes=args.hashes)
        finally:
            coll.close()
        predicted = groups_from_finder(groups, truth.key)
        label = f"level {args.level}" + (
            f", threshold {args.threshold:g}" if args.threshold is not None else ""
        )
    result = evaluate(predicted, truth)
    if args.json:
        print(json.dumps({"predictions": label, **report_to_dict(result)}))
    else:
        print(f"{label}: {result['items']} items")
        print(format_table(result))
    return 0


def cmd_make_duplicates(args: argparse.Namespace) -> int:
    from ..dedup.testset import make_duplicate_set

    truth = make_duplicate_set(
        args.src, args.out, originals=args.originals, distractors=args.distractors, seed=args.seed
    )
    print(f"wrote the test set and its ground truth {truth}")
    return 0
