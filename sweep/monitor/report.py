"""The sweep report: the views of ``sweep.monitor.views`` as one offline HTML file, and a PNG.

The live dashboard (``sweep.monitor.dashboard``) shows the same views. The HTML embeds
bokeh's and panel's JavaScript and CSS inline (about 3 MB): it opens on a machine without
network, e.g. a cluster's login node or a laptop on a plane. The PNG summary is drawn with
matplotlib, because bokeh's PNG export needs a browser and selenium at report time, which a
compute node rarely has.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..units import format_duration
from .page import eta_text, report_layout
from .physics import (
    MAX_LINES,
    NOT_REACHED,
    case_colors,
    derived_frame,
    grid_dashes,
    key_colors,
    run_cases,
)
from .reference import Reference
from .status import PRIORITY_ORDER, STATES, SweepData, SweepStatus
from .views import STATE_COLORS, STATE_LABELS, state_counts, stats_frame

__all__ = [
    "ReportFiles",
    "offline_problems",
    "write_html",
    "write_summary_png",
    "write_report",
]

HTML_NAME = "sweep_report.html"
PNG_NAME = "sweep_progress.png"
# A tiny inline favicon: panel's page template otherwise links one from its CDN.
_FAVICON = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
    "%3Crect width='16' height='16' fill='%232ca02c'/%3E%3C/svg%3E"
)


@dataclass(frozen=True)
class ReportFiles:
    """Paths ``write_report`` wrote."""

    html: Path
    png: Path


_REMOTE = re.compile(
    r"""<script[^>]+src\s*=\s*["']?\s*(?:https?:)?//|<link[^>]+href\s*=\s*["']?\s*(?:https?:)?//"""
    r"""|@import\s+(?:url\()?\s*["']?(?:https?:)?//"""
    r"""|"url"\s*:\s*"(?:https?:)?//""",  # a stylesheet model bokeh would load at run time
    re.IGNORECASE,
)


def offline_problems(html: str) -> list[str]:
    """Tags in an HTML page that would load something from the network (empty: self-contained)."""
    return [html[m.start() : m.start() + 160].split(">")[0] + ">" for m in _REMOTE.finditer(html)]


def write_html(layout: Any, path: Path, title: str = "Sweep report") -> Path:
    """Save a Panel layout as one self-contained HTML file (bokeh/panel JS and CSS inline)."""
    from bokeh.document import Document
    from bokeh.models.ui import UIElement
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
    save(
        doc,
        str(path),
        resources=INLINE,
        title=title,
        template_variables={"app_favicon": _FAVICON, "apple_icon": ""},
    )
    problems = offline_problems(path.read_text(encoding="utf-8"))
    if problems:  # a panel/bokeh upgrade started linking remote resources: fail loudly
        raise RuntimeError(f"{path}: the report would load network resources: {problems[:3]}")
    return path


