"""The distributed-mode flags: ``index --store milvus --milvus-uri URI [--milvus-collection
NAME] [--metadata redis://...]`` and what ``index``/``info`` print about the remote store."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput

if TYPE_CHECKING:
    from ..distributed.config import RemoteSpec

# our knob names (store/settings.py) -> Milvus' index parameter names (store/milvus_index.py)
KNOB_PARAMS = {
    "nlist": "nlist",
    "nprobe": "nprobe",
    "hnsw_m": "M",
    "ef_construction": "efConstruction",
    "ef_search": "ef",
}


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        choices=("embedded", "milvus"),
        help="where vectors are searched: embedded (default: FAISS files in the folder) or"
        " milvus (remembered; needs --milvus-uri and the milvus extra)",
    )
    p.add_argument(
        "--milvus-uri",
        metavar="URI",
        help="Milvus server (http://HOST:19530) or a Milvus Lite file (PATH.db); credentials"
        " from $LOOKALIKE_MILVUS_TOKEN or $LOOKALIKE_MILVUS_USER/$LOOKALIKE_MILVUS_PASSWORD",
    )
    p.add_argument(
        "--milvus-collection",
        metavar="NAME",
        help="Milvus collection name (default lookalike)",
    )
    p.add_argument(
        "--metadata",
        metavar="URI",
        help="keep item metadata in Redis (redis://HOST:6379/0; password from"
        " $LOOKALIKE_REDIS_PASSWORD) so that `lookalike serve` replicas need no folder",
    )
    p.add_argument(
        "--redis-vectors",
        action="store_true",
        default=None,
        help="keep each item's vector in Redis too (with --metadata; set when the store is"
        " first made): replicas answer /similar with one Milvus call instead of two, for"
        " 4 x dim bytes of Redis memory per item",
    )


def remote_spec(args: argparse.Namespace) -> RemoteSpec | None:
    """The remote store the flags ask for, checked before anything is opened; None: none."""
    store = getattr(args, "store", None)
    uri = getattr(args, "milvus_uri", None)
    others = [
        flag
        for flag, value in (
            ("--milvus-collection", getattr(args, "milvus_collection", None)),
            ("--metadata", getattr(args, "metadata", None)),
            ("--redis-vectors", getattr(args, "redis_vectors", None)),
        )
        if value is not None
    ]
    if store == "embedded":
        if uri is not None or others:
            raise InvalidInput(
                "--store embedded takes no --milvus-uri, --milvus-collection, --metadata or"
                " --redis-vectors"
            )
        return None
    if store is None and uri is None:
        if others:
            raise InvalidInput(f"{others[0]} needs --store milvus --milvus-uri URI")
        return None
    if uri is None:
        raise InvalidInput("--store milvus needs --milvus-uri (http://HOST:19530 or FILE.db)")
    from ..distributed.config import RemoteSpec

    index = getattr(args, "index_type", None)
    params = {
        name: getattr(args, knob, None)
        for knob, name in KNOB_PARAMS.items()
        if isinstance(getattr(args, knob, None), int)
    }
    if getattr(args, "pq_m", None) is not None:
        raise InvalidInput("--pq-m is for the embedded ivf-pq index; a Milvus store has none")
    return RemoteSpec.parse(
        uri, args.milvus_collection, index, params, args.metadata, bool(args.redis_vectors)
    )


def remote_lines(info: dict[str, Any]) -> list[str]:
    """What ``index`` and ``info`` print about a remote store."""
    params = info.get("params") or {}
    knobs = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    lines = [
        f"store:      {info['store']}",
        f"            {info.get('type')} ({info.get('milvus_index')}{', ' + knobs if knobs else ''}),"
        f" {info.get('count')} vectors",
    ]
    if info.get("rerank"):
        lines.append(f"            re-ranked by exact scores ({info['rerank'].split(', ')[-1]})")
    if info.get("redis_vectors"):
        lines.append("            item vectors kept in Redis too (one Milvus call per /similar)")
    measured = info.get("measured")
    if measured:
        lines.append(
            f"            recall@10 {measured['recall_at_10']:.3f} against exact search"
            f" ({measured['queries']} queries over {measured['items']} items)"
        )
    if info.get("pending_publish"):
        lines.append(
            f"            {info['pending_publish']} changes not yet published (the next"
            " index, remove or import publishes them)"
        )
    return lines
