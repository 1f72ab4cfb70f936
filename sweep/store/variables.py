"""A result as the store sees it: named variables (dims, values, attributes) and its time series.

A result is an ``xarray.Dataset`` or a ``solver.output.RunResult`` (the same result as plain
arrays: what a sweep's workers send, read without xarray's per-variable overhead); both give
the same variables and so the same stored bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..codec import from_base64, to_base64

__all__ = ["SERIES_DIM", "Variable", "result_variables", "series_of", "encode_series", "decode_series"]

SERIES_DIM = "time"  # variables on this dimension alone are copied into the index


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
