"""Read a result store for analysis: one Dataset over all runs, a DataFrame, per-run data.

``open_results(store)`` reads only the store's index (never the 10,000 run groups), so it
stays fast; per-run data (spectrum, final fields) is opened on demand with
``Store.open_run`` or ``open_run_tree``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from solver.params import PARAMS

from ..errors import ConfigError
from ..solvers.registry import DEFAULT_SOLVER
from .store import Store
from .table import RunTable
from .variables import SERIES_DIM

__all__ = [
    "PARAMETER_COORDS",
    "open_results",
    "align_time",
    "OUTPUT_DIM",
    "results_frame",
    "to_grid",
    "export_index",
    "open_run_tree",
    "EXPORTERS",
]

# coordinates on `run` that name a spectral run's parameters (present whenever the store holds a
# spectral run, or no run at all); other solvers' runs bring their own (see _parameters)
PARAMETER_COORDS = ("Re", "dt", "T_final", "nx", "ny", "nz")
OUTPUT_DIM = "output"  # the n-th output of a run: the time series' dimension in open_results
_TIME_DECIMALS = 12  # output times that agree to 1e-12 are one time (dt sums round differently)
_SPECTRAL_SERIES = ("energy", "dissipation", "enstrophy")  # always variables of a spectral store


def _as_store(store: Store | str | os.PathLike[str]) -> tuple[Store, bool]:
    if isinstance(store, Store):
        return store, False
    return Store.open(store, mode="r"), True


def _solver_column(table: RunTable, rows: np.ndarray) -> np.ndarray:
    """Each run's solver (records written before solvers had names ran the spectral one)."""
    col = table.cols.get("solver") or [None] * len(table)
    return np.array([s or DEFAULT_SOLVER for s in _take(col, rows)], dtype=object)


def _take(values: list[Any], rows: np.ndarray) -> list[Any]:
    """``values`` at ``rows`` (the list itself when ``rows`` is every row in order)."""
    if len(rows) == len(values) and (not len(rows) or (rows[0] == 0 and rows[-1] == len(rows) - 1)):
        return values
    return [values[i] for i in rows.tolist()]


_NUMBERS = (int, float, np.integer, np.floating)


def _is_number(v: Any) -> bool:
    return isinstance(v, _NUMBERS) and not isinstance(v, (bool, np.bool_))


def _number_type(t: type) -> bool:
    return issubclass(t, _NUMBERS) and not issubclass(t, (bool, np.bool_))


def _column(values: list[Any]) -> np.ndarray:
    """A coordinate's values: int64 when all are integers, float64 with NaN for missing
    numbers, else objects (None where missing)."""
    types = set(map(type, values))
    present = types - {type(None)}
    if present and all(map(_number_type, present)):
        if len(present) == len(types) and all(issubclass(t, (int, np.integer)) for t in present):
            return np.array(values, dtype=np.int64)
        if len(present) == len(types):
            return np.array(values, dtype=float)
        return np.array([np.nan if v is None else v for v in values], dtype=float)
    return np.array(values, dtype=object)


def _objects(values: list[Any], rows: np.ndarray, fill: Any = None) -> np.ndarray:
    """``values`` at ``rows`` as an object array, ``fill`` where a value is None (made and
    filled in C, not by a loop over 100,000 runs)."""
    out = np.fromiter(values, dtype=object, count=len(values))[rows]
    if fill is not None:
        out[np.equal(out, np.array(None, dtype=object))] = fill
    return out


def _variable(dims: str | tuple[str, ...], values: np.ndarray) -> xr.Variable:
    """A Variable of one of our own numpy arrays, taken as it is. xarray's checks of data of
    unknown kind (a dask or masked array, objects to convert) import dask.array when dask is
    installed: 0.4-0.5 s of a fresh process that only opens results, and pandas' round trip
    of every object column through its string type (``fastpath``: a Variable's own argument
    for data that are an array already)."""
    return xr.Variable(dims, values, fastpath=True)


def _package_coords(listed: list[tuple[str, ...]]) -> dict[str, tuple[str, np.ndarray]]:
    """``package_id`` (a run's first package) and ``package_ids`` (all, comma-separated) of
    each run from its tuple of package ids."""
    if all(len(p) == 1 for p in listed):  # one package a run (the usual case): its id twice
        first = np.fromiter((p[0] for p in listed), dtype=object, count=len(listed))
        return {"package_id": ("run", first), "package_ids": ("run", first.copy())}
    return {
        "package_id": ("run", np.array([p[0] if p else "" for p in listed], dtype=object)),
        "package_ids": ("run", np.array([",".join(p) for p in listed], dtype=object)),
    }


