"""``lookalike serve`` keeps the collector's full passes short: what lives once the server
has started and answered its first requests is frozen out of them (``server/gcpause.py``)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from lookalike.server.gcpause import FreezeAfterWarmup


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process collects as before


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _fails(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("the app failed")


def _request(app: Any, kind: str = "http") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    asyncio.run(app({"type": kind}, receive, send))
    return sent


def test_objects_alive_after_the_first_requests_are_frozen_once(unfrozen: None) -> None:
    app = FreezeAfterWarmup(_ok, after=3)
    _request(app, "lifespan")  # not a request
    for _ in range(2):
        assert _request(app)[0]["status"] == 200
        assert gc.get_freeze_count() == 0
    _request(app)
    assert gc.get_freeze_count() > 0  # the third request froze the heap
    gc.unfreeze()
    for _ in range(3):
        _request(app)
    assert gc.get_freeze_count() == 0  # once only


def test_a_failing_request_counts_and_its_error_goes_through(unfrozen: None) -> None:
    app = FreezeAfterWarmup(_fails, after=1)
    with pytest.raises(RuntimeError, match="the app failed"):
        _request(app)
    assert gc.get_freeze_count() > 0
