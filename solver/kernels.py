"""Kernel sets: a registry of implementations of the stepper's slab kernels.

Every set offers the ``make_*`` factories of ``solver.operators`` (cross product with the
CFL maxima, max speed, gather of the forward transform, and the spectral load / projection
/ RK update), computing the same operations in the same order, so all sets give the SAME
bits: the kernel set is a speed choice, not part of a result's provenance
(tests/test_solver_physics.py checks bit equality of steps with each set). A set may fuse
the gather into its stage kernel (``KernelSet.gather_in_stage``: the numba set; same
operations, one pass less over the spectra).

The slab loads and stores of the stepper (copying between the spectra and a slab while
packing real lines in pairs as complex lines) come from the set's module when it offers
them (numba: ``make_load_pack_kernel`` and friends), else from ``solver.packing`` (numpy),
with the same operations.

* ``numba``: fused compiled loops (``solver.kernels_numba``), one pass over memory per
  kernel; needs numba (the ``fast`` extra). Pays once per process: importing numba and
  loading the cached machine code (``scripts/bench_solver.py --startup`` prints it).
* ``numpy``: ufunc calls with ``out=`` on cache-sized slabs (``solver.operators``); always
  available.

``auto`` picks numba when it is installed and the grid has at least ``AUTO_MIN_POINTS``
points, or on every grid once ``warm_up_kernels()`` has loaded it in this process, else
numpy. numba is faster per run on small grids too (with pyFFTW: an 8^3 one-step run 1.8
against 3.5 ms, 50 steps at 16^3 65 against 155 ms), but a process pays once for importing
it and loading its cached machine code (1.2-1.4 s for both precisions, more on a busy
machine): too much for one small run, and it would count against that run's time limit. A
long-lived process that runs many cases calls ``warm_up_kernels()`` once when it starts, so
every run it does gets the fast set.

The environment variable ``SOLVER_KERNELS`` (auto, numba, numpy) sets the default for a
process, e.g. ``SOLVER_KERNELS=numpy`` on memory-tight nodes: numba and its LLVM add about
95 MiB to a process's resident memory (two thirds of it shared library pages).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from numpy.typing import DTypeLike

from .errors import ParameterError

__all__ = [
    "KernelSet",
    "KERNEL_SETS",
    "AUTO_ORDER",
    "AUTO_MIN_POINTS",
    "ENV_VAR",
    "default_kernels",
    "installed_kernel_sets",
    "resolve_kernels",
    "get_kernels",
    "warm_up_kernels",
]


@dataclass(frozen=True)
class KernelSet:
    """One implementation of the slab kernels and the slab sizes that suit it."""

    name: str
    requires: str  # import name that must be installed
    impl: str  # module with the make_* factories
    phys_slab_bytes: int  # bytes per complex component array of a physical-space slab
    spec_slab_elems: int  # elements per array per spectral slab
    scratch: bool  # whether the kernels need per-worker scratch arrays
    # whether the stage kernel reads the forward transform of u x omega straight from the
    # x-padded spectra (gather fused in: ``make_spectral_kernels(..., scale)``)
    gather_in_stage: bool = False

    def phys_slab_elems(self, dtype: DTypeLike) -> int:
        """Complex elements per component array of a physical slab at real ``dtype``."""
        return self.phys_slab_bytes // (2 * np.dtype(dtype).itemsize)

    def factories(self) -> ModuleType:
        """The module holding this set's ``make_*`` factories (imported on first use)."""
        return importlib.import_module(self.impl)


KERNEL_SETS: dict[str, KernelSet] = {
    # fused loops stream each array once; 128 KiB slabs (a slab's two work arrays, 6 x 128
    # KiB, stay in cache while its passes run: measured at 64^3 and 128^3, 6-10% less CPU
    # per float64 step than 512 KiB, 2-4% in float32, 64 KiB no better; many slabs also
    # balance the threads); the slab size never changes the bits
    "numba": KernelSet("numba", "numba", "solver.kernels_numba", 1 << 17, 1 << 13, False, True),
    # temporaries of a slab stay in cache (256 KiB: measured 2-5% less CPU per step at 64^3
    # than 512 KiB; spectral slabs of 2^13 elements)
    "numpy": KernelSet("numpy", "numpy", "solver.operators", 1 << 18, 1 << 13, True),
}
AUTO_ORDER = ("numba", "numpy")  # fastest first
AUTO_MIN_POINTS = 1 << 15  # 32^3: below it numba's per-process start-up can outweigh its gain


@functools.cache
def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


ENV_VAR = "SOLVER_KERNELS"


def default_kernels() -> str:
    """The kernel set name a Stepper uses when none is given (``SOLVER_KERNELS`` or 'auto')."""
    return os.environ.get(ENV_VAR, "auto").strip() or "auto"


def installed_kernel_sets() -> list[str]:
    """Kernel sets whose library can be imported here, fastest first."""
    return [n for n in AUTO_ORDER if _installed(KERNEL_SETS[n].requires)]


_warm: set[str] = set()  # kernel sets whose start-up this process has paid (warm_up_kernels)


def warm_up_kernels() -> str:
    """Load this process's kernel set now (the fastest installed one, or the one
    ``SOLVER_KERNELS`` names: numba's import and the loading or compiling of its machine
    code for both precisions) so that 'auto' uses it on every grid in this process; returns
    its name. For long-lived processes that run many small cases."""
    name = resolve_kernels(default_kernels(), AUTO_MIN_POINTS)
    if name not in _warm:
        warm = getattr(KERNEL_SETS[name].factories(), "warm_up", None)
        if warm is not None:
            warm()
        _warm.add(name)
    return name


def resolve_kernels(name: str, n_points: int) -> str:
    """The concrete kernel set for ``name`` on a grid of ``n_points`` ('auto' resolved)."""
    if name == "auto":
        fastest = installed_kernel_sets()[0]
        return fastest if n_points >= AUTO_MIN_POINTS or fastest in _warm else "numpy"
    if name not in KERNEL_SETS:
        raise ParameterError("kernels", name, "one of 'auto', " + ", ".join(repr(k) for k in KERNEL_SETS))
    if name not in installed_kernel_sets():
        raise ParameterError(
            "kernels",
            name,
            f"an installed kernel set: {', '.join(installed_kernel_sets())} or 'auto' "
            f"(install {KERNEL_SETS[name].requires!r}, e.g. pip install 'ns-sweep[fast]')",
        )
    return name


def get_kernels(name: str, n_points: int) -> KernelSet:
    """The kernel set for ``name`` on a grid of ``n_points``."""
    return KERNEL_SETS[resolve_kernels(name, n_points)]
