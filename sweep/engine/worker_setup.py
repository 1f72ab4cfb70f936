"""What each worker process of the sweep's own local clusters does as it starts (a Dask
``preload``, so that a worker its nanny restarts does it too): ignore the stop signals.

Ctrl-C reaches a terminal's whole process group, and a batch system's SIGTERM every process of
the job; the driver alone decides how its workers stop (``sweep.engine.interrupts``: it asks
their runs for checkpoints first), and it ends them itself when it closes the cluster.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["dask_setup"]


def dask_setup(worker: Any) -> None:
    """Dask's preload hook (in the worker process's main thread): ignore SIGINT, SIGTERM, SIGHUP."""
    from .interrupts import SIGNALS

    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
