"""The report page that holds the views (``sweep.monitor.views``): its summary line, the
physics section's note and the Panel layout, for the HTML file and the live dashboard alike."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from ..units import format_duration
from .physics import NOT_REACHED, PANEL_WIDTH, physics_key, run_cases
from .status import SweepData, SweepStatus
from .views import build_views, running_now_html, runs_table_note

__all__ = ["eta_text", "report_layout"]


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
        note = runs_table_note(status, data.source)
        items.append(pn.pane.Markdown("## Runs" + (f"\n\n{note}" if note else ""), width=2 * PANEL_WIDTH))
        items.append(pane(views["runs_table"]))
    cost = [k for k in ("wall_time", "parameter_space") if k in views]
    if cost:
        items.append(pn.pane.Markdown("## Cost and coverage", width=2 * PANEL_WIDTH))
        items += [pane(views[k]) for k in cost]
    if learners:
        items.append(pn.pane.Markdown("## Adaptive sweeps: the learners' view", width=900))
        items += [pane(views[k]) for k in learners]
    return pn.Column(*items)
