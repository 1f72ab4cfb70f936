"""The science a fluid dynamicist reads in a sweep report: E(t), epsilon(t), Z(t), E(k) at the
final time, derived quantities flagged honestly, and a published reference where one exists.

One colour per Reynolds number on every panel (a colormap over log Re, ``case_colors``) and one
line dash per grid, so a case is found at a glance in each panel, the PNG summary included.
Built from ``open_results`` (time series on (run, output) with each run's own ``time``,
``energy_spectrum`` on ``k``) and the records' table; reads nothing else.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..store.results import OUTPUT_DIM
from .raster import Layer, density_overlay, rasterized
from .reference import Reference
from .tables import table_limit

__all__ = [
    "PANEL_WIDTH",
    "PANEL_HEIGHT",
    "case_colors",
    "key_colors",
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
# the peak panel's density image: a colour per kind of peak (one glyph per run: per Re)
_KIND_COLORS = {"": "#1f4e9c", NOT_REACHED: "#e8710a", AT_START: "#7f7f7f"}
KEY_ENTRIES = 9  # Reynolds numbers named in a colour key, at most (spread over the range)
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


def key_colors(colors: dict[float, str], at_most: int = KEY_ENTRIES) -> dict[float, str]:
    """The entries of ``case_colors`` a key names: all of them, or ``at_most`` spread evenly
    over the sorted Reynolds numbers (the smallest and the largest included)."""
    if len(colors) <= at_most:
        return colors
    res = sorted(colors)
    picks = np.unique(np.linspace(0, len(res) - 1, at_most).round().astype(int))
    return {res[i]: colors[res[i]] for i in picks}


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
    condition, label (the parameters that vary between the runs shown), colour and dash.
    The last Dataset's table is kept while that Dataset lives (the panels, the page's key and
    note, and the PNG all ask for it: a quarter of a second each at 100,000 runs); a copy is
    returned."""
    last = _LAST_CASES[0] if _LAST_CASES else None
    if last is not None and last[0]() is results:
        return last[1].copy()
    cases = _run_cases(results)
    try:
        _LAST_CASES[:] = [(weakref.ref(results), cases)]
    except TypeError:  # None, or an object without weak references: not kept
        _LAST_CASES.clear()
    return cases.copy()


_LAST_CASES: list[tuple[Any, pd.DataFrame]] = []