def _physics_axes(ax: Any, results: Any, references: Sequence[Reference]) -> None:
    """The dissipation rate of every done run against time, coloured by Re and dashed by grid
    as in the HTML report; a dot at each peak, an open triangle where a run ends before it."""
    from matplotlib.lines import Line2D

    cases = run_cases(results)
    if cases.empty:
        ax.text(0.5, 0.5, "no finished run yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    shown = cases.iloc[np.linspace(0, len(cases) - 1, min(len(cases), MAX_LINES)).round().astype(int)]
    derived = derived_frame(results, shown).set_index("run")
    sub = results.sel(run=shown["run"].tolist())
    t_all = np.asarray(sub["time"].transpose("run", ...).values, dtype=float)
    d_all = np.asarray(sub["dissipation"].transpose("run", ...).values, dtype=float)
    mpl_dash = {"solid": "-", "dashed": "--", "dotted": ":", "dashdot": "-."}
    for c, t, d in zip(shown.itertuples(), t_all, d_all, strict=True):
        ok = np.isfinite(t) & np.isfinite(d)
        ax.plot(t[ok], d[ok], mpl_dash[str(c.dash)], color=str(c.color), lw=1.8)
        row = derived.loc[str(c.run)]
        if row["peak_reached"]:
            ax.plot([row["t_peak"]], [row["peak_dissipation"]], "o", color=str(c.color), ms=5)
        elif row["note"] == NOT_REACHED and ok.any():
            ax.plot([t[ok][-1]], [d[ok][-1]], "^", mfc="none", color=str(c.color), ms=8, mew=1.5)
    for ref in references:
        if any(ref.matches(ic, re) for ic, re in zip(cases["initial_condition"], cases["Re"], strict=True)):
            ax.plot(ref.time, ref.dissipation, "--", color="black", lw=2.2, label=ref.label)
    colors = case_colors(cases["Re"].tolist())
    named = key_colors(colors)  # a legend of a thousand Re values is neither read nor fast
    handles = [Line2D([], [], color=color, lw=2.5, label=f"Re={re:g}") for re, color in named.items()]
    if len(named) < len(colors):
        handles.append(Line2D([], [], ls="", label=f"({len(colors):,} values of Re)"))
    handles += [
        Line2D([], [], color="#333", ls=mpl_dash[d], label=g)
        for g, d in grid_dashes(cases["grid"].tolist()).items()
    ]
    handles += list(ax.get_legend_handles_labels()[0])
    handles.append(Line2D([], [], marker="^", mfc="none", color="#333", ls="", label="peak not reached"))
    ax.legend(handles=handles, fontsize=7, loc="best", ncols=2, framealpha=0.9)
    ax.set_xlabel("time t")
    ax.set_ylabel("ε = −dE/dt")
    ax.set_title("Dissipation rate (colour: Re; dash: grid)")
    ax.grid(alpha=0.3)


def write_summary_png(
    status: SweepStatus,
    path: Path,
    *,
    title: str = "Sweep progress",
    results: Any = None,
    references: Sequence[Reference] = (),
) -> Path:
    """The one-picture summary (as the replaced system's parametric_sweep_progress.png):
    overall progress pie, progress by priority, the dissipation rate of the finished runs
    (the physics at a glance), a statistics table and a progress bar."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    o = status.overall
    counts = state_counts(o)
    fig = plt.figure(figsize=(16, 8.5), dpi=100)
    fig.suptitle(
        f"{title}: {o.done}/{o.total} {status.unit}s done ({o.percent_complete:.1f}%)",
        fontsize=14,
        fontweight="bold",
    )
    grid = fig.add_gridspec(3, 3, height_ratios=[4, 3, 1], width_ratios=[1, 1, 1.4])

    _physics_axes(fig.add_subplot(grid[0:2, 2]), results, references)

    ax = fig.add_subplot(grid[0, 0])
    shown = [s for s in STATES if counts[s]]
    if shown:
        ax.pie(
            [counts[s] for s in shown],
            labels=[f"{STATE_LABELS[s]} ({counts[s]})" for s in shown],
            colors=[STATE_COLORS[s] for s in shown],
            autopct="%1.0f%%",
            startangle=90,
            wedgeprops={"edgecolor": "white"},
        )
    else:
        ax.text(0.5, 0.5, "nothing to run", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title("Overall progress")

    ax = fig.add_subplot(grid[0, 1])
    names = list(status.by_priority) or list(PRIORITY_ORDER)
    bottom = np.zeros(len(names))
    for s in STATES:
        vals = np.array(
            [state_counts(status.by_priority[p])[s] if p in status.by_priority else 0 for p in names],
            dtype=float,
        )
        ax.bar(names, vals, bottom=bottom, color=STATE_COLORS[s], label=STATE_LABELS[s])
        bottom += vals
    ax.set_ylabel(f"{status.unit}s")
    ax.set_title("Progress by priority")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(bottom.max(), 1) * 1.35)  # room for the legend above the bars
    ax.legend(loc="upper right", fontsize=8, ncols=2)

    ax = fig.add_subplot(grid[1, 0:2])
    ax.set_axis_off()
    stats = stats_frame(status)
    extra = (
        f"compute time {format_duration(status.compute_seconds)} · "
        f"mean run {format_duration(status.mean_run_seconds)} · ETA {eta_text(status)}"
    )
    tab = ax.table(
        cellText=stats.astype(str).values.tolist(),
        colLabels=list(stats.columns),
        loc="center",
        cellLoc="center",
    )
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
                ax.text(
                    left + w / 2,
                    0,
                    f"{STATE_LABELS[s].split(' (')[0]} {w:.0f}%",
                    ha="center",
                    va="center",
                    fontsize=9,
                )
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
    png = write_summary_png(data.status, out / PNG_NAME, results=data.results, references=data.references)
    return ReportFiles(html=html, png=png)
