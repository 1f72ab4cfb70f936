"""A result as the store sees it: named variables (dims, values, attributes), and what of it the
index keeps: its time series and its profiles.

A result is an ``xarray.Dataset`` or a ``solver.output.RunResult`` (the same result as plain
arrays: what a sweep's workers send, read without xarray's per-variable overhead); both give
the same variables and so the same stored bytes.

The index (what ``open_results`` reads) keeps, besides the records, every run's *time series*
(1-D numeric variables on ``time``) and its *profiles*: 1-D numeric variables on another
dimension whose coordinate is a float array of at most ``PROFILE_MAX_POINTS`` points (the
spectral solver's ``energy_spectrum`` on ``k``, the OpenFOAM cavity's ``u_centerline`` on
``y``). Fields on an index-like dimension (cells, probes: integer coordinates) and anything of
more dimensions stay in the run's own data (``Store.open_run``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..codec import from_base64, to_base64

__all__ = [
    "SERIES_DIM",
    "PROFILE_MAX_POINTS",
    "Variable",
    "result_variables",
    "series_of",
    "encode_series",
    "decode_series",
    "profiles_of",
    "encode_profiles",
    "decode_profiles",
]

SERIES_DIM = "time"  # variables on this dimension alone are copied into the index
PROFILE_MAX_POINTS = 4096  # longer profiles stay in the run's own data (the index is read whole)
_RESERVED = "length"  # the index's own array of each series/profile group


class Variable(NamedTuple):
    """One variable of a result."""

    name: str
    dims: tuple[str, ...]
    values: np.ndarray
    attrs: Mapping[str, Any]
    is_coord: bool


def result_variables(ds: Any) -> tuple[list[Variable], dict[str, Any]]:
    """The variables and dataset attributes of a result (Dataset or ``RunResult``)."""
    from solver.output import RunResult

    if isinstance(ds, RunResult):
        coords = ds.coords
        variables = [Variable(n, tuple(d), np.asarray(v), a, n in coords) for n, d, v, a in ds.variables()]
        return variables, dict(ds.attrs)
    attrs = dict(ds.attrs)
    non_index = [n for n in ds.coords if n not in ds.dims]
    if non_index:
        attrs["coordinates"] = " ".join(non_index)
    coord_names = set(ds.coords)
    return (
        [
            Variable(n, tuple(v.dims), np.asarray(v.values), v.attrs, n in coord_names)
            for n, v in ds.variables.items()
        ],
        attrs,
    )


def series_of(variables: Sequence[Variable]) -> dict[str, np.ndarray]:
    """The run's 1-D numeric time series (and the time coordinate) as float64 copies."""
    by_name = {v.name: v for v in variables}
    time = by_name.get(SERIES_DIM)
    if time is None or time.dims != (SERIES_DIM,):
        return {}
    names = [SERIES_DIM] + [
        v.name
        for v in variables
        if not v.is_coord and v.dims == (SERIES_DIM,) and v.values.dtype.kind in "biuf"
    ]
    return {n: np.array(by_name[n].values, dtype="<f8") for n in names}


def encode_series(series: Mapping[str, np.ndarray]) -> dict[str, str]:
    """Time series as base64 float64 (how a log record holds them)."""
    return {n: to_base64(a, "<f8") for n, a in series.items()}


def decode_series(enc: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The inverse of ``encode_series``."""
    return {k: from_base64(v, "<f8") for k, v in enc.items()}


def _node_name(name: str) -> bool:
    """Whether ``name`` can name a zarr node of the index (no "/", not "." or "..", no "__")."""
    return bool(name) and "/" not in name and name not in (".", "..", _RESERVED) and not name.startswith("__")


def profiles_of(variables: Sequence[Variable]) -> dict[str, dict[str, np.ndarray]]:
    """The run's profiles (see the module docstring) as float64 copies, by dimension:
    ``{dim: {dim: coordinate, name: values, ...}}``."""
    by_name = {v.name: v for v in variables}
    out: dict[str, dict[str, np.ndarray]] = {}
    for v in variables:
        if v.is_coord or len(v.dims) != 1 or v.dims[0] == SERIES_DIM or v.values.dtype.kind not in "biuf":
            continue
        dim = v.dims[0]
        coord = by_name.get(dim)
        if (
            coord is None
            or coord.dims != (dim,)
            or coord.values.dtype.kind != "f"
            or coord.values.size > PROFILE_MAX_POINTS
            or not (_node_name(dim) and _node_name(v.name))
        ):
            continue
        entry = out.setdefault(dim, {dim: np.array(coord.values, dtype="<f8")})
        entry[v.name] = np.array(v.values, dtype="<f8")
    return out


def encode_profiles(profiles: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, str]]:
    """Profiles as base64 float64 (how a log record holds them)."""
    return {dim: encode_series(arrays) for dim, arrays in profiles.items()}


def decode_profiles(enc: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, np.ndarray]]:
    """The inverse of ``encode_profiles``."""
    return {dim: decode_series(arrays) for dim, arrays in enc.items()}
