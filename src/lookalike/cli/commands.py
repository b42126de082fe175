"""Handlers of the collection commands: index, info, remove, export (search and models: search.py). Each takes the parsed arguments and returns the exit code."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import InvalidInput, LookalikeError


def _open(
    args: argparse.Namespace,
    *,
    create: bool = False,
    model: str | None = None,
    model_path: str | None = None,
) -> Any:
    from ..collection import Collection

    fast = getattr(args, "fast_resize", False)
    return Collection.open(
        args.collection, model, model_path=model_path, create=create, fast_resize=fast
    )


def cmd_index(args: argparse.Namespace) -> int:
    from ..ingest.decode import DecodeLimits
    from ..ingest.download import DownloadOptions
    from ..store.settings import KNOBS
    from .progress import Progress
    from .remote import remote_lines, remote_spec

    spec = remote_spec(args)  # checked before anything is opened
    options = {name: getattr(args, name) for name in [*KNOBS, "recall_target"]}
    configure = spec is None and (
        args.index_type is not None
        or args.max_memory is not None
        or any(v is not None for v in options.values())
    )
    if not args.sources and not configure and spec is None:
        if args.model_path is None:
            raise InvalidInput(
                "give a SOURCE to index, --index / --max-memory / --recall-target / a knob to"
                " change the index, or --model-path to point the collection at its moved model"
                " folder"
            )
        coll = _open(args, model_path=args.model_path)  # checks (and records) the model
        coll.close()
        _print_notes(coll.notes)
        if not coll.notes:
            print(f"model: {coll.config['model'].get('model_path')} (unchanged)")
        return 0
    if not args.sources:
        coll = _open(args, model=args.model, model_path=args.model_path)
        _print_notes(coll.notes)
        try:
            _notes(coll.index.configure(args.index_type, args.max_memory, **options))
            idx = coll.index.ensure()
        finally:
            coll.close()
        if args.json:
            print(json.dumps({"index": idx}))
        else:
            print(_index_line(idx))
            _print_index_notes(idx)
        return 0
    coll = _open(args, create=True, model=args.model, model_path=args.model_path)
    _print_notes(coll.notes)
    try:
        if spec is not None:
            coll.use_store(spec)
            coll.publish()  # items stored before the store was chosen
        elif coll.remote is not None:
            coll.publish()  # left over by an interrupted run
    except LookalikeError:
        coll.close()
        raise
    if args.index_type == "ivf-flat" and coll.remote is None:
        coll.close()
        raise InvalidInput("ivf-flat is a Milvus index: give it with --store milvus")
    if configure and coll.remote is None:
        try:
            _notes(coll.index.configure(args.index_type, args.max_memory, **options))
        except LookalikeError:
            coll.close()
            raise
    stored = coll.filters()  # filters are collection settings: an omitted flag keeps them; 0 = off
    min_side = stored["min_side"] if args.min_side is None else args.min_side or None
    max_aspect = stored["max_aspect"] if args.max_aspect is None else args.max_aspect or None
    if max_aspect is not None and max_aspect < 1:
        coll.close()
        raise InvalidInput(f"--max-aspect must be 1 or more (0 = off), not {max_aspect:g}")
    limits = DecodeLimits(
        max_megapixels=args.max_megapixels,
        min_side=min_side,
        max_aspect=max_aspect,
        max_file_mb=args.max_file_mb,
    )
    device = _index_device(coll)
    batch_size = args.batch_size
    if device is not None and device.is_cuda:
        from ..models.gpu_session import batch_size_for

        batch_size = batch_size or batch_size_for(device)
    show = not args.no_progress and sys.stderr.isatty()
    label = f"indexing on {device.describe()}" if device is not None else "indexing"
    progress = Progress(label) if show else None
    if device is not None and device.is_cuda and not show and not args.json:
        print(f"device: {device.describe()}", file=sys.stderr)
    try:
        report = coll.add(
            args.sources,
            limits=limits,
            workers=args.workers,
            decode=args.decode,
            batch_size=batch_size or 32,
            progress=progress,
            download_options=DownloadOptions(
                workers=args.download_workers, timeout=args.download_timeout
            ),
        )
        idx = coll.index.ensure() if len(coll) else coll.index.info()
        remote = None
        if coll.remote is not None:
            coll.remote.measure_recall()
            remote = coll.remote.info()
    finally:
        if progress:
            progress.close()
        coll.close()
    for note in report.notes:
        print(f"lookalike: {note}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        seconds = {k: round(v, 3) for k, v in report.seconds.items()}
        print(json.dumps({**report.to_dict(), "seconds": seconds}))
    else:
        d = report.to_dict()
        print(
            f"indexed {d['indexed']}, unchanged {d['unchanged']}, renamed {d['renamed']}, "
            f"removed {d['removed']}, skipped {d['skipped']}"
        )
        for path, reason, detail in report.skipped_files[:10]:
            print(f"  skipped {path}: {reason}{' (' + detail + ')' if detail else ''}")
        if len(report.skipped_files) > 10:
            print(f"  ... and {len(report.skipped_files) - 10} more (`lookalike info` lists them)")
        if remote is not None:
            print("\n".join(remote_lines(remote)))
        elif idx.get("count"):
            print(_index_line(idx))
    _print_index_notes(idx)
    return 0


def _notes(notes: list[str]) -> None:
    for note in notes:
        print(f"lookalike: note: {note}", file=sys.stderr)


def _index_line(idx: dict[str, Any]) -> str:
    from ..store.planning import format_size

    line = f"index:      {idx['type']}"
    if idx.get("requested") and idx["requested"] != idx["type"]:
        line += f" (requested {idx['requested']})"
    line += f", {idx['count']} vectors, {format_size(idx['bytes'])}"
    if not idx["current"]:
        line += " (stale: rebuilt on next search)"
    params = idx.get("params") or {}
    if params:
        line += "\n            params " + ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
        if idx.get("explicit"):
            line += f" (given: {', '.join(idx['explicit'])}; the rest chosen or tuned)"
    lat = idx.get("latency_ms") or {}
    if idx.get("recall_at_10") is not None:
        line += f"\n            recall@10 {idx['recall_at_10']:.3f} (target {idx['recall_target']})"
        if lat.get("p50") is not None:
            line += f", p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms"
        if idx.get("memory_bytes") is not None:
            line += f", memory {format_size(idx['memory_bytes'])}"
    if idx.get("rebuilt_from_vectors"):
        line += (
            f"\n            rebuilt from stored vectors ({idx.get('rebuild_reason') or 'stale'})"
        )
    if idx.get("tombstones"):
        line += f"\n            {idx['tombstones']} removed items awaiting the next rebuild"
    return line


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        print(f"note: {note}")


def _print_index_notes(idx: dict[str, Any]) -> None:
    for key in ("note", "warning"):
        if idx.get(key):
            print(f"lookalike: {key}: {idx[key]}", file=sys.stderr)
    return None


def _index_device(coll: Any) -> Any:
    """The device a neural model will run on (None for hash models, which use no device);
    raises at once when CUDA was asked for and cannot be used."""
    if coll.binary:
        return None
    from ..models.device import resolve_device

    return resolve_device()


def cmd_info(args: argparse.Namespace) -> int:
    coll = _open(args)
    try:
        info = coll.info()
    finally:
        coll.close()
    if args.json:
        print(json.dumps(info, ensure_ascii=False))
        return 0
    idx = info["index"]
    print(f"collection: {info['collection']}")
    print(f"items:      {info['items']}")
    print(f"model:      {info['model']} ({info['dim']} dims, {info['metric']})")
    if info.get("model_path"):
        state = (
            ""
            if info.get("model_present")
            else " (missing: if it moved, run `lookalike index --model-path NEWPLACE`)"
        )
        print(f"model path: {info['model_path']}{state}")
    if info.get("fast_resize"):
        print("resize:     fast (OpenCV; --fast-resize)")
    if not coll.binary and info.get("model_present") is not False:
        from ..models.device import resolve_device

        device = resolve_device()
        print(f"device:     {device.describe()}" + (f" ({device.note})" if device.note else ""))
    if info.get("remote"):
        from .remote import remote_lines

        print("\n".join(remote_lines(info["remote"])))
    else:
        print(_index_line(idx))
    for key in ("note", "warning"):
        if idx.get(key) and not info.get("remote"):
            print(f"            {key}: {idx[key]}")
    print(f"vectors:    {info['vectors']['bytes']} bytes ({info['vectors']['dtype']})")
    print(f"skipped:    {len(info['skipped'])}")
    for s in info["skipped"]:
        print(f"  {s['path']}: {s['reason']}{' (' + s['detail'] + ')' if s['detail'] else ''}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    coll = _open(args)
    try:
        n = coll.remove(args.ids)
    finally:
        coll.close()
    print(f"removed {n}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    coll = _open(args)
    try:
        n = coll.export(args.format, args.out)
    finally:
        coll.close()
    print(f"exported {n} items to {args.out}")
    return 0
