"""`sweep report`: one self-contained HTML page (checked in a real headless chromium) + a PNG."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import Page, browser  # noqa: F401  (fixture)
from conftest import run_cli, write_packages
from monitor_store import SCENARIO, build_scenario, record_failed

from sweep.monitor.report import offline_problems
from sweep.monitor.status import load_sweep
from sweep.monitor.tables import runs_table, runs_table_from_results
from sweep.monitor.views import per_run_frame, stats_frame, timeseries_frame

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory):
    """(out_dir, packages_dir, store) after one real `sweep report` subprocess."""
    base = tmp_path_factory.mktemp("report")
    pkgs, store = build_scenario(base)
    out = base / "report"
    proc = run_cli("report", "--store", str(store), "--packages", str(pkgs), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert str(out / "sweep_report.html") in proc.stdout
    return out, pkgs, store


@pytest.mark.slow
def test_report_views_follow_the_store(report_dir):
    _, pkgs, store = report_dir
    data = load_sweep(str(store), str(pkgs))
    # the Dataset path and the records path describe the same runs
    from sweep.store import Store

    with Store.open(store) as st:
        by_records = runs_table(st.records()).sort_index()
    by_results = runs_table_from_results(data.results).sort_index()
    cols = ["status", "failure_class", "package_ids", "priority", "wall_time", "Re", "nx"]
    assert by_results[cols].equals(by_records[cols])
    stats = stats_frame(data.status).set_index("priority")
    assert stats.loc["ALL", ["total", "done", "failed", "stale", "pending"]].tolist() == [7, 3, 2, 1, 2]
    ts = timeseries_frame(data.results)
    assert sorted(ts["Re"].unique()) == [100.0, 200.0, 450.0]  # done runs only
    per_run = per_run_frame(data.results).set_index("run")
    done = per_run[per_run["status"] == "done"]
    # peak dissipation is the maximum of each run's series
    for run, row in done.iterrows():
        series = data.results["dissipation"].sel(run=run).values
        assert row["peak_dissipation"] == pytest.approx(np.nanmax(series))


@pytest.mark.slow
def test_report_html_is_self_contained_and_png_is_a_picture(report_dir):
    from PIL import Image

    out, _, _ = report_dir
    html = (out / "sweep_report.html").read_text(encoding="utf-8")
    assert offline_problems(html) == []
    assert "Bokeh" in html and "3/7 packages done" in html
    png = (out / "sweep_progress.png").read_bytes()
    img = Image.open(io.BytesIO(png)).convert("L")
    assert img.size[0] >= 800 and np.asarray(img, dtype=float).std() > 20


@pytest.mark.slow
def test_report_store_with_only_a_failed_run_writes_both_files(tmp_path):
    from sweep.monitor.report import write_report
    from sweep.spec import load_packages
    from sweep.store import Store

    pkg = load_packages(write_packages(tmp_path / "pk", SCENARIO[:1]), check_memory=False)[0]
    with Store.open(tmp_path / "s.zarr", mode="a") as st:
        record_failed(st, pkg, "worker-lost", 2.5)
    files = write_report(load_sweep(str(tmp_path / "s.zarr")), tmp_path / "out")
    html = files.html.read_text(encoding="utf-8")
    assert offline_problems(html) == [] and "0/1 runs done" in html and "worker-lost 1" in html
    assert files.png.stat().st_size > 10_000


def test_report_offline_problems_finds_remote_resources():
    page = (
        '<script src="https://cdn.example.org/x.js"></script><link rel="stylesheet" '
        'href="//cdn.example.org/x.css"><style>@import url("http://e.org/f.css");</style>'
        '{"type":"object","name":"ImportedStyleSheet","attributes":{"url":"https://e.org/s.css"}}'
    )
    assert len(offline_problems(page)) == 4
    assert offline_problems('<script src="data:text/javascript,1"></script><a href="https://e.org">') == []


@pytest.mark.slow
def test_report_cli_out_is_a_file_is_one_line_exit_2(report_dir, tmp_path):
    _, _, store = report_dir
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_cli("report", "--store", str(store), "--out", str(blocker))
    assert proc.returncode == 2
    assert "--out" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.browser
def test_report_opens_offline_in_chromium_with_plots(report_dir, browser: Page, tmp_path):  # noqa: F811
    out, _, _ = report_dir
    page = browser.open((out / "sweep_report.html").as_uri())
    # bokeh renders asynchronously: wait for the plot canvases
    page.wait_for(lambda: page.count(".bk-Canvas") >= 10, timeout=60, what="bokeh canvases")
    assert page.console_errors() == []
    text = page.text()
    assert "3/7 packages done" in text
    for heading in ("Physics", "Derived quantities", "Runs (click a header to sort)", "Cost and coverage"):
        assert heading in text, heading
    assert "test: diverged" in text  # the failed run's reason, in the table of runs
    png = page.screenshot(tmp_path / "report.png")
    assert Page.pixel_std(png) > 10


# A sweep above the report's thresholds, kept small by lowering them (sweep.report.*): the
# scatter panels become density images and the tables hold a few rows of many.
MANY_RUNS, RASTER_POINTS, TABLE_ROWS = 400, 100, 25


@pytest.fixture(scope="module")
def many_runs_report(tmp_path_factory: pytest.TempPathFactory):
    """(out_dir, store, done run ids, failed run ids) after one `sweep report` of a store of
    MANY_RUNS done runs (scripts/bulk_store.py) and two failed ones, thresholds lowered."""
    sys.path.insert(0, str(SCRIPTS))
    from bulk_store import bulk_fill

    from sweep.spec import load_packages
    from sweep.store import Store

    base = tmp_path_factory.mktemp("many")
    store = base / "many.zarr"
    done = bulk_fill(str(store), MANY_RUNS)
    pkgs = load_packages(write_packages(base / "pk", SCENARIO[2:4]), check_memory=False)
    with Store.open(store, mode="a") as st:
        record_failed(st, pkgs[0], "diverged", 1.0)
        record_failed(st, pkgs[1], "timeout", 3.0)
    out = base / "report"
    env = {
        "DASK_SWEEP__REPORT__RASTER_POINTS": str(RASTER_POINTS),
        "DASK_SWEEP__REPORT__TABLE_ROWS": str(TABLE_ROWS),
    }
    proc = run_cli("report", "--store", str(store), "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "W-1005" not in proc.stderr, proc.stderr
    return out, store, done, [p.run_id for p in pkgs]


def _png_pictures(html: str) -> list[Any]:
    """The PNG images inlined in a page, but its icons."""
    from PIL import Image

    images = [
        Image.open(io.BytesIO(base64.b64decode(m))).convert("RGBA")
        for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    ]
    return [img for img in images if img.size[0] >= 100]


@pytest.mark.slow
def test_report_of_many_runs_draws_density_images_and_a_table_of_some_rows(many_runs_report):
    out, store, done, failed = many_runs_report
    html = (out / "sweep_report.html").read_text(encoding="utf-8")
    assert offline_problems(html) == []
    # wall time (2), parameter space (2), peak dissipation: a density picture each, drawn
    pictures = _png_pictures(html)
    assert len(pictures) == 5
    for img in pictures:
        assert np.count_nonzero(np.asarray(img)[..., 3]) > 20  # painted pixels: the runs
    # no glyph per run: a glyph panel would carry every run id in its hover data
    shown_ids = [r for r in done if r in html]
    assert len(shown_ids) <= TABLE_ROWS
    # the runs table: the failed runs first, its size and what it leaves out said on the page
    total = MANY_RUNS + len(failed)
    assert all(r in html for r in failed) and "test: diverged" in html
    assert f"Runs (click a header to sort): {TABLE_ROWS} of {total}" in html
    assert f"The table shows {TABLE_ROWS} of the {total} runs" in html
    assert f"Derived quantities (click a header to sort): {TABLE_ROWS} of {MANY_RUNS} runs" in html
    assert f"({MANY_RUNS} runs: density)" in html
    # bokeh and panel inline are ~3 MB; the views stay small
    assert (out / "sweep_report.html").stat().st_size < 4_000_000


@pytest.mark.slow
def test_report_views_keep_a_glyph_per_run_below_the_raster_threshold(many_runs_report):
    import dask.config
    import holoviews as hv

    from sweep.monitor.views import build_views

    _, store, done, failed = many_runs_report
    data = load_sweep(str(store))
    with dask.config.set({"sweep.report.raster-points": MANY_RUNS + 10, "sweep.report.table-rows": 1000}):
        views = build_views(data)
    points = sum(len(el) for el in views["wall_time"].traverse(lambda e: e, [hv.Scatter]))
    assert points == 2 * (MANY_RUNS + len(failed))  # wall time vs grid points and vs Re
    assert len(views["runs_table"]) == MANY_RUNS + len(failed)
    with dask.config.set({"sweep.report.raster-points": RASTER_POINTS}):
        views = build_views(data)
    # the density panels keep one legend point per state (NaN), no run's glyph
    assert all(len(el) == 1 for el in views["wall_time"].traverse(lambda e: e, [hv.Scatter]))


@pytest.mark.slow
@pytest.mark.browser
def test_report_of_many_runs_opens_in_chromium_with_its_pictures(
    many_runs_report,
    browser: Page,  # noqa: F811
    tmp_path,
):
    out, _, _, _ = many_runs_report
    page = browser.open((out / "sweep_report.html").as_uri())
    page.wait_for(lambda: page.count(".bk-Canvas") >= 10, timeout=60, what="bokeh canvases")
    assert page.console_errors() == []
    assert f"{TABLE_ROWS} of {MANY_RUNS + 2}" in page.text()
    # the cost panels at the bottom of the page: their density images drawn (the done runs'
    # green; the progress bars of that colour are at the top, out of view)
    page.driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")

    def green_pixels() -> int:
        from PIL import Image

        rgb = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"), dtype=int)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        return int(np.count_nonzero((g > r + 40) & (g > b + 40)))

    assert page.wait_for(lambda: green_pixels() > 1000, timeout=20, what="the density images")
    page.screenshot(tmp_path / "many.png")


@pytest.mark.parametrize("seed", [0, 1])
def test_pixel_counts_equal_datashader_canvas_points(seed: int):
    """The density images' counts per pixel (numpy) are those datashader's own aggregation
    gives for the same canvas, points on the edges and outside the ranges included."""
    import datashader as ds
    import pandas as pd

    from sweep.monitor.raster import pixel_counts

    rng = np.random.default_rng(seed)
    xs = np.concatenate([rng.normal(0.5, 0.3, 5000), [0.0, 1.0, -0.5, 1.5, 0.25]])
    ys = np.concatenate([rng.lognormal(0, 1, 5000), [2.0, 10.0, 0.1, 20.0, 5.0]])
    ys = np.log10(ys)  # a log axis is counted on log10 of the values
    x_range, y_range, (w, h) = (0.0, 1.0), (-1.0, 1.0), (61, 37)
    ours = pixel_counts(xs, ys, x_range, y_range, (w, h))
    canvas = ds.Canvas(plot_width=w, plot_height=h, x_range=x_range, y_range=y_range)
    theirs = canvas.points(pd.DataFrame({"x": xs, "y": ys}), "x", "y", ds.count())
    assert ours.dims == theirs.dims and ours.shape == theirs.shape == (h, w)
    np.testing.assert_allclose(ours["x"], theirs["x"])
    np.testing.assert_allclose(ours["y"], theirs["y"])
    assert int(ours.sum()) > 4000
    np.testing.assert_array_equal(ours.values, theirs.values)


def test_stacked_density_layers_equal_datashader_stack():
    """Density layers stacked (later ones over earlier ones) are bit for bit datashader's
    ``tf.stack`` with its ``over`` operator: opaque, translucent and empty pixels; and the PNG
    of the result is datashader's picture of it."""
    import datashader.transfer_functions as tf
    from PIL import Image

    from sweep.monitor.raster import png_bytes, stack_over

    rng = np.random.default_rng(3)
    shape = (23, 31)
    images = []
    for _ in range(3):
        rgb = rng.integers(0, 2**24, shape, dtype=np.uint32)
        alpha = rng.choice(np.array([0, 0, 40, 110, 200, 255], dtype=np.uint32), shape)
        coords = {"y": np.arange(shape[0]), "x": np.arange(shape[1])}
        images.append(tf.Image(rgb | (alpha << np.uint32(24)), coords=coords, dims=("y", "x")))
    ours, theirs = stack_over([img.data for img in images]), tf.stack(*images)
    assert ours.dtype == theirs.dtype == np.uint32 and ours.shape == theirs.shape
    assert np.count_nonzero(theirs.data) > 0.5 * theirs.size
    np.testing.assert_array_equal(ours, theirs.data)
    picture = np.asarray(Image.open(io.BytesIO(png_bytes(ours))))
    np.testing.assert_array_equal(picture, np.asarray(theirs.to_pil()))


