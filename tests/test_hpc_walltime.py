"""Walltime-safe workers on a real SLURM (sweep/hpc_prototype.py): runs longer than a job's
1-minute walltime continue from the checkpoint their worker forced before leaving.

Two runs of 140 half-second steps (70 s each) on up to two 1-core jobs: every job drains
(WalltimeGuard) before its walltime, each run hands back its state, the driver resubmits it and a
fresh job finishes it. Steps are sleeps plus a deterministic numpy update: the timing does not
depend on a shared machine's load, and the final state must equal an uninterrupted run's bits.
"""

# ruff: noqa: F811  (test arguments named after the imported `slurm` fixture)
from __future__ import annotations

import collections
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from slurm import Slurm, slurm  # noqa: F401  (the fixture; the lead moves it to conftest.py)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

WALLTIME = "00:01:00"
N_STEPS = 140
STEP_SECONDS = 0.5
GRACE = 3.0  # > one step + the checkpoint hand-back
MARGIN = 5.0  # seconds the worker must be gone before its job's walltime
STAGGER = 2.0


def step(state: np.ndarray, i: int) -> np.ndarray:
    """One deterministic 'solver step' (bits independent of where it runs)."""
    return np.sin(state * 1.000001 + i)


def fake_run(
    run_id: str, state: np.ndarray, start_step: int, n_steps: int, ledger: str, step_seconds: float
) -> Any:
    """A long run on a worker: each step sleeps, updates the state and logs itself to the
    ledger file (run, step, job, start, end) so the test can count every step executed."""
    from sweep.hpc_prototype import run_steps

    job = os.environ.get("SLURM_JOB_ID", "-")

    def timed_step(s: np.ndarray, i: int) -> np.ndarray:
        t0 = time.time()
        time.sleep(step_seconds)
        out = step(s, i)
        with open(ledger, "a") as f:
            f.write(f"{run_id} {i} {job} {t0:.3f} {time.time():.3f}\n")
        return out

    return run_steps(run_id, timed_step, state, start_step, n_steps)


def plain_task(ledger: str, n_steps: int, step_seconds: float) -> str:
    """A long task that knows nothing of walltimes: logs (job, step, worker status, time)."""
    from distributed import get_worker

    worker, job = get_worker(), os.environ.get("SLURM_JOB_ID", "-")
    for i in range(n_steps):
        with open(ledger, "a") as f:
            f.write(f"{job} {i} {worker.status.name} {time.time():.3f}\n")
        time.sleep(step_seconds)
    return job


def uninterrupted(state: np.ndarray, n: int) -> np.ndarray:
    """The reference: all ``n`` steps in this process, without interruption."""
    for i in range(n):
        state = step(state, i)
    return state


def _cluster_kwargs(slurm: Slurm, tmp_path: Path) -> dict[str, Any]:
    """SLURMCluster options shared by this module's tests: 1-core jobs of WALLTIME."""
    return {
        "cores": 1,
        "memory": "512MiB",
        "processes": 1,
        "walltime": WALLTIME,
        "queue": slurm.partition,
        "log_directory": str(tmp_path / "jobs"),
        # the job's Python imports this module's tasks from here (tasks are pickled by reference)
        "job_script_prologue": [f"export PYTHONPATH={Path(__file__).parent}"],
        "scheduler_options": {"dashboard_address": "127.0.0.1:0", "host": "127.0.0.1"},
    }


def test_plain_lifetime_restarts_a_running_task_from_zero(slurm: Slurm, tmp_path: Path) -> None:
    """Without the guard, what dask-jobqueue users see: at --lifetime the worker is removed at
    once (its status never stays closing_gracefully for a step), the scheduler reruns the task
    from its start on the next job, and the old thread runs on in the closing worker."""
    import dask.config
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    ledger = tmp_path / "steps.txt"
    ledger.touch()
    with (
        dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}),
        SLURMCluster(
            **{**_cluster_kwargs(slurm, tmp_path), "worker_extra_args": ["--lifetime", "4s"]}
        ) as cluster,
        Client(cluster) as client,
    ):
        cluster.adapt(minimum=0, maximum=1)
        fut = client.submit(plain_task, str(ledger), 60, 0.2, pure=False)

        def rows() -> list[list[str]]:
            return [line.split() for line in ledger.read_text().splitlines()]

        t0 = time.monotonic()
        while len({r[0] for r in rows() if r[1] == "0"}) < 2:
            assert time.monotonic() - t0 < 60, "the task did not start again on a second job"
            time.sleep(0.2)
        fut.cancel()
    slurm.wait_queue_empty(timeout=30)
    first_job = rows()[0][0]
    statuses = collections.Counter(r[2] for r in rows() if r[0] == first_job)
    restarted = [r for r in rows() if r[0] != first_job]
    assert restarted[0][1] == "0"  # the rerun starts from step 0: the first job's work is lost
    assert statuses["closing"] >= 2  # the old thread ran on after its worker was removed
    lost = sum(1 for r in rows() if r[0] == first_job)
    print(
        f"\nplain --lifetime: {lost} steps of the first job lost, statuses seen there "
        f"{dict(statuses)}; rerun from step {restarted[0][1]} on job {restarted[0][0]}"
    )


