"""The report's cost and coverage panels: wall time against grid points and Re, and the
parameter space (Re against grid points and dt) by status.

One glyph per run, with its hover values, up to ``sweep.report.raster-points`` runs; above,
each panel is one density image of its runs (``sweep.monitor.raster``), the same axes and
colours, and its title says how many runs it holds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .physics import PANEL_WIDTH, re_ticks
from .raster import Layer, density_overlay, rasterized
from .views import STATE_COLORS, STATE_LABELS, VIEW_STATES, log_axis

__all__ = ["cost_views"]

# a density image's pixels in a panel of PANEL_WIDTH x the panel's height: its plot frame,
# less the axes, the title and the legend on the right
_FRAME_MARGINS = (200, 95)
# the order the density layers are stacked in (the last on top: failures stay visible)
_STACKING = ("new", "stale", "done", "running", "failed")


def _stacked(layer: Layer) -> int:
    """A layer's place in ``_STACKING`` (labelled by status or by ``STATE_LABELS``)."""
    for i, s in enumerate(_STACKING):
        if layer.label in (s, STATE_LABELS[s]):
            return i
    return -1


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
    if not log_axis(v) or v.max() >= 1000 * v.min():
        return {}
    lo, hi = math.floor(math.log10(v.min())), math.ceil(math.log10(v.max()))
    ticks = [m * 10.0**e for e in range(lo, hi + 1) for m in (1, 2, 5)]
    return {f"{axis}ticks": [t for t in ticks if v.min() / 2 <= t <= v.max() * 2], f"{axis}formatter": "%g"}


def _scatter(
    layers: list[Layer], x: str, y: str, height: int, hover: list[str], style: dict[str, Any], **opts: Any
) -> tuple[Any, str]:
    """The points of ``layers`` as one glyph each (hovering one shows ``hover``), or as one
    density image when they are many; the note for the title (how many runs the image holds)."""
    import holoviews as hv
    import hvplot.pandas  # noqa: F401  (registers .hvplot)

    logx, logy = (
        log_axis(pd.concat([la.frame[x] for la in layers])),
        log_axis(pd.concat([la.frame[y] for la in layers])),
    )
    n = sum(len(la.frame) for la in layers)
    if rasterized(n):
        lims = {k: v for k, v in opts.items() if k in ("xlim", "ylim")}
        pixels = (PANEL_WIDTH - _FRAME_MARGINS[0], height - _FRAME_MARGINS[1])
        view = density_overlay(
            sorted(layers, key=_stacked),
            x,
            y,
            logx=logx,
            logy=logy,
            pixels=pixels,
            **lims,
        )
        return view.opts(width=PANEL_WIDTH, height=height, **opts), f" ({n:,} runs: density)"
    glyphs = [
        la.frame.hvplot.scatter(
            x=x,
            y=y,
            logx=logx,
            logy=logy,
            padding=0.1,
            label=la.label,
            color=la.color,
            hover_cols=hover,
            **style,
        )
        for la in layers
    ]
    return hv.Overlay(glyphs).opts(width=PANEL_WIDTH, height=height, **opts), ""


def _wall_panels(runs: pd.DataFrame) -> list[Any]:
    """Wall time against grid points (spectral runs) and against Re, done and failed runs."""
    runs = runs[np.isfinite(runs["wall_time"]) & (runs["wall_time"] > 0)]
    if runs.empty:
        return []
    runs = runs.assign(grid_points=runs["nx"] * runs["ny"] * runs["nz"])

    def wall(x: str, xlabel: str) -> Any:
        shown = runs[np.isfinite(runs[x])]
        layers = [
            Layer(str(st), STATE_COLORS["done" if st == "done" else "failed"], sub)
            for st, sub in shown.groupby("status")
        ]
        view, note = _scatter(
            layers,
            x,
            "wall_time",
            320,
            ["run_id", "Re", "dt", "T_final", "grid_points"],
            {"size": 60},
            fontscale=1.1,
            **(re_ticks(runs["Re"]) if x == "Re" else _log_ticks(runs[x], "x")),
            **_one_value_lim(runs[x], "x"),
            **_log_ticks(runs["wall_time"], "y"),
            xlabel=xlabel,
            ylabel="wall time (s)",
            legend_position="right",
        )
        return view.opts(title=f"Wall time vs {xlabel}{note}")

    # grid points are the spectral runs' measure of size; other solvers' runs have none
    panels = [wall("grid_points", "grid points")] if np.isfinite(runs["grid_points"]).any() else []
    if np.isfinite(runs["Re"]).any():
        panels.append(wall("Re", "Re"))
    return panels


def _space_panels(units: pd.DataFrame) -> list[Any]:
    """Re against grid points and against dt, every counted unit by its state."""
    u = units.assign(grid_points=units["nx"] * units["ny"] * units["nz"])
    u = u[np.isfinite(u["Re"])]
    panels = []
    for y, ylabel in (("grid_points", "grid points"), ("dt", "dt")):
        if not np.isfinite(u[y]).any():
            continue  # no spectral grid (other solvers' runs): no such panel
        layers = [
            Layer(STATE_LABELS[s], STATE_COLORS[s], u[u["state"] == s])
            for s in VIEW_STATES
            if (u["state"] == s).any()
        ]
        view, note = _scatter(
            layers,
            "Re",
            y,
            300,
            ["unit", "run_id", "dt", "T_final", "priority"],
            {"size": 70, "alpha": 0.8},
            ylabel=ylabel,
            legend_position="right",
            fontscale=1.1,
            **_one_value_lim(u[y], "y"),
            **re_ticks(u["Re"]),
            **_log_ticks(u[y], "y"),
        )
        # a density panel's title says how many runs instead (its legend names the states)
        panels.append(view.opts(title=f"Parameter space: Re vs {ylabel}" + (note or ", by status")))
    return panels


def cost_views(runs: pd.DataFrame, units: pd.DataFrame) -> dict[str, Any]:
    """``wall_time`` (from the runs table, ``SweepData.runs``) and ``parameter_space`` (from the
    counted units, ``views.view_units``) as HoloViews Layouts; a key is left out without data."""
    import holoviews as hv

    views: dict[str, Any] = {}
    panels = _wall_panels(runs.reset_index())
    if panels:
        views["wall_time"] = hv.Layout(panels).cols(2).opts(shared_axes=False)
    panels = _space_panels(units) if not units.empty else []
    if panels:
        views["parameter_space"] = hv.Layout(panels).cols(2).opts(shared_axes=False)
    return views
