"""What this machine offers the workers of a local cluster: cores and memory per worker."""

from __future__ import annotations

from solver.params import usable_cores

__all__ = ["usable_cores", "memory_per_worker"]


def memory_per_worker(n_workers: int | None = None) -> int:
    """Bytes each of ``n_workers`` worker processes gets on this machine (Dask's
    ``memory_limit='auto'``: the total divided among them); default one worker per usable core."""
    import psutil

    return int(psutil.virtual_memory().total // max(1, n_workers or usable_cores()))
