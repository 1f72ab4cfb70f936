"""The report's physics (issue 16): one colour per Re on every panel, E/epsilon/Z against time,
E(k) at the final time, peaks flagged honestly, a reference curve read from a file, a sortable
table of runs with failure reasons, '-' for the percent done of an empty priority.

Runs come from the real solver on tiny grids, committed through the real store API.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_packages
from monitor_store import SCENARIO, build_scenario, commit_done

from sweep.errors import ConfigError
from sweep.monitor.physics import NOT_REACHED, derived_frame, physics_views, run_cases
from sweep.monitor.reference import read_gdiag
from sweep.monitor.status import load_sweep
from sweep.monitor.views import build_views, stats_frame
from sweep.spec import load_packages
from sweep.store import Store

TG = {"dt": 0.05, "grid": [8, 8, 8], "initial_condition": "taylor_green"}
RUNS = [
    {"package_id": "re100-long", "priority": "HIGH", "parameters": {**TG, "Re": 100.0, "T_final": 9.0}},
    {"package_id": "re1600-short", "priority": "HIGH", "parameters": {**TG, "Re": 1600.0, "T_final": 2.0}},
    {"package_id": "re1600-long", "priority": "HIGH", "parameters": {**TG, "Re": 1600.0, "T_final": 4.0}},
]


def _gdiag_from_our_solver(path: Path) -> Path:
    """A small real .gdiag file from our own solver's output (clearly labelled: not the DNS)."""
    import solver

    ds = solver.simulate({**TG, "Re": 1600.0, "T_final": 4.0, "grid": [12, 12, 12]})
    lines = [
        "# ns-sweep: label=ns-sweep 12^3 run (test data, NOT the DNS); initial_condition=taylor_green; "
        "Re=1600; source=tests/test_monitor_physics.py, ns-sweep's own spectral solver",
        "# time  kinetic_energy  dissipation_rate",
        *(
            f"{t:.6g} {e:.9g} {d:.9g}"
            for t, e, d in zip(ds.time.values, ds.energy.values, ds.dissipation.values, strict=False)
        ),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def sweep_data(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("physics")
    pkgs = load_packages(write_packages(base / "packages", RUNS), check_memory=False)
    with Store.open(base / "s.zarr", mode="a") as st:
        for i, p in enumerate(pkgs):
            commit_done(st, p, 1.0 + i)
    ref = _gdiag_from_our_solver(base / "ours.gdiag")
    return base, load_sweep(str(base / "s.zarr"), str(base / "packages"), reference_files=[str(ref)])


def _curves(overlay):
    """(label, colour) of each curve of an overlay."""
    import holoviews as hv

    return [
        (el.label, el.opts.get("style").kwargs.get("color")) for el in overlay if isinstance(el, hv.Curve)
    ]


def test_physics_one_colour_per_re_on_every_panel(sweep_data) -> None:
    _, data = sweep_data
    views = physics_views(data.results, data.references)
    assert {
        "energy_vs_time",
        "dissipation_vs_time",
        "enstrophy_vs_time",
        "spectrum",
        "peak_dissipation",
    } <= set(views)
    cases = run_cases(data.results)
    color_of = dict(zip(cases["label"], cases["color"], strict=True))
    assert len(set(cases.loc[cases["Re"] == 1600.0, "color"])) == 1  # same Re, same colour
    assert (
        cases.loc[cases["Re"] == 100.0, "color"].iloc[0] != cases.loc[cases["Re"] == 1600.0, "color"].iloc[0]
    )
    for key in ("energy_vs_time", "dissipation_vs_time", "enstrophy_vs_time", "spectrum"):
        runs = [(label, c) for label, c in _curves(views[key]) if label in color_of]
        assert len(runs) == 3, key
        assert all(c == color_of[label] for label, c in runs), key


def test_physics_peak_flagged_when_not_reached(sweep_data) -> None:
    _, data = sweep_data
    derived = derived_frame(data.results).set_index("package")
    long = derived.loc["re100-long"]
    assert long["peak_reached"] and 0 < long["t_peak"] < 9.0 and long["note"] == ""
    ds = data.results.sel(package_id="re100-long")
    assert long["peak_dissipation"] == pytest.approx(float(np.nanmax(ds.dissipation.values)))
    for pid in ("re1600-short", "re1600-long"):  # Re=1600 peaks near t=9: not inside these runs
        row = derived.loc[pid]
        assert not row["peak_reached"] and row["note"] == NOT_REACHED and np.isnan(row["t_peak"])


def test_physics_reference_overlaid_from_a_gdiag_file(sweep_data, tmp_path: Path) -> None:
    base, data = sweep_data
    (ref,) = data.references
    assert ref.Re == 1600.0 and ref.initial_condition == "taylor_green" and "NOT the DNS" in ref.label
    labels = [
        label for label, _ in _curves(physics_views(data.results, data.references)["dissipation_vs_time"])
    ]
    assert ref.label in labels
    assert ref.label not in [
        label for label, _ in _curves(physics_views(data.results, [])["dissipation_vs_time"])
    ]
    # a reference of another Re is not drawn over these runs
    other = tmp_path / "other.gdiag"
    other.write_text(
        (base / "ours.gdiag").read_text().replace("Re=1600", "Re=3000").replace("12^3 run", "other")
    )
    views = physics_views(data.results, [read_gdiag(other)])
    assert "other" not in " ".join(label for label, _ in _curves(views["dissipation_vs_time"]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 0.125 0.0004\n1 0.12 0.001\n", r"header.*missing"),
        ("# ns-sweep: initial_condition=taylor_green; Re=1600\n0 0.125\n1 0.1 0.2\n", r"line 2.*3 columns"),
        ("# ns-sweep: initial_condition=taylor_green; Re=1600\n0 0.125 x\n", r"line 2: bad value"),
        ("# ns-sweep: initial_condition=taylor_green; Re=1600\n0 0.125 0.1\n", r"at least 2 points"),
    ],
)
def test_reference_bad_files_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    bad = tmp_path / "bad.gdiag"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        read_gdiag(bad)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)


def test_report_runs_table_names_failures_and_empty_priority_is_a_dash(tmp_path: Path) -> None:
    pkgs, store = build_scenario(tmp_path)
    data = load_sweep(str(store), str(pkgs))
    table = build_views(data)["runs_table"].dframe().set_index("package")
    assert (
        table.loc["p002", "status"] == "failed (diverged)" and table.loc["p002", "reason"] == "test: diverged"
    )
    assert table.loc["p000", "reason"] == "" and table.loc["p005", "status"] == "not started"
    # a sweep whose LOW priority is empty: its percent done is "-", not 0
    empty = load_sweep(str(store), None)
    stats = stats_frame(empty.status).set_index("priority")
    assert all(v == "-" for p, v in stats["% done"].items() if stats.loc[p, "total"] == 0)
    only_high = tmp_path / "only_high"
    write_packages(only_high, [{"package_id": "p000", "priority": "HIGH", "parameters": {}}])
    stats = stats_frame(load_sweep(str(store), str(only_high)).status).set_index("priority")
    assert stats.loc["LOW", "% done"] == "-" and stats.loc["MEDIUM", "% done"] == "-"


def test_views_draw_runs_under_way_as_running_not_as_not_started(tmp_path: Path) -> None:
    """With a running sweep's status document in the store (written through the store's own
    API, as the driver writes it), a package under way is "running now" in the table of runs
    and in the progress bars, not "not started"."""
    import time

    from sweep.monitor.views import running_now_html

    pkgs, store = build_scenario(tmp_path)
    p005 = next(p for p in load_packages(pkgs, check_memory=False) if p.package_id == "p005")
    doc = {
        "version": 1,
        "state": "running",
        "host": "here",
        "pid": 1,
        "updated_epoch": time.time(),
        "every": 5,
        "mode": "parallel",
        "workers": 2,
        "dashboard": "http://127.0.0.1:8787/status",
        "running": [
            {
                "run_id": p005.run_id,
                "package_id": "p005",
                "priority": "LOW",
                "step": 3,
                "n_steps": 10,
                "running_for": 1.5,
            }
        ],
    }
    with Store.open(store, mode="a") as st:
        st.write_status(doc)
    data = load_sweep(str(store), str(pkgs))
    views = build_views(data)
    table = views["runs_table"].dframe().set_index("package")
    assert table.loc["p005", "status"] == "running now" and table.loc["p004", "status"].startswith("stale")
    bar = views["progress_bar"].dframe()
    shares = dict(zip(bar.iloc[:, 1], bar.iloc[:, 2], strict=True))  # state label -> % of packages
    assert shares["running now"] == pytest.approx(100 / 7) and shares["not started"] == pytest.approx(0.0)
    html = running_now_html(data.live)
    assert "p005" in html and "step 3/10 (30%)" in html and 'href="http://127.0.0.1:8787/status"' in html


def test_physics_spectrum_is_log_log_with_a_k_minus_five_thirds_guide(sweep_data) -> None:
    import holoviews as hv

    _, data = sweep_data
    view = physics_views(data.results, data.references)["spectrum"]
    fig = hv.render(view, backend="bokeh")
    assert type(fig.x_scale).__name__ == "LogScale" and type(fig.y_scale).__name__ == "LogScale"
    curves = {el.label: el for el in view if isinstance(el, hv.Curve)}
    guide = curves.pop("k^-5/3")
    k, e = guide.dimension_values(0), guide.dimension_values(1)
    slopes = np.diff(np.log(e)) / np.diff(np.log(k))
    assert np.allclose(slopes, -5 / 3)
    assert len(curves) == 3  # one spectrum per run
    from sweep.monitor.physics import SPECTRUM_DECADES

    top = max(float(c.dimension_values(1).max()) for c in curves.values())
    assert top * 10.0**-SPECTRUM_DECADES <= fig.y_range.start < fig.y_range.end and e.max() < fig.y_range.end
    for label, curve in curves.items():  # the guide runs above every spectrum at k = 2
        kk, ee = curve.dimension_values(0), curve.dimension_values(1)
        assert np.interp(2.0, kk, ee) < np.interp(2.0, k, e), label


def test_report_panels_are_legible_and_one_value_axes_stay_around_their_value(tmp_path: Path) -> None:
    """Panels at least 600 px wide with no legend as wide as the plot; Re ticks at the Reynolds
    numbers themselves, plain (no 5.000e+4); an axis of one value (every run has one dt) spans
    that value, not -1..1."""
    import holoviews as hv

    pkgs, store = build_scenario(tmp_path)
    data = load_sweep(str(store), str(pkgs))
    views = build_views(data)
    for key in ("energy_vs_time", "dissipation_vs_time", "enstrophy_vs_time", "spectrum", "peak_dissipation"):
        fig = hv.render(views[key], backend="bokeh")
        assert fig.width >= 600 and fig.height >= 350, key
        for axis in (*fig.xaxis, *fig.yaxis):
            assert "e" not in str(getattr(axis.formatter, "format", "")), (key, axis.formatter.format)
        if key != "peak_dissipation":  # curves are named by the key above the panels and on hover
            assert all(len(legend.items) == 0 for legend in fig.legend), key
    peak = hv.render(views["peak_dissipation"], backend="bokeh")
    done_re = sorted(derived_frame(data.results)["Re"].unique())
    assert list(peak.xaxis[0].ticker.ticks) == done_re and peak.xaxis[0].formatter.format == "%g"
    (dt,) = {p["parameters"]["dt"] for p in SCENARIO}  # one dt, one grid in the whole sweep
    ranges = {}
    for panel in views["parameter_space"]:
        fig = hv.render(panel, backend="bokeh")
        assert fig.width >= 600
        ranges[fig.yaxis[0].axis_label] = (fig.y_range.start, fig.y_range.end)
    assert 0 < ranges["dt"][0] < dt < ranges["dt"][1], ranges
    assert 0 < ranges["grid points"][0] < 8**3 < ranges["grid points"][1], ranges
    by_points = hv.render(views["wall_time"][0], backend="bokeh")
    assert by_points.xaxis[0].axis_label == "grid points"
    assert 8**3 / 2 <= by_points.x_range.start < 8**3 < by_points.x_range.end <= 8**3 * 1.5


def test_report_png_carries_the_physics_panel(sweep_data, tmp_path: Path) -> None:
    """The PNG summary draws each done run's dissipation in its Re colour (right of the
    progress panels); without results that part has none of those colours."""
    from PIL import Image

    from sweep.monitor.report import write_summary_png

    _, data = sweep_data
    colors = set(run_cases(data.results)["color"])

    def pixels_of(png: Path) -> dict[str, int]:
        img = np.asarray(Image.open(png).convert("RGB"), dtype=int)
        right = img[:, int(img.shape[1] * 0.6) :]
        out = {}
        for c in colors:
            rgb = np.array([int(c[i : i + 2], 16) for i in (1, 3, 5)])
            out[c] = int((np.abs(right - rgb).sum(axis=2) < 30).sum())
        return out

    with_physics = pixels_of(write_summary_png(data.status, tmp_path / "a.png", results=data.results))
    without = pixels_of(write_summary_png(data.status, tmp_path / "b.png", results=None))
    assert all(n > 100 for n in with_physics.values()), with_physics
    assert all(n < 10 for n in without.values()), without


def test_report_eta_is_none_when_nothing_is_left_and_short_log_axes_get_ticks(tmp_path: Path) -> None:
    """A finished sweep's ETA is "none", not "0.0s with 1 worker(s)"; a log axis of wall times
    over less than three decades is labelled at 1-2-5 steps, not at 0.5 and 1 only."""
    import holoviews as hv

    from sweep.monitor.views import eta_text

    walls = (0.06, 0.3, 1.3)
    pkgs = write_packages(tmp_path / "packages", RUNS)
    with Store.open(tmp_path / "s.zarr", mode="a") as st:
        for p, wall in zip(load_packages(pkgs, check_memory=False), walls, strict=True):
            commit_done(st, p, wall)
    data = load_sweep(str(tmp_path / "s.zarr"), str(pkgs))
    assert eta_text(data.status) == "none (nothing left to run)"
    scenario = load_sweep(*(str(p) for p in reversed(build_scenario(tmp_path / "scenario"))))
    assert eta_text(scenario.status).endswith("with 1 worker(s)")
    (by_grid, by_re) = build_views(data)["wall_time"]
    fig = hv.render(by_re, backend="bokeh")
    assert type(fig.y_scale).__name__ == "LogScale"
    ticks = list(fig.yaxis[0].ticker.ticks)
    assert {0.1, 0.2, 0.5, 1.0} <= set(ticks) and fig.yaxis[0].formatter.format == "%g", ticks
    # grid points 4096 .. 110592 on a log axis: 5000, 10000, ... printed plainly (not 5.000e+4)
    grids = [
        {"package_id": f"n{n}", "priority": "LOW", "parameters": {**TG, "grid": [n] * 3}} for n in (16, 48)
    ]
    more = load_sweep(str(tmp_path / "s.zarr"), str(write_packages(tmp_path / "grids", grids)))
    points = next(
        f
        for f in (hv.render(p, backend="bokeh") for p in build_views(more)["parameter_space"])
        if f.yaxis[0].axis_label == "grid points"
    )
    assert type(points.y_scale).__name__ == "LogScale" and points.yaxis[0].formatter.format == "%g"
    assert {5000.0, 10000.0, 20000.0, 50000.0, 100000.0} <= set(points.yaxis[0].ticker.ticks)


def test_report_cli_overlays_the_workshop_file_by_its_name(sweep_data, tmp_path: Path) -> None:
    """`sweep report --reference spectral_Re1600_512.gdiag`: the file needs no header of ours
    (its published name says what it describes: Taylor-Green, Re = 1600) and may have more
    columns; the report names it. A missing file is one line, exit 2, and nothing is written."""
    from conftest import run_cli

    base, data = sweep_data
    ours = read_gdiag(base / "ours.gdiag")
    ref = tmp_path / "spectral_Re1600_512.gdiag"  # test data under the published name, NOT the DNS
    ref.write_text(
        "# synthetic stand-in written by tests/test_monitor_physics.py (not the workshop's data)\n"
        "# t  E  -dE/dt  extra columns\n"
        + "".join(
            f"{t:.4f} {e:.8e} {d:.8e} 0.0 0.0\n"
            for t, e, d in zip(ours.time, ours.energy, ours.dissipation, strict=True)
        )
    )
    known = read_gdiag(ref)
    assert known.Re == 1600.0 and known.initial_condition == "taylor_green" and "HiOCFD" in known.label
    np.testing.assert_array_equal(known.dissipation, ours.dissipation)
    out = tmp_path / "report"
    store, pkgs = str(base / "s.zarr"), str(base / "packages")
    r = run_cli("report", "--store", store, "--packages", pkgs, "--reference", str(ref), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "spectral DNS (HiOCFD workshop C3.5)" in (out / "sweep_report.html").read_text(encoding="utf-8")
    missing = tmp_path / "nowhere.gdiag"
    r = run_cli("report", "--store", store, "--reference", str(missing), "--out", str(tmp_path / "no"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert str(missing) in line and "cannot read" in line, line
    assert not (tmp_path / "no").exists()
