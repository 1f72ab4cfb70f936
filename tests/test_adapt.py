"""Adaptive sweeps (sweep.adapt) on the real solver, engine and store: the stability limit of
Taylor-Green at Re = 1600 found to 1% in at most 15 runs, resume after Ctrl-C asking the same
points, a 2-D map of the stability boundary rendered by the report, and one-line errors for
bad specs."""

from __future__ import annotations

import io
import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from browser import Page, browser  # noqa: F401  (fixture)
from conftest import run_cli

# The README's example (examples/adapt/tg-dt-limit.toml): Taylor-Green at Re = 1600 on 16^3, RK4,
# 40 steps whatever dt; a run diverges (NaN, or a CFL number above the huge limit) exactly when
# dt is past RK4's stability limit for this flow. Its sweep directory is written beside the copy.
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "adapt" / "tg-dt-limit.toml"
TG_SPEC = EXAMPLE.read_text().replace('packages = "tg-dt-limit"', 'packages = "pk"')


def _diverges(dt: float, re: float = 1600.0) -> bool:
    """What the solver itself says of one dt (the spec's runs, computed directly)."""
    from solver import SolverParams
    from solver.errors import DivergedError
    from solver.simulate import run_simulation

    p = SolverParams(
        {
            "Re": re,
            "dt": dt,
            "T_final": 40 * dt,
            "grid": (16, 16, 16),
            "initial_condition": "taylor_green",
            "cfl_limit": 1e6,
            "output_interval": 40 * dt,
        }
    )
    try:
        run_simulation(p)
    except DivergedError:
        return True
    return False


def _bisect(lo: float, hi: float, rel: float = 1e-4) -> tuple[float, float]:
    """The stability limit bracketed to ``rel`` by bisection with the solver."""
    assert not _diverges(lo) and _diverges(hi)
    while (hi - lo) / lo > rel:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if _diverges(mid) else (mid, hi)
    return lo, hi


