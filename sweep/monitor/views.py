"""The views of a sweep (HoloViews/hvplot): progress and science, and the page that holds them.

Built from plain inputs (``sweep.monitor.status.SweepData``: the runs table, the packages and
the ``open_results`` Dataset), so the report file and the live dashboard show the same ones.
The spectral solver's views read ``energy`` and ``dissipation``; runs of other solvers show
their own time series (``residual_*`` of OpenFOAM, log scale) and profiles (``u_centerline``
on ``y``), whatever their names: no view assumes a variable the store does not have.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..engine.progress import one_line
from ..store.results import OUTPUT_DIM
from ..units import format_duration
from .physics import (
    PANEL_WIDTH,
    grid_label,
    physics_views,
    table_hook,
)
from .status import FAILURE_CLASSES, PRIORITY_ORDER, Counts, SweepData, SweepStatus
from .tables import table_limit, useful_rows

__all__ = [
    "STATE_COLORS",
    "STATE_LABELS",
    "timeseries_frame",
    "per_run_frame",
    "stats_frame",
    "build_views",
    "running_now_html",
    "log_axis",
    "runs_table_note",
]

STATE_COLORS = {
    "done": "#2ca02c",
    "failed": "#d62728",
    "running": "#1f77b4",
    "stale": "#ff7f0e",
    "new": "#c7c7c7",
}
STATE_LABELS = {
    "done": "done",
    "failed": "failed",
    "running": "running now",
    "stale": "stale (params changed)",
    "new": "not started",
}
# what the page draws: the counted states, with the packages a running sweep has under way
# (its status document) taken out of "stale" and "new"
VIEW_STATES = ("done", "failed", "running", "stale", "new")


def log_axis(values: Any) -> bool:
    """Log axis only where it helps: positive values spanning at least a factor of 10."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return bool(v.size and v.min() > 0 and v.max() >= 10 * v.min())


def _grid_label(nx: float, ny: float, nz: float) -> str:
    if not all(np.isfinite([nx, ny, nz])):
        return "?"
    return f"{int(nx)}×{int(ny)}×{int(nz)}"


def timeseries_frame(results: Any) -> pd.DataFrame:
    """Long table of the done runs' time series: run, case, Re, grid, time, energy, dissipation."""
    cols = ["run", "case", "Re", "grid", "time", "energy", "dissipation"]
    if results is None or results.sizes.get("run", 0) == 0 or "energy" not in results:
        return pd.DataFrame(columns=cols)
    ds = results
    if "status" in ds.coords:
        ds = ds.isel(run=np.flatnonzero(np.asarray(ds["status"].values) == "done"))
    if ds.sizes.get("run", 0) == 0:
        return pd.DataFrame(columns=cols)
    meta = per_run_frame(ds)
    t = _per_run(ds, "time")
    e, d = _per_run(ds, "energy"), _per_run(ds, "dissipation")
    run_idx, time_idx = np.nonzero(np.isfinite(e) | np.isfinite(d))  # row-major: run by run
    df = pd.DataFrame(
        {
            "run": meta["run"].to_numpy()[run_idx],
            "case": meta["case"].to_numpy()[run_idx],
            "Re": meta["Re"].to_numpy()[run_idx],
            "grid": meta["grid"].to_numpy()[run_idx],
            "time": t[run_idx, time_idx],
            "energy": e[run_idx, time_idx],
            "dissipation": d[run_idx, time_idx],
        },
        columns=cols,
    )
    # legends list cases in order of Re
    return df.sort_values(["grid", "Re", "run", "time"], kind="stable", ignore_index=True)


def _per_run(ds: Any, name: str) -> np.ndarray:
    """A time series of ``open_results`` (or its ``time`` coordinate) as (run, output) floats."""
    return np.asarray(ds[name].transpose("run", OUTPUT_DIM).values, dtype=float)


