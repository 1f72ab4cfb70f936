"""The sweep report: hvplot views of progress and science, one offline HTML file and a PNG.

The views are built from plain inputs (``sweep.monitor.SweepData``: the runs table, the
packages and the ``open_results`` Dataset), so the live dashboard (``sweep.dashboard``)
shows exactly the same ones. The HTML embeds bokeh's and panel's JavaScript and CSS inline
(about 3 MB): it opens on a machine without network, e.g. a cluster's login node or a laptop
on a plane. The PNG summary is drawn with matplotlib, because bokeh's PNG export needs a
browser and selenium at report time, which a compute node rarely has.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .monitor import (FAILURE_CLASSES, PRIORITY_ORDER, STATES, Counts, SweepData, SweepStatus,
                      format_duration)

__all__ = [
    "STATE_COLORS",
    "ReportFiles",
    "timeseries_frame",
    "per_run_frame",
    "stats_frame",
    "build_views",
    "report_layout",
    "offline_problems",
    "write_html",
    "write_summary_png",
    "write_report",
]

STATE_COLORS = {"done": "#2ca02c", "failed": "#d62728", "stale": "#ff7f0e", "new": "#c7c7c7"}
STATE_LABELS = {"done": "done", "failed": "failed", "stale": "stale (params changed)",
                "new": "not started"}
HTML_NAME = "sweep_report.html"
PNG_NAME = "sweep_progress.png"
# A tiny inline favicon: panel's page template otherwise links one from its CDN.
_FAVICON = ("data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
            "%3Crect width='16' height='16' fill='%232ca02c'/%3E%3C/svg%3E")


@dataclass(frozen=True)
class ReportFiles:
    """Paths ``write_report`` wrote."""

    html: Path
    png: Path


def _log(values: Any) -> bool:
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
    if results is None or results.sizes.get("run", 0) == 0:
        return pd.DataFrame(columns=cols)
    ds = results
    if "status" in ds.coords:
        ds = ds.isel(run=np.flatnonzero(np.asarray(ds["status"].values) == "done"))
    if ds.sizes.get("run", 0) == 0:
        return pd.DataFrame(columns=cols)
    meta = per_run_frame(ds)
    t = np.asarray(ds["time"].values, dtype=float)
    e = np.asarray(ds["energy"].transpose("run", "time").values, dtype=float)
    d = np.asarray(ds["dissipation"].transpose("run", "time").values, dtype=float)
    run_idx, time_idx = np.nonzero(np.isfinite(e) | np.isfinite(d))  # row-major: run by run
    df = pd.DataFrame({
        "run": meta["run"].to_numpy()[run_idx], "case": meta["case"].to_numpy()[run_idx],
        "Re": meta["Re"].to_numpy()[run_idx], "grid": meta["grid"].to_numpy()[run_idx],
        "time": t[time_idx], "energy": e[run_idx, time_idx], "dissipation": d[run_idx, time_idx],
    }, columns=cols)
    # legends list cases in order of Re
    return df.sort_values(["grid", "Re", "run", "time"], kind="stable", ignore_index=True)


def per_run_frame(results: Any) -> pd.DataFrame:
    """One row per run in ``results``: parameters, grid label, peak dissipation and its time."""
    n = results.sizes.get("run", 0)
    get = (lambda k, d: np.asarray(results[k].values).reshape(n) if k in results.variables
           else np.full(n, d))
    nx, ny, nz = (get(k, np.nan).astype(float) for k in ("nx", "ny", "nz"))
    Re, dt, T = (get(k, np.nan).astype(float) for k in ("Re", "dt", "T_final"))
    runs = get("run", "") if "run" in results.coords else np.arange(n).astype(str)
    peak = np.full(n, np.nan)
    t_peak = np.full(n, np.nan)
    if n and "dissipation" in results:
        diss = np.asarray(results["dissipation"].transpose("run", "time").values, dtype=float)
        time = np.asarray(results["time"].values, dtype=float)
        has = np.isfinite(diss).any(axis=1)
        if has.any():
            idx = np.nanargmax(np.where(np.isfinite(diss[has]), diss[has], -np.inf), axis=1)
            peak[has] = diss[has][np.arange(has.sum()), idx]
            t_peak[has] = time[idx]
    grid = [_grid_label(a, b, c) for a, b, c in zip(nx, ny, nz)]
    df = pd.DataFrame({
        "run": [str(r) for r in runs], "Re": Re, "dt": dt, "T_final": T, "grid": grid,
        "grid_points": nx * ny * nz, "status": get("status", "done").astype(str),
        "wall_time": get("wall_time", np.nan).astype(float),
        "peak_dissipation": peak, "t_peak": t_peak,
    })
    # A case names a line in the time plots: Re alone when that is unique within its grid.
    dup = df.duplicated(["grid", "Re"], keep=False)
    df["case"] = [f"Re={r:g}" + (f", dt={d:g}, T={t:g}" if u else "")
                  for r, d, t, u in zip(df["Re"], df["dt"], df["T_final"], dup)]
    return df


def stats_frame(status: SweepStatus) -> pd.DataFrame:
    """The statistics table: one row per priority and one for all, counts and percent done."""
    rows = []
    for name, c in [*status.by_priority.items(), ("ALL", status.overall)]:
        rows.append({"priority": name, "total": c.total, "done": c.done, "failed": c.failed,
                     **{k: c.failed_by_class.get(k, 0) for k in FAILURE_CLASSES},
                     "stale": c.stale, "pending": c.pending,
                     "% done": round(c.percent_complete, 1)})
    return pd.DataFrame(rows)


def _state_counts(c: Counts) -> dict[str, int]:
    return {"done": c.done, "failed": c.failed, "stale": c.stale, "new": c.new}


def _progress_views(status: SweepStatus) -> dict[str, Any]:
    import holoviews as hv
    import hvplot.pandas  # noqa: F401  (registers .hvplot)

    unit = status.unit + "s"
    overall = pd.DataFrame([{"group": "ALL", **{STATE_LABELS[s]: v for s, v in
                                                _state_counts(status.overall).items()}}])
    labels = [STATE_LABELS[s] for s in STATES]
    colors = [STATE_COLORS[s] for s in STATES]
    total = max(status.overall.total, 1)
    pct = overall.copy()
    pct[labels] = pct[labels] * 100.0 / total
    bar = pct.hvplot.barh(
        x="group", y=labels, stacked=True, color=colors, height=130, width=900, xlim=(0, 100),
        xlabel="", ylabel=f"% of {status.overall.total} {unit}", legend="right",
        title=f"Progress: {status.overall.percent_complete:.1f}% done "
              f"({status.overall.done}/{status.overall.total} {unit})",
    )
    by_p = pd.DataFrame([{"priority": p, **{STATE_LABELS[s]: v for s, v in _state_counts(c).items()}}
                         for p, c in status.by_priority.items()])
    if by_p.empty:
        by_p = pd.DataFrame([{"priority": p, **{lbl: 0 for lbl in labels}} for p in PRIORITY_ORDER])
    by_priority = by_p.hvplot.bar(
        x="priority", y=labels, stacked=True, color=colors, width=520, height=320,
        ylabel=unit, xlabel="priority", legend="right", title="Progress by priority",
    )
    overall_counts = pd.DataFrame({"state": labels, unit: list(_state_counts(status.overall).values())})
    overall_bars = hv.Overlay([
        overall_counts.iloc[[i]].hvplot.bar(x="state", y=unit, color=colors[i], label=labels[i])
        for i in range(len(labels))
    ]).opts(width=380, height=320, title="Overall progress", show_legend=False, xlabel="", xrotation=20)
    stats = stats_frame(status)
    table = stats.hvplot.table(columns=list(stats.columns), width=900, height=34 * (len(stats) + 1),
                               title="Statistics").opts(index_position=None)
    return {"progress_bar": bar, "overall": overall_bars, "by_priority": by_priority, "table": table}


MAX_LINES = 30  # lines per time plot; more are unreadable (and slow in the browser)


def _thin(sub: pd.DataFrame) -> pd.DataFrame:
    """At most MAX_LINES runs of one grid, spread evenly over Re."""
    runs = sub.drop_duplicates("run").sort_values("Re")["run"].to_numpy()
    if len(runs) <= MAX_LINES:
        return sub
    keep = runs[np.linspace(0, len(runs) - 1, MAX_LINES).round().astype(int)]
    return sub[sub["run"].isin(keep)]


def _shown(sub: pd.DataFrame) -> str:
    n = sub["run"].nunique()
    return f" ({MAX_LINES} of {n} runs)" if n > MAX_LINES else ""


def _science_views(data: SweepData, units: pd.DataFrame) -> dict[str, Any]:
    import holoviews as hv
    import hvplot.pandas  # noqa: F401

    views: dict[str, Any] = {}
    ts = timeseries_frame(data.results)
    if not ts.empty:
        for var, logy in (("energy", _log(ts["energy"])), ("dissipation", False)):
            plots = [
                _thin(sub).hvplot.line(x="time", y=var, by="case", logy=logy, width=560, height=300,
                                       title=f"{var}, grid {grid}" + _shown(sub), legend="right")
                for grid, sub in ts.groupby("grid", sort=True)
            ]
            views[f"{var}_vs_time"] = hv.Layout(plots).cols(2).opts(shared_axes=False)
    if data.results is not None and data.results.sizes.get("run", 0):
        per_run = per_run_frame(data.results)
        done = per_run[(per_run["status"] == "done") & np.isfinite(per_run["peak_dissipation"])]
        if not done.empty:
            kw = dict(x="Re", by="grid", logx=_log(done["Re"]), size=60, width=560, height=300, padding=0.1,
                      hover_cols=["run", "dt", "T_final"], legend="right")
            views["peak_dissipation"] = (
                done.hvplot.scatter(y="peak_dissipation", title="Peak dissipation vs Re", **kw)
                + done.hvplot.scatter(y="t_peak", title="Time of peak dissipation vs Re", **kw)
            ).opts(shared_axes=False)
    runs = data.runs.reset_index()
    runs = runs[np.isfinite(runs["wall_time"]) & (runs["wall_time"] > 0)]
    if not runs.empty:
        runs = runs.assign(grid_points=runs["nx"] * runs["ny"] * runs["nz"])
        def wall(x: str, xlabel: str) -> Any:
            return hv.Overlay([
                sub.hvplot.scatter(x=x, y="wall_time", logx=_log(runs[x]), logy=_log(runs["wall_time"]),
                                   size=60, padding=0.1, label=st,
                                   color=STATE_COLORS["done" if st == "done" else "failed"],
                                   hover_cols=["run_id", "Re", "dt", "T_final", "grid_points"])
                for st, sub in runs.groupby("status")
            ]).opts(width=520, height=300, title=f"Wall time vs {xlabel}", xlabel=xlabel,
                    ylabel="wall time (s)", legend_position="right")

        views["wall_time"] = hv.Layout([wall("grid_points", "grid points"), wall("Re", "Re")]
                                       ).cols(2).opts(shared_axes=False)
    if not units.empty:
        u = units.assign(grid_points=units["nx"] * units["ny"] * units["nz"],
                         state_label=units["state"].map(STATE_LABELS))
        u = u[np.isfinite(u["Re"])]
        pairs = (("grid_points", "grid points"), ("dt", "dt"))
        panels = []
        for y, ylabel in pairs:
            panels.append(hv.Overlay([
                u[u["state"] == s].hvplot.scatter(
                    x="Re", y=y, logx=_log(u["Re"]), logy=_log(u[y]), size=70, alpha=0.8,
                    color=STATE_COLORS[s], padding=0.1,
                    label=STATE_LABELS[s], hover_cols=["unit", "run_id", "dt", "T_final", "priority"])
                for s in STATES if (u["state"] == s).any()
            ]).opts(height=300, title=f"Parameter space: Re vs {ylabel}, by status",
                    ylabel=ylabel, legend_position="right", width=560))
        if panels and len(u):
            views["parameter_space"] = hv.Layout(panels).cols(2).opts(shared_axes=False)
    return views


def build_views(data: SweepData) -> dict[str, Any]:
    """All report views as holoviews objects, keyed by name (progress first, then science)."""
    units = data.units
    return {**_progress_views(data.status), **_science_views(data, units)}


def _summary_markdown(data: SweepData, status: SweepStatus, title: str) -> str:
    o = status.overall
    failed = ", ".join(f"{k} {v}" for k, v in o.failed_by_class.items() if v) or "none"
    eta = ("needs the package directory" if status.unit == "run"
           else f"{format_duration(status.eta_seconds)} with {status.workers} worker(s)")
    mean = format_duration(status.mean_run_seconds)
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"# {title}\n\n"
        f"Store `{data.source}` · generated {when}\n\n"
        f"**{o.done}/{o.total} {status.unit}s done ({o.percent_complete:.1f}%)** · failed {o.failed} "
        f"({failed}) · stale {o.stale} · pending {o.pending} · runs in store {status.runs_in_store} · "
        f"compute time {format_duration(status.compute_seconds)} · mean run {mean} · ETA {eta}"
    )


def report_layout(data: SweepData, views: dict[str, Any] | None = None, *,
                  title: str = "Sweep report") -> Any:
    """The report page as a Panel Column (used by both the HTML file and the dashboard)."""
    import panel as pn

    views = build_views(data) if views is None else views
    status = data.status
    # linked_axes=False: panes would otherwise share ranges of equally named dimensions
    # (the % progress bar and the package counts both have a "done" axis).
    pane = lambda v: pn.pane.HoloViews(v, linked_axes=False)  # noqa: E731
    items: list[Any] = [pn.pane.Markdown(_summary_markdown(data, status, title), width=900),
                        pane(views["progress_bar"]),
                        pn.Row(pane(views["overall"]), pane(views["by_priority"])),
                        pane(views["table"])]
    science = [k for k in ("energy_vs_time", "dissipation_vs_time", "peak_dissipation",
                           "wall_time", "parameter_space") if k in views]
    if science:
        items.append(pn.pane.Markdown("## Results", width=900))
        items += [pane(views[k]) for k in science]
    else:
        items.append(pn.pane.Markdown("*No finished run in the store yet.*", width=900))
    return pn.Column(*items)


_REMOTE = re.compile(
    r"""<script[^>]+src\s*=\s*["']?\s*(?:https?:)?//|<link[^>]+href\s*=\s*["']?\s*(?:https?:)?//"""
    r"""|@import\s+(?:url\()?\s*["']?(?:https?:)?//"""
    r"""|"url"\s*:\s*"(?:https?:)?//""",  # a stylesheet model bokeh would load at run time
    re.IGNORECASE,
)


