"""Pseudo-spectral incompressible Navier-Stokes solver.

FFTs through pyFFTW (scipy.fft or numpy.fft without it) and slab kernels compiled by numba
(numpy ones without it). One run at a time, in memory: scheduling runs and storing results
are the caller's business. Re-exports only.
"""

from __future__ import annotations

from .errors import DivergedError, ParameterError, SolverError, SolverStopped, SolverTimeout
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
    "SolverStopped",
    "PARAMS",
    "Param",
    "SolverParams",
    "parameter_problems",
    "simulate",
    "State",
    "memory_estimate",
    "SOLVER_VERSION",
]