def _distinct(frame: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Each row's number among the distinct rows of ``frame`` (NaN equal to NaN), and those
    rows, in order of first appearance."""
    filled = frame.fillna({c: -np.inf for c in frame.columns if frame[c].dtype.kind == "f"})
    number = filled.groupby(list(frame.columns), sort=False).ngroup().to_numpy()
    first = ~filled.duplicated().to_numpy()
    return number, frame[first].reset_index(drop=True)


def _run_cases(results: Any) -> pd.DataFrame:
    cols = ["run", "package", "Re", "dt", "T_final", "grid", "initial_condition", "label", "color", "dash"]
    if results is None or results.sizes.get("run", 0) == 0 or "energy" not in results:
        return pd.DataFrame(columns=cols)
    keep = (_values(results, "status", "done") == "done") & (
        _values(results, "solver", "spectral") == "spectral"
    )
    ds = results.isel(run=np.flatnonzero(keep))
    if ds.sizes.get("run", 0) == 0:
        return pd.DataFrame(columns=cols)
    # labels, colours and dashes are made once per distinct grid and case, not once per run
    # (a sweep of 100,000 runs has a few thousand cases)
    axes = pd.DataFrame({k: _values(ds, k, np.nan).astype(float) for k in ("nx", "ny", "nz")})
    grid_of, grids = _distinct(axes)
    df = pd.DataFrame(
        {
            "run": np.asarray(ds["run"].values).astype(str).tolist(),
            "package": np.asarray(_values(ds, "package_id", "")).astype(str).tolist(),
            "Re": _values(ds, "Re", np.nan).astype(float),
            "dt": _values(ds, "dt", np.nan).astype(float),
            "T_final": _values(ds, "T_final", np.nan).astype(float),
            "grid": np.array([grid_label(*g) for g in grids.to_numpy()], dtype=object)[grid_of],
            "initial_condition": np.asarray(_values(ds, "initial_condition", "taylor_green"))
            .astype(str)
            .tolist(),
        }
    )
    varies = [c for c in ("grid", "dt", "T_final") if df[c].nunique() > 1]
    case_of, cases = _distinct(df[["Re", "grid", "dt", "T_final"]])
    labels = [
        f"Re={r.Re:g}" + "".join(f", {c}={getattr(r, c):g}" if c != "grid" else f", {r.grid}" for c in varies)
        for r in cases.itertuples()
    ]
    df["label"] = np.array(labels, dtype=object)[case_of]
    colors, dashes = case_colors(cases["Re"].tolist()), grid_dashes(cases["grid"].tolist())
    df["color"] = df["Re"].map(colors).fillna("#777777").astype(object)
    df["dash"] = df["grid"].map(dashes).astype(object)
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
    T_final is a lower bound), the final energy and the energy lost. Each run's own outputs
    only (finite time and value); computed on all runs at once, as (run, output) arrays."""
    cases = run_cases(results) if cases is None else cases
    columns = [
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
    ]
    if cases.empty:
        return pd.DataFrame(columns=columns)
    sub = results.sel(run=cases["run"].tolist())
    t, d, e = (
        np.asarray(sub[k].transpose("run", OUTPUT_DIM).values, dtype=float)
        for k in ("time", "dissipation", "energy")
    )
    if t.shape[1] == 0:  # no run has an output
        t, d, e = (np.full((len(cases), 1), np.nan) for _ in range(3))
    rows = np.arange(len(cases))
    ok = np.isfinite(t) & np.isfinite(d)
    n = ok.sum(axis=1)
    i = np.argmax(np.where(ok, d, -np.inf), axis=1)  # the first largest of the run's own values
    at = np.cumsum(ok, axis=1)[rows, i] - 1  # its place among them
    reached = (n >= 3) & (at > 0) & (at < n - 1)
    note = np.where(reached, "", np.where((n > 0) & (at == n - 1), NOT_REACHED, AT_START))
    ok_e = np.isfinite(t) & np.isfinite(e)
    has_e = ok_e.any(axis=1)
    first = np.where(has_e, e[rows, np.argmax(ok_e, axis=1)], np.nan)
    last = np.where(has_e, e[rows, e.shape[1] - 1 - np.argmax(ok_e[:, ::-1], axis=1)], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        lost = np.where(has_e & (first != 0), 1 - last / first, np.nan)
    return pd.DataFrame(
        {
            "run": cases["run"].tolist(),
            "package": cases["package"].tolist(),
            "Re": cases["Re"].to_numpy(dtype=float),
            "grid": cases["grid"].tolist(),
            "dt": cases["dt"].to_numpy(dtype=float),
            "T_final": cases["T_final"].to_numpy(dtype=float),
            "peak_dissipation": np.where(n > 0, d[rows, i], np.nan),
            "t_peak": np.where(reached, t[rows, i], np.nan),
            "peak_reached": reached,
            "note": note.astype(object),
            "final_energy": last,
            "energy_lost": lost,
        },
        columns=columns,
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
    kinds = (
        ("", "circle", "peak inside the run"),
        (NOT_REACHED, "triangle", "not reached: value at T_final (a lower bound)"),
        (AT_START, "square", "largest at t = 0 (no growth)"),
    )
    res = np.unique(derived["Re"][np.isfinite(derived["Re"])])
    logx = bool(res.size and res.min() > 0 and res.max() >= 10 * res.min())
    ticks = re_ticks(res)
    style = {"show_legend": True, "legend_position": "bottom", "yformatter": "%.4g", **ticks}
    if rasterized(len(derived)):  # one density image, a colour per kind of peak
        layers = [
            Layer(label, _KIND_COLORS[note], derived[derived["note"] == note], marker)
            for note, marker, label in kinds
            if (derived["note"] == note).any()
        ]
        view = density_overlay(
            layers,
            "Re",
            "peak_dissipation",
            logx=logx,
            logy=False,
            pixels=(PANEL_WIDTH - 90, PANEL_HEIGHT - 150),
            padding=0.15,
        )
        title = f"Peak dissipation vs Re ({len(derived):,} runs: density)"
        return _style(view, title, "Re", "max ε", **style)
    color = dict(zip(cases["run"], cases["color"], strict=True))
    frame = derived.assign(color=[color[r] for r in derived["run"].tolist()])
    parts = []
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
    return _style(
        hv.Overlay(parts), "Peak dissipation vs Re", "Re", "max ε", logx=logx, padding=0.15, **style
    )


def _spread(frame: pd.DataFrame, limit: int) -> pd.DataFrame:
    """At most ``limit`` rows of ``frame``, spread evenly over it (all when it has no more)."""
    if len(frame) <= limit:
        return frame
    return frame.iloc[np.unique(np.linspace(0, len(frame) - 1, max(limit, 1)).round().astype(int))]


def _derived_table(derived: pd.DataFrame) -> Any:
    """The derived quantities of every run, or of ``sweep.report.table-rows`` runs spread
    evenly over Re when there are more."""
    hv = _holoviews()

    if derived.empty:
        return None
    total = len(derived)
    derived = _spread(derived, table_limit())
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
        title="Derived quantities (click a header to sort)"
        + (f": {len(shown):,} of {total:,} runs, spread evenly over Re" if len(shown) < total else ""),
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
    colors = case_colors(cases["Re"].tolist())
    named = key_colors(colors)
    parts = ["<b>Re</b>"]
    parts += [swatch.format(dash="solid", color=c) + f"{re:g}" for re, c in named.items()]
    if len(named) < len(colors):
        parts.append(f"({len(colors):,} values of Re; the colour follows log Re between these)")
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
