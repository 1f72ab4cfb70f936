"""`sweep report`: one self-contained HTML page (checked in a real headless chromium) + a PNG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from browser import Page, browser  # noqa: F401  (fixture)
from conftest import run_cli, write_packages
from monitor_store import SCENARIO, build_scenario, record_failed

from sweep.monitor.report import offline_problems
from sweep.monitor.status import load_sweep
from sweep.monitor.tables import runs_table, runs_table_from_results
from sweep.monitor.views import per_run_frame, stats_frame, timeseries_frame


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
