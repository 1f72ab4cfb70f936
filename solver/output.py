"""Assemble a run's result: plain arrays with units and long names, and its xarray Dataset.

All attributes are JSON-serialisable (strings and numbers), so the result can be written to
zarr as is: the parameters are one JSON string under ``params``.

``RunResult`` is the result as plain numpy arrays (what a caller sends to another process
or stores: building an ``xarray.Dataset`` costs several milliseconds, more than a tiny run
itself); ``RunResult.to_dataset()`` is the Dataset ``solver.simulate`` returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from .diagnostics import DIAGNOSTICS, spectrum_wavenumbers
from .grid import Grid
from .params import SolverParams

if TYPE_CHECKING:  # xarray is imported when a Dataset is built: callers of RunResult need not
    import xarray as xr

__all__ = ["RunResult", "build_result", "build_dataset"]

# name -> (dims, values, attrs), the form xarray.Dataset takes
Variables = dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, Any]]]


@dataclass
class RunResult:
    """A run's result as plain arrays: data variables, coordinates (all dimension
    coordinates) and attributes, in the order the Dataset lists them."""

    data_vars: Variables
    coords: Variables
    attrs: dict[str, Any] = field(default_factory=dict)

    def variables(self) -> Iterator[tuple[str, tuple[str, ...], np.ndarray, dict[str, Any]]]:
        """(name, dims, values, attrs) of every variable, data variables first (as
        ``xarray.Dataset.variables``)."""
        for group in (self.data_vars, self.coords):
            for name, (dims, values, attrs) in group.items():
                yield name, dims, values, attrs

    @property
    def dims(self) -> tuple[str, ...]:
        """The dimension names (each one has its coordinate)."""
        return tuple(self.coords)

    # Pickled small arrays travel as plain bytes: as separate out-of-band buffers (numpy's
    # pickle protocol 5) a tiny run's ten arrays cost a serialiser that ships such buffers
    # separately (e.g. a task scheduler's) three times more.
    def __getstate__(self) -> dict[str, Any]:
        return {"data_vars": _packed(self.data_vars), "coords": _packed(self.coords), "attrs": self.attrs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.data_vars = _unpacked(state["data_vars"])
        self.coords = _unpacked(state["coords"])
        self.attrs = state["attrs"]

    def to_dataset(self) -> xr.Dataset:
        """The result as an ``xarray.Dataset`` (what ``solver.simulate`` returns)."""
        import xarray as xr

        return xr.Dataset(dict(self.data_vars), coords=dict(self.coords), attrs=dict(self.attrs))


_PACK_BYTES = 1 << 16  # larger arrays keep numpy's zero-copy pickling


def _packed(variables: Variables) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (dims, values, attrs) in variables.items():
        a = np.asarray(values)
        if a.dtype.kind in "biufc" and a.nbytes <= _PACK_BYTES:
            out[name] = (dims, (a.dtype.str, a.shape, a.tobytes()), attrs)  # arrays are never tuples
        else:
            out[name] = (dims, values, attrs)
    return out


def _unpacked(variables: dict[str, Any]) -> Variables:
    out: Variables = {}
    for name, (dims, values, attrs) in variables.items():
        if type(values) is tuple:
            dtype, shape, data = values
            values = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape).copy()
        out[name] = (dims, values, attrs)
    return out


def build_result(
    p: SolverParams,
    grid: Grid,
    diagnostics: Mapping[str, ArrayLike],
    spectrum: np.ndarray,
    fields: np.ndarray | None,
    provenance: dict[str, Any],
) -> RunResult:
    """The result's arrays: time series on ``time``, E(k) on ``k``, optional u, v, w."""
    times = np.asarray(diagnostics["step"], dtype=np.float64) * p.dt
    data: Variables = {
        name: (
            ("time",),
            np.asarray(diagnostics[name], dtype=np.float64),
            {"units": units, "long_name": long_name},
        )
        for name, (units, long_name) in DIAGNOSTICS.items()
    }
    data["energy_spectrum"] = (
        ("k",),
        np.asarray(spectrum, dtype=np.float64),
        {
            "units": "velocity^2 length",
            "long_name": f"energy spectrum E(k) at t = {p.T_final:g} "
            "(energy of the modes with round(|k|) = k)",
        },
    )
    coords: Variables = {
        "time": (("time",), times, {"units": "time units", "long_name": "simulation time"}),
        "k": (("k",), spectrum_wavenumbers(grid), {"units": "1/length", "long_name": "wavenumber shell"}),
    }
    if fields is not None:
        for name, axis in zip("xyz", grid.coords(), strict=True):
            coords[name] = ((name,), axis, {"units": "length", "long_name": f"{name} coordinate"})
        for comp, name in zip(fields, "uvw", strict=True):
            data[name] = (
                ("x", "y", "z"),
                comp,
                {"units": "velocity", "long_name": f"{name} velocity at t = {p.T_final:g}"},
            )
    attrs = {
        "title": "incompressible Navier-Stokes, pseudo-spectral, periodic box [0, 2pi)^3",
        "params": json.dumps(p.as_dict(), sort_keys=True),
        **provenance,
    }
    return RunResult(data, coords, attrs)


def build_dataset(
    p: SolverParams,
    grid: Grid,
    diagnostics: Mapping[str, ArrayLike],
    spectrum: np.ndarray,
    fields: np.ndarray | None,
    provenance: dict[str, Any],
) -> xr.Dataset:
    """The result Dataset: time series on ``time``, E(k) on ``k``, optional u, v, w."""
    return build_result(p, grid, diagnostics, spectrum, fields, provenance).to_dataset()
