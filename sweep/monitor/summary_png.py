"""The PNG summary of a sweep: one picture of its progress and physics, drawn with matplotlib.

As the replaced system's parametric_sweep_progress.png: overall progress pie, progress by
priority, the dissipation rate of the finished runs (the physics at a glance), a statistics
table and a progress bar. Drawn with matplotlib, because bokeh's PNG export needs a browser and
selenium at report time, which a compute node rarely has.

What it shows is read from the store first (``summary_inputs``: a few small arrays and
counts), so that ``sweep report`` can draw it in a process of its own while it renders the
HTML page (``start_summary_png``): the two take about as long on a large sweep, on two cores.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..units import format_duration
from .page import eta_text
from .physics import MAX_LINES, NOT_REACHED, case_colors, derived_frame, grid_dashes, key_colors, run_cases
from .reference import Reference
from .status import PRIORITY_ORDER, STATES, SweepStatus
from .views import STATE_COLORS, STATE_LABELS, state_counts, stats_frame

__all__ = ["SummaryInputs", "summary_inputs", "draw_summary_png", "write_summary_png", "start_summary_png"]

_MPL_DASH = {"solid": "-", "dashed": "--", "dotted": ":", "dashdot": "-."}


@dataclass(frozen=True)
class _Line:
    """One run's dissipation curve, its colour and dash, and its marker: a dot at the peak,
    an open triangle at the end of a run that stops before it (None: no marker)."""

    t: np.ndarray
    d: np.ndarray
    color: str
    dash: str
    peak: tuple[float, float] | None = None
    unreached: tuple[float, float] | None = None


@dataclass(frozen=True)
class _Physics:
    """The physics panel's content (no run: ``lines`` empty)."""

    lines: list[_Line] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)  # those matching a run
    named: dict[float, str] = field(default_factory=dict)  # Re -> colour named in the legend
    n_re: int = 0  # distinct values of Re
    dashes: dict[str, str] = field(default_factory=dict)  # grid -> dash


@dataclass(frozen=True)
class SummaryInputs:
    """Everything the PNG shows, read from the store already (small, picklable)."""

    status: SweepStatus
    title: str
    physics: _Physics


def _physics(results: Any, references: Sequence[Reference]) -> _Physics:
    """The dissipation rate of at most ``MAX_LINES`` done runs (spread over them), coloured by
    Re and dashed by grid as in the HTML report."""
    cases = run_cases(results)
    if cases.empty:
        return _Physics()
    shown = cases.iloc[np.linspace(0, len(cases) - 1, min(len(cases), MAX_LINES)).round().astype(int)]
    derived = derived_frame(results, shown).set_index("run")
    sub = results.sel(run=shown["run"].tolist())
    t_all = np.asarray(sub["time"].transpose("run", ...).values, dtype=float)
    d_all = np.asarray(sub["dissipation"].transpose("run", ...).values, dtype=float)
    lines = []
    for c, t, d in zip(shown.itertuples(), t_all, d_all, strict=True):
        ok = np.isfinite(t) & np.isfinite(d)
        row = derived.loc[str(c.run)].to_dict()
        peak = end = None
        if row["peak_reached"]:
            peak = (float(row["t_peak"]), float(row["peak_dissipation"]))
        elif row["note"] == NOT_REACHED and ok.any():
            end = (float(t[ok][-1]), float(d[ok][-1]))
        lines.append(_Line(t[ok], d[ok], str(c.color), str(c.dash), peak, end))
    pairs = list(zip(cases["initial_condition"], cases["Re"], strict=True))
    colors = case_colors(cases["Re"].tolist())
    return _Physics(
        lines=lines,
        references=[ref for ref in references if any(ref.matches(ic, re) for ic, re in pairs)],
        named=key_colors(colors),  # a legend of a thousand Re values is neither read nor fast
        n_re=len(colors),
        dashes=grid_dashes(cases["grid"].tolist()),
    )


def summary_inputs(
    status: SweepStatus,
    *,
    title: str = "Sweep progress",
    results: Any = None,
    references: Sequence[Reference] = (),
) -> SummaryInputs:
    """What the PNG shows, read from ``results`` (``open_results``; None: no physics panel)."""
    physics = _physics(results, references) if results is not None else _Physics()
    return SummaryInputs(status=status, title=title, physics=physics)


def _physics_axes(ax: Any, p: _Physics) -> None:
    """The physics panel: a curve per run shown, the matching references, a legend."""
    from matplotlib.lines import Line2D

    if not p.lines:
        ax.text(0.5, 0.5, "no finished run yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    for line in p.lines:
        ax.plot(line.t, line.d, _MPL_DASH[line.dash], color=line.color, lw=1.8)
        if line.peak is not None:
            ax.plot([line.peak[0]], [line.peak[1]], "o", color=line.color, ms=5)
        elif line.unreached is not None:
            ax.plot(
                [line.unreached[0]], [line.unreached[1]], "^", mfc="none", color=line.color, ms=8, mew=1.5
            )
    for ref in p.references:
        ax.plot(ref.time, ref.dissipation, "--", color="black", lw=2.2, label=ref.label)
    handles = [Line2D([], [], color=color, lw=2.5, label=f"Re={re:g}") for re, color in p.named.items()]
    if len(p.named) < p.n_re:
        handles.append(Line2D([], [], ls="", label=f"({p.n_re:,} values of Re)"))
    handles += [Line2D([], [], color="#333", ls=_MPL_DASH[d], label=g) for g, d in p.dashes.items()]
    handles += list(ax.get_legend_handles_labels()[0])
    handles.append(Line2D([], [], marker="^", mfc="none", color="#333", ls="", label="peak not reached"))
    ax.legend(handles=handles, fontsize=7, loc="best", ncols=2, framealpha=0.9)
    ax.set_xlabel("time t")
    ax.set_ylabel("ε = −dE/dt")
    ax.set_title("Dissipation rate (colour: Re; dash: grid)")
    ax.grid(alpha=0.3)


def draw_summary_png(inputs: SummaryInputs, path: Path) -> Path:
    """Draw the summary of ``inputs`` into ``path`` (PNG)."""
    status, title = inputs.status, inputs.title
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

    _physics_axes(fig.add_subplot(grid[0:2, 2]), inputs.physics)

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


def write_summary_png(
    status: SweepStatus,
    path: Path,
    *,
    title: str = "Sweep progress",
    results: Any = None,
    references: Sequence[Reference] = (),
) -> Path:
    """Write the summary PNG of a sweep (``results``: its ``open_results``, for the physics)."""
    return draw_summary_png(summary_inputs(status, title=title, results=results, references=references), path)


def start_summary_png(inputs: SummaryInputs, path: Path) -> Future[Path]:
    """Draw the summary in a process of its own (started fresh: the caller's threads, e.g.
    zarr's I/O loop, are not copied); the future's result is the path, or the drawing's error."""
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        return pool.submit(draw_summary_png, inputs, Path(path))
    finally:
        pool.shutdown(wait=False)  # the process ends once the drawing is done