def per_run_frame(results: Any) -> pd.DataFrame:
    """One row per run in ``results``: parameters, grid label, peak dissipation and its time."""
    n = results.sizes.get("run", 0)

    def get(k: str, d: Any) -> np.ndarray:
        return np.asarray(results[k].values).reshape(n) if k in results.variables else np.full(n, d)

    nx, ny, nz = (get(k, np.nan).astype(float) for k in ("nx", "ny", "nz"))
    Re, dt, T = (get(k, np.nan).astype(float) for k in ("Re", "dt", "T_final"))
    runs = get("run", "") if "run" in results.coords else np.arange(n).astype(str)
    peak = np.full(n, np.nan)
    t_peak = np.full(n, np.nan)
    if n and "dissipation" in results:
        diss, time = _per_run(results, "dissipation"), _per_run(results, "time")
        has = np.isfinite(diss).any(axis=1)
        if has.any():
            idx = np.nanargmax(np.where(np.isfinite(diss[has]), diss[has], -np.inf), axis=1)
            peak[has] = diss[has][np.arange(has.sum()), idx]
            t_peak[has] = time[has][np.arange(has.sum()), idx]
    solvers = get("solver", "spectral").astype(str)
    grid = [
        _grid_label(a, b, c) if s == "spectral" else s for a, b, c, s in zip(nx, ny, nz, solvers, strict=True)
    ]
    df = pd.DataFrame(
        {
            "run": [str(r) for r in runs],
            "Re": Re,
            "dt": dt,
            "T_final": T,
            "grid": grid,
            "grid_points": nx * ny * nz,
            "status": get("status", "done").astype(str),
            "wall_time": get("wall_time", np.nan).astype(float),
            "peak_dissipation": peak,
            "t_peak": t_peak,
        }
    )
    # A case names a line in the time plots: Re alone when that is unique within its grid.
    dup = df.duplicated(["grid", "Re"], keep=False)
    more = [p for p in str(results.attrs.get("parameters", "")).split() if p in _OWN and p in results.coords]
    df["case"] = [
        f"Re={r:g}"
        + (f", dt={d:g}, T={t:g}" if u else "")
        + "".join(f", {p}={get(p, '')[i]}" for p in more if u and s != "spectral")
        for i, (r, d, t, u, s) in enumerate(zip(df["Re"], df["dt"], df["T_final"], dup, solvers, strict=True))
    ]
    return df


_OWN = ("n_cells", "n")  # size parameters of the bundled case and the command example, when they vary


def _other_solver_runs(results: Any) -> Any:
    """The done runs of solvers other than the spectral one (None when there are none)."""
    if results is None or results.sizes.get("run", 0) == 0 or "solver" not in results.coords:
        return None
    keep = (np.asarray(results["solver"].values) != "spectral") & (
        np.asarray(results["status"].values) == "done"
    )
    return results.isel(run=np.flatnonzero(keep)) if keep.any() else None


def _solver_views(results: Any) -> dict[str, Any]:
    """Profiles (each on its own coordinate) and time series of other solvers' done runs, one
    line per run, named by case (``per_run_frame``)."""
    import holoviews as hv
    import hvplot.pandas  # noqa: F401

    ds = _other_solver_runs(results)
    if ds is None:
        return {}
    case = per_run_frame(ds)["case"].to_numpy()
    views: dict[str, Any] = {}
    for kind, dim in (("profiles", None), ("series", OUTPUT_DIM)):
        plots = []
        for name, var in ds.data_vars.items():
            dims = var.dims
            if len(dims) != 2 or dims[0] != "run" or (dim is not None and dims[1] != dim):
                continue
            if dim is None and dims[1] == OUTPUT_DIM:
                continue
            values = np.asarray(var.transpose("run", dims[1]).values, dtype=float)
            r, c = np.nonzero(np.isfinite(values))
            if not r.size:
                continue
            xname = "time" if dims[1] == OUTPUT_DIM else str(dims[1])
            x = np.asarray(ds[xname].transpose("run", ...).values, dtype=float) if xname == "time" else None
            xs = x[r, c] if x is not None else np.asarray(ds[xname].values, dtype=float)[c]
            frame = pd.DataFrame({xname: xs, str(name): values[r, c], "case": case[r]})
            plots.append(
                frame.hvplot.line(
                    x=xname,
                    y=str(name),
                    by="case",
                    logy=kind == "series" and log_axis(frame[str(name)]),
                    width=560,
                    height=300,
                    title=f"{name} vs {xname}",
                    legend="right",
                )
            )
        if plots:
            views[f"solver_{kind}"] = hv.Layout(plots[:MAX_PLOTS]).cols(2).opts(shared_axes=False)
    return views


MAX_PLOTS = 8  # plots per kind of another solver's variables


def stats_frame(status: SweepStatus) -> pd.DataFrame:
    """The statistics table: one row per priority and one for all, counts and percent done."""
    rows = []
    for name, c in [*status.by_priority.items(), ("ALL", status.overall)]:
        rows.append(
            {
                "priority": name,
                "total": c.total,
                "done": c.done,
                "failed": c.failed,
                **{k: c.failed_by_class.get(k, 0) for k in FAILURE_CLASSES},
                "stale": c.stale,
                "pending": c.pending,
                "% done": f"{c.percent_complete:.1f}" if c.total else "-",
            }
        )
    return pd.DataFrame(rows)


def state_counts(c: Counts, running: int = 0) -> dict[str, int]:
    """Units of a Counts by state (done, failed, running, stale, new); ``running``: how many of
    its pending units a sweep has under way now (counted out of "new" first, then "stale")."""
    from_new = min(running, c.new)
    from_stale = min(running - from_new, c.stale)
    return {
        "done": c.done,
        "failed": c.failed,
        "running": from_new + from_stale,
        "stale": c.stale - from_stale,
        "new": c.new - from_new,
    }


