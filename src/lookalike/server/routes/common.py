"""What the route modules share: the wiring ``create_app`` hands them, the API-key
dependencies, reading uploaded files, and running short reads on the event loop."""

from dataclasses import dataclass
from typing import Any

from fastapi import Depends, HTTPException, Request, UploadFile
from fastapi.security import APIKeyHeader

from ...errors import ImageRejected, InvalidInput
from ..locking import read_now as read_now  # re-exported: the routes' helper
from ..metrics import Metrics
from ..security import check_api_key
from ..service import ServerSettings, Service


@dataclass(frozen=True)
class Wiring:
    """The app's parts the routes use. ``read_dep``/``write_dep`` are the ``dependencies=``
    of read and write endpoints (see :func:`access_dependencies`)."""

    service: Service
    settings: ServerSettings
    metrics: Metrics
    read_dep: list[Any]
    write_dep: list[Any]


def access_dependencies(settings: ServerSettings) -> tuple[list[Any], list[Any]]:
    """The API-key dependencies of read and write endpoints. Open reads carry no auth
    dependency at all (it would cost every search a little)."""
    key_header = APIKeyHeader(
        name="X-API-Key", auto_error=False, description="the server's --api-key"
    )

    def _check(request: Request, needed: bool) -> None:
        if not needed or settings.api_key is None:
            return
        headers = {
            "x-api-key": request.headers.get("x-api-key"),
            "authorization": request.headers.get("authorization"),
        }
        present = {k: v for k, v in headers.items() if v is not None}
        if not check_api_key(settings.api_key, present):
            raise HTTPException(
                401,
                "missing or wrong API key (send it as X-API-Key)",
                {"WWW-Authenticate": "ApiKey"},
            )

    async def read_access(request: Request, _key: str | None = Depends(key_header)) -> None:
        _check(request, settings.api_key_all)

    async def write_access(request: Request, _key: str | None = Depends(key_header)) -> None:
        _check(request, True)

    read_dep = [Depends(read_access)] if settings.api_key_all else []
    write_dep = [Depends(write_access)]
    return read_dep, write_dep


async def read_files(files: list[UploadFile], settings: ServerSettings) -> list[bytes]:
    """The uploads' bytes, within the per-request file count and per-file size limits."""
    if len(files) > settings.max_files:
        raise InvalidInput(f"at most {settings.max_files} files per request")
    out = []
    for f in files:
        data = await f.read()
        if len(data) > settings.max_upload_bytes:
            raise ImageRejected(
                "too-large", f"{f.filename or 'upload'} is over the upload size limit"
            )
        out.append(data)
    return out
