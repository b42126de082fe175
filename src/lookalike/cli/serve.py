"""``lookalike serve``: run the search service on uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from typing import Any

from ..errors import InvalidInput
from .argtypes import add_device_argument, port, positive_float

log = logging.getLogger(__name__)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve",
        parents=[common],
        help="run the REST API and web page for a collection",
        description=(
            "Serve a collection over HTTP: a JSON API (OpenAPI docs at /docs) and a search "
            "page at /. Binds to 127.0.0.1 unless --host says otherwise."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add_device_argument(p)
    p.add_argument("--port", type=port, default=8000, help="port (default 8000)")
    p.add_argument(
        "--api-key",
        metavar="KEY",
        help="require this key (X-API-Key header) for write endpoints; "
        "default: $LOOKALIKE_API_KEY if set",
    )
    p.add_argument(
        "--api-key-all", action="store_true", help="require the API key on every API endpoint"
    )
    p.add_argument(
        "--allow-urls",
        action="store_true",
        help="allow searching by image URL (public http/https addresses only)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow cross-origin requests from ORIGIN (repeatable; default: none)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=positive_float,
        default=20.0,
        metavar="MB",
        help="largest accepted upload (default 20)",
    )
    p.add_argument(
        "--max-megapixels",
        type=positive_float,
        default=50.0,
        metavar="MP",
        help="largest accepted image in megapixels (default 50)",
    )
    p.add_argument(
        "--model",
        metavar="NAME",
        help="create the collection with this model if it does not exist yet",
    )
    stateless = p.add_argument_group(
        "stateless replica (no collection folder: vectors in Milvus, metadata in Redis)"
    )
    stateless.add_argument(
        "--milvus-uri", metavar="URI", help="Milvus server (http://HOST:19530) or Lite file"
    )
    stateless.add_argument(
        "--milvus-collection", metavar="NAME", help="Milvus collection (default lookalike)"
    )
    stateless.add_argument(
        "--metadata", metavar="URI", help="Redis holding the items (redis://HOST:6379/0)"
    )
    stateless.add_argument(
        "--uploads",
        metavar="DIR",
        help="folder every replica can read (e.g. a network mount) for images added by upload",
    )
    stateless.add_argument(
        "--model-path",
        metavar="DIR",
        help="where this machine has the collection's local model folder (checked by content)",
    )
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..collection import Collection
    from ..server import ServerSettings, create_app, require_server_extra

    require_server_extra()
    api_key = args.api_key if args.api_key is not None else os.environ.get("LOOKALIKE_API_KEY")
    settings = ServerSettings(
        api_key=api_key,
        api_key_all=args.api_key_all,
        allow_urls=args.allow_urls,
        cors_origins=tuple(args.cors_origin),
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_megapixels=args.max_megapixels,
    )
    if "*" in settings.cors_origins and api_key is None:
        raise InvalidInput("--cors-origin '*' needs --api-key")
    if not _is_loopback(args.host) and api_key is None:
        print(
            f"lookalike: warning: serving on {args.host} without --api-key: anyone who can "
            "reach it can add and remove items",
            file=sys.stderr,
        )
    target: Any
    if args.milvus_uri is not None or args.metadata is not None:
        target, app = _stateless(args, settings)
        what = f"{target.spec.display} ({len(target)} items)"
    else:
        if args.uploads is not None or args.model_path is not None:
            raise InvalidInput("--uploads and --model-path are for a replica: give --milvus-uri")
        target = Collection.open(args.collection, args.model, create=args.model is not None)
        what = f"{target.root} ({len(target)} items)"
        try:
            app = create_app(target, settings)
        except BaseException:
            target.close()
            raise
    try:
        import uvicorn

        from ..server.gcpause import FreezeAfterWarmup, freeze_now
        from ..server.protocol import json_http_protocol

        print(f"lookalike: serving {what} on http://{args.host}:{args.port}/", file=sys.stderr)
        freeze_now()  # what the start made lives as long as the server: see gcpause.py
        uvicorn.run(
            FreezeAfterWarmup(app),
            host=args.host,
            port=args.port,
            log_level="warning" if args.verbose == 0 else "info",
            server_header=False,
            http=json_http_protocol(),  # uvicorn's own 400s in JSON too
            access_log=args.verbose > 0,
        )
    finally:
        target.close()
    return 0


def _stateless(args: argparse.Namespace, settings: Any) -> tuple[Any, Any]:
    """The replica's ServedCollection and app (Milvus + Redis + the shared uploads)."""
    from pathlib import Path

    from ..distributed.config import RemoteSpec
    from ..distributed.served import ServedCollection
    from ..server import create_app

    if args.milvus_uri is None or args.metadata is None:
        raise InvalidInput("a stateless replica needs both --milvus-uri and --metadata")
    if args.collection is not None:
        raise InvalidInput("a replica has no collection folder: drop --collection")
    if args.uploads is None:
        raise InvalidInput("a replica needs --uploads DIR, a folder every replica can read")
    spec = RemoteSpec.parse(args.milvus_uri, args.milvus_collection, None, None, args.metadata)
    served = ServedCollection(spec, model=args.model, model_path=args.model_path)
    try:
        return served, create_app(served, settings, uploads=Path(args.uploads).resolve())
    except BaseException:
        served.close()
        raise


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
