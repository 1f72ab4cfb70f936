"""The views of a sweep (HoloViews/hvplot): progress and science, and the page that holds them.

Built from plain inputs (``sweep.monitor.status.SweepData``: the runs table, the packages and
the ``open_results`` Dataset), so the report file and the live dashboard show the same ones.
The spectral solver's views read ``energy`` and ``dissipation``; runs of other solvers show
their own time series (``residual_*`` of OpenFOAM, log scale) and profiles (``u_centerline``
on ``y``), whatever their names: no view assumes a variable the store does not have.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

import numpy as np
import pandas as pd

from ..engine.progress import one_line
from ..store.results import OUTPUT_DIM
from ..units import format_duration
from .physics import (
    NOT_REACHED,
    PANEL_WIDTH,
    grid_label,
    physics_key,
    physics_views,
    re_ticks,
    run_cases,
    table_hook,
)
from .status import FAILURE_CLASSES, PRIORITY_ORDER, Counts, SweepData, SweepStatus

__all__ = [
    "STATE_COLORS",
    "STATE_LABELS",
    "timeseries_frame",
    "per_run_frame",
    "stats_frame",
    "eta_text",
    "build_views",
    "report_layout",
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


def _log(values: Any) -> bool:
    """Log axis only where it helps: positive values spanning at least a factor of 10."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return bool(v.size and v.min() > 0 and v.max() >= 10 * v.min())


def _one_value_lim(values: Any, axis: str) -> dict[str, Any]:
    """An axis whose values are all one positive number spans half to one and a half of it
    (bokeh's automatic range would be value +- 1: 4095..4097 grid points, -0.99..1.01 for dt)."""
    v = np.unique(np.asarray(values, dtype=float))
    v = v[np.isfinite(v)]
    return {f"{axis}lim": (float(v[0]) * 0.5, float(v[0]) * 1.5)} if len(v) == 1 and v[0] > 0 else {}


def _log_ticks(values: Any, axis: str) -> dict[str, Any]:
    """Ticks at 1, 2, 5 x 10^n, printed plainly, on a log axis of less than three decades
    (bokeh's log ticker labels only one or two values there, e.g. none below 0.5 s on
    0.06..1.3 s, and prints grid points as 5.000e+4)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not _log(v) or v.max() >= 1000 * v.min():
        return {}
    lo, hi = math.floor(math.log10(v.min())), math.ceil(math.log10(v.max()))
    ticks = [m * 10.0**e for e in range(lo, hi + 1) for m in (1, 2, 5)]
    return {f"{axis}ticks": [t for t in ticks if v.min() / 2 <= t <= v.max() * 2], f"{axis}formatter": "%g"}


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
                    logy=kind == "series" and _log(frame[str(name)]),
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
    import holoviews as hv
    import hvplot.pandas  # noqa: F401

    views: dict[str, Any] = physics_views(data.results, data.references) if data.results is not None else {}
    runs_view = _runs_table(data)
    if runs_view is not None:
        views["runs_table"] = runs_view
    views.update(_solver_views(data.results))
    runs = data.runs.reset_index()
    runs = runs[np.isfinite(runs["wall_time"]) & (runs["wall_time"] > 0)]
    if not runs.empty:
        runs = runs.assign(grid_points=runs["nx"] * runs["ny"] * runs["nz"])

        def wall(x: str, xlabel: str) -> Any:
            return hv.Overlay(
                [
                    sub.hvplot.scatter(
                        x=x,
                        y="wall_time",
                        logx=_log(runs[x]),
                        logy=_log(runs["wall_time"]),
                        size=60,
                        padding=0.1,
                        label=st,
                        color=STATE_COLORS["done" if st == "done" else "failed"],
                        hover_cols=["run_id", "Re", "dt", "T_final", "grid_points"],
                    )
                    for st, sub in runs[np.isfinite(runs[x])].groupby("status")
                ]
            ).opts(
                width=PANEL_WIDTH,
                height=320,
                fontscale=1.1,
                title=f"Wall time vs {xlabel}",
                **(re_ticks(runs["Re"]) if x == "Re" else _log_ticks(runs[x], "x")),
                **_one_value_lim(runs[x], "x"),
                **_log_ticks(runs["wall_time"], "y"),
                xlabel=xlabel,
                ylabel="wall time (s)",
                legend_position="right",
            )

        # grid points are the spectral runs' measure of size; other solvers' runs have none
        panels = [wall("grid_points", "grid points")] if np.isfinite(runs["grid_points"]).any() else []
        if np.isfinite(runs["Re"]).any():
            panels.append(wall("Re", "Re"))
        if panels:
            views["wall_time"] = hv.Layout(panels).cols(2).opts(shared_axes=False)
    if not units.empty:
        u = units.assign(
            grid_points=units["nx"] * units["ny"] * units["nz"], state_label=units["state"].map(STATE_LABELS)
        )
        u = u[np.isfinite(u["Re"])]
        pairs = (("grid_points", "grid points"), ("dt", "dt"))
        panels = []
        for y, ylabel in pairs:
            if not np.isfinite(u[y]).any():
                continue  # no spectral grid (other solvers' runs): no such panel
            lim = _one_value_lim(u[y], "y")
            panels.append(
                hv.Overlay(
                    [
                        u[u["state"] == s].hvplot.scatter(
                            x="Re",
                            y=y,
                            logx=_log(u["Re"]),
                            logy=_log(u[y]),
                            size=70,
                            alpha=0.8,
                            color=STATE_COLORS[s],
                            padding=0.1,
                            label=STATE_LABELS[s],
                            hover_cols=["unit", "run_id", "dt", "T_final", "priority"],
                        )
                        for s in VIEW_STATES
                        if (u["state"] == s).any()
                    ]
                ).opts(
                    height=300,
                    title=f"Parameter space: Re vs {ylabel}, by status",
                    ylabel=ylabel,
                    legend_position="right",
                    width=PANEL_WIDTH,
                    fontscale=1.1,
                    **lim,
                    **re_ticks(u["Re"]),
                    **_log_ticks(u[y], "y"),
                )
            )
        if panels and len(u):
            views["parameter_space"] = hv.Layout(panels).cols(2).opts(shared_axes=False)
    return views


def _runs_table(data: SweepData) -> Any:
    """Every package (or run) with its parameters, status, wall time and, for a failure, the
    class and the reason: a bokeh DataTable, sortable by any column (click its header)."""
    import holoviews as hv

    units = view_units(data)
    if units.empty:
        return None
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
        title="Runs (click a header to sort)",
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


def eta_text(status: SweepStatus) -> str:
    """The ETA as the report and the PNG say it: none when nothing is left to run (not "0.0s
    with 1 worker(s)"), a request for the package list when the store alone cannot tell."""
    if status.unit == "run":
        return "needs the package directory"
    if status.overall.pending == 0:
        return "none (nothing left to run)"
    return f"{format_duration(status.eta_seconds)} with {status.workers} worker(s)"


def _summary_markdown(data: SweepData, status: SweepStatus, title: str) -> str:
    o = status.overall
    failed = ", ".join(f"{k} {v}" for k, v in o.failed_by_class.items() if v) or "none"
    eta = eta_text(status)
    mean = format_duration(status.mean_run_seconds)
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"# {title}\n\n"
        f"Store `{data.source}` · generated {when}\n\n"
        f"**{o.done}/{o.total} {status.unit}s done ({o.percent_complete:.1f}%)** · failed {o.failed} "
        f"({failed}) · stale {o.stale} · pending {o.pending} · runs in store {status.runs_in_store} · "
        f"compute time {format_duration(status.compute_seconds)} · mean run {mean} · ETA {eta}"
    )


