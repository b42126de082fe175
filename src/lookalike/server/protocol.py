"""uvicorn's HTTP protocol with JSON for the one answer the app never sees.

uvicorn (its httptools or h11 parser) answers a request it cannot parse (a bad request line
or header, an invalid or repeated Content-Length, broken chunked encoding, a non-ASCII
byte in the path) with ``400 Invalid HTTP request received.`` in plain text, before any
ASGI app runs. :func:`json_http_protocol` returns uvicorn's protocol class with that answer
as ``{"error": "..."}``, so every error a client sees from ``lookalike serve`` is JSON. It
overrides ``send_400_response``, the hook uvicorn has had for years; should a future
uvicorn lack it, the class is left as it is (plain text 400s again, nothing worse).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

__all__ = ["json_http_protocol"]


def _json_400(msg: str) -> bytes:
    return json.dumps({"error": msg.rstrip(".") or "invalid HTTP request"}).encode()


def json_http_protocol() -> type[asyncio.Protocol] | str:
    """The protocol class for ``uvicorn.run(http=...)``; ``"auto"`` if uvicorn changed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # no httptools: uvicorn uses h11
        try:
            from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]
        except ImportError:  # pragma: no cover - uvicorn reorganised
            return "auto"
    if not hasattr(Base, "send_400_response"):  # pragma: no cover - uvicorn changed
        return "auto"

    class JSONErrorsProtocol(Base):  # type: ignore[valid-type,misc]
        def send_400_response(self, msg: str) -> None:
            body = _json_400(msg)
            head = [b"HTTP/1.1 400 Bad Request\r\n"]
            for name, value in getattr(self.server_state, "default_headers", []):
                head.append(name + b": " + value + b"\r\n")
            head.append(b"content-type: application/json\r\n")
            head.append(b"content-length: " + str(len(body)).encode("ascii") + b"\r\n")
            head.append(b"x-content-type-options: nosniff\r\nconnection: close\r\n\r\n")
            transport: Any = self.transport
            transport.write(b"".join(head) + body)
            transport.close()

    return JSONErrorsProtocol
