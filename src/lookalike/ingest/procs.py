"""Worker processes that behave: they never re-run the user's script, and never outlive
the process that started them.

* **No re-run of ``__main__``.** The ``spawn`` start method normally re-imports the parent's
  main module in every worker (as ``__mp_main__``), so a script without an
  ``if __name__ == "__main__":`` guard runs again in each worker (and, here, blocks on the
  collection's lock forever). Decode workers only need lookalike's own code, so their
  processes are started without the main module; :func:`worker_context` falls back to the
  plain ``spawn`` context when the work itself is defined in ``__main__``.
* **Parent death.** :func:`exit_with_parent` (called by the worker initialiser) asks Linux
  to kill the worker when its parent dies (``PR_SET_PDEATHSIG``) and starts a watchdog
  thread that polls :func:`os.getppid` as a portable fallback. With the workers gone, the
  multiprocessing resource tracker sees its pipe close and exits too.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from multiprocessing import context, spawn
from typing import Any

__all__ = ["exit_with_parent", "worker_context"]

_PR_SET_PDEATHSIG = 1
_local = threading.local()
_patch_lock = threading.Lock()
_patched = False


def _preparation_data(name: str) -> dict[str, Any]:
    data: dict[str, Any] = _original_preparation_data(name)
    if getattr(_local, "hide_main", False):
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


_original_preparation_data = spawn.get_preparation_data


def _install() -> None:
    global _patched
    with _patch_lock:
        if not _patched:
            spawn.get_preparation_data = _preparation_data
            _patched = True


class _NoMainProcess(context.SpawnProcess):
    """A spawned process that does not import the parent's ``__main__``."""

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        _install()
        _local.hide_main = True
        try:
            return context.SpawnProcess._Popen(process_obj)
        finally:
            _local.hide_main = False


class _NoMainContext(context.SpawnContext):
    Process = _NoMainProcess


def worker_context(*payload: object) -> multiprocessing.context.BaseContext:
    """The context for decode workers: spawn, without re-running ``__main__`` unless
    something in ``payload`` (sent to the workers) is defined there."""
    if any(type(obj).__module__ in ("__main__", "__mp_main__") for obj in payload):
        return multiprocessing.get_context("spawn")
    return _NoMainContext()


def exit_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Make this (worker) process exit as soon as ``parent_pid`` is gone."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the request above
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="lookalike-parent-watch", daemon=True).start()