def _varies(values: list[Any]) -> bool:
    """Whether the values are not all equal (``list.count``: one comparison a value, in C;
    a set of 100,000 values, or their reprs when unhashable, cost ~10 times more)."""
    return bool(values) and values.count(values[0]) != len(values)


def _parameters(
    table: RunTable, rows: np.ndarray, solvers: np.ndarray, *, every: bool = False
) -> dict[str, np.ndarray]:
    """The parameter coordinates of the runs ``rows`` (whose solvers are ``solvers``: see
    ``_solver_column``), in order.

    Spectral runs (and an empty store): ``Re``, ``dt``, ``T_final``, ``nx``, ``ny``, ``nz``,
    defaults where a record lacks one, then the identity parameters that differ between them
    (every parameter with ``every``). Other solvers' runs: each parameter their records hold
    (their identity parameters), numbers always and others when they differ (all with
    ``every``); a name two solvers share (``Re``) is one coordinate. A run without a parameter
    has NaN (or None) there.
    """
    n = len(rows)
    spectral = (solvers == DEFAULT_SOLVER).tolist()  # a list: zipped per run below
    only_spectral = all(spectral)
    cols = {name: _take(values, rows) for name, values in table.params.items()}
    out: dict[str, np.ndarray] = {}
    if any(spectral) or n == 0:
        full: dict[str, list[Any]] = {}
        for name, p in PARAMS.items():  # a spectral record without a parameter had its default
            col = cols.get(name, [None] * n)
            if only_spectral and None not in col:
                full[name] = col
            elif only_spectral and col.count(None) == n:  # a parameter no record holds
                full[name] = [p.default] * n
            else:
                full[name] = [p.default if s and v is None else v for s, v in zip(spectral, col, strict=True)]
        grid = full.pop("grid")
        grids = grid if only_spectral else [g if s else None for s, g in zip(spectral, grid, strict=True)]
        axes = _grid_axes(grids)
        for name in PARAMETER_COORDS:
            values = axes[name] if name in axes else _column(full[name])
            out[name] = values.astype(float) if name in ("Re", "dt", "T_final") else values
        for name, p in PARAMS.items():
            if name in PARAMETER_COORDS or name == "grid" or not (p.identity or every):
                continue
            own = full[name] if only_spectral else [v for s, v in zip(spectral, full[name], strict=True) if s]
            if every or _varies(own):
                out[name] = _column(full[name])
    for name, col in cols.items():  # the other solvers' parameters
        if name in out or only_spectral:
            continue
        own = [v for s, v in zip(spectral, col, strict=True) if not s and v is not None]
        if own and (every or all(_is_number(v) for v in own) or _varies(own)):
            out[name] = _column(col)
    return out


def _grid_axes(grids: list[Any]) -> dict[str, np.ndarray]:
    """nx, ny, nz of each run's grid (int64; float64 with NaN where a run has none)."""
    if grids and None not in grids:
        try:
            a = np.array(grids, dtype=np.int64)
        except (TypeError, ValueError):
            a = None
        if a is not None and a.shape == (len(grids), 3):
            return {"nx": a[:, 0], "ny": a[:, 1], "nz": a[:, 2]}
    axes = [[None if g is None else int(g[k]) for g in grids] for k in range(3)]
    return {name: _column(axis) for name, axis in zip(("nx", "ny", "nz"), axes, strict=True)}


def _on_union(
    coord: np.ndarray, lengths: np.ndarray, values: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Runs' arrays along one dimension (``coord``: each run's coordinate, (run, slot), valid up
    to its length) on the union of every run's coordinate values: NaN where a run has none."""
    n, width = coord.shape
    valid = np.arange(width)[None, :] < lengths[:, None]
    rounded = np.round(coord, _TIME_DECIMALS)
    union = np.unique(rounded[valid]) if valid.any() else np.zeros(0)
    rr = np.broadcast_to(np.arange(n)[:, None], (n, width))[valid]
    cc = np.searchsorted(union, rounded[valid])
    out = {}
    for name, a in values.items():
        spread = np.full((n, union.size), np.nan)
        spread[rr, cc] = a[valid]
        out[name] = spread
    return union, out


