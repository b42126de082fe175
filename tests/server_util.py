"""Helpers for the server tests: a gallery collection and a live uvicorn server in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from imagegen import photo_like, save

from lookalike.collection import Collection

# Gallery: label -> photo_like seeds. Names say the expected answer: <label>/<seed>.jpg.
GALLERY = {"red": [1, 2, 3, 4], "blue": [11, 12, 13, 14]}


def make_gallery(folder: Path) -> Path:
    for label, seeds in GALLERY.items():
        for seed in seeds:
            save(photo_like(seed, (160, 120)), folder / label / f"{seed}.jpg", quality=90)
    return folder


def make_collection(
    root: Path, model: str | None = "phash", model_path: Path | None = None
) -> Collection:
    images = make_gallery(root / "gallery")
    coll = Collection.open(root / "coll", model, model_path=model_path)
    coll.add([str(images)], workers=0)
    return coll


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Run ``app`` on uvicorn in a daemon thread on a free 127.0.0.1 port; yield its base URL."""
    import uvicorn

    from lookalike.server.protocol import json_http_protocol

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", http=json_http_protocol(), server_header=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def client(coll: Collection, **settings: Any) -> Any:
    """An in-process client of the app serving ``coll`` (a server error becomes a 500)."""
    from fastapi.testclient import TestClient

    from lookalike.server import ServerSettings, create_app

    return TestClient(create_app(coll, ServerSettings(**settings)), raise_server_exceptions=False)