def _spec(tmp_path: Path, text: str = TG_SPEC, name: str = "tg.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.cluster
def test_adapt_stability_limit_within_1pct_in_15_runs_4x_fewer_than_a_uniform_grid(
    tmp_path: Path, local_client
):
    from sweep.adapt import adapt

    res = adapt(_spec(tmp_path), tmp_path / "st.zarr", client=local_client, out=io.StringIO())
    assert res.exit_code == 0 and res.stopped_by.startswith("15 runs")
    told = [p for p in res.points if p.value is not None]
    assert len(res.points) == len(told) <= 15
    stable = max(10 ** p.x[0] for p in told if p.value == 0)
    unstable = min(10 ** p.x[0] for p in told if p.value == 1)
    # the solver's own limit, by bisection (near it, stable and unstable dt interleave at the
    # 0.1% level: 40 steps of growth depend on dt in detail; at 1% the limit is sharp)
    ref = math.sqrt(math.prod(_bisect(0.1, 3.0)))
    assert abs(stable - ref) / ref <= 0.01 and abs(unstable - ref) / ref <= 0.01, (stable, unstable, ref)
    assert abs(unstable - stable) / stable <= 0.01, (stable, unstable)
    # a uniform dt grid over the same bounds brackets it that tightly only with this many runs
    uniform = math.ceil((3.0 - 0.1) / abs(unstable - stable)) + 1
    assert uniform >= 4 * len(told), (uniform, len(told))
    # every point is a package of the sweep directory and a run of the store, like grid runs
    from sweep.spec import load_packages
    from sweep.store import Store

    pkgs = {p.package_id: p for p in load_packages(tmp_path / "pk", check_memory=False)}
    assert {p.package_id for p in res.points} == set(pkgs)
    assert all(pkgs[p.package_id].tags["adapt"] == "tgdt" for p in res.points)
    with Store.open(tmp_path / "st.zarr") as st:
        records = st.records()
    assert {r.run_id for r in records.values()} == {p.run_id for p in res.points}
    assert sum(r.failure_class == "diverged" for r in records.values()) == sum(p.value == 1 for p in told)


@pytest.mark.cluster
def test_adapt_replay_from_the_store_gives_the_same_learner(tmp_path: Path, local_client):
    from sweep.adapt import adapt, load_spec, replay

    spec = _spec(tmp_path, TG_SPEC.replace("runs = 15", "runs = 6"))
    res = adapt(spec, tmp_path / "st.zarr", client=local_client, out=io.StringIO())
    learner, points = replay(load_spec(spec), str(tmp_path / "st.zarr"))
    assert learner.data == res.learner.data and len(points) == 6
    assert learner.ask(2, tell_pending=False) == res.learner.ask(2, tell_pending=False)
    # run again: nothing is recomputed, the store is read
    again = adapt(spec, tmp_path / "st.zarr", client=local_client, out=io.StringIO())
    assert again.new_runs == 0 and again.learner.data == res.learner.data


@pytest.mark.cluster
@pytest.mark.slow
def test_adapt_resume_after_ctrl_c_asks_the_same_points_and_recomputes_nothing(tmp_path: Path, local_client):
    from sweep.adapt import adapt

    whole = tmp_path / "whole"
    whole.mkdir()
    reference = adapt(_spec(whole), whole / "st.zarr", client=local_client, out=io.StringIO())
    cut = tmp_path / "cut"
    cut.mkdir()
    spec = _spec(cut)
    args = [
        sys.executable,
        "-m",
        "sweep.cli",
        "adapt",
        str(spec),
        "--store",
        str(cut / "st.zarr"),
        "--max-parallel",
        "2",
        "--log-dir",
        str(cut / "logs"),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cut)
    assert proc.stdout is not None
    for line in proc.stdout:  # Ctrl-C once 4 runs are in the store
        if line.startswith("adapt: round 1:"):
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; finished runs are kept" in err and "Traceback" not in err
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=cut)
    assert done.returncode == 0, done.stderr
    assert "point(s) from the store" in done.stdout

    def points(d: Path) -> list[float]:
        return sorted(
            json.loads(f.read_text())["parameters"]["dt"] for f in (d / "pk").glob("package_*.json")
        )

    assert points(cut) == points(whole) and len(points(cut)) == 15
    from sweep.adapt import load_spec, replay

    learner, _ = replay(load_spec(spec), str(cut / "st.zarr"))
    assert learner.data == reference.learner.data  # the same values at the same points
    # no run was computed twice: each package's log ends one run, once
    from sweep.engine.logs import log_segments, package_log_lines

    ids = {
        line.split("\t", 1)[0] for seg in log_segments(cut / "logs") for line in seg.read_text().splitlines()
    }
    assert len(ids) == 15 and all(i.startswith("tgdt-") for i in ids)
    for pid in ids:
        lines = package_log_lines(cut / "logs", pid)
        assert sum(line.startswith("status: ") for line in lines) == 1, lines