def offline_problems(html: str) -> list[str]:
    """Tags in an HTML page that would load something from the network (empty: self-contained)."""
    return [html[m.start():m.start() + 160].split(">")[0] + ">" for m in _REMOTE.finditer(html)]


def write_html(layout: Any, path: Path, title: str = "Sweep report") -> Path:
    """Save a Panel layout as one self-contained HTML file (bokeh/panel JS and CSS inline)."""
    from bokeh.document import Document
    from bokeh.models import UIElement
    from bokeh.resources import INLINE
    from panel.io.model import add_to_doc
    from panel.io.notebook import patch_inline_stylesheets
    from panel.io.resources import set_resource_mode
    from panel.io.save import save

    path = Path(path)
    # Panel links its component stylesheets from its CDN even with INLINE resources; render
    # the models in inline mode and swap those links for the packaged CSS text, as panel
    # itself does for notebooks with pn.config.inline.
    doc = Document()
    with set_resource_mode("inline"):
        root = layout.get_root(doc)
    for model in root.select({"type": UIElement}):
        patch_inline_stylesheets(model)
    add_to_doc(root, doc, True)
    save(doc, str(path), resources=INLINE, title=title,
         template_variables={"app_favicon": _FAVICON, "apple_icon": ""})
    problems = offline_problems(path.read_text(encoding="utf-8"))
    if problems:  # a panel/bokeh upgrade started linking remote resources: fail loudly
        raise RuntimeError(f"{path}: the report would load network resources: {problems[:3]}")
    return path


