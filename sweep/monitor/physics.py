"""The science a fluid dynamicist reads in a sweep report: E(t), epsilon(t), Z(t), E(k) at the
final time, derived quantities flagged honestly, and a published reference where one exists.

One colour per Reynolds number on every panel (a colormap over log Re, ``case_colors``) and one
line dash per grid, so a case is found at a glance in each panel, the PNG summary included.
Built from ``open_results`` (time series on (run, output) with each run's own ``time``,
``energy_spectrum`` on ``k``) and the records' table; reads nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..store.results import OUTPUT_DIM
from .reference import Reference

__all__ = [
    "PANEL_WIDTH",
    "PANEL_HEIGHT",
    "case_colors",
    "grid_label",
    "re_ticks",
    "grid_dashes",
    "run_cases",
    "derived_frame",
    "physics_views",
    "physics_key",
    "table_hook",
    "NOT_REACHED",
]

PANEL_WIDTH, PANEL_HEIGHT = 620, 380
MAX_LINES = 30  # curves per panel; more are unreadable (and slow in the browser)
SPECTRUM_DECADES = 7  # the spectrum panel's y range below its largest value
NOT_REACHED = "peak not reached before T_final"
AT_START = "largest at t = 0 (no growth)"
_DASHES = ("solid", "dashed", "dotted", "dashdot")
_TITLES = {
    "energy": ("Kinetic energy E(t)", "E = ½⟨|u|²⟩"),
    "dissipation": ("Dissipation rate ε(t) = −dE/dt", "ε = ν⟨|ω|²⟩"),
    "enstrophy": ("Enstrophy Z(t)", "Z = ½⟨|ω|²⟩"),
}


def _holoviews() -> Any:
    """HoloViews with its bokeh backend loaded (options are backend options)."""
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401

    return hv


def case_colors(re_values: Sequence[float]) -> dict[float, str]:
    """Re -> hex colour on a perceptually uniform colormap (viridis, dark = low Re) over log Re:
    the same Re has the same colour on every panel and in the PNG."""
    from bokeh.palettes import Viridis256

    values = sorted({float(r) for r in re_values if np.isfinite(r) and r > 0})
    if not values:
        return {}
    lo, hi = math.log(values[0]), math.log(values[-1])
    out = {}
    for r in values:
        x = 0.5 if hi == lo else (math.log(r) - lo) / (hi - lo)
        out[r] = Viridis256[int(round(x * 0.9 * 255))]  # the palette's yellow end is hard to see
    return out


def grid_dashes(grids: Sequence[str]) -> dict[str, str]:
    """Grid label -> line dash: the finest grid solid, coarser ones dashed, then dotted."""

    def points(label: str) -> float:
        try:
            return float(np.prod([int(n) for n in label.replace("³", "").split("×")]))
        except ValueError:
            return 0.0

    order = sorted(set(grids), key=points, reverse=True)
    return {g: _DASHES[min(i, len(_DASHES) - 1)] for i, g in enumerate(order)}


def re_ticks(values: Any) -> dict[str, Any]:
    """``xticks`` at the Reynolds numbers themselves when there are few (a log axis over
    100..1600 otherwise labels 500 and 1000 only)."""
    res = np.unique(np.asarray(values, dtype=float))
    res = res[np.isfinite(res)]
    return {"xticks": [float(r) for r in res], "xformatter": "%g"} if 0 < len(res) <= 8 else {}


def grid_label(nx: float, ny: float, nz: float) -> str:
    if not all(np.isfinite([nx, ny, nz])):
        return "?"
    return f"{int(nx)}³" if nx == ny == nz else f"{int(nx)}×{int(ny)}×{int(nz)}"


def _values(ds: Any, name: str, fill: Any) -> np.ndarray:
    n = ds.sizes.get("run", 0)
    return np.asarray(ds[name].values).reshape(n) if name in ds.variables else np.full(n, fill)


def run_cases(results: Any) -> pd.DataFrame:
    """One row per done spectral run: run, package, Re, dt, T_final, grid label, initial
    condition, label (the parameters that vary between the runs shown), colour and dash."""
    cols = ["run", "package", "Re", "dt", "T_final", "grid", "initial_condition", "label", "color", "dash"]
    if results is None or results.sizes.get("run", 0) == 0 or "energy" not in results:
        return pd.DataFrame(columns=cols)
    keep = (_values(results, "status", "done") == "done") & (
        _values(results, "solver", "spectral") == "spectral"
    )
    ds = results.isel(run=np.flatnonzero(keep))
    if ds.sizes.get("run", 0) == 0:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(
        {
            "run": [str(r) for r in ds["run"].values],
            "package": [str(p) for p in _values(ds, "package_id", "")],
            "Re": _values(ds, "Re", np.nan).astype(float),
            "dt": _values(ds, "dt", np.nan).astype(float),
            "T_final": _values(ds, "T_final", np.nan).astype(float),
            "grid": [
                grid_label(a, b, c)
                for a, b, c in zip(
                    *(_values(ds, k, np.nan).astype(float) for k in ("nx", "ny", "nz")), strict=True
                )
            ],
            "initial_condition": [str(v) for v in _values(ds, "initial_condition", "taylor_green")],
        }
    )
    varies = [c for c in ("grid", "dt", "T_final") if df[c].nunique() > 1]
    df["label"] = [
        f"Re={r.Re:g}" + "".join(f", {c}={getattr(r, c):g}" if c != "grid" else f", {r.grid}" for c in varies)
        for r in df.itertuples()
    ]
    colors, dashes = case_colors(df["Re"].tolist()), grid_dashes(df["grid"].tolist())
    df["color"] = [colors.get(float(r), "#777777") for r in df["Re"]]
    df["dash"] = [dashes[g] for g in df["grid"]]
    return df.sort_values(["Re", "grid", "dt", "T_final"], kind="stable", ignore_index=True)


def _series(results: Any, runs: Sequence[str], name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(time, values) of each run, its own outputs only."""
    sub = results.sel(run=list(runs))
    t = np.asarray(sub["time"].transpose("run", OUTPUT_DIM).values, dtype=float)
    v = np.asarray(sub[name].transpose("run", OUTPUT_DIM).values, dtype=float)
    out = []
    for i in range(len(runs)):
        ok = np.isfinite(t[i]) & np.isfinite(v[i])
        out.append((t[i][ok], v[i][ok]))
    return out


