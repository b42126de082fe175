"""The search service: a FastAPI app (``create_app``) and the ``lookalike serve`` command.

FastAPI is imported only when the app is built, so importing this package (as the CLI does)
stays cheap; without the ``[server]`` extra :func:`create_app` raises MissingDependency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from ..collection import Collection
    from ..distributed.served import ServedCollection
    from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "require_server_extra"]


def require_server_extra() -> None:
    """Raise MissingDependency unless fastapi, uvicorn and python-multipart are installed."""
    import importlib.util

    from ..errors import MissingDependency

    missing = [
        name
        for name in ("fastapi", "uvicorn", "multipart")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise MissingDependency(
            f"the server needs {', '.join(missing)}: pip install 'lookalike[server]'"
        )


def create_app(
    collection_dir: str | Path | Collection | ServedCollection,
    settings: ServerSettings | None = None,
    *,
    uploads: Path | None = None,
) -> Any:
    """The FastAPI app serving a collection (see :mod:`lookalike.server.app`)."""
    require_server_extra()
    from .app import create_app as _create

    return _create(collection_dir, settings, uploads=uploads)


def __getattr__(name: str) -> Any:
    if name == "ServerSettings":  # lazy: keeps `import lookalike.server` cheap for the CLI
        from .settings import ServerSettings

        return ServerSettings
    raise AttributeError(name)
