"""How much memory a run needs, and how much this machine has available.

The estimate counts the arrays the stepper allocates (see ``solver.stepper``: x-padded
spectra, the compact RK registers, per-thread slab buffers; no whole physical arrays), the
transient float64 arrays of the initial condition and the final fields, plus the baseline
of a Python process that imported the solver and xarray (plus numba's when the run uses the
numba kernels, ``solver.kernels``). ``scripts/bench_solver.py``
measures the real peak next to it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .grid import make_grid
from .kernels import KERNEL_SETS, default_kernels, resolve_kernels
from .params import SolverParams, default_threads
from .workspace import effective_threads, slab_rows

__all__ = ["memory_estimate", "memory_key", "available_memory", "PROCESS_BASELINE", "KERNELS_BASELINE"]

PROCESS_BASELINE = 135 * 2**20  # interpreter + numpy/scipy/xarray/pyfftw imports (measured 115 MiB)
# numba + LLVM + the cached kernels, resident once a process runs the numba kernel set
# (measured 111 MiB at 128^3, about half of it shared library pages)
KERNELS_BASELINE = {"numba": 115 * 2**20, "numpy": 0}


def memory_key(p: SolverParams) -> tuple[Any, ...]:
    """What ``memory_estimate`` depends on besides the kernel set: runs with equal keys need
    the same memory, so many runs of one grid are estimated once."""
    return (tuple(p.grid), p.precision, p.keep_fields, p.fft_threads)


_estimates: dict[tuple[Any, ...], int] = {}


def memory_estimate(params: SolverParams | Mapping[str, Any]) -> int:
    """Bytes one run of ``params`` needs at its peak, including the process baseline."""
    p = SolverParams.coerce(params)
    key = (*memory_key(p), default_kernels())
    need = _estimates.get(key)
    if need is None:
        if len(_estimates) >= 256:
            _estimates.clear()
        need = _estimates[key] = _estimate(p)
    return need


def _estimate(p: SolverParams) -> int:
    g = make_grid(p.grid, p.precision)
    rs = g.dtype.itemsize
    n = g.n_points
    nx, ny, nz = g.shape
    nc = g.spectral_shape[0] * g.spectral_shape[1] * g.spectral_shape[2]
    mc = int(np.prod(g.compact_shape))
    _, my, mz = g.compact_shape
    kernels = resolve_kernels(default_kernels(), n)
    ks = KERNEL_SETS[kernels]
    # per worker thread: a slab of b x-rows in Zi and Z (3 complex lines each) and, for
    # kernels with scratch, 4 more real (solver.workspace._SlabBuffers)
    b = slab_rows(nx, ny, nz, ks.phys_slab_elems(g.dtype))
    workers = effective_threads(g, p.fft_threads or default_threads())
    slab = b * ny * nz * (2 * 3 * 2 + (4 if ks.scratch else 0)) * rs
    stepper = (
        6 * nx * my * mz * 2 * rs  # P: x-padded spectra, the passes run in place
        + 12 * mc * 2 * rs  # u, u0, acc, R
        + (5 if ks.scratch else 2) * 2 * mc * rs  # kx, ky, kz (numpy set), 1/k^2, nu k^2
        + workers * slab
        + 4 * 2**20
    )  # spectral slab scratch, FFTW plans, thread stacks
    diagnostics = 5 * 3 * mc * 16  # complex128 temporaries of energy, enstrophy, divergence
    # initial condition, built in float64 before the stepper exists: the physical field
    # (and its components before stacking), one full complex128 transform at a time and
    # the compact result (x2 while projecting)
    initial = 5 * n * 8 + nc * 16 + 2 * 3 * mc * 16
    fields = 3 * n * rs if p.keep_fields else 0
    base = PROCESS_BASELINE + KERNELS_BASELINE[kernels]
    return int(base + max(stepper + fields + diagnostics, initial + 3 * mc * 2 * rs))


def available_memory() -> int | None:
    """Bytes available for a new run on this machine (None when unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
