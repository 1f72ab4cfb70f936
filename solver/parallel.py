"""Run slab kernels on a few threads, deterministically.

numpy and our numba kernels release the GIL inside their loops, so kernels on disjoint
slabs run in parallel on threads. The slab partition depends only on the grid (never on
the thread count or on which thread runs a slab) and every slab is computed by the same
operations, so results are bit-identical for any number of threads; per-slab results come
back in slab order.

Two ways to hand out slabs:

* static (kernels that bind per-worker scratch arrays, the numpy set): worker w runs a
  fixed contiguous run of slabs;
* dynamic (scratch-free kernels, the numba set): every worker takes the next free slab.
  The caller's thread never waits for a helper that has not woken up yet (on a busy
  machine that wake-up can take longer than the whole kernel); it only waits for slabs a
  helper has started.

Helpers are plain threads fed through a ``queue.SimpleQueue``; completion is counted
with ``itertools.count`` (atomic in CPython), so a ``map`` costs a few microseconds of
hand-over instead of ~70 us through a ``ThreadPoolExecutor``.
"""

from __future__ import annotations

import _thread
import itertools
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TypedDict, TypeVar

import numpy as np

__all__ = ["SlabPool", "slab_bounds", "slab_owner"]

T = TypeVar("T")
Item = TypeVar("Item")


class _ErrState(TypedDict):
    """``np.errstate`` keywords (a TypedDict, so that ``**_QUIET`` type-checks against them)."""

    over: Literal["ignore"]
    invalid: Literal["ignore"]
    divide: Literal["ignore"]


# Overflow and NaN are expected in a diverging run: the stepper detects them and raises
# DivergedError, so the kernels need not warn.
_QUIET: _ErrState = {"over": "ignore", "invalid": "ignore", "divide": "ignore"}


def slab_bounds(threads: int, n: int) -> list[int]:
    """Static mode: worker w of ``threads`` runs items bounds[w]:bounds[w+1] of n items."""
    k = max(1, min(threads, n))
    return [n * w // k for w in range(k + 1)]


def slab_owner(threads: int, i: int, n: int) -> int:
    """Static mode: the worker that runs item i of n (kernels bind its scratch arrays)."""
    b = slab_bounds(threads, n)
    return next(w for w in range(len(b) - 1) if b[w] <= i < b[w + 1])


class _Job:
    """One ``map`` call: its slabs, how they are handed out, and its results."""

    def __init__(self, fn: Callable[[int, Any], Any], items: Sequence[Any], bounds: list[int] | None) -> None:
        self.fn, self.items, self.n = fn, items, len(items)
        self.bounds = bounds  # static: worker w runs bounds[w]:bounds[w+1]; None: dynamic
        self.results: list[Any] = [None] * self.n
        self.error: BaseException | None = None
        self._next = itertools.count()  # next free slab (dynamic)
        self._finished = itertools.count()  # slabs finished, counted atomically
        self.done = _thread.allocate_lock()
        self.done.acquire()  # released by the thread that finishes the last slab

    def _mine(self, w: int) -> Iterator[int]:
        if self.bounds is None:
            while (i := next(self._next)) < self.n:
                yield i
        elif w + 1 < len(self.bounds):
            yield from range(self.bounds[w], self.bounds[w + 1])

    def run(self, w: int) -> bool:
        """Run worker w's slabs; True if this call finished the job's last slab."""
        last = False
        for i in self._mine(w):
            try:
                self.results[i] = self.fn(w, self.items[i])
            except BaseException as e:  # re-raised by the caller of map
                self.error = self.error or e
            last = next(self._finished) == self.n - 1
        return last


def _helper(w: int, jobs: queue.SimpleQueue[_Job | None]) -> None:
    with np.errstate(**_QUIET):  # errstate is per thread
        while (job := jobs.get()) is not None:
            if job.run(w):
                job.done.release()


class SlabPool:
    """``threads`` workers (the caller's thread is worker 0); use as a context manager."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, int(threads))
        self._queues: list[queue.SimpleQueue[_Job | None]] = []
        self._threads: list[threading.Thread] = []
        for w in range(1, self.threads):
            q: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
            t = threading.Thread(target=_helper, args=(w, q), name=f"slab-worker-{w}", daemon=True)
            t.start()
            self._queues.append(q)
            self._threads.append(t)

    def bounds(self, n: int) -> list[int]:
        """Worker w runs items bounds[w]:bounds[w+1] of a list of n items (static mode)."""
        return slab_bounds(self.threads, n)

    def map(self, fn: Callable[[int, Item], T], items: Sequence[Item], dynamic: bool = False) -> list[T]:
        """[fn(worker, item) for item in items], in item order.

        Static (default): items split into contiguous per-worker runs (``bounds``).
        ``dynamic``: workers take items as they come free; only for ``fn`` whose result
        does not depend on the worker.
        """
        n = len(items)
        if not self._queues or n < 2:
            with np.errstate(**_QUIET):
                return [fn(0, it) for it in items]
        bounds = None if dynamic else self.bounds(n)
        job = _Job(fn, items, bounds)
        helpers = self._queues if bounds is None else self._queues[: len(bounds) - 2]
        for q in helpers:
            q.put(job)
        with np.errstate(**_QUIET):
            last = job.run(0)
        if not last:
            job.done.acquire()  # a helper still runs a slab it took
        if job.error is not None:
            raise job.error
        return job.results

    def close(self) -> None:
        """Stop the helper threads (idempotent)."""
        queues, self._queues = self._queues, []
        for q in queues:
            q.put(None)
        for t in self._threads:
            t.join()
        self._threads = []

    def __enter__(self) -> SlabPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
