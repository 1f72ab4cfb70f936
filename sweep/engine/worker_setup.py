"""What each worker process of the sweep's own local clusters does as it starts (a Dask
``preload``, so that a worker its nanny restarts does it too).

- It ignores the stop signals: Ctrl-C reaches a terminal's whole process group, and a batch
  system's SIGTERM every process of the job; the driver alone decides how its workers stop
  (``sweep.engine.interrupts``: it asks their runs for checkpoints first) and ends them when
  it closes the cluster.
- Once it is being closed, distributed's log lines of that shutdown (a heartbeat cut short,
  a cancelled task's coroutine), and the complaint of the worker's own client (the one that
  publishes checkpoints) collected after its event loop closed at exit, stay off the terminal
  the driver shares with it: a stopped sweep says what happened in one line.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

__all__ = ["dask_setup"]

_CLOSING = frozenset(("closing", "closed", "closing_gracefully"))


class _QuietShutdown(logging.Filter):
    """Drops distributed's records while this worker closes, and those of cancelled tasks."""

    def __init__(self, worker: Any) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(getattr(self.worker, "status", None), "name", "")
        if status in _CLOSING:
            return False
        text = str(record.msg)
        return not (text.startswith("Async instruction for") and "CancelledError" in record.getMessage())


def dask_setup(worker: Any) -> None:
    """Dask's preload hook (in the worker process's main thread): ignore SIGINT, SIGTERM,
    SIGHUP; keep distributed's shutdown noise off the terminal."""
    from .interrupts import SIGNALS

    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
    quiet = _QuietShutdown(worker)
    for handler in logging.getLogger("distributed").handlers:
        handler.addFilter(quiet)
    sys.unraisablehook = _quiet_client_collected(sys.unraisablehook)


def _quiet_client_collected(hook: Any) -> Any:
    """``sys.unraisablehook`` without "IOLoop is closed" from a ``Client.__del__`` at exit."""

    def unraisable(info: Any) -> None:
        where = getattr(info.object, "__qualname__", "")
        if where == "Client.__del__" and "IOLoop is closed" in str(info.exc_value):
            return
        hook(info)

    return unraisable
