"""Assemble a run's result as an xarray Dataset (units and long names on every variable).

All attributes are JSON-serialisable (strings and numbers), so the Dataset can be written to
zarr as is: the parameters are one JSON string under ``params``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

from .diagnostics import DIAGNOSTICS, spectrum_wavenumbers
from .grid import Grid
from .params import SolverParams

__all__ = ["build_dataset"]


def build_dataset(p: SolverParams, grid: Grid, diagnostics: dict[str, np.ndarray],
                  spectrum: np.ndarray, fields: np.ndarray | None,
                  provenance: dict[str, Any]) -> xr.Dataset:
    """The result Dataset: time series on ``time``, E(k) on ``k``, optional u, v, w."""
    times = np.asarray(diagnostics["step"], dtype=np.float64) * p.dt
    data: dict[str, Any] = {
        name: ("time", np.asarray(diagnostics[name], dtype=np.float64),
               {"units": units, "long_name": long_name})
        for name, (units, long_name) in DIAGNOSTICS.items()
    }
    data["energy_spectrum"] = ("k", np.asarray(spectrum, dtype=np.float64), {
        "units": "velocity^2 length", "long_name": f"energy spectrum E(k) at t = {p.T_final:g} "
        "(energy of the modes with round(|k|) = k)"})
    coords: dict[str, Any] = {
        "time": ("time", times, {"units": "time units", "long_name": "simulation time"}),
        "k": ("k", spectrum_wavenumbers(grid), {"units": "1/length", "long_name": "wavenumber shell"}),
    }
    if fields is not None:
        for name, axis in zip("xyz", grid.coords()):
            coords[name] = (name, axis, {"units": "length", "long_name": f"{name} coordinate"})
        for comp, name in zip(fields, "uvw"):
            data[name] = (("x", "y", "z"), comp, {
                "units": "velocity", "long_name": f"{name} velocity at t = {p.T_final:g}"})
    attrs = {
        "title": "incompressible Navier-Stokes, pseudo-spectral, periodic box [0, 2pi)^3",
        "params": json.dumps(p.as_dict(), sort_keys=True),
        **provenance,
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)
