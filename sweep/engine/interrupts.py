"""Stopping a sweep from outside: SIGINT (Ctrl-C), SIGTERM (a batch system's time limit, ``kill``)
and SIGHUP (a closed terminal) all stop it the same way, and a second one forces it.

The first of them raises ``Interrupted`` (a ``KeyboardInterrupt``) in the driver's main thread:
the commit under way in the store's writer thread ends, the running runs are asked for a
checkpoint and those that arrive within ``sweep.interrupt-grace`` seconds are saved, the
cluster is closed and the store's lock released; the command exits with 128 + the signal's
number (130, 143, 129) and one line. Any signal of the three that arrives after the first
ends the process at once (its worker processes first): the store is crash-safe, and the
kernel releases its lock. In a block that holds imports (``run_sweep``'s, whose driver loop
calls ``check_stop`` at every pass), a first signal that comes while a module is being
imported is raised after the import, by ``check_stop``: an import cut short breaks its
package for the rest of the process, and the wind-down imports what it needs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["SIGNALS", "Interrupted", "interruptible", "deferred_stop", "exit_code_of_signal", "check_stop"]

# the signals that stop a sweep (SIGHUP is missing on Windows)
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


# stop signals not raised yet: their Interrupted was swallowed by Python (printed as "Exception
# ignored"), or held back because the signal came during an import (see _in_import)
_PENDING: list[int] = []


def exit_code_of_signal(signum: int) -> int:
    """The exit code of a process stopped by ``signum`` (the shell's convention: 128 + n)."""
    return 128 + int(signum)


class Interrupted(KeyboardInterrupt):
    """The sweep was asked to stop by a signal (``signum``); exit with ``exit_code``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.signal_name = signal.Signals(signum).name
        self.exit_code = exit_code_of_signal(signum)


def _force_exit(signum: int) -> None:
    """A second stop signal: end the worker processes, say so in one line, exit at once."""
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
    except Exception:  # nothing may keep this process from exiting now
        pass
    name = signal.Signals(signum).name
    try:
        os.write(
            sys.stderr.fileno(),
            f"sweep: {name} again: stopped at once; finished runs are kept (the store is crash-safe, "
            "its lock is released), run again to resume\n".encode(),
        )
    except (OSError, ValueError):
        pass
    os._exit(exit_code_of_signal(signum))


@contextlib.contextmanager
def interruptible(hold_imports: bool = False) -> Iterator[None]:
    """While the block runs in the main thread, the first SIGINT/SIGTERM/SIGHUP raises
    ``Interrupted`` and any later one forces the exit (see the module docstring); the previous
    handlers are restored afterwards. Elsewhere (another thread), nothing changes.

    ``hold_imports``: a first signal during an import is raised by the next ``check_stop``
    (or at the end of the block) instead: only for a block whose long loops call it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    first: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if first:
            _force_exit(signum)
        first.append(signum)
        if hold_imports and _in_import(frame):
            _PENDING.append(signum)  # raised by check_stop (the driver loop) or at the end
            return
        raise Interrupted(signum)

    # The handler runs wherever the main thread is. Where Python swallows exceptions (a gc
    # callback, a __del__) the Interrupted is only printed as "Exception ignored": it is kept
    # quiet here and raised again by check_stop (the driver loop) or at the end of the block.
    hook = sys.unraisablehook

    def unraisable(info: object) -> None:
        exc = getattr(info, "exc_value", None)
        if isinstance(exc, Interrupted):
            _PENDING.append(exc.signum)  # raised again by check_stop or below
        else:
            hook(info)  # type: ignore[arg-type]

    previous = {}
    sys.unraisablehook = unraisable
    try:
        for sig in SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
                previous[sig] = signal.signal(sig, handler)
        yield
        check_stop()  # an Interrupted swallowed or held back, and not raised since
    finally:
        for sig, prev in previous.items():
            signal.signal(sig, prev)
        sys.unraisablehook = hook


def check_stop() -> None:
    """Raise ``Interrupted`` if a stop signal arrived in an ``interruptible`` block and its
    exception was swallowed where Python ignores exceptions (e.g. a gc callback of
    distributed's) or held back during an import: a long loop calls this at each pass, so a
    stop is never lost."""
    if _PENDING:
        signum = _PENDING[0]
        _PENDING.clear()
        raise Interrupted(signum)


def _in_import(frame: FrameType | None) -> bool:
    """Whether the main thread was importing a module when the signal came. An exception
    raised there leaves the package half imported, its submodules in ``sys.modules`` but not
    set on it: the wind-down's own import of it then fails (``module 'zarr' has no attribute
    'core'``, exit 3, seen by the soak test), so the stop waits for the import to end."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def deferred_stop() -> Iterator[list[int]]:
    """While the block runs (main thread only), a stop signal is noted in the yielded list
    instead of interrupting it (a cluster half started would leave its start-up tasks behind);
    the caller raises ``Interrupted`` afterwards. A second signal still forces the exit."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return

    def note(signum: int, frame: object) -> None:
        if noted:
            _force_exit(signum)
        noted.append(signum)

    previous = {}
    try:
        for sig in SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, note)
        yield noted
    finally:
        for sig, prev in previous.items():
            signal.signal(sig, prev)