def running_ids(data: SweepData) -> set[str]:
    """Run ids a sweep running now has under way (its status document in the store)."""
    live = data.live
    if live is None or not live.active:
        return set()
    return {str(r.get("run_id")) for r in live.running}


def view_units(data: SweepData) -> pd.DataFrame:
    """The counted units, a pending one that a running sweep has under way as "running"."""
    units = data.units
    ids = running_ids(data)
    if ids and not units.empty:
        under_way = units["run_id"].isin(ids) & units["state"].isin(("new", "stale"))
        units = units.assign(state=np.where(under_way, "running", units["state"]))
    return units


def running_now_html(live: Any, *, at_report_time: bool = False) -> str:
    """HTML: the sweep running now (where, workers, the Dask dashboard's link) and each run
    under way with its step/total as a bar, how long it has run and its predicted time left."""
    import html

    from .live import run_progress

    if live is None:
        return ""
    if not live.active:
        if live.state == "stale":
            return (
                f"<p><b>No sweep is updating this store</b>: the last one ({html.escape(live.mode)} on "
                f"{html.escape(live.host)}) stopped {format_duration(live.age)} ago without ending; run "
                "the same <code>sweep run</code> again to resume it.</p>"
            )
        return f"<p>No sweep is running (the last one ended {format_duration(live.age)} ago).</p>"
    dash = live.document.get("dashboard")
    link = f' · <a href="{html.escape(str(dash))}" target="_blank">Dask dashboard</a>' if dash else ""
    when = (
        " (when this report was written)" if at_report_time else f" (updated {format_duration(live.age)} ago)"
    )
    head = (
        f"<h2>Running now</h2><p>sweep on {html.escape(live.host)} (pid {live.pid}), "
        f"{html.escape(live.mode)}, {live.workers} worker(s), {len(live.running)} run(s) under way"
        f"{when}{link}</p>"
    )
    if not live.running:
        return head
    rows = []
    for r in live.running:
        step, total = r.get("step"), r.get("n_steps")
        frac = step / total if isinstance(step, int) and isinstance(total, int) and total > 0 else 0.0
        bar = (
            '<div style="width:160px;height:12px;background:#e6e6e6;display:inline-block;margin-right:8px">'
            f'<div style="width:{160 * frac:.0f}px;height:12px;background:{STATE_COLORS["running"]}">'
            "</div></div>"
        )
        left = r.get("predicted_left")
        rows.append(
            "<tr>"
            + "".join(
                f"<td style='padding:2px 12px 2px 0'>{c}</td>"
                for c in (
                    html.escape(str(r.get("package_id"))),
                    html.escape(str(r.get("priority") or "")),
                    bar + html.escape(run_progress(r)),
                    format_duration(float(r.get("running_for") or 0.0)),
                    format_duration(float(left)) if isinstance(left, (int, float)) else "-",
                    html.escape(str(r.get("worker") or "")),
                )
            )
            + "</tr>"
        )
    header = "".join(
        f"<th style='text-align:left;padding-right:12px'>{h}</th>"
        for h in ("package", "priority", "progress", "running for", "about left", "worker")
    )
    return head + f"<table style='font-size:14px'><tr>{header}</tr>{''.join(rows)}</table>"


def _progress_views(status: SweepStatus, running: dict[str, int] | None = None) -> dict[str, Any]:
    """Progress views; ``running``: priority -> packages under way now (drawn as running)."""
    import holoviews as hv
    import hvplot.pandas  # noqa: F401  (registers .hvplot)

    running = running or {}
    unit = status.unit + "s"
    overall = pd.DataFrame(
        [
            {
                "group": "ALL",
                **{
                    STATE_LABELS[s]: v for s, v in state_counts(status.overall, sum(running.values())).items()
                },
            }
        ]
    )
    labels = [STATE_LABELS[s] for s in VIEW_STATES]
    colors = [STATE_COLORS[s] for s in VIEW_STATES]
    total = max(status.overall.total, 1)
    pct = overall.copy()
    pct[labels] = pct[labels] * 100.0 / total
    bar = pct.hvplot.barh(
        x="group",
        y=labels,
        stacked=True,
        color=colors,
        height=150,
        width=2 * PANEL_WIDTH,
        fontscale=1.1,
        xlim=(0, 100),
        xlabel="",
        ylabel=f"% of {status.overall.total} {unit}",
        legend="right",
        title=f"Progress: {status.overall.percent_complete:.1f}% done "
        f"({status.overall.done}/{status.overall.total} {unit})",
    )
    by_p = pd.DataFrame(
        [
            {"priority": p, **{STATE_LABELS[s]: v for s, v in state_counts(c, running.get(p, 0)).items()}}
            for p, c in status.by_priority.items()
        ]
    )
    if by_p.empty:
        by_p = pd.DataFrame([{"priority": p, **dict.fromkeys(labels, 0)} for p in PRIORITY_ORDER])
    by_priority = by_p.hvplot.bar(
        x="priority",
        y=labels,
        stacked=True,
        color=colors,
        width=520,
        height=320,
        ylabel=unit,
        xlabel="priority",
        legend="right",
        title="Progress by priority",
    )
    overall_counts = pd.DataFrame(
        {"state": labels, unit: list(state_counts(status.overall, sum(running.values())).values())}
    )
    overall_bars = hv.Overlay(
        [
            overall_counts.iloc[[i]].hvplot.bar(x="state", y=unit, color=colors[i], label=labels[i])
            for i in range(len(labels))
        ]
    ).opts(width=380, height=320, title="Overall progress", show_legend=False, xlabel="", xrotation=20)
    stats = stats_frame(status)
    table = stats.hvplot.table(
        columns=list(stats.columns), width=2 * PANEL_WIDTH, height=34 * (len(stats) + 1), title="Statistics"
    ).opts(index_position=None)
    return {"progress_bar": bar, "overall": overall_bars, "by_priority": by_priority, "table": table}


