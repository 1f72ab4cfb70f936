"""The driver's connection to the Dask scheduler: telling a lost scheduler from a failed run,
and keeping distributed's tracebacks of a lost connection off the terminal (the sweep says it
in one line)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

__all__ = [
    "DropCancelledTasks",
    "connection_trouble",
    "quiet_connection_noise",
    "quiet_distributed",
    "quiet_lost_broadcasts",
    "quiet_variable_timeouts",
    "scheduler_lost",
]

# loggers of distributed that print a traceback when the scheduler goes away
_CONNECTION_LOGGERS = (
    "distributed.scheduler",
    "distributed.client",
    "distributed.batched",
    "distributed.core",
    "distributed.comm",
    "distributed.utils",
    "distributed.nanny",
)


def connection_trouble(exc: BaseException | None) -> bool:
    """Whether ``exc`` is what a lost connection raises (not a run's failure)."""
    import asyncio

    from distributed.comm.core import CommClosedError

    return isinstance(exc, (CommClosedError, ConnectionError, asyncio.CancelledError, TimeoutError))


class _DropConnectionTracebacks(logging.Filter):
    """Logging filter: drop distributed's connection-error records (a lost scheduler), and the
    nanny's notice that it kills a worker still computing while the sweep's cluster closes
    (after Ctrl-C or --stop-on-error: the sweep says what happened in its own line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name == "distributed.client" and "reconnect" in str(record.msg):
            return False  # "Failed to reconnect to scheduler after ...": the sweep says it
        if record.name == "distributed.scheduler" and str(record.msg).startswith("broadcast to"):
            return False  # a worker that died during a broadcast: its nanny restarts it
        if record.name == "distributed.nanny" and "still alive after" in str(record.msg):
            return False
        return not connection_trouble(exc)


class DropCancelledTasks(logging.Filter):
    """Worker-side logging filter: a task the driver cancelled (Ctrl-C, --stop-on-error, the
    watchdog) is not a warning on the user's terminal; the driver reports it itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "ended with CancelledError" not in record.getMessage()


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


class _DropAll(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextlib.contextmanager
def quiet_distributed() -> Iterator[None]:
    """Nothing of distributed's logging on the terminal while a stopped sweep shuts its cluster
    down (the races of a shutdown: handshakes cut short, cancelled tasks); the sweep says how
    it stopped in one line."""
    drop = _DropAll()
    handlers = list(logging.getLogger("distributed").handlers)
    for h in handlers:
        h.addFilter(drop)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(drop)


class _DropLostBroadcasts(logging.Filter):
    """asyncio's "Future exception was never retrieved" of a comm to a worker that died."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None and "exception" in record.__dict__:
            exc = record.__dict__["exception"]
        text = record.getMessage()
        return not ("never retrieved" in text and (connection_trouble(exc) or "CommClosedError" in text))


_LOST_BROADCASTS = _DropLostBroadcasts()


def quiet_lost_broadcasts() -> None:
    """Keep asyncio's complaint about the unread error of a scheduler's message to a worker that
    died meanwhile off the terminal from now on (distributed leaves that future unread; the
    complaint comes whenever it is collected, maybe at exit; the nanny restarts the worker and
    the engine retries its runs). Only connection errors; idempotent."""
    logging.getLogger("asyncio").addFilter(_LOST_BROADCASTS)


class _DropVariableTimeouts(logging.Filter):
    """The scheduler's traceback of a ``Variable.get`` that timed out: the engine asks for a
    checkpoint or the measured rates that may not exist yet (``timeout=0`` on a worker; the
    relay's fetch), and the caller handles the TimeoutError."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, TimeoutError) and "variable_get" in record.getMessage())


_VARIABLE_TIMEOUTS = _DropVariableTimeouts()


def quiet_variable_timeouts() -> None:
    """Keep the scheduler's tracebacks of the engine's own ``Variable.get`` timeouts off the
    terminal from now on (a scheduler in this process logs each one; outside the driver loop,
    e.g. while a stopped sweep closes its cluster, nothing else filters them). Idempotent."""
    logging.getLogger("distributed.core").addFilter(_VARIABLE_TIMEOUTS)
