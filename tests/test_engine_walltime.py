"""The parts of the HPC queue modes that need no batch system: walltime forms, worker lifetimes,
squeue's time left, the solver's stop with a forced checkpoint (bit-identical resume), the
runtime prediction, the scaling and lifetime-vs-prediction policies, the queue options' checks,
the guard on a real LocalCluster worker, and the driver holding back a run a leaving worker
declined until that worker is gone. The SLURM tests (test_hpc_*.py) cover the rest."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY
from faults import records, wait_for

from sweep.engine.jobqueue import check_queue_values, jobs_needed
from sweep.engine.predict import RuntimePredictor, run_size
from sweep.engine.scaling import wanted_workers
from sweep.engine.walltime import declines, lifetime_args, parse_time_left
from sweep.units import format_walltime, parse_walltime


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:01:00", 60), ("1:30", 90), ("12:00:00", 43200), ("2-00:00:01", 172801), ("0:05", 5)],
)
def test_walltime_parse_accepts_slurm_and_pbs_forms(text: str, seconds: float) -> None:
    assert parse_walltime(text) == seconds
    assert parse_walltime(format_walltime(seconds)) == seconds


@pytest.mark.parametrize("bad", ["1h", "90", "", "1:2:3:4", "-1:00"])
def test_walltime_parse_names_the_bad_value_and_the_allowed_forms(bad: str) -> None:
    with pytest.raises(ValueError, match=rf"bad walltime '{bad}'; allowed: HH:MM:SS, MM:SS or D-HH:MM:SS"):
        parse_walltime(bad)


def test_walltime_lifetime_args_end_a_quarter_margin_before_the_walltime() -> None:
    assert lifetime_args(3600, margin=120, stagger=60) == ["--lifetime", "3510s", "--lifetime-stagger", "60s"]
    assert lifetime_args(60.0, margin=8) == ["--lifetime", "58s"]
    with pytest.raises(ValueError, match="leaves no lifetime"):
        lifetime_args(60, margin=200, stagger=10)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("59", 59),
        ("4:59", 299),
        ("1:00:00", 3600),
        ("1-00:00:00", 86400),
        ("UNLIMITED", None),
        ("INVALID", None),
    ],
)
def test_walltime_parse_time_left_reads_squeue_percent_l(text: str, seconds: float | None) -> None:
    assert parse_time_left(text) == seconds


def test_walltime_solver_stop_hands_back_a_state_that_resumes_bit_identically() -> None:
    from solver.errors import SolverStopped
    from solver.simulate import run_simulation

    p = {"Re": 100.0, "dt": 0.01, "T_final": 0.2, "grid": [8, 8, 8]}
    ref = run_simulation(p).to_dataset()
    asked = []

    def stop() -> bool:  # the worker starts leaving while step 7 runs
        asked.append(1)
        return len(asked) > 7

    with pytest.raises(SolverStopped, match="stopped on request at step 7") as info:
        run_simulation(p, stop=stop)
    state = info.value.state
    assert state.step == 7 and len(asked) == 8  # asked before every step, no step lost
    again = run_simulation(p, resume=state).to_dataset()
    for name in ref.variables:
        assert ref[name].values.tobytes() == again[name].values.tobytes(), name


def test_predict_learns_seconds_per_grid_point_step_by_solver_grid_and_precision() -> None:
    small = {"grid": [8, 8, 8], "dt": 0.01, "T_final": 1.0, "precision": "float64"}
    big = {**small, "grid": [16, 16, 16]}
    f32 = {**small, "precision": "float32"}
    pred = RuntimePredictor()
    guess = pred.predict(small)
    assert pred.rate(small)[1] == "first guess" and 0 < guess < 10
    assert run_size(small).point_steps == 512 * 100
    pred.observe(small, 4.0)  # 4 s for 100 steps of 8^3
    pred.observe({**small, "T_final": 0.5}, 1.0)  # and 1 s for 50: 5 s / 150 steps in all
    assert pred.rate(small) == (pytest.approx(5.0 / (512 * 150)), "measured")
    assert pred.predict(small) == pytest.approx(5.0 / 150 * 100)
    assert pred.predict(small, steps_left=30) == pytest.approx(5.0 / 150 * 30)
    # another grid of the same solver and precision: the model's shape, the measured speed
    rate, how = pred.rate(big)
    assert how == "scaled from other grids"
    assert rate / pred.rate(small)[0] == pytest.approx(
        RuntimePredictor().rate(big)[0] / RuntimePredictor().rate(small)[0]
    )
    assert pred.rate(f32)[1] == "first guess"  # float32 learns nothing from float64
    pred.observe_progress(run_size(f32), 1.0, 50)  # a float32 run under way: 50 steps in 1 s
    assert pred.rate(f32) == (pytest.approx(1.0 / (512 * 50)), "measured on runs under way")


def test_scaling_wants_a_worker_per_run_left_within_the_jobs_and_the_work() -> None:
    assert wanted_workers(0, 100.0, 8, 30) == 0  # nothing left: no job
    assert wanted_workers(3, None, 8, 30) == 3  # one per run (unknown work: no cap)
    assert wanted_workers(20, None, 8, 30) == 8  # at most --jobs x processes
    assert wanted_workers(20, 5.0, 8, 30) == 1  # 5 s of tiny runs: one job is plenty
    assert wanted_workers(20, 95.0, 8, 30) == 4  # each job busy for at least its start-up
    assert jobs_needed(130, 50) == 3 and jobs_needed(10, 50) == 1


def test_scaling_lifetime_policy_declines_only_runs_a_fresh_job_would_serve_better() -> None:
    fresh = 3000.0
    assert declines(predicted=600, left=100, fresh=fresh, fit=0.25)  # 100 < 150 and < 750
    assert not declines(predicted=300, left=100, fresh=fresh, fit=0.25)  # a third of the run: go
    assert not declines(predicted=90, left=100, fresh=fresh, fit=0.25)  # finishes here
    assert not declines(predicted=6000, left=1000, fresh=fresh, fit=0.25)  # a third of a job: go
    assert not declines(predicted=600, left=100, fresh=fresh, fit=0.0)  # policy off
    assert not declines(predicted=None, left=100, fresh=fresh, fit=0.25)  # unknown: start


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"walltime": "1h"}, r"^walltime: bad value '1h'; allowed: HH:MM:SS, MM:SS or D-HH:MM:SS"),
        ({"job_memory": "lots"}, r"^job_memory: bad value 'lots'; allowed: a size such as 4GiB"),
        ({"job_cores": "0"}, r"^job_cores: bad value '0'; allowed: an integer >= 1$"),
        ({"jobs": "many"}, r"^jobs: bad value 'many'; allowed: an integer >= 1$"),
        ({"queue": "debug\n#SBATCH --x"}, r"^queue: bad value .*; allowed: a non-empty value on one line"),
        ({"job_extra": "--exclusive 'unclosed"}, r"^job_extra: bad value .*; allowed: directives in shell"),
    ],
)
def test_queue_options_name_the_option_the_value_and_what_is_allowed(values: dict, message: str) -> None:
    from sweep.errors import ConfigError

    args = {"walltime": None, "job_cores": None, "job_memory": None, "queue": None, "account": None}
    args |= {"job_extra": None, "jobs": 2} | values
    with pytest.raises(ConfigError, match=message):
        check_queue_values(**args)


def test_queue_options_refused_outside_a_queue_mode() -> None:
    from sweep import SweepOptions
    from sweep.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^jobs: bad value 3; allowed: only with a queue mode"):
        SweepOptions(mode="parallel", jobs=3)
    opts = SweepOptions(mode="slurm", jobs=3, walltime="01:00:00", job_memory="4GiB", job_extra="--exclusive")
    assert (opts.jobs, opts.walltime, opts.job_memory, opts.job_extra) == (
        3,
        3600.0,
        "4GiB",
        ("--exclusive",),
    )


@pytest.mark.cluster
def test_guard_declines_a_long_run_on_a_worker_near_its_end_and_stops_a_running_one(tmp_path: Path) -> None:
    """On a real LocalCluster worker whose guard is told its job ends in a few seconds: a run
    predicted to outlive it is declined at once (nothing computed), a short one runs, and a run
    under way when the drain starts stops with a forced checkpoint that resumes bit-identically."""
    from distributed import Client, LocalCluster

    from sweep.codec import decode_arrays
    from sweep.engine.walltime import WalltimeGuard
    from sweep.engine.worker import WorkItem, run_package

    params = {"Re": 100.0, "dt": 0.01, "T_final": 0.3, "grid": [8, 8, 8]}
    slow_params = {**params, "T_final": 1.0}

    def item(pid: str, predicted: float, p: dict = params, **kw: object) -> WorkItem:
        return WorkItem(pid, pid, "HIGH", p, 600.0, predicted_seconds=predicted, fresh_life=100.0, **kw)

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        end = time.time() + 10.0
        # drains 3 s before the deadline, the deadline 1 s before the job's end: at end - 4 s
        client.register_plugin(WalltimeGuard(margin=4.0, job_end=lambda: end))
        time.sleep(0.5)  # the guard reads its job's end in a thread when it starts
        declined = client.submit(run_package, item("long", 600.0, lifetime_fit=0.25), pure=False).result()
        assert declined.status == "declined" and "predicted to need 600 s" in declined.error
        assert declined.provenance["seconds"] == 0.0
        short = client.submit(run_package, item("short", 1.0, lifetime_fit=0.25), pure=False).result()
        assert short.status == "done"
        # a slow run (100 steps of 0.1 s) under way when the drain starts at end - 4 s
        client.run(lambda: __import__("os").environ.__setitem__("NS_SWEEP_TEST_STEP_SECONDS", "0.1"))
        slow = client.submit(run_package, item("slow", 1.0, slow_params), pure=False)
        stopped = slow.result(timeout=60)
        assert time.time() < end
    assert stopped.status == "preempted" and 0 < stopped.provenance["to_step"] < 100
    from solver import State
    from solver.simulate import run_simulation

    state = State.from_arrays(decode_arrays(stopped.checkpoint))
    assert state.step == stopped.provenance["to_step"]
    ref = run_simulation(slow_params).to_dataset()
    resumed = run_simulation(slow_params, resume=state).to_dataset()
    for name in ref.variables:
        assert ref[name].values.tobytes() == resumed[name].values.tobytes(), name
    assert np.isfinite(stopped.provenance["seconds"])


@pytest.mark.cluster
def test_a_run_declined_by_a_leaving_worker_waits_until_that_worker_is_gone(
    tmp_path: Path, packages_dir
) -> None:
    """A draining worker the scheduler keeps (it holds a result's only copy, so its retirement
    is aborted) declines every run sent to it ("its worker is leaving"). The driver holds such
    a run back until that worker is gone, then it runs on the worker that replaced it: one
    decline, two attempts. (Resubmitted at once, it went straight back to the leaving worker
    for as long as it stayed, an attempt each time: ~50 in one CI run.)"""
    from distributed import Client, LocalCluster

    from sweep.engine import run_sweep
    from sweep.engine.recovery import PARK_SECONDS
    from sweep.engine.walltime import WalltimeGuard
    from sweep.engine.worker import KernelWarmUp

    d = packages_dir([{"package_id": "p", "priority": "HIGH", "parameters": TINY}])
    store, logs = tmp_path / "s.zarr", tmp_path / "logs"
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(KernelWarmUp())  # compiled before the window below opens
        end = time.time() + 16.0
        # drains at end - 12 s, leaves at end - 3 s (its deadline): 9 s for the sweep to start
        # and send it the run, and less than PARK_SECONDS from then (so the run is resubmitted
        # because the worker is gone, not because it waited too long)
        client.register_plugin(WalltimeGuard(margin=12.0, job_end=lambda: end))
        held = client.submit(np.arange, 10, pure=False)  # a result only this worker holds
        held.result()
        (first,) = client.scheduler_info()["workers"]

        def draining(dask_worker: Any = None) -> bool:
            guard = dask_worker.plugins[WalltimeGuard.name]
            return guard.draining is not None and guard.draining.is_set()

        wait_for(lambda: client.run(draining)[first], timeout=30, what="the worker's drain")
        assert first in client.scheduler_info()["workers"]  # kept: it holds the only copy of `held`

        def replace() -> None:  # once the leaving worker is gone, a fresh one (with no guard) joins
            wait_for(lambda: first not in client.scheduler_info()["workers"], timeout=60, what="its leaving")
            client.unregister_worker_plugin(WalltimeGuard.name)
            cluster.scale(2)

        joiner = threading.Thread(target=replace, daemon=True)
        joiner.start()
        t0 = time.monotonic()
        result = run_sweep(d, store, client=client, progress_bar=False, out=io.StringIO(), log_dir=logs)
        took = time.monotonic() - t0
        joiner.join(timeout=60)
        assert result.exit_code == 0
    (rec,) = records(store).values()
    assert rec.status == "done" and rec.attempts == 2, rec.attempts
    log = (logs / "sweep.log").read_text()
    assert log.count("p: not started on") == 1 and "its worker is leaving" in log, log
    assert log.count(f"p: held back until {first} is gone") == 1, log
    assert rec.provenance["worker"] != first
    assert took < PARK_SECONDS + 20, took
