"""The server's settings (what ``lookalike serve`` sets from its options)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidInput

__all__ = ["ServerSettings"]


@dataclass(frozen=True)
class ServerSettings:
    """How the server behaves. Everything defaults to the safe choice."""

    api_key: str | None = None
    api_key_all: bool = False  # require the key on read endpoints too
    allow_urls: bool = False  # fetch images by URL (SSRF-guarded)
    cors_origins: tuple[str, ...] = ()
    max_upload_bytes: int = 20 * 2**20
    max_megapixels: float = 50.0
    max_files: int = 32
    max_k: int = 1000
    thumbnail_px: int = 256
    fetch_timeout: float = 10.0  # one total deadline per URL fetch, redirects included
    max_fetches: int = 8  # URL fetches at once; more get a 503 with Retry-After
    decode_memory_mb: float = 2048.0  # estimated peak memory of image decodes at once
    busy_wait: float = 2.0  # seconds a decode or a write waits for its turn before a 503
    # Tests only (not on the CLI): let the URL guard accept loopback/private addresses so the
    # success path of fetching can be exercised against a local test server.
    allow_private_for_tests: bool = False

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise InvalidInput("the API key must not be empty")
        if self.api_key_all and self.api_key is None:
            raise InvalidInput("--api-key-all needs --api-key")
        if self.max_upload_bytes < 1:
            raise InvalidInput("the upload size limit must be positive")
        if self.max_files < 1 or self.max_k < 1 or self.thumbnail_px < 16:
            raise InvalidInput("max_files and max_k must be positive, thumbnail_px >= 16")
        if self.max_fetches < 1 or self.decode_memory_mb <= 0 or self.busy_wait < 0:
            raise InvalidInput("max_fetches and decode_memory_mb must be positive")
