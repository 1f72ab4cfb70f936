"""Read a result store for analysis: one Dataset over all runs, a DataFrame, per-run data.

``open_results(store)`` reads only the store's index (never the 10,000 run groups), so it
stays fast; per-run data (spectrum, final fields) is opened on demand with
``Store.open_run`` or ``open_run_tree``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from solver.params import PARAMS

from ..errors import ConfigError
from .store import Store
from .table import RunTable
from .variables import SERIES_DIM

__all__ = [
    "PARAMETER_COORDS",
    "open_results",
    "results_frame",
    "to_grid",
    "export_index",
    "open_run_tree",
    "EXPORTERS",
]

# coordinates on `run` that name a run's parameters (always present, each selectable)
PARAMETER_COORDS = ("Re", "dt", "T_final", "nx", "ny", "nz")
_TIME_DECIMALS = 12  # output times that agree to 1e-12 are one time (dt sums round differently)


def _as_store(store: Store | str | os.PathLike[str]) -> tuple[Store, bool]:
    if isinstance(store, Store):
        return store, False
    return Store.open(store, mode="r"), True


def _param_values(table: RunTable, rows: np.ndarray) -> dict[str, list[Any]]:
    """Per-run values of every declared parameter (defaults where a record lacks one), the
    grid split into nx, ny, nz."""
    cols: dict[str, list[Any]] = {}
    for name, p in PARAMS.items():
        col = table.params.get(name)
        cols[name] = (
            [p.default] * len(rows)
            if col is None
            else [p.default if col[i] is None else col[i] for i in rows]
        )
    grids = [tuple(g) for g in cols.pop("grid")]
    cols["nx"] = [int(g[0]) for g in grids]
    cols["ny"] = [int(g[1]) for g in grids]
    cols["nz"] = [int(g[2]) for g in grids]
    return cols


def _varying_extra(cols: dict[str, list[Any]]) -> list[str]:
    """Identity parameters beyond the standard ones that differ between runs."""
    out = []
    for name, p in PARAMS.items():
        if name in PARAMETER_COORDS or name == "grid" or not p.identity or name not in cols:
            continue
        if len({repr(v) for v in cols[name]}) > 1:
            out.append(name)
    return out


def open_results(store: Store | str | os.PathLike[str], *, status: str | None = None) -> xr.Dataset:
    """One Dataset over the runs of ``store``: dimension ``run`` (run ids) and ``time``.

    Coordinates on ``run``: ``package_id`` (the first package of the run), ``package_ids``
    (all, comma-separated), ``Re``, ``dt``, ``T_final``, ``nx``, ``ny``, ``nz``, ``priority``,
    ``status``, ``failure_class`` and any other identity parameter that varies. Each has
    its own index, so ``ds.sel(Re=400)`` works (chain ``.sel`` calls to select on several,
    or use ``to_grid``). Variables: the time series on (run, time), NaN where a run has no
    value at that time (``time`` is the union of every run's output times), and
    ``wall_time``, ``attempts``, ``error`` on ``run``. ``status="done"`` keeps done runs only.
    """
    st, opened = _as_store(store)
    try:
        table = st.run_table()
        series, lengths = table.series()
    finally:
        if opened:
            st.close()
    status_col = np.array(table.cols["status"], dtype=object)
    rows = np.arange(len(table)) if status is None else np.flatnonzero(status_col == status)
    series = {k: v[rows] for k, v in series.items()}
    lengths = lengths[rows]
    n = len(rows)

    def col(name: str, fill: Any = None) -> list[Any]:
        values = table.cols[name]
        return [fill if values[i] is None else values[i] for i in rows]

    # union of output times; each run's values scattered into it
    times = series.pop(SERIES_DIM, np.zeros((n, 0)))
    width = times.shape[1]
    valid = np.arange(width)[None, :] < lengths[:, None]
    rounded = np.round(times, _TIME_DECIMALS)
    union = np.unique(rounded[valid]) if valid.any() else np.zeros(0)
    rr = np.broadcast_to(np.arange(n)[:, None], (n, width))[valid]
    cc = np.searchsorted(union, rounded[valid])
    data_vars: dict[str, Any] = {}
    for name in (
        "energy",
        "dissipation",
        "enstrophy",
        *sorted(set(series) - {"energy", "dissipation", "enstrophy"}),
    ):
        out = np.full((n, union.size), np.nan)
        if name in series:
            out[rr, cc] = series[name][valid]
        data_vars[name] = (("run", "time"), out)
    data_vars["wall_time"] = ("run", np.array(col("wall_time", math.nan), dtype=float))
    data_vars["attempts"] = ("run", np.array(col("attempts", 1), dtype=np.int64))
    data_vars["error"] = ("run", np.array(col("error", ""), dtype=object))
    params = _param_values(table, rows)
    pids = col("package_ids", ())
    coords: dict[str, Any] = {
        "run": ("run", np.array([table.ids[i] for i in rows], dtype=object)),
        "time": ("time", union),
        "package_id": ("run", np.array([p[0] if p else "" for p in pids], dtype=object)),
        "package_ids": ("run", np.array([",".join(p) for p in pids], dtype=object)),
        "Re": ("run", np.array(params["Re"], dtype=float)),
        "dt": ("run", np.array(params["dt"], dtype=float)),
        "T_final": ("run", np.array(params["T_final"], dtype=float)),
        "nx": ("run", np.array(params["nx"], dtype=np.int64)),
        "ny": ("run", np.array(params["ny"], dtype=np.int64)),
        "nz": ("run", np.array(params["nz"], dtype=np.int64)),
        "priority": ("run", np.array(col("priority", ""), dtype=object)),
        "status": ("run", np.array(col("status", ""), dtype=object)),
        "failure_class": ("run", np.array(col("failure_class", ""), dtype=object)),
    }
    extra = _varying_extra(params)
    for name in extra:
        coords[name] = ("run", np.array(params[name]))
    ds = xr.Dataset(data_vars, coords=coords, attrs={"source": st.url})
    ds["energy"].attrs.update(long_name="mean kinetic energy 1/2<|u|^2>")
    ds["dissipation"].attrs.update(long_name="dissipation rate nu<|omega|^2> = -dE/dt")
    ds["enstrophy"].attrs.update(long_name="enstrophy 1/2<|omega|^2>")
    ds["wall_time"].attrs.update(units="s", long_name="wall-clock seconds of the run")
    for name in (*PARAMETER_COORDS, "package_id", "priority", "status", *extra):
        ds = ds.set_xindex(name)
    return ds


def _swept(ds: xr.Dataset, dims: Sequence[str] | None) -> list[str]:
    if dims is not None:
        bad = [d for d in dims if d not in ds.coords or ds[d].dims != ("run",)]
        if bad:
            allowed = [str(c) for c in ds.coords if ds[c].dims == ("run",) and c != "run"]
            raise ConfigError(f"dims: bad value {bad}; allowed: coordinates on run: {', '.join(allowed)}")
        return list(dims)
    names = [*PARAMETER_COORDS, *(str(c) for c in ds.coords if c in PARAMS and c not in PARAMETER_COORDS)]
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
        [*swept, *(c for c in ds.xindexes if c not in ("run", "time") and c not in swept)]
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
    params = _param_values(table, rows)
    c = table.cols
    df = pd.DataFrame(
        {
            "run_id": table.ids,
            "package_ids": [",".join(p) for p in c["package_ids"]],
            "priority": [p or "" for p in c["priority"]],
            "status": c["status"],
            "failure_class": [f or "" for f in c["failure_class"]],
            "error": [e or "" for e in c["error"]],
            **{
                k: params[k]
                for k in (*PARAMETER_COORDS, *(n for n in PARAMS if n not in ("grid", *PARAMETER_COORDS)))
            },
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
    """Per-run Datasets (spectrum, fields, time series) as a DataTree with one child per run.

    ``run_ids``: which runs (default every done run; each is opened lazily).
    """
    st, opened = _as_store(store)
    try:
        ids = sorted(st.done_run_ids()) if run_ids is None else list(run_ids)
        return xr.DataTree.from_dict({f"/{rid}": st.open_run(rid) for rid in ids})
    finally:
        if opened:
            st.close()
