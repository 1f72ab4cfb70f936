"""Run slab kernels on a few threads, deterministically.

numpy releases the GIL inside its loops, so elementwise kernels on disjoint slabs run in
parallel on threads. The slab partition depends only on the grid (never on the thread
count) and every slab is computed by the same operations, so results are bit-identical for
any number of threads; per-slab results come back in slab order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

__all__ = ["SlabPool"]

T = TypeVar("T")
# Overflow and NaN are expected in a diverging run: the stepper detects them and raises
# DivergedError, so the kernels need not warn.
_QUIET = dict(over="ignore", invalid="ignore", divide="ignore")


class SlabPool:
    """``threads`` workers (the caller's thread is worker 0); use as a context manager."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, int(threads))
        self._executor = ThreadPoolExecutor(self.threads - 1) if self.threads > 1 else None

    def bounds(self, n: int) -> list[int]:
        """Worker w runs items bounds[w]:bounds[w+1] of a list of n items."""
        k = max(1, min(self.threads, n))
        return [n * w // k for w in range(k + 1)]

    def owner(self, i: int, n: int) -> int:
        """The worker that runs item i of n (kernels bind that worker's scratch arrays)."""
        b = self.bounds(n)
        return next(w for w in range(len(b) - 1) if b[w] <= i < b[w + 1])

    def map(self, fn: Callable[[int, Any], T], items: Sequence[Any]) -> list[T]:
        """[fn(worker, item) for item in items], items split into contiguous per-worker runs."""
        n = len(items)
        if self._executor is None or n < 2:
            with np.errstate(**_QUIET):
                return [fn(0, it) for it in items]
        bounds = self.bounds(n)
        k = len(bounds) - 1

        def run(w: int) -> list[T]:
            with np.errstate(**_QUIET):  # errstate is per thread
                return [fn(w, it) for it in items[bounds[w]:bounds[w + 1]]]

        futures = [self._executor.submit(run, w) for w in range(1, k)]
        out = run(0)
        for f in futures:
            out.extend(f.result())
        return out

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> "SlabPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
