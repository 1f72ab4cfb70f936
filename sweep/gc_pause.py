"""Helpers for bulk work over thousands of packages or runs."""

from __future__ import annotations

import atexit
import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc", "frozen_heap", "no_collection_at_exit"]


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


@contextmanager
def frozen_heap(young: int = 20_000) -> Iterator[None]:
    """Run a long loop beside a large heap built before it (a sweep's packages and plan, the
    store's index) without the collector scanning that heap again and again.

    The objects alive at the start are moved out of the collector's sight (``gc.freeze``:
    they live as long as the loop anyway), young objects are collected every ``young``
    allocations instead of 700, and full collections are ten times rarer. Measured on a sweep
    of 30,000 tiny packages: the collector's time 10.6 s -> 3.1 s, the full collections'
    7.7 s -> 0.15 s (they scanned every package at each pass: a cost per package that grew
    with the sweep). Reference counting still frees everything; thresholds and the frozen
    objects are restored afterwards.
    """
    gc.collect()
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(young, before[1] * 2, before[2] * 10)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def no_collection_at_exit() -> None:
    """Let the interpreter's exit skip its last collection of the objects alive then.

    For a command whose output is written and closed: Python's collection at exit walks every
    object still alive, ~1 s after a 100k report (its ~2,500 bokeh models, their HoloViews
    plots, the Dataset), 0.2 s after a 100k status. Frozen (``gc.freeze``) at exit, they go
    with the process instead; reference counting still runs, and the atexit handlers
    (logging's flush) run first. Called in a process that goes on, it changes nothing until
    that process exits.
    """
    atexit.register(gc.freeze)
