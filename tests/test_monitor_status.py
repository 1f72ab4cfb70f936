"""Status figures from a real store with done, failed, stale and pending runs; `sweep status`."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from conftest import TINY, run_cli
from monitor_store import EXPECTED, build_scenario, commit_done, simulate_tiny

from sweep.monitor.status import Counts, load_sweep, progress_bar, sweep_status
from sweep.monitor.tables import package_table
from sweep.units import format_duration


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory):
    """(packages_dir, store_path) of the 7-package scenario (built once per module)."""
    return build_scenario(tmp_path_factory.mktemp("scenario"))


def _check_counts(got: dict, want: dict) -> None:
    for key, value in want.items():
        assert got[key] == value, f"{key}: {got[key]} != {value}"


def test_monitor_status_counts_done_failed_stale_pending(scenario):
    pkgs, store = scenario
    data = load_sweep(str(store), str(pkgs), with_results=False)
    status = data.status.as_dict()
    assert status["unit"] == "package"
    _check_counts(status["overall"], EXPECTED["overall"])
    for prio in ("HIGH", "MEDIUM", "LOW"):
        _check_counts(status["by_priority"][prio], EXPECTED[prio])
    assert status["overall"]["percent_complete"] == pytest.approx(100 * 3 / 7, abs=0.01)
    assert status["runs_in_store"] == EXPECTED["runs_in_store"]
    assert status["compute_seconds"] == pytest.approx(EXPECTED["compute_seconds"])
    assert status["mean_run_seconds"] == pytest.approx(EXPECTED["mean_run_seconds"], abs=1e-3)
    assert status["eta_seconds"] == pytest.approx(EXPECTED["eta_seconds_1_worker"], abs=1e-3)
    # p004's old run (Re=450) is in the store but belongs to no current package
    assert status["runs_not_in_packages"] == 1


def test_monitor_package_states_name_each_package(scenario):
    pkgs, store = scenario
    units = load_sweep(str(store), str(pkgs), with_results=False).units.set_index("unit")
    assert units["state"].to_dict() == {
        "p000": "done",
        "p001": "done",
        "p002": "failed",
        "p003": "failed",
        "p004": "stale",
        "p005": "new",
        "p006": "done",
    }
    assert units.loc["p002", "failure_class"] == "diverged"
    assert units.loc["p000", "run_id"] == units.loc["p006", "run_id"]  # one shared run


def test_monitor_status_without_packages_counts_runs(scenario):
    _, store = scenario
    status = load_sweep(str(store), with_results=False).status
    assert status.unit == "run"
    assert (status.overall.total, status.overall.done, status.overall.failed) == (5, 3, 2)
    assert status.overall.pending == 0 and status.overall.stale == 0


def test_monitor_eta_scales_with_grid_work_and_workers():
    # two done runs of 8^3 x 10 steps at 2 s each; pending: two 16^3 x 10 steps runs
    from sweep.engine.predict import RuntimePredictor

    runs = pd.DataFrame(
        {
            "status": ["done", "done"],
            "failure_class": ["", ""],
            "error": ["", ""],
            "package_ids": [("a",), ("b",)],
            "priority": ["HIGH", "HIGH"],
            "wall_time": [2.0, 2.0],
            "Re": [100.0, 200.0],
            "dt": [0.1, 0.1],
            "T_final": [1.0, 1.0],
            "nx": [8.0, 8.0],
            "ny": [8.0, 8.0],
            "nz": [8.0, 8.0],
        },
        index=pd.Index(["r1", "r2"], name="run_id"),
    )

    class P:  # the attributes load_packages' Package has
        def __init__(self, pid, rid, grid, priority="LOW"):
            self.package_id, self.run_id, self.priority = pid, rid, priority
            self.params = {"Re": 1.0, "dt": 0.1, "T_final": 1.0, "grid": [grid] * 3}

    pkgs = [P("a", "r1", 8), P("b", "r2", 8), P("c", "r3", 16, "MEDIUM"), P("d", "r4", 16)]
    one = sweep_status(runs, pkgs, workers=1)
    two = sweep_status(runs, pkgs, workers=2)
    # a grid not run yet: the first-guess model (per-step overhead + N log N) scaled by what the
    # 8^3 runs measured: 2 s for 512 x 10 grid-point-steps
    guess = RuntimePredictor()
    ratio = guess.rate(pkgs[2].params)[0] / guess.rate(pkgs[0].params)[0]
    t16 = 2.0 / (512 * 10) * ratio * 4096 * 10
    assert 2.0 < t16 < 2.0 * 8  # more than an 8^3 run, less than its point count says
    assert one.eta_seconds == pytest.approx(2 * t16)
    assert two.eta_seconds == pytest.approx(one.eta_seconds / 2)
    # priorities run in order: MEDIUM's run first, then LOW's
    assert one.eta_by_priority == {"MEDIUM": pytest.approx(t16), "LOW": pytest.approx(2 * t16)}
    assert "scaled from other grids" in one.eta_method
    # one run cannot be shared: more workers never bring the ETA below its own time
    assert sweep_status(runs, pkgs[:3], workers=4).eta_seconds == pytest.approx(t16)
    # nothing finished yet: the first guess
    first = sweep_status(runs.iloc[0:0], pkgs, workers=1)
    assert first.eta_seconds == pytest.approx(sum(guess.predict(p.params) for p in pkgs))
    assert "first guess" in first.eta_method


def test_monitor_progress_bar_shows_done_failed_pending():
    units = pd.DataFrame(
        {
            "state": ["done"] * 5 + ["failed"] * 2 + ["new"] * 3,
            "failure_class": [""] * 5 + ["error"] * 2 + [""] * 3,
        }
    )
    c = Counts.of(units)
    bar = progress_bar(c, width=20)
    assert bar.startswith("▕") and bar.endswith("▏") and len(bar) == 22
    assert bar[1:-1] == "█" * 10 + "▒" * 4 + "░" * 6
    third = Counts.of(pd.DataFrame({"state": ["done", "new", "new"], "failure_class": ["", "", ""]}))
    assert progress_bar(third, width=10)[1:-1] == "███▎░░░░░░"  # 3.33 cells: an eighth-cell glyph


def test_units_format_duration_reads_naturally():
    assert format_duration(None) == "unknown"
    assert format_duration(5.25) == "5.2s"
    assert format_duration(125) == "2m 05s"
    assert format_duration(3723) == "1h 02m 03s"
    assert format_duration(2 * 86400 + 3600) == "2d 01h 00m"


def test_monitor_empty_store_counts_nothing(tmp_path):
    from sweep.store import Store

    with Store.open(tmp_path / "s.zarr", mode="a"):
        pass
    status = load_sweep(str(tmp_path / "s.zarr"), with_results=False).status
    assert (status.overall.total, status.overall.percent_complete, status.compute_seconds) == (0, 0.0, 0.0)
    assert progress_bar(status.overall, width=4) == "▕░░░░▏"
    assert package_table(load_sweep(str(tmp_path / "s.zarr")).runs).empty


@pytest.mark.slow
def test_status_cli_json_matches_figures_on_a_copy_while_writer_is_open(scenario, tmp_path):
    from sweep.spec import load_packages
    from sweep.store import Store

    pkgs, store = scenario
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    # a writer holds the copy's lock and commits p005: status reads committed data only
    p005 = next(p for p in load_packages(pkgs, check_memory=False) if p.package_id == "p005")
    with Store.open(copy, mode="a") as st:
        commit_done(st, p005, 6.0)
        proc = run_cli("status", "--store", str(copy), "--packages", str(pkgs), "--json", "--workers", "2")
        text = run_cli("status", "--store", str(copy), "--packages", str(pkgs))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["overall"]["done"] == EXPECTED["overall"]["done"] + 1
    assert doc["overall"]["pending"] == EXPECTED["overall"]["pending"] - 1
    assert doc["by_priority"]["LOW"]["done"] == 1
    assert doc["workers"] == 2
    assert doc["compute_seconds"] == pytest.approx(EXPECTED["compute_seconds"] + 6.0)
    assert text.returncode == 0, text.stderr
    assert "4/7 packages done" in text.stdout and "█" in text.stdout
    assert "failed by class: diverged 1, timeout 1" in text.stdout
    # the original store did not change
    orig = json.loads(run_cli("status", "--store", str(store), "--json").stdout)
    assert orig["overall"]["done"] == 3


def test_status_cli_missing_store_is_one_line_exit_2(tmp_path):
    proc = run_cli("status", "--store", str(tmp_path / "nothing.zarr"))
    assert proc.returncode == 2
    assert "nothing.zarr" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_monitor_status_reads_the_running_sweeps_document_jobs_workers_and_staleness():
    from sweep.monitor.live import jobs_of_records, live_lines, live_sweep

    doc = {
        "state": "running",
        "updated_epoch": 1000.0,
        "every": 5.0,
        "mode": "slurm",
        "host": "login1",
        "pid": 42,
        "workers": 3,
        "running": [{"run_id": "r3", "package_id": "c", "priority": "MEDIUM", "predicted_left": 7.0}],
        "jobs": {
            "system": "slurm",
            "max_jobs": 4,
            "walltime": 3600.0,
            "current": [
                {"job_id": "11", "state": "running", "walltime_left": 1200.0, "workers": 2},
                {"job_id": "12", "state": "running", "walltime_left": None, "workers": 1},
                {"job_id": "13", "state": "queued", "walltime_left": None, "workers": 0},
            ],
            "history": {"9": {"ended": "walltime margin"}, "11": {}, "12": {}, "13": {}},
            "drains": 1,
        },
    }
    live = live_sweep(doc, now=1004.0)
    assert live is not None and live.active and live.workers == 3
    text = "\n".join(live_lines(live))
    assert "sweep running: slurm on login1 (pid 42), 3 worker(s), 1 run(s) under way" in text
    assert "jobs (slurm, at most 4, walltime 1h 00m 00s): 2 running: 11 (20m 00s left), 12; 1 queued" in text
    assert "jobs used by this sweep: 4 (3 running, 1 walltime margin); walltime ends survived: 1" in text
    stale = live_sweep(doc, now=1100.0)  # 100 s without an update: its driver is gone
    assert stale is not None and stale.state == "stale" and not stale.active
    assert "stopped updating its status" in live_lines(stale)[0]
    assert live_sweep({**doc, "state": "ended"}, now=1004.0).state == "ended"
    assert live_sweep(None) is None

    class Rec:  # what RunRecord gives
        def __init__(self, prov):
            self.provenance = prov

    seen = jobs_of_records([Rec({"jobs": ["9", "11"], "preemptions": 1}), Rec({"jobs": ["11"]}), Rec({})])
    assert seen == {"jobs": ["9", "11"], "preempted_runs": 1, "preemptions": 1}

    # the ETA takes the workers running now and the runs under way at their own predicted time
    runs = pd.DataFrame(
        {
            "status": ["done"],
            "failure_class": [""],
            "error": [""],
            "package_ids": [("a",)],
            "priority": ["HIGH"],
            "wall_time": [2.0],
            "Re": [100.0],
            "dt": [0.1],
            "T_final": [1.0],
            "nx": [8.0],
            "ny": [8.0],
            "nz": [8.0],
            "solver": ["spectral"],
        },
        index=pd.Index(["r1"], name="run_id"),
    )

    class P:
        def __init__(self, pid, rid, priority):
            self.package_id, self.run_id, self.priority = pid, rid, priority
            self.params = {"Re": 1.0, "dt": 0.1, "T_final": 1.0, "grid": [8, 8, 8]}

    pkgs = [P("a", "r1", "HIGH"), P("b", "r2", "MEDIUM"), P("c", "r3", "MEDIUM"), P("d", "r4", "LOW")]
    status = sweep_status(runs, pkgs, live=live)
    assert status.workers == 3
    # MEDIUM: b (2 s, as a) and c (7 s left, from the document): c alone takes 7 s; LOW's d
    # (2 s) fits beside it on the third worker: 11 s of work over 3 workers, c still the longest
    assert status.eta_by_priority == {"MEDIUM": pytest.approx(7.0), "LOW": pytest.approx(7.0)}
    assert sweep_status(runs, pkgs, live=live, workers=1).eta_by_priority["LOW"] == pytest.approx(11.0)


def test_monitor_status_reads_columns_as_the_records_say(scenario, tmp_path):
    """The runs table, the predictor and the jobs of `sweep status` come from the index's
    columns (and the provenance of a few runs): the same figures as from every record."""
    from sweep.engine.predict import RuntimePredictor, recent_records
    from sweep.monitor.live import jobs_of_provenance, jobs_of_records
    from sweep.monitor.tables import runs_table, runs_table_of
    from sweep.store import Store

    _, store = scenario
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    from solver import SolverParams
    from sweep.spec import run_id_of

    with Store.open(str(copy), mode="a") as st:  # one more run only in the log: rows of both kinds
        params = SolverParams({**TINY, "Re": 777.0})
        prov = {"params": params, "package_ids": ["extra"], "priority": "LOW", "wall_time": 2.0}
        prov.update(jobs=["17", "18"], preemptions=1)
        st.commit_run(run_id_of(params), simulate_tiny(params), prov)
        for st_view in (st, Store.open(str(copy))):
            records = st_view.records()
            pd.testing.assert_frame_equal(runs_table_of(st_view.run_table()), runs_table(records))
            columns = st_view.provenance_values(["jobs", "preemptions"])
            assert jobs_of_provenance(columns["jobs"], columns["preemptions"]) == jobs_of_records(
                records.values()
            )
            every, recent = RuntimePredictor.from_records(records.values()), recent_records(st_view)
            assert [r.run_id for r in recent] == [r for r, rec in records.items() if rec.status == "done"]
            assert every._seen == RuntimePredictor.from_records(recent)._seen