def _science_views(data: SweepData, units: pd.DataFrame) -> dict[str, Any]:
    from .cost import cost_views  # it draws with this module's states and colours

    views: dict[str, Any] = physics_views(data.results, data.references) if data.results is not None else {}
    runs_view = _runs_table(data)
    if runs_view is not None:
        views["runs_table"] = runs_view
    views.update(_solver_views(data.results))
    views.update(cost_views(data.runs, units))
    return views


def runs_table_note(status: SweepStatus, source: str) -> str:
    """What the runs table leaves out, as a sentence ("" when it holds every unit)."""
    total = status.overall.total
    shown = min(total, table_limit())
    if shown == total:
        return ""
    return (
        f"The table shows {shown:,} of the {total:,} {status.unit}s: the failed ones first, then "
        "those running now, then the latest done. Every run of the store as a table: "
        f'`sweep.export_index("{source}", "runs.csv")` in Python; the counts: '
        f"`sweep status --store {source}`."
    )


def _runs_table(data: SweepData) -> Any:
    """The packages (or runs) with their parameters, status, wall time and, for a failure, the
    class and the reason: a bokeh DataTable, sortable by any column (click its header). Every
    one up to ``sweep.report.table-rows``; above, that many (``tables.useful_rows``)."""
    import holoviews as hv

    units = view_units(data)
    if units.empty:
        return None
    total, limit = len(units), table_limit()
    if total > limit:
        end_of = dict(zip(data.runs.index.tolist(), data.runs["end_time"].tolist(), strict=True))
        ends = [end_of.get(r, "") for r in units["run_id"].tolist()]
        units = units.iloc[useful_rows(units["state"].tolist(), ends, limit)]
    error_of = dict(zip(data.runs.index.tolist(), data.runs["error"].tolist(), strict=True))
    status = [
        STATE_LABELS[st] + (f" ({fc})" if st == "failed" and fc else "")
        for st, fc in zip(units["state"], units["failure_class"], strict=True)
    ]
    table = pd.DataFrame(
        {
            "package": units["unit"],
            "priority": units["priority"],
            "Re": units["Re"].map(lambda v: f"{v:g}"),
            "dt": units["dt"].map(lambda v: f"{v:g}"),
            "T_final": units["T_final"].map(lambda v: f"{v:g}"),
            "grid": [
                grid_label(a, b, c) for a, b, c in zip(units["nx"], units["ny"], units["nz"], strict=True)
            ],
            "status": status,
            "wall time (s)": units["wall_time"].round(2),
            "reason": [
                one_line(error_of.get(r, "")) if st == "failed" else ""
                for r, st in zip(units["run_id"], units["state"], strict=True)
            ],
        }
    )
    return hv.Table(table).opts(
        width=2 * PANEL_WIDTH,
        height=min(460, 30 * (len(table) + 1) + 10),
        title="Runs (click a header to sort)"
        + (f": {len(table):,} of {total:,}, the failed first, then the latest" if len(table) < total else ""),
        hooks=[table_hook],
    )


def build_views(data: SweepData) -> dict[str, Any]:
    """All report views as holoviews objects, keyed by name (progress first, then science)."""
    from .adaptive import learner_views

    units = view_units(data)
    running = units[units["state"] == "running"].groupby("priority").size().to_dict() if len(units) else {}
    return {
        **_progress_views(data.status, {str(k): int(v) for k, v in running.items()}),
        **_science_views(data, units),
        **learner_views(data.packages_dir, data.source),
    }