def open_results(store: Store | str | os.PathLike[str], *, status: str | None = None) -> xr.Dataset:
    """One Dataset over the runs of ``store``: dimension ``run`` (run ids), ``time``, and one
    dimension per profile coordinate (``k`` of the spectral solver's ``energy_spectrum``,
    ``y`` of the OpenFOAM cavity's ``u_centerline``).

    Coordinates on ``run``: ``package_id`` (the first package of the run), ``package_ids``
    (all, comma-separated), ``solver``, the parameters (a spectral run's ``Re``, ``dt``,
    ``T_final``, ``nx``, ``ny``, ``nz`` and any other identity parameter that varies; another
    solver's, e.g. the cavity's ``Re``, ``n_cells``, ``T_final``, ``dt``: see
    ``attrs["parameters"]``), ``priority``, ``status``, ``failure_class``. Each has its own
    index, so ``ds.sel(Re=400)`` works (chain ``.sel`` calls to select on several, or use
    ``to_grid``). Variables: the time series on (run, output), each run's own output times in
    the 2-D coordinate ``time`` and NaN past its ``n_times`` outputs (a spectral store always
    has ``energy``, ``dissipation`` and ``enstrophy``; ``align_time`` puts them on the union of
    every run's times), the profiles on (run, <their dimension>), NaN where a run has no value
    at that coordinate, and ``wall_time``, ``attempts``, ``error`` on ``run``.
    ``status="done"`` keeps done runs only.
    """
    st, opened = _as_store(store)
    try:
        table = st.run_table()
        series, lengths = table.series()
        profiles = table.profiles()
    finally:
        if opened:
            st.close()
    status_col = np.array(table.cols["status"], dtype=object)
    rows = np.arange(len(table)) if status is None else np.flatnonzero(status_col == status)
    n = len(rows)

    def col(name: str, fill: Any = None) -> np.ndarray:
        return _objects(table.cols[name], rows, fill)

    solvers = _solver_column(table, rows)
    params = _parameters(table, rows, solvers)
    coords: dict[str, Any] = {
        "run": ("run", _objects(table.ids, rows)),
        **_package_coords(_take(table.cols["package_ids"], rows)),
        "solver": ("run", solvers),
        **{name: ("run", values) for name, values in params.items()},
        **{name: ("run", col(name, "")) for name in ("priority", "status", "failure_class")},
    }
    data_vars: dict[str, Any] = {}
    # time series: each run's own output times, padded with NaN past its last one (a run of
    # another dt, T_final or output interval stays one unbroken curve; align_time gives the
    # union of every run's times on demand)
    if status is not None:
        series = {k: v[rows] for k, v in series.items()}
        lengths = lengths[rows]
    own_lengths = lengths.astype(np.int64, copy=False)
    width = int(own_lengths.max()) if n else 0
    padding = np.arange(width)[None, :] >= own_lengths[:, None]
    times = series.pop(SERIES_DIM, np.zeros((n, 0)))
    spectral_store = bool((solvers == DEFAULT_SOLVER).any()) or n == 0

    def padded(values: np.ndarray | None) -> np.ndarray:
        out = np.full((n, width), np.nan)
        if values is not None:
            out[:, : min(width, values.shape[1])] = values[:, :width]
        out[padding] = np.nan
        return out

    names = [*(_SPECTRAL_SERIES if spectral_store else ()), *sorted(set(series) - set(_SPECTRAL_SERIES))]
    coords["time"] = (("run", OUTPUT_DIM), padded(times))
    for name in names:
        data_vars[name] = (("run", OUTPUT_DIM), padded(series.get(name)))
    data_vars["n_times"] = ("run", own_lengths)
    # profiles: the same on each profile's own coordinate
    for dim, (arrays, dim_lengths) in profiles.items():
        if dim in coords or dim in data_vars:
            continue  # a dimension named like a coordinate on run (never written by our solvers)
        if status is not None:
            arrays, dim_lengths = {k: v[rows] for k, v in arrays.items()}, dim_lengths[rows]
        arrays = dict(arrays)
        own = arrays.pop(dim)
        wanted = {k: v for k, v in arrays.items() if k not in coords and k not in data_vars}
        union, spread = _on_union(own, dim_lengths, wanted)
        if not union.size:
            continue
        coords[dim] = (dim, union)
        for name, values in spread.items():
            data_vars[name] = (("run", dim), values)
    data_vars["wall_time"] = ("run", col("wall_time", math.nan).astype(float))
    data_vars["attempts"] = ("run", col("attempts", 1).astype(np.int64))
    data_vars["error"] = ("run", col("error", ""))
    ds = xr.Dataset(
        {name: _variable(*v) for name, v in data_vars.items()},
        coords={name: _variable(*v) for name, v in coords.items()},
        attrs={"source": st.url, "parameters": " ".join(params)},
    )
    for name, long_name in _LONG_NAMES.items():
        if name in ds:
            ds[name].attrs.update(long_name=long_name)
    ds["wall_time"].attrs.update(units="s", long_name="wall-clock seconds of the run")
    ds["time"].attrs.update(long_name="time of each output of each run (NaN past its last one)")
    ds["n_times"].attrs.update(long_name="outputs of the run (its time series' length)")
    for name in (*params, "package_id", "solver", "priority", "status"):
        ds = ds.set_xindex(name)
    return ds