def derived_frame(results: Any, cases: pd.DataFrame | None = None) -> pd.DataFrame:
    """Derived quantities of each done spectral run, honestly flagged: the dissipation peak and
    its time only when the peak lies inside the run (else ``NOT_REACHED``: the value at
    T_final is a lower bound), the final energy and the energy lost."""
    cases = run_cases(results) if cases is None else cases
    rows = []
    if not cases.empty:
        diss = _series(results, cases["run"].tolist(), "dissipation")
        energy = _series(results, cases["run"].tolist(), "energy")
        for case, (t, d), (_, e) in zip(cases.itertuples(), diss, energy, strict=True):
            i = int(np.argmax(d)) if d.size else -1
            reached = d.size >= 3 and 0 < i < d.size - 1
            note = "" if reached else (NOT_REACHED if d.size and i == d.size - 1 else AT_START)
            rows.append(
                {
                    "run": case.run,
                    "package": case.package,
                    "Re": case.Re,
                    "grid": case.grid,
                    "dt": case.dt,
                    "T_final": case.T_final,
                    "peak_dissipation": float(d[i]) if d.size else math.nan,
                    "t_peak": float(t[i]) if reached else math.nan,
                    "peak_reached": bool(reached),
                    "note": note,
                    "final_energy": float(e[-1]) if e.size else math.nan,
                    "energy_lost": float(1 - e[-1] / e[0]) if e.size and e[0] else math.nan,
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "run",
            "package",
            "Re",
            "grid",
            "dt",
            "T_final",
            "peak_dissipation",
            "t_peak",
            "peak_reached",
            "note",
            "final_energy",
            "energy_lost",
        ],
    )