def _counts(kind: str) -> np.ndarray:
    """Counts per pixel of one kind of panel (uint32, as pixel_counts gives)."""
    rng = np.random.default_rng(len(kind))
    shape = (37, 61)
    if kind == "empty":
        return np.zeros(shape, dtype=np.uint32)
    if kind == "one value":  # a bulk store: every run the same point
        out = np.zeros(shape, dtype=np.uint32)
        out[5, 7] = 100_000
        return out
    if kind == "sparse":  # a few lone runs, thickened as the report does
        from sweep.monitor.raster import _thicken

        out = np.zeros(shape, dtype=np.uint32)
        out[rng.integers(0, shape[0], 12), rng.integers(0, shape[1], 12)] = rng.integers(1, 4, 12)
        return _thicken(out)
    if kind == "wide":  # counts spanning more than eq_hist's 65,536 exact levels: its histogram
        out = rng.integers(0, 3, shape).astype(np.uint32)
        out[0, 0], out[1, 1] = 90_000, 70_000
        return out
    return rng.poisson(rng.lognormal(1.0, 1.5, shape)).astype(np.uint32)  # dense


@pytest.mark.parametrize("kind", ["dense", "sparse", "one value", "wide", "empty"])
def test_density_shading_equals_datashader_shade(kind: str):
    """A layer's counts shaded in one colour (opacity by histogram-equalised count, empty
    pixels clear) are bit for bit datashader's ``tf.shade(..., how="eq_hist")``."""
    import datashader.transfer_functions as tf
    import xarray as xr

    from sweep.monitor.raster import MIN_ALPHA, shade

    counts = _counts(kind)
    agg = xr.DataArray(counts, dims=("y", "x"))
    for color in ("#2ca02c", "#d62728"):
        ours = shade(counts, color, MIN_ALPHA)
        theirs = tf.shade(agg, cmap=color, how="eq_hist", min_alpha=MIN_ALPHA).data
        assert ours.dtype == theirs.dtype == np.uint32 and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)
        clear = (ours >> np.uint32(24)) == 0
        np.testing.assert_array_equal(clear, counts == 0)  # empty pixels, and only they, are clear
    assert kind == "empty" or len(np.unique(ours >> np.uint32(24))) > (1 if kind != "one value" else 0)


def test_density_panel_is_drawn_without_importing_datashader():
    """A density panel rendered in a fresh process leaves datashader unimported (its import,
    dask.dataframe included, is ~0.65 s of a report)."""
    code = (
        "import sys, numpy as np, pandas as pd, holoviews as hv\n"
        "hv.extension('bokeh')\n"
        "from sweep.monitor.raster import Layer, density_overlay\n"
        "rng = np.random.default_rng(0)\n"
        "frame = pd.DataFrame({'x': rng.lognormal(size=9000), 'y': rng.normal(size=9000)})\n"
        "panel = density_overlay([Layer('done', '#2ca02c', frame)], 'x', 'y', logx=True, logy=False,"
        " pixels=(300, 200))\n"
        "fig = hv.render(panel, backend='bokeh')\n"
        "assert any(type(r.glyph).__name__ == 'ImageURL' for r in fig.renderers), fig.renderers\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'datashader'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]", proc.stdout
