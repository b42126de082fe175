"""Download the images that manifests list by URL into a local cache folder, one file per id.

* Only ``http`` and ``https`` URLs are fetched (redirects are followed, to http/https only);
  the usual ``*_proxy`` environment variables are honoured.
* Resumable: a complete file already in the cache is never fetched again
  (``DownloadResult.cached``). A download is written to ``<target>.part`` and renamed into
  place only once complete (checked against ``Content-Length`` / ``Content-Range`` when the
  server sends them). An existing ``.part`` (from an interrupted run, or from a connection that
  dropped mid-body in this run) is resumed with ``Range: bytes=N-``; if the server answers
  ``200`` instead of ``206``, the download starts over.
* Retries with exponential backoff (and jitter) on connection errors, timeouts, ``5xx``,
  ``408`` and ``429`` (``Retry-After`` is honoured, capped); other ``4xx`` fail at once with
  ``"HTTP <code> <reason>"``.
* Each attempt is bounded in wall time by ``DownloadOptions.timeout``: a watchdog shuts the
  socket down when it expires, so a server that trickles bytes (even headers) cannot hang a
  run. ``max_bytes`` is enforced both on ``Content-Length`` and while streaming.
* :meth:`Downloader.fetch_many` never raises for a single URL: every failure is a
  :class:`DownloadResult` with a one-line ``error``.

The cache keeps one file per id: if the URL of an id changes but its extension does not, the
cached file is reused. On case-insensitive file systems, ids differing only in case share a
file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ..errors import DownloadError
from .http import DownloadOptions, _Cancel, _Fail, _one_line, _os_text, _transfer, _with_retries
from .sources import IMAGE_EXTENSIONS

if TYPE_CHECKING:
    from concurrent.futures import Future

logger = logging.getLogger(__name__)

__all__ = ["DownloadOptions", "DownloadResult", "Downloader", "fetch_url"]

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"}
    | {f"com{i}" for i in range(1, 10)}
    | {f"lpt{i}" for i in range(1, 10)}
)
_SCHEMES = ("http", "https")

T = TypeVar("T")


_DEFAULT_OPTIONS = DownloadOptions()


@dataclass
class DownloadResult:
    """The outcome for one (id, url). ``path`` is set on success, ``error`` (one line) on
    failure; ``cached``: the file was already complete on disk and no request was made."""

    id: str
    url: str
    path: Path | None
    error: str | None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.path is not None


class Downloader:
    """Downloads URLs into ``cache_dir``, one file per id (see the module docstring)."""

    def __init__(self, cache_dir: Path, options: DownloadOptions = _DEFAULT_OPTIONS) -> None:
        self.cache_dir = Path(os.path.abspath(cache_dir))
        self.options = options

    def target_path(self, id: str, url: str) -> Path:
        """Where the file for ``id`` lives: ``cache_dir / <safe name><extension>``.

        Ids made of letters, digits, ``.``, ``_`` and ``-`` (starting with a letter or digit,
        at most 100 characters) are used as they are; any other id is cleaned up and given a
        hash suffix, deterministically, so the result is always a plain file name directly
        inside ``cache_dir``. The extension comes from the URL path when it is an image
        extension, else ``.img``.
        """
        path = self.cache_dir / (_safe_stem(id) + _url_extension(url))
        if path.parent != self.cache_dir:  # cannot happen; belt and braces
            raise DownloadError(f"unsafe cache file name for id {id!r}")
        return path

    def fetch_many(self, items: Iterable[tuple[str, str]]) -> Generator[DownloadResult, None, None]:
        """Download every ``(id, url)``; yield one result per item, in completion order.

        Items whose file is already complete in the cache are yielded at once (``cached``)
        without a request. At most ``2 * workers`` downloads are queued at a time, so
        ``items`` may be a lazy iterator over a huge manifest. Items sharing a target file
        (a repeated id) are fetched once. Closing the iterator early (``close()``, or dropping
        it) cancels what is queued and aborts the downloads in progress (their ``.part`` files
        stay, to be resumed next time).

        Raises DownloadError only if the cache folder cannot be created.
        """
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DownloadError(
                f"cannot create download cache {self.cache_dir}: {exc.strerror or exc}"
            ) from None

        max_in_flight = 2 * self.options.workers
        stop = _Cancel()
        running: dict[Future[DownloadResult], Path] = {}
        # target -> items waiting for the running download of the same target
        waiting: dict[Path, list[tuple[str, str]]] = {}
        source = iter(items)
        exhausted = False
        executor = ThreadPoolExecutor(
            max_workers=self.options.workers, thread_name_prefix="lookalike-download"
        )

        def submit(id: str, url: str, target: Path) -> None:
            running[executor.submit(self._fetch_one, id, url, target, stop)] = target

        try:
            while True:
                while not exhausted and len(running) < max_in_flight:
                    try:
                        id, url = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    early = self._precheck(id, url)
                    if isinstance(early, DownloadResult):
                        yield early
                        continue
                    if early in waiting:
                        waiting[early].append((id, url))
                        continue
                    if early.is_file():
                        yield DownloadResult(id, url, early, None, cached=True)
                        continue
                    waiting[early] = []
                    submit(id, url, early)
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    target = running.pop(future)
                    result = future.result()
                    yield result
                    queue = waiting.pop(target)
                    while queue:
                        id, url = queue.pop(0)
                        if result.path is not None:
                            yield DownloadResult(id, url, result.path, None, cached=True)
                        elif url == result.url:
                            yield DownloadResult(id, url, None, result.error, cached=False)
                        else:  # same id, another URL: worth a try
                            waiting[target] = queue
                            submit(id, url, target)
                            break
        finally:
            stop.set()
            executor.shutdown(wait=False, cancel_futures=True)

    def _precheck(self, id: str, url: str) -> DownloadResult | Path:
        """The target path, or an immediate failure for an unusable id or URL."""
        if not id:
            return DownloadResult(id, url, None, "empty id", cached=False)
        problem = _url_problem(url)
        if problem:
            return DownloadResult(id, url, None, problem, cached=False)
        try:
            return self.target_path(id, url)
        except DownloadError as exc:
            return DownloadResult(id, url, None, str(exc), cached=False)

    def _fetch_one(self, id: str, url: str, target: Path, stop: _Cancel) -> DownloadResult:
        part = target.with_name(target.name + ".part")

        def discard() -> None:
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)

        def attempt() -> None:
            _transfer(url, self.options, part=part, stop=stop)
            try:
                os.replace(part, target)
            except OSError as exc:
                raise _Fail(f"cannot write {target}: {_os_text(exc)}", retry=False) from None

        try:
            _with_retries(attempt, self.options, stop, discard, what=url)
        except _Fail as fail:
            return DownloadResult(id, url, None, fail.message, cached=False)
        except Exception as exc:  # a bug: still one result per item
            logger.debug("unexpected error downloading %s", url, exc_info=True)
            message = _one_line(f"unexpected error: {type(exc).__name__}: {exc}")
            return DownloadResult(id, url, None, message, cached=False)
        return DownloadResult(id, url, target, None, cached=False)


def fetch_url(
    url: str,
    *,
    timeout: float = 30.0,
    max_bytes: int = 50 * 2**20,
    retries: int = 1,
    user_agent: str = "lookalike/0.1",
) -> bytes:
    """Fetch one URL into memory (for queries such as ``search https://...``).

    Same rules as :class:`Downloader` (http/https only, ``timeout`` per attempt, ``max_bytes``,
    ``retries`` on transient failures). Raises :class:`DownloadError` with a one-line message
    such as ``"download failed: HTTP 404 Not Found"`` (the URL is left for the caller to add).
    """
    problem = _url_problem(url)
    if problem:
        raise DownloadError(f"download failed: {problem}")
    options = DownloadOptions(
        workers=1, timeout=timeout, retries=retries, max_bytes=max_bytes, user_agent=user_agent
    )
    stop = _Cancel()
    try:
        data = _with_retries(
            lambda: _transfer(url, options, part=None, stop=stop),
            options,
            stop,
            lambda: None,
            what=url,
        )
    except _Fail as fail:
        raise DownloadError(f"download failed: {fail.message}") from None
    assert data is not None
    return data


# --------------------------------------------------------------------------- naming


def _safe_stem(id: str) -> str:
    if (
        _SAFE_ID.fullmatch(id)
        and not id.endswith(".")
        and id.split(".")[0].lower() not in _WINDOWS_RESERVED
    ):
        return id
    digest = hashlib.sha256(id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    cleaned = _UNSAFE_CHARS.sub("_", id).strip("._-")[:80]
    return f"{cleaned}-{digest}" if cleaned else digest


def _url_extension(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    try:
        path = unquote(urlsplit(url).path)
    except ValueError:
        return ".img"
    ext = os.path.splitext(path)[1].lower()
    return ext if ext in IMAGE_EXTENSIONS else ".img"


def _url_problem(url: str) -> str | None:
    """None if ``url`` can be fetched, else a one-line reason."""
    from urllib.parse import urlsplit

    if not url:
        return "empty URL"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return _one_line(f"invalid URL: {exc}")
    if parts.scheme.lower() not in _SCHEMES:
        shown = f" {parts.scheme!r}" if parts.scheme else ""
        return f"unsupported URL scheme{shown} (only http and https)"
    if not parts.hostname:
        return "invalid URL: no host"
    return None
