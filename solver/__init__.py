"""Pseudo-spectral incompressible Navier-Stokes solver.

pyFFTW and numba kernels, with numpy fallbacks; no Dask, no files. Re-exports only.
"""

from __future__ import annotations

from .errors import DivergedError, ParameterError, SolverError, SolverTimeout
from .memory import memory_estimate
from .params import PARAMS, Param, SolverParams, parameter_problems
from .simulate import simulate
from .state import State
from .version import SOLVER_VERSION

__all__ = [
    "DivergedError",
    "ParameterError",
    "SolverError",
    "SolverTimeout",
    "PARAMS",
    "Param",
    "SolverParams",
    "parameter_problems",
    "simulate",
    "State",
    "memory_estimate",
    "SOLVER_VERSION",
]
