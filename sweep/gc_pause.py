"""Helpers for bulk work over thousands of packages or runs."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc"]


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while building many small acyclic objects.

    A context manager, also usable as a decorator (``@paused_gc()``) on bulk functions.

    Planning 10,000 packages allocates ~10^5 small objects; the collector's generation-0
    passes over them cost ~40% of the plan's time (measured: 0.54 s -> 0.35 s). Reference
    counting still frees everything; the collector is restored (and nested calls are safe).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