def write_summary_png(status: SweepStatus, path: Path, *, title: str = "Sweep progress") -> Path:
    """The one-picture summary (as the replaced system's parametric_sweep_progress.png):
    overall progress pie, progress by priority, a statistics table and a progress bar."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    o = status.overall
    counts = _state_counts(o)
    fig = plt.figure(figsize=(12, 8), dpi=100)
    fig.suptitle(f"{title}: {o.done}/{o.total} {status.unit}s done ({o.percent_complete:.1f}%)",
                 fontsize=14, fontweight="bold")
    grid = fig.add_gridspec(3, 2, height_ratios=[4, 3, 1])

    ax = fig.add_subplot(grid[0, 0])
    shown = [s for s in STATES if counts[s]]
    if shown:
        ax.pie([counts[s] for s in shown], labels=[f"{STATE_LABELS[s]} ({counts[s]})" for s in shown],
               colors=[STATE_COLORS[s] for s in shown], autopct="%1.0f%%", startangle=90,
               wedgeprops={"edgecolor": "white"})
    else:
        ax.text(0.5, 0.5, "nothing to run", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title("Overall progress")

    ax = fig.add_subplot(grid[0, 1])
    names = list(status.by_priority) or list(PRIORITY_ORDER)
    bottom = np.zeros(len(names))
    for s in STATES:
        vals = np.array([_state_counts(status.by_priority[p])[s] if p in status.by_priority else 0
                         for p in names], dtype=float)
        ax.bar(names, vals, bottom=bottom, color=STATE_COLORS[s], label=STATE_LABELS[s])
        bottom += vals
    ax.set_ylabel(f"{status.unit}s")
    ax.set_title("Progress by priority")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(bottom.max(), 1) * 1.35)  # room for the legend above the bars
    ax.legend(loc="upper right", fontsize=8, ncols=2)

    ax = fig.add_subplot(grid[1, :])
    ax.set_axis_off()
    stats = stats_frame(status)
    extra = (f"compute time {format_duration(status.compute_seconds)} · "
             f"mean run {format_duration(status.mean_run_seconds)} · ETA "
             + ("n/a (no package list)" if status.unit == "run"
                else f"{format_duration(status.eta_seconds)} ({status.workers} worker(s))"))
    tab = ax.table(cellText=stats.astype(str).values, colLabels=list(stats.columns), loc="center",
                   cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(9)
    tab.scale(1, 1.4)
    ax.set_title(f"Statistics — {extra}", fontsize=10)

    ax = fig.add_subplot(grid[2, :])
    left = 0.0
    total = max(o.total, 1)
    for s in STATES:
        w = 100.0 * counts[s] / total
        if w:
            ax.barh([0], [w], left=left, color=STATE_COLORS[s], edgecolor="white")
            if w >= 6:
                ax.text(left + w / 2, 0, f"{STATE_LABELS[s].split(' (')[0]} {w:.0f}%", ha="center", va="center",
                        fontsize=9)
        left += w
    ax.set_xlim(0, 100)
    ax.set_yticks([])
    ax.set_xlabel("% of all " + status.unit + "s")
    ax.set_title("Progress bar")

    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(data: SweepData, out_dir: Path) -> ReportFiles:
    """Write ``sweep_report.html`` (self-contained) and ``sweep_progress.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layout = report_layout(data)
    html = write_html(layout, out / HTML_NAME)
    png = write_summary_png(data.status, out / PNG_NAME)
    return ReportFiles(html=html, png=png)
