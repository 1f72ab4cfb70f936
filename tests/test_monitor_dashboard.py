"""The live dashboard: a real `sweep dashboard` subprocess watched by a headless chromium,
updating when a run is committed; and the background-thread server the engine starts."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from browser import Page, browser  # noqa: F401  (fixture)
from conftest import write_packages
from monitor_store import build_scenario, commit_done

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory):
    """(packages_dir, store_path) of the 7-package scenario (3 done)."""
    return build_scenario(tmp_path_factory.mktemp("dashboard"))


def _start_cli(store, pkgs) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sweep.cli",
            "dashboard",
            "--store",
            str(store),
            "--packages",
            str(pkgs),
            "--refresh",
            "0.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        first = lines.get(timeout=90)
    except queue.Empty:
        proc.kill()
        raise AssertionError("`sweep dashboard` printed no URL within 90 s: " + proc.stderr.read()) from None
    assert first.startswith("sweep dashboard: http://127.0.0.1:"), first
    return proc, first.split()[2]


@pytest.mark.browser
def test_dashboard_cli_page_updates_when_a_run_is_committed(scenario, browser: Page, tmp_path):  # noqa: F811
    from sweep.spec import load_packages
    from sweep.store import Store

    pkgs, store = scenario
    t0 = time.monotonic()
    proc, url = _start_cli(store, pkgs)
    try:
        page = browser.open(url)
        page.wait_for(lambda: "3/7 packages done" in page.text(), timeout=120, what="first status")
        page.wait_for(lambda: page.count(".bk-Canvas") >= 10, timeout=60, what="bokeh canvases")
        before = page.screenshot(tmp_path / "before.png")
        assert Page.pixel_std(before) > 10
        # a sweep commits p005 (through the real store, as the engine's writer would)
        p005 = next(p for p in load_packages(pkgs, check_memory=False) if p.package_id == "p005")
        with Store.open(store, mode="a") as st:
            commit_done(st, p005, 6.0)
        t1 = time.monotonic()
        page.wait_for(lambda: "4/7 packages done" in page.text(), timeout=120, what="the update")
        print(f"dashboard: first page {t1 - t0:.1f} s after start, update {time.monotonic() - t1:.1f} s")
        assert page.console_errors() == []
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0 and "stopped" in proc.stderr.read()  # Ctrl-C is the normal way to stop it


def test_dashboard_start_in_thread_returns_url_and_stops(tmp_path):
    from sweep.monitor.dashboard import start_dashboard
    from sweep.store import Store

    store = tmp_path / "fresh.zarr"  # as the engine starts it: before the first commit
    with Store.open(store, mode="a"):
        pass
    url, stop = start_dashboard(str(store), port=0, refresh_seconds=60)
    try:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=60) as resp:
            body = resp.read().decode()
        assert resp.status == 200 and "Sweep dashboard" in body
    finally:
        stop()
    with pytest.raises(urllib.error.URLError, match="refused"):
        urllib.request.urlopen(url, timeout=10)
    stop()  # idempotent


def test_dashboard_cli_bad_refresh_is_one_line_exit_2(scenario):
    from conftest import run_cli

    _, store = scenario
    proc = run_cli("dashboard", "--store", str(store), "--refresh", "0")
    assert proc.returncode == 2
    assert "--refresh" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.browser
def test_dashboard_beside_a_running_sweep_shows_what_runs_now(tmp_path, browser: Page):  # noqa: F811
    """`sweep run --dashboard` during a long run: the page shows it running now (package,
    step/total, elapsed), links the Dask dashboard, and does not call it "not started";
    `sweep status` in another process says a sweep holds the store and what runs."""
    from conftest import TINY, run_cli

    long = {**TINY, "grid": [24, 24, 24], "T_final": 40.0}
    pkgs = write_packages(
        tmp_path / "packages",
        [
            {"package_id": "long-run", "priority": "HIGH", "parameters": long},
            {"package_id": "quick", "priority": "LOW", "parameters": TINY},
        ],
    )
    store = tmp_path / "s.zarr"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sweep.cli",
            "run",
            str(pkgs),
            "--store",
            str(store),
            "--dashboard",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "DASK_SWEEP__STATUS_EVERY": "1"},
    )
    try:
        url = dask_url = None
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Dask dashboard: http" in line:
                dask_url = line.split("Dask dashboard: ")[1].split()[0]  # an ssh hint may follow
            if line.startswith("sweep: sweep dashboard: "):
                url = line.split()[-1]
                break
        assert url and dask_url, "no dashboard address"
        page = browser.open(url)
        page.wait_for(
            lambda: "Running now" in page.text() and "long-run" in page.text(), timeout=120, what="run"
        )
        page.wait_for(
            lambda: re.search(r"step \d+ ?/ ?\d+", page.text()) is not None, timeout=60, what="steps"
        )
        text = page.text()
        assert "Dask dashboard" in text and page.count(f'a[href="{dask_url}"]') >= 1, text[:2000]
        # the report's views too: the quick run, done beside the long one, in the physics panels
        page.wait_for(
            lambda: all(h in page.text() for h in ("Physics", "Derived quantities", "Runs (click a header")),
            timeout=60,
            what="the physics views of the finished run",
        )
        status = run_cli("status", "--store", str(store), "--packages", str(pkgs))
        assert status.returncode == 0, status.stderr
        assert "sweep running:" in status.stdout, status.stdout
        (line,) = [ln for ln in status.stdout.splitlines() if "long-run" in ln]
        assert re.search(r"step \d+/\d+", line), status.stdout
        page.screenshot(tmp_path / "running.png")
        assert page.console_errors() == []
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