def test_walltime_long_runs_resume_from_forced_checkpoint(slurm: Slurm, tmp_path: Path) -> None:
    """With lifetime_args + WalltimeGuard + drive: each run is preempted at least once, every
    step runs exactly once over all jobs, the final state has the uninterrupted bits, nothing
    fails, no job is left, and the wall time stays within 1.5x the ideal for the cores."""
    import dask.config
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    from sweep.hpc_prototype import WalltimeGuard, drive, lifetime_args, parse_walltime

    ledger = tmp_path / "steps.txt"
    ledger.touch()
    runs = {f"r{k}": (np.linspace(0.0, 1.0 + k, 64), N_STEPS) for k in range(2)}
    n_jobs = 2
    config = {
        # a worker that left is replaced after 1 s, not distributed's 15 s
        "distributed.deploy.lost-worker-timeout": "1s",
        # no run waits queued behind another on a busy 1-thread worker
        "distributed.scheduler.worker-saturation": 1.0,
    }
    t0 = time.time()
    with (
        dask.config.set(config),
        SLURMCluster(
            **_cluster_kwargs(slurm, tmp_path),
            worker_extra_args=lifetime_args(WALLTIME, margin=MARGIN, stagger=STAGGER),
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(WalltimeGuard(grace=GRACE, margin=MARGIN))
        cluster.adapt(minimum=0, maximum=n_jobs)
        ledgers = drive(client, fake_run, runs, extra=(str(ledger), STEP_SECONDS))
        elapsed = time.time() - t0
        events = [msg for _, msg in client.get_events(WalltimeGuard.topic)]
    slurm.wait_queue_empty(timeout=30)

    rows = [line.split() for line in ledger.read_text().splitlines()]
    jobs_seen = {r[2] for r in rows}
    counts = collections.Counter((r[0], int(r[1])) for r in rows)
    # every step of every run executed exactly once across all jobs: nothing recomputed
    assert {k: v for k, v in counts.items() if v != 1} == {}
    assert set(counts) == {(rid, i) for rid in runs for i in range(N_STEPS)}
    for rid, led in ledgers.items():
        assert led.status == "done", (rid, led.error)
        assert led.preemptions >= 1, f"{rid} was never preempted: the test did not test"
        # each attempt resumed where the previous one stopped, on another job
        for a, b in zip(led.attempts, led.attempts[1:], strict=False):
            assert b.start_step == a.step and b.job_id != a.job_id
        np.testing.assert_array_equal(led.attempts[-1].state, uninterrupted(runs[rid][0], N_STEPS))

    # every drain ended with its runs handed back within the grace: none cut off by the close
    drains = [e for e in events if e["action"] == "drain"]
    closes = {e["worker"]: e for e in events if e["action"] == "close"}
    assert drains and all(closes[d["worker"]]["cut_off"] == 0 for d in drains)
    assert all(closes[d["worker"]]["waited"] < GRACE for d in drains)
    assert not [e for e in events if e["action"] == "not-retired"]

    # figures per walltime end: drain -> run handed back -> worker closing -> run resumed
    by_worker = {
        a.worker: (rid, k, a)
        for rid, led in ledgers.items()
        for k, a in enumerate(led.attempts)
        if a.status == "preempted"
    }
    lines = []
    for d in drains:
        if d["worker"] not in by_worker:
            continue  # a worker drained while idle
        rid, k, a = by_worker[d["worker"]]
        nxt = ledgers[rid].attempts[k + 1]
        lines.append(
            (
                a.ended - d["time"],
                closes[d["worker"]]["time"] - a.ended,
                nxt.started - closes[d["worker"]]["time"],
                nxt.started - a.ended,
                d["deadline"] - d["time"],
            )
        )
    ideal = len(runs) * N_STEPS * STEP_SECONDS / n_jobs
    print(
        f"\nwalltime test: {elapsed:.1f} s for {len(runs)} runs of {N_STEPS * STEP_SECONDS:g} s "
        f"on {n_jobs} 1-core jobs of {parse_walltime(WALLTIME):g} s (ideal {ideal:g} s, "
        f"ratio {elapsed / ideal:.2f}); {len(jobs_seen)} jobs; "
        f"{sum(led.preemptions for led in ledgers.values())} preemptions; steps recomputed 0"
    )
    for x in lines:
        print(
            f"  walltime end: drain->handed back {x[0]:.2f} s, ->worker closing {x[1]:.2f} s, "
            f"->resumed on a new job {x[2]:.1f} s (core idle {x[3]:.1f} s); "
            f"drained {x[4]:.1f} s before the deadline"
        )
    assert elapsed < 1.5 * ideal