def align_time(ds: xr.Dataset) -> xr.Dataset:
    """``open_results``' time series on one shared ``time`` dimension: the union of every
    run's output times (agreeing to 1e-12), NaN where a run has no output at that time.

    For selecting by time across runs (``align_time(ds).energy.sel(time=0.5)``); a run whose
    output times differ from another's has NaN between its points there, so plot the
    unaligned Dataset (``ds.energy.plot.line(x="time", hue="run")``).
    """
    if OUTPUT_DIM not in ds.dims:
        return ds  # already aligned (or no time series)
    on_output = [str(k) for k, v in ds.data_vars.items() if OUTPUT_DIM in v.dims]
    times = np.asarray(ds["time"].transpose("run", OUTPUT_DIM).values, dtype=float)
    lengths = np.asarray(ds["n_times"].values, dtype=np.int64)
    values = {k: np.asarray(ds[k].transpose("run", OUTPUT_DIM).values, dtype=float) for k in on_output}
    union, spread = _on_union(np.nan_to_num(times), lengths, values)
    out = ds.drop_vars([*on_output, "time"])
    out = out.assign_coords(time=("time", union))
    for k in on_output:
        out[k] = (("run", "time"), spread[k], ds[k].attrs)
    return out


_LONG_NAMES = {
    "energy": "mean kinetic energy 1/2<|u|^2>",
    "dissipation": "dissipation rate nu<|omega|^2> = -dE/dt",
    "enstrophy": "enstrophy 1/2<|omega|^2>",
}


def _swept(ds: xr.Dataset, dims: Sequence[str] | None) -> list[str]:
    if dims is not None:
        bad = [d for d in dims if d not in ds.coords or ds[d].dims != ("run",)]
        if bad:
            allowed = [str(c) for c in ds.coords if ds[c].dims == ("run",) and c != "run"]
            raise ConfigError(f"dims: bad value {bad}; allowed: coordinates on run: {', '.join(allowed)}")
        return list(dims)
    given = ds.attrs.get("parameters")
    names = (
        given.split()
        if isinstance(given, str)
        else [*PARAMETER_COORDS, *(str(c) for c in ds.coords if c in PARAMS and c not in PARAMETER_COORDS)]
    )
    # a parameter that varies only together with earlier ones (ny, nz of cubic grids) is no
    # dimension of its own: keep those that tell more runs apart
    out: list[str] = []
    distinct = 1
    for c in map(str, names):
        if c not in ds.coords:
            continue
        n = len(pd.MultiIndex.from_arrays([ds[d].values for d in (*out, c)]).unique())
        if n > distinct:
            out.append(c)
            distinct = n
    return out


