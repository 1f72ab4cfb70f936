"""A remote scheduler (`dask scheduler` + `dask worker` subprocesses) SIGKILLed mid-sweep:
the client says so in one line, and a rerun against a new scheduler resumes. A remote worker
SIGKILLed mid-run: the scheduler (which we did not start, so its allowed-failures is its own)
reruns the task itself, and the rerun continues from the run's latest checkpoint."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import TINY, PackageLog, tiny_sweep
from faults import Driver, RemoteCluster, assert_results_equal, records, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_fault_remote_scheduler_lost_reported_and_rerun_resumes(tmp_path: Path, packages_dir, local_client):
    # two quick HIGH runs and LOW runs of a few seconds each: the scheduler dies while one
    # of these runs (one worker thread runs them one after the other)
    pkgs = tiny_sweep(2, priorities=("HIGH",), initial_condition="random") + [
        {
            "package_id": f"long{i}",
            "priority": "LOW",
            "parameters": {**TINY, "grid": [12, 12, 12], "T_final": 2.0 + 0.1 * i},
        }
        for i in range(3)
    ]
    d = packages_dir(pkgs)
    store = tmp_path / "r.zarr"
    first = RemoteCluster(tmp_path, "first")
    try:
        address = first.start()
        drv = Driver(
            tmp_path,
            "run",
            str(d),
            "--store",
            str(store),
            "--scheduler",
            address,
            "--no-progress",
            "--checkpoint-every-steps",
            "10",
        )
        logs = [PackageLog(tmp_path / "r.zarr.logs", f"long{i}") for i in range(3)]

        def checkpointed() -> str | None:  # the driver notes each checkpoint it saves
            return next((p.stem for p in logs if p.exists() and "checkpoint at step" in p.read_text()), None)

        victim = wait_for(checkpointed, proc=drv, what="a checkpoint of a long run")
        first.kill_scheduler()
        killed = time.monotonic()
        code = drv.wait(timeout=180)
        reported_after = time.monotonic() - killed
    finally:
        first.stop()
    err = drv.stderr
    assert code == 1, drv.output()
    assert "Traceback" not in err, err
    (line,) = err.strip().splitlines()  # one line
    assert line.startswith(
        f"sweep run: error: lost the connection to the Dask scheduler (remote scheduler {address})"
    )
    assert "run the same command again" in line and str(store) in line
    # at once, not after distributed's 30 s of reconnection attempts (a checkpoint fetch
    # under way when the scheduler died used to wait for them)
    assert reported_after < 25, f"lost scheduler reported {reported_after:.0f} s after its death"
    done_before = {k for k, r in records(store).items() if r.status == "done"}
    # what finished before the loss is committed; the checkpointed run is not done
    assert (victim,) not in {r.package_ids for r in records(store).values() if r.status == "done"}

    second = RemoteCluster(tmp_path, "second")
    try:
        address2 = second.start()
        assert address2 != address
        drv = Driver(tmp_path, "run", str(d), "--store", str(store), "--scheduler", address2, "--no-progress")
        assert drv.wait(timeout=180) == 0, drv.output()
    finally:
        second.stop()
    assert f"{5 - len(done_before)} to run, {len(done_before)} skipped as already done" in drv.stdout
    recs = records(store)
    assert len(recs) == 5 and {r.status for r in recs.values()} == {"done"}
    (resumed,) = [r for r in recs.values() if r.package_ids == (victim,)]
    assert resumed.resumed_from_step is not None and resumed.resumed_from_step >= 10

    from sweep.engine import run_sweep

    clean = tmp_path / "clean.zarr"
    assert run_sweep(d, clean, client=local_client, progress_bar=False, out=io.StringIO()).exit_code == 0
    assert_results_equal(clean, store)


def test_fault_remote_lost_worker_rerun_by_the_scheduler_resumes_from_the_checkpoint(
    tmp_path: Path, packages_dir, local_client
):
    """Issue 18 item 16: before, the scheduler's own rerun of the task started from step 0 although
    a checkpoint was saved; now the rerun finds the relay's newest checkpoint and continues."""
    pkgs = [{"package_id": "long", "priority": "HIGH", "parameters": {**TINY, "T_final": 4.0}}]
    d = packages_dir(pkgs)
    store = tmp_path / "r.zarr"
    # 400 steps of at least 20 ms: ~8 s, a checkpoint every 50 steps
    cluster = RemoteCluster(tmp_path, "lost-worker", worker_env={"NS_SWEEP_TEST_STEP_SECONDS": "0.02"})
    try:
        address = cluster.start()
        drv = Driver(
            tmp_path,
            "run",
            str(d),
            "--store",
            str(store),
            "--scheduler",
            address,
            "--no-progress",
            "--checkpoint-every-steps",
            "50",
        )
        log = PackageLog(tmp_path / "r.zarr.logs", "long")  # the store's own logs

        def saved_step() -> int | None:
            steps = [
                int(line.split("checkpoint at step ")[1].split()[0])
                for line in (log.read_text().splitlines() if log.exists() else [])
                if "checkpoint at step " in line
            ]
            return max(steps) if steps and max(steps) >= 100 else None

        step = wait_for(saved_step, proc=drv, what="a checkpoint at step 100 or later")
        from distributed import Client

        with Client(address, timeout="30s") as c:
            (pid,) = c.run(os.getpid).values()  # the worker process (its nanny restarts it)
        os.kill(pid, signal.SIGKILL)
        assert drv.wait(timeout=120) == 0, drv.output()
    finally:
        cluster.stop()
    (rec,) = records(store).values()
    assert rec.status == "done" and rec.resumed_from_step is not None and rec.resumed_from_step >= step
    text = log.read_text()
    assert "in the relay: this is a rerun after a lost worker" in text
    assert f"resuming from the checkpoint at step {rec.resumed_from_step}" in text

    from sweep.engine import run_sweep

    clean = tmp_path / "clean.zarr"
    assert run_sweep(d, clean, client=local_client, progress_bar=False, out=io.StringIO()).exit_code == 0
    assert_results_equal(clean, store)
