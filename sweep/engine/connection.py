"""The driver's connection to the Dask scheduler: telling a lost scheduler from a failed run,
and keeping distributed's tracebacks of a lost connection off the terminal (the sweep says it
in one line)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["connection_trouble", "quiet_connection_noise", "scheduler_lost"]

# loggers of distributed that print a traceback when the scheduler goes away
_CONNECTION_LOGGERS = (
    "distributed.scheduler",
    "distributed.client",
    "distributed.batched",
    "distributed.core",
    "distributed.comm",
    "distributed.utils",
)


def connection_trouble(exc: BaseException | None) -> bool:
    """Whether ``exc`` is what a lost connection raises (not a run's failure)."""
    import asyncio

    from distributed.comm.core import CommClosedError

    return isinstance(exc, (CommClosedError, ConnectionError, asyncio.CancelledError, TimeoutError))


class _DropConnectionTracebacks(logging.Filter):
    """Logging filter: drop distributed's connection-error records (a lost scheduler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name == "distributed.client" and "reconnect" in str(record.msg):
            return False  # "Failed to reconnect to scheduler after ...": the sweep says it
        if record.name == "distributed.scheduler" and str(record.msg).startswith("broadcast to"):
            return False  # a worker that died during a broadcast: its nanny restarts it
        return not connection_trouble(exc)


@contextlib.contextmanager
def quiet_connection_noise() -> Iterator[None]:
    """While the sweep runs, distributed's tracebacks of a lost connection are not printed."""
    filt = _DropConnectionTracebacks()
    loggers = [logging.getLogger(n) for n in _CONNECTION_LOGGERS]
    for lg in loggers:
        lg.addFilter(filt)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(filt)


def scheduler_lost(client: Any, exc: BaseException | None) -> str | None:
    """Why the client lost its scheduler (one line), or None when it did not."""
    status = getattr(client, "status", "running")
    if exc is not None and connection_trouble(exc):
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    if status not in ("running", "newly-created"):
        return f"it stopped answering (client {status})"
    return None
