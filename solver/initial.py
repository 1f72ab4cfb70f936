"""Initial conditions: a registry of functions (params, grid) -> compact u_hat.

Every initial field is built in float64 with numpy.fft (independent of the run's FFT
backend and thread count, so every backend starts from the same coefficients), truncated to
the modes the 2/3 rule keeps, normalised as u_hat = rfftn(u) / N and then cast to the run's
precision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .diagnostics import energy
from .errors import ParameterError
from .grid import Grid
from .operators import gather_compact
from .params import INITIAL_CONDITIONS, SolverParams

__all__ = ["INITIAL_REGISTRY", "INITIAL_PARAMS", "initial_velocity", "physical_to_compact", "project"]


def physical_to_compact(u: np.ndarray, grid: Grid) -> np.ndarray:
    """Compact normalised spectrum (complex128) of a physical field (3, nx, ny, nz)."""
    return np.stack([gather_compact(np.fft.rfftn(c) / grid.n_points, grid) for c in u])


def project(u_hat: np.ndarray, grid: Grid) -> np.ndarray:
    """Remove the compressible part: u_hat - k (k . u_hat) / |k|^2 (new array)."""
    k = [grid.kx[:, None, None], grid.ky[None, :, None], grid.kz[None, None, :]]
    k2 = grid.k_squared()
    kdotu = sum(ki * ui for ki, ui in zip(k, u_hat, strict=True))
    p = np.where(k2 > 0, kdotu / np.where(k2 > 0, k2, 1), 0)
    return np.stack([ui - ki * p for ki, ui in zip(k, u_hat, strict=True)])


def _mesh(grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y, z = grid.coords()
    return x[:, None, None], y[None, :, None], z[None, None, :]


def _taylor_green(p: SolverParams, grid: Grid) -> np.ndarray:
    x, y, z = _mesh(grid)
    u = np.sin(x) * np.cos(y) * np.cos(z)
    v = -np.cos(x) * np.sin(y) * np.cos(z)
    shape = grid.shape
    return physical_to_compact(
        np.stack([np.broadcast_to(u, shape), np.broadcast_to(v, shape), np.zeros(shape)]), grid
    )


def _taylor_green_2d(p: SolverParams, grid: Grid) -> np.ndarray:
    x, y, z = _mesh(grid)
    shape = grid.shape
    u = np.broadcast_to(np.sin(x) * np.cos(y), shape)
    v = np.broadcast_to(-np.cos(x) * np.sin(y), shape)
    return physical_to_compact(np.stack([u, v, np.zeros(shape)]), grid)


def _abc(p: SolverParams, grid: Grid) -> np.ndarray:
    k = p.abc_k
    if 3 * k >= min(grid.shape):
        raise ParameterError(
            "abc_k",
            k,
            f"a wavenumber below min(grid)/3 = {min(grid.shape) / 3:.4g} "
            "(the 2/3 rule would remove it); raise the grid or lower abc_k",
        )
    x, y, z = _mesh(grid)
    A, B, C = p.abc_A, p.abc_B, p.abc_C
    shape = grid.shape
    u = np.broadcast_to(A * np.sin(k * z) + C * np.cos(k * y), shape)
    v = np.broadcast_to(B * np.sin(k * x) + A * np.cos(k * z), shape)
    w = np.broadcast_to(C * np.sin(k * y) + B * np.cos(k * x), shape)
    return physical_to_compact(np.stack([u, v, w]), grid)


def _random(p: SolverParams, grid: Grid) -> np.ndarray:
    """Seeded white noise, projected, shaped to E(k) ~ k^4 exp(-2 (k/k_peak)^2), scaled."""
    rng = np.random.default_rng(p.random_seed)
    noise = rng.standard_normal((3, *grid.shape))
    u_hat = project(physical_to_compact(noise, grid), grid)
    kmag = np.sqrt(grid.k_squared())
    # white noise has ~equal energy per mode and a shell holds ~4 pi k^2 modes
    amp = np.where(kmag > 0, kmag * np.exp(-((kmag / p.random_k_peak) ** 2)), 0.0)
    u_hat *= amp
    e = energy(u_hat, grid)
    if e == 0:
        raise ParameterError(
            "random_k_peak", p.random_k_peak, "a peak wavenumber whose spectrum has energy on this grid"
        )
    return u_hat * np.sqrt(p.random_energy / e)


INITIAL_REGISTRY: dict[str, Callable[[SolverParams, Grid], np.ndarray]] = {
    "taylor_green": _taylor_green,
    "taylor_green_2d": _taylor_green_2d,
    "abc": _abc,
    "random": _random,
}

# initial condition -> the parameters (besides grid and precision) its field depends on
INITIAL_PARAMS: dict[str, tuple[str, ...]] = {
    "taylor_green": (),
    "taylor_green_2d": (),
    "abc": ("abc_k", "abc_A", "abc_B", "abc_C"),
    "random": ("random_seed", "random_k_peak", "random_energy"),
}

if set(INITIAL_REGISTRY) != set(INITIAL_CONDITIONS) or set(INITIAL_PARAMS) != set(INITIAL_REGISTRY):
    raise ImportError("solver.initial registry disagrees with params.INITIAL_CONDITIONS")

# Small grids only: there, building the field (a few FFTs and many small numpy calls) costs
# as much as a whole one-step run, and a parameter study runs the same initial field many times.
CACHE_MAX_POINTS = 32**3
_CACHE_SIZE = 8
_cache: dict[tuple[Any, ...], np.ndarray] = {}


def initial_velocity(p: SolverParams, grid: Grid) -> np.ndarray:
    """Compact u_hat (3, Mx, My, Mz) of the run's initial condition at the run's precision
    (a new array; fields of small grids are computed once per process)."""
    try:
        make = INITIAL_REGISTRY[p.initial_condition]
    except KeyError:
        raise ParameterError(
            "initial_condition", p.initial_condition, "one of " + ", ".join(repr(k) for k in INITIAL_REGISTRY)
        ) from None
    if grid.n_points > CACHE_MAX_POINTS:
        return np.ascontiguousarray(make(p, grid), dtype=grid.complex_dtype)
    key = (
        p.initial_condition,
        grid.shape,
        grid.dtype.str,
        *(getattr(p, name) for name in INITIAL_PARAMS[p.initial_condition]),
    )
    cached = _cache.get(key)
    if cached is None:
        cached = np.ascontiguousarray(make(p, grid), dtype=grid.complex_dtype)
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = cached
    return cached.copy()
