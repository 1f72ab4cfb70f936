"""Test data for the store tests: Datasets shaped like ``solver.simulate`` results.

Not a mock of the store: these are inputs, built the way the solver's result is documented
(docs/interfaces.md): coordinate ``time``; energy, enstrophy, dissipation, max_velocity,
cfl, max_divergence on ``time``; energy_spectrum on ``k``; optionally u, v, w on (x, y, z).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from solver import SolverParams


def result_like(params: SolverParams | dict[str, Any], *, fields: bool = False, seed: int = 0) -> xr.Dataset:
    """A Dataset with the solver's result layout, values derived from the parameters."""
    p = SolverParams.coerce(params)
    rng = np.random.default_rng(seed)
    n_out = p.n_steps // p.steps_per_output + 1
    t = np.arange(n_out) * p.steps_per_output * p.dt
    energy = 0.125 * np.exp(-2.0 * t / p.Re * 3)
    ds = xr.Dataset(
        {
            "energy": ("time", energy),
            "enstrophy": ("time", energy * 3),
            "dissipation": ("time", energy * 6 / p.Re),
            "max_velocity": ("time", np.sqrt(2 * energy)),
            "cfl": ("time", np.sqrt(2 * energy) * p.dt * p.grid[0] / (2 * np.pi)),
            "max_divergence": ("time", rng.random(n_out) * 1e-14),
            "energy_spectrum": ("k", rng.random(p.grid[0] // 2 + 1)),
        },
        coords={"time": t, "k": np.arange(p.grid[0] // 2 + 1, dtype=float)},  # as the solver
        attrs={"title": "test result", "Re": p.Re},
    )
    if fields:
        shape = tuple(p.grid)
        for name in "uvw":
            ds[name] = (("x", "y", "z"), rng.random(shape))
    return ds


def provenance(
    params: SolverParams | dict[str, Any], package_id: str = "pkg", priority: str = "HIGH", **extra: Any
) -> dict[str, Any]:
    """A provenance mapping as the engine passes it to ``commit_run``."""
    return {
        "params": SolverParams.coerce(params),
        "package_ids": [package_id],
        "priority": priority,
        "wall_time": 1.5,
        "start_time": "2026-01-01T00:00:00+00:00",
        "end_time": "2026-01-01T00:00:01.5+00:00",
        "attempt": 1,
        **extra,
    }