def _shown(cases: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """At most MAX_LINES runs, spread evenly over Re; the note that says so."""
    if len(cases) <= MAX_LINES:
        return cases, ""
    keep = np.linspace(0, len(cases) - 1, MAX_LINES).round().astype(int)
    return cases.iloc[keep], f" ({MAX_LINES} of {len(cases)} runs)"


def _style(plot: Any, title: str, xlabel: str, ylabel: str, **more: Any) -> Any:
    """A panel's common look: its size, legible fonts, a grid; no per-curve legend (the page's
    key says what colours and dashes mean; hovering a curve names its run)."""
    more.setdefault("show_legend", False)
    return plot.opts(
        width=PANEL_WIDTH,
        height=PANEL_HEIGHT,
        title=title,
        xlabel=xlabel,
        ylabel=ylabel,
        fontscale=1.15,
        show_grid=True,
        **more,
    )


def _curve(x: np.ndarray, y: np.ndarray, xname: str, yname: str, label: str, **style: Any) -> Any:
    """One run's line; hovering it shows the run's label and the point."""
    hv = _holoviews()

    frame = pd.DataFrame({xname: x, yname: y, "case": label})
    return hv.Curve(frame, xname, [yname, "case"], label=label).opts(tools=["hover"], **style)


def table_hook(plot: Any, element: Any) -> None:
    """Size a DataTable's columns to their content and drop its row-number column (bokeh
    otherwise gives every column the same width, cutting ids and notes)."""
    table = plot.handles.get("table")
    if table is None or not hasattr(table, "columns"):
        return
    data = element.dframe()
    for col in table.columns:
        values = data[col.field].astype(str).tolist() if col.field in data else []
        longest = max([len(str(col.title)), *(len(v) for v in values)])
        col.width = int(min(380, 20 + 8 * longest))
    table.index_position = None
    table.autosize_mode = "none"


def _time_panel(results: Any, cases: pd.DataFrame, name: str, refs: Sequence[Reference]) -> Any:
    hv = _holoviews()

    shown, note = _shown(cases)
    series = _series(results, shown["run"].tolist(), name)
    curves = [
        _curve(t, v, "t", name, str(c.label), color=c.color, line_dash=c.dash, line_width=2.2)
        for c, (t, v) in zip(shown.itertuples(), series, strict=True)
    ]
    caption = ""
    for ref in refs if name in ("dissipation", "energy") else ():
        if any(ref.matches(ic, re) for ic, re in zip(cases["initial_condition"], cases["Re"], strict=True)):
            values = ref.dissipation if name == "dissipation" else ref.energy
            curves.append(
                _curve(
                    ref.time, values, "t", name, ref.label, color="black", line_dash="dashed", line_width=3
                )
            )
            caption = f" · reference at Re={ref.Re:g}"
    title, ylabel = _TITLES[name]
    return _style(hv.Overlay(curves), title + note + caption, "time t", ylabel)


def _spectrum_panel(results: Any, cases: pd.DataFrame) -> Any:
    """E(k) at each run's final time, log-log, with a k^-5/3 guide above the spectra."""
    hv = _holoviews()

    shown, note = _shown(cases)
    sub = results.sel(run=shown["run"].tolist())
    k = np.asarray(sub["k"].values, dtype=float)
    spectra = np.asarray(sub["energy_spectrum"].transpose("run", "k").values, dtype=float)
    finite = spectra[np.isfinite(spectra)]
    floor = 1e-10 * float(finite.max()) if finite.size else 0.0  # round-off shells are not physics
    curves, anchors = [], []
    for c, e in zip(shown.itertuples(), spectra, strict=True):
        ok = np.isfinite(e) & (k > 0) & (e > floor)
        if ok.sum() < 2:
            continue
        curves.append(
            _curve(k[ok], e[ok], "k", "E(k)", str(c.label), color=c.color, line_dash=c.dash, line_width=2.2)
        )
        anchors.append((k[ok], e[ok]))
    if not curves:
        return None
    # the guide: k^-5/3 starting above the largest spectrum at k = 2, over the resolved range
    kmax = max(float(kk.max()) for kk, _ in anchors)
    top = max(float(np.interp(2.0, kk, ee)) for kk, ee in anchors)
    kg = np.geomspace(2.0, max(kmax, 3.0), 20)
    eg = 4.0 * top * (kg / 2.0) ** (-5 / 3)
    curves.append(_curve(kg, eg, "k", "E(k)", "k^-5/3", color="#555555", line_width=2))
    curves.append(
        hv.Text(float(kg[-5]), float(eg[-5]) * 3.0, "k⁻⁵ᐟ³").opts(text_font_size="13pt", text_color="#555555")
    )
    # SPECTRUM_DECADES below the largest value: the inertial range, not the round-off of the
    # last shells, fills the panel (zoom out to see the rest)
    top_all = max(float(ee.max()) for _, ee in anchors)
    low = max(floor, top_all * 10.0**-SPECTRUM_DECADES, float(min(ee.min() for _, ee in anchors)) / 2)
    return _style(
        hv.Overlay(curves),
        "Energy spectrum E(k) at the final time" + note,
        "wavenumber k",
        "E(k)",
        logx=True,
        logy=True,
        ylim=(low, float(eg.max()) * 3.0),
    )


def _peak_panel(derived: pd.DataFrame, cases: pd.DataFrame) -> Any:
    """Peak dissipation against Re; a run that never reached its peak shows its value at
    T_final as an open triangle: a lower bound, not a peak."""
    hv = _holoviews()

    if derived.empty:
        return None
    color = dict(zip(cases["run"], cases["color"], strict=True))
    frame = derived.assign(color=[color[r] for r in derived["run"]])
    parts = []
    kinds = (
        ("", "circle", "peak inside the run"),
        (NOT_REACHED, "triangle", "not reached: value at T_final (a lower bound)"),
        (AT_START, "square", "largest at t = 0 (no growth)"),
    )
    for note, marker, label in kinds:
        sub = frame[frame["note"] == note]
        reached = note == ""
        if sub.empty:
            continue
        parts.append(
            hv.Scatter(
                sub, "Re", ["peak_dissipation", "color", "package", "grid", "t_peak"], label=label
            ).opts(
                color="color",
                marker=marker,
                size=13,
                fill_alpha=1.0 if reached else 0.0,
                line_width=2,
                tools=["hover"],
            )
        )
    res = np.unique(derived["Re"][np.isfinite(derived["Re"])])
    logx = bool(res.size and res.min() > 0 and res.max() >= 10 * res.min())
    ticks = re_ticks(res)
    return _style(
        hv.Overlay(parts),
        "Peak dissipation vs Re",
        "Re",
        "max ε",
        logx=logx,
        padding=0.15,
        show_legend=True,
        legend_position="bottom",
        yformatter="%.4g",
        **ticks,
    )


def _derived_table(derived: pd.DataFrame) -> Any:
    hv = _holoviews()

    if derived.empty:
        return None
    shown = pd.DataFrame(
        {
            "package": derived["package"],
            "Re": derived["Re"].map(lambda v: f"{v:g}"),
            "grid": derived["grid"],
            "dt": derived["dt"].map(lambda v: f"{v:g}"),
            "T_final": derived["T_final"].map(lambda v: f"{v:g}"),
            "max ε": derived["peak_dissipation"].map(lambda v: f"{v:.4g}"),
            "t of peak": [
                f"{t:.3g}" if ok else "—"
                for t, ok in zip(derived["t_peak"], derived["peak_reached"], strict=True)
            ],
            "note": derived["note"],
            "E(T_final)": derived["final_energy"].map(lambda v: f"{v:.4g}"),
            "energy lost": derived["energy_lost"].map(lambda v: f"{100 * v:.1f}%"),
        }
    )
    return hv.Table(shown).opts(
        width=2 * PANEL_WIDTH,
        height=min(420, 30 * (len(shown) + 1) + 10),
        title="Derived quantities (click a header to sort)",
        hooks=[table_hook],
    )


def physics_key(results: Any, references: Sequence[Reference] = ()) -> str:
    """HTML: what each colour (Re) and dash (grid) means, and the reference line, if any."""
    cases = run_cases(results)
    if cases.empty:
        return ""
    swatch = (
        '<span style="display:inline-block;width:34px;border-top:4px {dash} {color};'
        'margin:0 6px 3px 14px"></span>'
    )
    css = {"solid": "solid", "dashed": "dashed", "dotted": "dotted", "dashdot": "dashed"}
    parts = ["<b>Re</b>"]
    parts += [
        swatch.format(dash="solid", color=c) + f"{re:g}"
        for re, c in case_colors(cases["Re"].tolist()).items()
    ]
    parts.append("&nbsp;&nbsp;<b>grid</b>")
    parts += [
        swatch.format(dash=css[d], color="#333") + g for g, d in grid_dashes(cases["grid"].tolist()).items()
    ]
    for r in references:
        if any(r.matches(ic, re) for ic, re in zip(cases["initial_condition"], cases["Re"], strict=True)):
            parts.append("&nbsp;&nbsp;" + swatch.format(dash="dashed", color="black") + r.label)
    return '<div style="font-size:15px;line-height:2">' + " ".join(parts) + "</div>"


def physics_views(results: Any, references: Sequence[Reference] = ()) -> dict[str, Any]:
    """The physics panels of the spectral runs, keyed by name (empty without a done run)."""
    cases = run_cases(results)
    if cases.empty:
        return {}
    views: dict[str, Any] = {}
    for name in ("energy", "dissipation", "enstrophy"):
        if name in results:
            views[f"{name}_vs_time"] = _time_panel(results, cases, name, references)
    if "energy_spectrum" in results and "k" in results.dims:
        spectrum = _spectrum_panel(results, cases)
        if spectrum is not None:
            views["spectrum"] = spectrum
    derived = derived_frame(results, cases)
    for key, view in (
        ("peak_dissipation", _peak_panel(derived, cases)),
        ("derived", _derived_table(derived)),
    ):
        if view is not None:
            views[key] = view
    return views