def _physics_note(data: SweepData) -> str:
    """The physics section's heading and how to read it (colour, dash, reference)."""
    refs = data.references
    cases = run_cases(data.results)
    used = [
        r
        for r in refs
        if any(r.matches(ic, re) for ic, re in zip(cases["initial_condition"], cases["Re"], strict=True))
    ]
    ref = (
        "; ".join(f"black dashed: {r.label} ({r.source})" for r in used)
        if used
        else "no reference curve for these runs (Taylor-Green at Re = 1600: `sweep report --reference "
        "spectral_Re1600_512.gdiag`, see sweep/monitor/reference_data/README.md)"
    )
    return (
        "## Physics\n\nColour: Reynolds number (viridis over log Re, dark = low), the same in every "
        "panel; line dash: grid (solid = finest); hover a curve for its run. "
        f"Reference: {ref}. A run whose dissipation still rises at T_final is marked "
        f"*{NOT_REACHED}*: its largest value is a lower bound, not a peak."
    )


def report_layout(
    data: SweepData,
    views: dict[str, Any] | None = None,
    *,
    title: str = "Sweep report",
    running_pane: bool = True,
) -> Any:
    """The report page as a Panel Column (used by both the HTML file and the dashboard).
    ``running_pane``: show the sweep running now (the dashboard keeps its own, refreshed)."""
    import panel as pn

    views = build_views(data) if views is None else views
    status = data.status
    # linked_axes=False: panes would otherwise share ranges of equally named dimensions
    # (the % progress bar and the package counts both have a "done" axis).
    pane = lambda v: pn.pane.HoloViews(v, linked_axes=False)  # noqa: E731
    items: list[Any] = [
        pn.pane.Markdown(_summary_markdown(data, status, title), width=900),
        *(
            [pn.pane.HTML(running_now_html(data.live, at_report_time=True), width=2 * PANEL_WIDTH)]
            if running_pane and data.live is not None and data.live.active
            else []
        ),
        pane(views["progress_bar"]),
        pn.Row(pane(views["overall"]), pane(views["by_priority"])),
        pane(views["table"]),
    ]
    physics = [
        k for k in ("energy_vs_time", "dissipation_vs_time", "enstrophy_vs_time", "spectrum") if k in views
    ]
    learners = [k for k in views if k.startswith("learner-")]
    if physics:
        items.append(pn.pane.Markdown(_physics_note(data), width=2 * PANEL_WIDTH))
        items.append(pn.pane.HTML(physics_key(data.results, data.references), width=2 * PANEL_WIDTH))
        items += [pn.Row(*(pane(views[k]) for k in physics[i : i + 2])) for i in range(0, len(physics), 2)]
        items += [pn.Row(*(pane(views[k]) for k in ("peak_dissipation",) if k in views))]
        items += [pane(views[k]) for k in ("derived",) if k in views]
    others = [k for k in ("solver_profiles", "solver_series") if k in views]
    if others:
        items.append(pn.pane.Markdown("## Other solvers' results", width=2 * PANEL_WIDTH))
        items += [pane(views[k]) for k in others]
    if not physics and not others:
        items.append(pn.pane.Markdown("*No finished run in the store yet.*", width=900))
    if "runs_table" in views:
        items.append(pn.pane.Markdown("## Runs", width=2 * PANEL_WIDTH))
        items.append(pane(views["runs_table"]))
    cost = [k for k in ("wall_time", "parameter_space") if k in views]
    if cost:
        items.append(pn.pane.Markdown("## Cost and coverage", width=2 * PANEL_WIDTH))
        items += [pane(views[k]) for k in cost]
    if learners:
        items.append(pn.pane.Markdown("## Adaptive sweeps: the learners' view", width=900))
        items += [pane(views[k]) for k in learners]
    return pn.Column(*items)