@pytest.mark.parametrize(
    "change, message",
    [
        (
            ("[vary.dt]", "[vary.dtt]"),
            r'vary\.dtt: bad value "dtt"; allowed: a parameter: one of .*\(did you mean dt\?\)',
        ),
        (
            ("bounds = [0.1, 3.0]", "bounds = [3.0, 0.1]"),
            r"vary\.dt\.bounds: bad value \[3\.0, 0\.1\]; allowed: \[low, high\] with low < high",
        ),
        (
            ('reducer = "diverged"', 'reducer = "peak(energy)"'),
            r'objective\.reducer: bad value "peak\(energy\)"; allowed: diverged, final\(variable\)',
        ),
        (
            ('type = "Learner1D"', 'type = "Learner3D"'),
            r'learner\.type: bad value "Learner3D"; allowed: one of Learner1D, Learner2D, LearnerND',
        ),
        (
            ('name = "tgdt"', 'name = "tgdt"\nsolverr = 1'),
            r'solverr: bad value "solverr"; allowed: a key: .*did you mean solver',
        ),
    ],
    ids=["unknown parameter", "bounds reversed", "unknown reducer", "unknown learner", "unknown key"],
)
def test_adapt_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, change, message):
    import re

    spec = _spec(tmp_path, TG_SPEC.replace(*change))
    proc = run_cli("adapt", str(spec), "--store", str(tmp_path / "st.zarr"), timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sweep adapt: error: {spec}: "), proc.stderr
    assert re.search(message, lines[0]), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tg.toml"]  # no packages, no store


@pytest.mark.cluster
@pytest.mark.browser
def test_adapt_2d_maps_the_stability_boundary_and_the_report_renders_it(
    tmp_path: Path,
    local_client,
    browser: Page,  # noqa: F811
):
    from sweep.adapt import adapt

    text = (
        TG_SPEC.replace("[vary.dt]", '[vary.Re]\nbounds = [5.0, 1600.0]\nscale = "log"\n[vary.dt]')
        .replace("Re = 1600\n", "")
        .replace('type = "Learner1D"', 'type = "Learner2D"')
        .replace("runs = 15", "runs = 24")
    )
    res = adapt(_spec(tmp_path, text), tmp_path / "st.zarr", client=local_client, out=io.StringIO())
    told = [p for p in res.points if p.value is not None]
    assert len(told) == 24 and {p.value for p in told} == {0.0, 1.0}
    # the boundary moves with Re (diffusion-limited at low Re): the learner saw it at both ends
    low = [p for p in told if 10 ** p.x[0] < 20]
    high = [p for p in told if 10 ** p.x[0] > 200]
    assert {p.value for p in low} == {0.0, 1.0} and {p.value for p in high} == {0.0, 1.0}
    for p in low + high:  # every told value is what the solver says of that point
        assert p.value == float(_diverges(10 ** p.x[1], 10 ** p.x[0]))
    out = tmp_path / "report"
    proc = run_cli(
        "report",
        "--store",
        str(tmp_path / "st.zarr"),
        "--packages",
        str(tmp_path / "pk"),
        "--out",
        str(out),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    html = (out / "sweep_report.html").read_text()
    assert "24 runs chosen by Learner2D" in html and "a uniform 5x5 grid (25 runs), for comparison" in html
    page = browser.open((out / "sweep_report.html").as_uri())
    page.wait_for(lambda: "the learners' view" in page.text(), timeout=60, what="the learners' view")
    page.wait_for(lambda: page.count("canvas") >= 8, timeout=60, what="the plots drawn")
    assert not page.console_errors()
    assert page.pixel_std(page.screenshot(tmp_path / "report.png")) > 5  # not a blank page


def _double_peak(ds, record):
    """A user objective (python:test_adapt:_double_peak): twice the peak dissipation."""
    return None if ds is None else 2 * float(ds.dissipation.max())


def test_adapt_objectives_reduce_a_stored_run(tmp_path: Path) -> None:
    import numpy as np

    from solver import SolverParams, simulate
    from sweep.adapt.objectives import parse_objective
    from sweep.spec import run_id_of
    from sweep.store import Store

    params = SolverParams({"Re": 400.0, "dt": 0.01, "T_final": 0.2, "grid": (8, 8, 8)})
    ds = simulate(params)
    rid = run_id_of(params)
    with Store.open(tmp_path / "st.zarr", mode="a") as st:
        st.commit_run(rid, ds, {"params": params, "package_id": "p"})
    with Store.open(tmp_path / "st.zarr") as st:
        stored, record = st.open_run(rid), st.records()[rid]
    energy, diss, time = ds.energy.values, ds.dissipation.values, ds.time.values
    expect = {
        "final(energy)": energy[-1],
        "max(dissipation)": diss.max(),
        "min(energy)": energy.min(),
        "mean(energy)": energy.mean(),
        "argmax(dissipation, time)": time[np.argmax(diss)],
        "diverged": 0.0,
        "python:test_adapt:_double_peak": 2 * diss.max(),
        "python:test_adapt._double_peak": 2 * diss.max(),
    }
    for text, value in expect.items():
        assert parse_objective(text, "spec.toml").of_done(stored, record) == pytest.approx(
            value, rel=0, abs=0
        )
    assert parse_objective("diverged", "spec.toml").of_diverged(record) == 1.0
    assert parse_objective("max(dissipation)", "spec.toml").of_diverged(record) is None
    assert parse_objective("final(no_such_variable)", "spec.toml").of_done(stored, record) is None


@pytest.mark.cluster
def test_adapt_runs_that_time_out_are_reported_not_told(tmp_path: Path, local_client):
    from sweep.adapt import adapt

    spec = _spec(tmp_path, TG_SPEC.replace("runs = 15", "runs = 4"))
    out = io.StringIO()
    res = adapt(spec, tmp_path / "st.zarr", client=local_client, out=out, timeout=1e-6)
    assert res.exit_code == 1 and len(res.points) == 4 and not res.learner.data
    assert {p.state for p in res.points} == {"timeout"} and all(p.value is None for p in res.points)
    text = out.getvalue()
    assert "0 point(s) told" in text and "4 failed (not told)" in text
    assert text.count("adapt: failed (timeout), not told: tgdt-") == 4