def to_grid(ds: xr.Dataset, dims: Sequence[str] | None = None, *, allow_missing: bool = False) -> xr.Dataset:
    """A full-factorial sweep as a grid: one dimension per swept parameter, then ``time``.

    ``dims``: the parameters to spread out (default: every parameter that varies). A
    combination without a run is an error unless ``allow_missing`` (then it is NaN).
    The run ids stay available as the ``run_id`` coordinate on the grid.
    """
    if ds.sizes.get("run", 0) == 0:
        raise ConfigError("results: bad value (no runs); allowed: a store with runs to arrange in a grid")
    swept = _swept(ds, dims)
    if not swept:
        raise ConfigError(
            "dims: bad value (no parameter varies); allowed: a sweep over at least one parameter"
        )
    keys = pd.MultiIndex.from_arrays([ds[d].values for d in swept], names=swept)
    if keys.has_duplicates:
        dup = keys[keys.duplicated()][0]
        raise ConfigError(
            f"dims: bad value {swept}; allowed: parameters that tell runs apart (two runs "
            f"share {dict(zip(swept, dup, strict=True))}; add the parameter that differs)"
        )
    size = math.prod(len(level) for level in keys.remove_unused_levels().levels)
    if size != len(keys) and not allow_missing:
        raise ConfigError(
            f"results: bad value {len(keys)} runs; allowed: a full factorial of {size} "
            f"combinations of {', '.join(swept)} ({size - len(keys)} missing; pass "
            "allow_missing=True to fill them with NaN)"
        )
    flat = ds.assign_coords(run_id=("run", ds["run"].values)).drop_indexes(
        [*swept, *(c for c in ds.xindexes if c not in ("run", "time", OUTPUT_DIM) and c not in swept)]
    )
    flat = flat.drop_vars("run").set_xindex(swept, xr.indexes.PandasMultiIndex)
    grid = flat.unstack("run")
    return grid.transpose(*swept, ...)


def results_frame(store: Store | str | os.PathLike[str]) -> pd.DataFrame:
    """The index as a DataFrame: one row per run (index ``run_id``), parameters and provenance."""
    st, opened = _as_store(store)
    try:
        table = st.run_table()
        series, lengths = table.series()
    finally:
        if opened:
            st.close()
    rows = np.arange(len(table))
    solvers = _solver_column(table, rows)
    params = _parameters(table, rows, solvers, every=True)
    c = table.cols
    df = pd.DataFrame(
        {
            "run_id": table.ids,
            "package_ids": [",".join(p) for p in c["package_ids"]],
            "priority": [p or "" for p in c["priority"]],
            "status": c["status"],
            "failure_class": [f or "" for f in c["failure_class"]],
            "error": [e or "" for e in c["error"]],
            "solver": solvers,
            **params,
            **{
                k: c[k]
                for k in (
                    "wall_time",
                    "start_time",
                    "end_time",
                    "attempts",
                    "resumed_from_checkpoint",
                    "host",
                    "solver_version",
                    "git_commit",
                )
            },
            "n_times": lengths.astype(np.int64),
        }
    )
    if len(rows) and "energy" in series:
        last = np.clip(lengths - 1, 0, None)
        final = series["energy"][rows, last]
        df["final_energy"] = np.where(lengths > 0, final, np.nan)
    return df.set_index("run_id")


def _to_csv(df: pd.DataFrame, path: str) -> None:
    df.to_csv(path)


def _to_parquet(df: pd.DataFrame, path: str) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"{path}: bad value '.parquet' without pyarrow; allowed: .csv, or install "
            "pyarrow (pip install 'ns-sweep[parquet]')"
        ) from None
    df.to_parquet(path)


EXPORTERS: dict[str, Callable[[pd.DataFrame, str], None]] = {".csv": _to_csv, ".parquet": _to_parquet}


def export_index(store: Store | str | os.PathLike[str], path: str | os.PathLike[str]) -> pd.DataFrame:
    """Write the index table to ``path`` (format from the suffix: .csv or .parquet); returns it."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in EXPORTERS:
        raise ConfigError(
            f"{path}: bad value {ext or '(no suffix)'!r}; allowed: one of " + ", ".join(EXPORTERS)
        )
    df = results_frame(store)
    EXPORTERS[ext](df, path)
    return df


def open_run_tree(store: Store | str | os.PathLike[str], run_ids: Iterable[str] | None = None) -> xr.DataTree:
    """Per-run Datasets (spectrum, fields, time series) as a DataTree with one child per run,
    named by its package id (``tree["Re400-dt0.01"]``; the run id is the child's ``run_id``
    attribute, and names the child of a run no package names).

    ``run_ids``: which runs (default every done run; each is opened lazily).
    """
    st, opened = _as_store(store)
    try:
        ids = sorted(st.done_run_ids()) if run_ids is None else list(run_ids)
        records = st.records()
        children = {}
        for rid in ids:
            rec = records.get(rid)
            name = rec.package_ids[0] if rec is not None and rec.package_ids else rid
            ds = st.open_run(rid)
            ds.attrs["run_id"] = rid
            children[f"/{name}" if f"/{name}" not in children else f"/{rid}"] = ds
        return xr.DataTree.from_dict(children)
    finally:
        if opened:
            st.close()
