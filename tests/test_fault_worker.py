"""Worker faults on a real LocalCluster with nannies: a worker process SIGKILLed mid-run, and
a diverging run (a failure of the run itself, never retried)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import TINY, PackageLog, tiny_sweep
from faults import assert_results_equal, records, started_on, wait_for, worker_pids

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def client2():
    """Two single-threaded worker processes under nannies, configured as the engine's own
    clusters are: a lost worker fails its task at once, so the engine resubmits the run with
    its latest checkpoint (instead of the scheduler rerunning it from the start)."""
    import dask.config
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    with cluster, Client(cluster) as client:
        yield client


def _set_step_seconds(value: str) -> None:
    """Run on every worker: slow each solver step (sweep.faults.STEP_ENV); "" restores full speed."""
    from sweep.faults import STEP_ENV

    os.environ[STEP_ENV] = value


def _sweep(d: Path, store: Path, client, **kw):
    from sweep.engine import run_sweep

    return run_sweep(d, store, client=client, progress_bar=False, out=io.StringIO(), **kw)


def test_fault_worker_killed_mid_run_retried_resumed_identical(tmp_path: Path, packages_dir, client2):
    # 300 steps: the kill lands long before the end even on a fast machine
    victim = {**TINY, "grid": [12, 12, 12], "T_final": 3.0, "initial_condition": "random"}
    pkgs = [
        {"package_id": "victim", "priority": "HIGH", "parameters": victim},
        *tiny_sweep(3, priorities=("LOW",), initial_condition="random"),
    ]
    d = packages_dir(pkgs)
    logs = tmp_path / "logs"
    log = PackageLog(logs, "victim")
    killed: dict[str, int] = {}
    failure: list[BaseException] = []

    def kill_its_worker() -> None:
        try:  # once the driver saved a checkpoint, SIGKILL the process running the victim
            # the start event and the checkpoints reach the log on different paths: wait for both
            wait_for(
                lambda: log.exists() and "checkpoint at step" in (t := log.read_text()) and started_on(t),
                what="the victim's start and a checkpoint of it",
            )
            address = started_on(log.read_text())[0]
            pid = worker_pids(client2)[address]
            os.kill(pid, signal.SIGKILL)
            killed[address] = pid
        except BaseException as exc:  # reported by the test below
            failure.append(exc)

    killer = threading.Thread(target=kill_its_worker, daemon=True)
    killer.start()
    store = tmp_path / "r.zarr"
    # steps of at least 10 ms (numbers untouched): a loaded machine's killer still finds the victim running
    client2.run(_set_step_seconds, "0.01")
    try:
        res = _sweep(d, store, client2, checkpoint_every_steps=10, retries=2, log_dir=logs)
    finally:
        client2.run(_set_step_seconds, "")
    killer.join(timeout=60)
    assert not failure, failure
    ((address, pid),) = killed.items()

    # the victim, and any run queued on the same worker, were resubmitted
    assert res.exit_code == 0 and res.retries >= 1
    assert res.counts["done"] == 4
    rec = next(r for r in records(store).values() if r.package_ids == ("victim",))
    assert rec.status == "done" and rec.attempts == 2
    assert rec.resumed_from_checkpoint and rec.resumed_from_step >= 10
    text = log.read_text()
    assert "worker lost" in text and "retrying from its checkpoint (step" in text
    attempts = started_on(text)
    assert len(attempts) == 2 and attempts[1] != address  # retried on another worker process
    # the nanny replaced the killed process: two workers again, none of them the dead one
    wait_for(lambda: len(worker_pids(client2)) == 2, timeout=60, what="the nanny to restart the worker")
    assert pid not in worker_pids(client2).values()

    clean = tmp_path / "clean.zarr"
    assert _sweep(d, clean, client2).exit_code == 0
    assert_results_equal(clean, store)  # bit for bit, as if nothing had happened


def test_fault_worker_diverging_run_reported_never_retried(tmp_path: Path, packages_dir, client2):
    pkgs = tiny_sweep(2)
    pkgs[0]["parameters"] = {**TINY, "cfl_limit": 0.001}  # stops at its first CFL check
    d = packages_dir(pkgs)
    store = tmp_path / "r.zarr"
    res = _sweep(d, store, client2, retries=2, log_dir=tmp_path / "logs")
    assert res.exit_code == 1
    assert res.status == {"p000": "diverged", "p001": "done"}
    assert res.retries == 0
    rec = next(r for r in records(store).values() if r.package_ids == ("p000",))
    assert rec.status == "failed" and rec.failure_class == "diverged" and rec.attempts == 1
    assert "CFL" in rec.error
    text = PackageLog(tmp_path / "logs", "p000").read_text()
    assert len(started_on(text)) == 1 and "status: diverged" in text
    assert "worker lost" not in text


def test_fault_worker_frozen_restarted_while_other_results_are_committed(
    tmp_path: Path, packages_dir, client2
):
    """The watchdog restarts a frozen worker in the background: the other worker's results
    keep being committed while the restart runs, and the sweep ends with both workers back."""
    import dask.config

    stuck = {
        "package_id": "stuck",
        "priority": "HIGH",
        "parameters": {**TINY, "grid": [16, 16, 16], "T_final": 500.0},
    }
    # ~10 s of runs for the other worker (100 steps of 8^3, ~40 ms each with the numba
    # kernels): some are left when the watchdog fires at ~2.5 s, even if the solver gets
    # twice as fast or the other worker is quicker than this one
    n_quick = 240
    d = packages_dir([stuck, *tiny_sweep(n_quick, priorities=("LOW",), T_final=1.0)])
    logs = tmp_path / "logs"
    log = PackageLog(logs, "stuck")
    frozen: list[int] = []

    def freeze() -> None:
        wait_for(lambda: log.exists() and " started on " in log.read_text(), what="the stuck run")
        pid = worker_pids(client2)[started_on(log.read_text())[0]]
        os.kill(pid, signal.SIGSTOP)
        frozen.append(pid)

    t = threading.Thread(target=freeze, daemon=True)
    t.start()
    try:
        with dask.config.set({"sweep.timeout-grace": 0.5, "sweep.tick": 0.1}):
            res = _sweep(d, tmp_path / "r.zarr", client2, timeout=2.0, log_dir=logs)
    finally:
        t.join(timeout=60)
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:  # the restart killed it
                pass
    assert frozen, "the stuck run never started"
    assert res.status["stuck"] == "timeout" and res.counts["done"] == n_quick
    main = (logs / "sweep.log").read_text().splitlines()
    gave_up = next(i for i, ln in enumerate(main) if "stuck: no result" in ln)
    restarted = next(i for i, ln in enumerate(main) if "restart of " in ln)
    assert any(": done in " in ln for ln in main[gave_up:restarted]), (
        "no result committed while the worker restarted"
    )
    # the sweep waited for the restart: both workers are back, the frozen one replaced
    assert len(worker_pids(client2)) == 2 and frozen[0] not in worker_pids(client2).values()


# ------------------------------------------- workers killed as the cluster starts (issue 18, 13)


def _worker_processes(pid: int) -> list:
    """The worker processes a `sweep run` driver spawned (its nannies live in the driver)."""
    import psutil

    try:
        return [p for p in psutil.Process(pid).children() if "spawn_main" in " ".join(p.cmdline())]
    except psutil.Error:
        return []


def _sweep_args(d: Path, store: Path, mode: str = "parallel") -> tuple[str, ...]:
    return ("run", str(d), "--store", str(store), "--mode", mode, "--max-parallel", "2", "--no-progress")


def test_fault_worker_killed_while_the_local_cluster_starts_is_started_again(tmp_path: Path, packages_dir):
    import psutil
    from faults import Driver

    d = packages_dir(tiny_sweep(4))
    drv = Driver(tmp_path, *_sweep_args(d, tmp_path / "r.zarr"), name="killed-worker-at-start")
    killed = []
    try:  # the first worker process, as soon as it exists: the cluster is still starting
        wait_for(lambda: _worker_processes(drv.pid), proc=drv, what="a worker process", every=0.002)
        victim = _worker_processes(drv.pid)[0]
        with contextlib.suppress(psutil.Error):
            victim.kill()
            killed.append(victim.pid)
        code = drv.wait()
    finally:
        drv.cleanup()
    assert killed
    assert code == 0, drv.output()
    assert "Traceback" not in drv.stderr and "lost the connection" not in drv.stderr, drv.stderr
    assert {r.status for r in records(tmp_path / "r.zarr").values()} == {"done"}


def test_fault_worker_killed_right_after_the_cluster_started_is_no_lost_scheduler(
    tmp_path: Path, packages_dir
):
    from faults import Driver, pause_env

    d = packages_dir(tiny_sweep(4))
    env, flag = pause_env(tmp_path, "cluster-started", seconds=0.01)
    drv = Driver(tmp_path, *_sweep_args(d, tmp_path / "r.zarr"), env=env, name="killed-worker-after-start")
    try:
        wait_for(
            lambda: flag.exists() and flag.read_text().strip(), proc=drv, what="the cluster", every=0.002
        )
        os.kill(_worker_processes(drv.pid)[0].pid, signal.SIGKILL)
        code = drv.wait()
    finally:
        drv.cleanup()
    assert code == 0, drv.output()
    assert "Traceback" not in drv.stderr and "lost the connection" not in drv.stderr, drv.stderr
    assert {r.status for r in records(tmp_path / "r.zarr").values()} == {"done"}


def test_fault_worker_that_never_starts_is_one_true_line(tmp_path: Path, packages_dir):
    from faults import Driver

    d = packages_dir(tiny_sweep(2))
    drv = Driver(tmp_path, *_sweep_args(d, tmp_path / "r.zarr", "sequential"), name="never-starts")
    try:  # every worker process dies as soon as it exists (as when each runs out of memory)
        while drv.popen.poll() is None:
            for p in _worker_processes(drv.pid):
                with contextlib.suppress(Exception):
                    p.kill()
            time.sleep(0.003)
        code = drv.wait()
    finally:
        drv.cleanup()
    assert code == 1, drv.output()
    (line,) = drv.stderr.strip().splitlines()
    assert line.startswith("sweep run: error: cannot start the local Dask cluster (3 attempts"), line
    assert "nothing ran" in line
