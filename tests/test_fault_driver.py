"""The driver (`sweep run`) stopped with Ctrl-C, then SIGKILLed at named moments before,
during and after store writes, each time run again: the run continues from its checkpoint,
and the store ends equal to a clean sweep's.

One store goes through the whole sequence, as it would on a cluster that keeps killing the
driver: each rerun starts from what the previous kill left behind.
"""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path

import pytest
from conftest import TINY, tiny_sweep
from faults import (
    Driver,
    assert_results_equal,
    checkpoint_steps,
    partial_files,
    records,
    run_and_kill_at,
    run_digest,
    tree_digest,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# 300 steps of 16^3 (~0.5 s with the numba kernels), a checkpoint every 10: however late
# the driver saves one, later ones follow (step 1b needs one more), and still cheap
SLOW = {**TINY, "grid": [16, 16, 16], "T_final": 3.0, "initial_condition": "random"}


def _packages(n_quick: int) -> list[dict]:
    quick = tiny_sweep(n_quick, priorities=("HIGH", "LOW"), initial_condition="random")
    return [*quick, {"package_id": "slow", "priority": "MEDIUM", "parameters": SLOW}]


def _run_id(d: Path, package_id: str) -> str:
    from sweep.spec import load_packages

    return next(p.run_id for p in load_packages(d) if p.package_id == package_id)


def _done(store: Path) -> set[str]:
    return {k for k, r in records(store).items() if r.status == "done"}


# the two store layouts a run can have: packed (the default for runs without final fields:
# its log record is its marker) and a zarr group of its own (data, then marker, then record)
LAYOUTS = {"packed": {}, "groups": {"DASK_SWEEP__STORE__PACK_BYTES": "0"}}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_fault_driver_sigkill_before_during_after_store_writes(
    tmp_path: Path, packages_dir, local_client, layout: str
):
    # each kill is at the first time the named run reaches the point (runs of equal
    # priority start in any order)
    env = LAYOUTS[layout]
    grouped = layout == "groups"
    d = packages_dir(_packages(3))
    store = tmp_path / "r.zarr"
    args = (
        "run",
        str(d),
        "--store",
        str(store),
        "--mode",
        "sequential",
        "--no-progress",
        "--checkpoint-every-steps",
        "10",
    )
    slow = _run_id(d, "slow")

    # steps 1 and 1b wait for a checkpoint the driver saves while the slow run still runs: its
    # steps are slowed (3 ms each: ~1 s in all) so a loaded machine cannot finish it first
    slowed = {**env, "NS_SWEEP_TEST_STEP_SECONDS": "0.003"}

    # 1. stopped with Ctrl-C right after a checkpoint was saved: the store keeps it
    stopped = run_and_kill_at(tmp_path, f"after-checkpoint@{slow}", *args, sig=signal.SIGINT, env=slowed)
    assert "interrupted; finished runs are kept, run again to resume" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert checkpoint_steps(store)[slow] >= 10
    assert slow not in records(store)
    from sweep.engine import run_sweep

    plan = {e.package_id: e for e in run_sweep(d, store, dry_run=True, out=io.StringIO()).plan}
    assert plan["slow"].action == "run" and "resumes from its checkpoint at step" in plan["slow"].reason

    # 1b. during a checkpoint write: the new checkpoint's data written, the pointer to it not;
    # the previous checkpoint stays the one that counts, whole
    step = checkpoint_steps(store)[slow]
    run_and_kill_at(tmp_path, f"checkpoint-before-pointer@{slow}", *args, env=slowed)
    assert checkpoint_steps(store)[slow] == step
    from sweep.store import Store

    with Store.open(str(store)) as st:
        assert int(st.load_checkpoint(slow)["step"][0]) == step

    # 2. before a store write: the run finished (resumed), its result not yet committed
    run_and_kill_at(tmp_path, f"before-commit@{slow}", *args, env=env)
    assert slow not in records(store) and slow in checkpoint_steps(store)

    # 3. during a store write: the run's data written, its done marker not
    killed = run_and_kill_at(tmp_path, f"before-marker@{slow}", *args, env=env)
    # a group: its data are there without the marker; packed: nothing before its record
    assert (store / "runs" / slow / "energy" / "zarr.json").exists() is grouped
    assert slow not in records(store)  # a partial run is not a result
    assert json.loads((store / "lock.json").read_text())["pid"] == killed.pid  # stale lock
    digest = (
        (lambda rid: tree_digest(store / "runs" / rid)) if grouped else (lambda rid: run_digest(store, rid))
    )
    others = {rid: digest(rid) for rid in _done(store)}
    assert others  # HIGH runs go first

    # 4. after a store write: committed, its checkpoint not yet dropped. This rerun took the
    # dead driver's lock over and redid the partial run; the other runs are untouched
    drv = run_and_kill_at(tmp_path, f"after-commit@{slow}", *args, env=env)
    assert f"taking over the write lock left by pid {killed.pid}" in drv.stderr
    assert slow in _done(store)
    rec = records(store)[slow]
    assert rec.resumed_from_checkpoint and rec.resumed_from_step >= 10
    assert {rid: digest(rid) for rid in others} == others
    assert slow in checkpoint_steps(store)

    # 5. a package added to the sweep, killed between its done marker and its index record
    d = packages_dir(_packages(4))  # same ids and parameters, plus p003
    last = _run_id(d, "p003")
    run_and_kill_at(tmp_path, f"before-log@{last}", *args, env=env)
    assert last in _done(store)  # the marker counts; the next writer indexes it again

    # 6. the rerun finishes what is left (LOW runs may not have run yet); the orphaned
    # checkpoint is dropped
    n_done = len(_done(store))
    final = Driver(tmp_path, *args, name="final", env=env)
    assert final.wait() == 0, final.output()
    assert f"{5 - n_done} to run, {n_done} skipped as already done" in final.stdout
    assert checkpoint_steps(store) == {}
    assert partial_files(store) == []
    clean = tmp_path / "clean.zarr"
    assert run_sweep(d, clean, client=local_client, progress_bar=False, out=io.StringIO()).exit_code == 0
    assert_results_equal(clean, store)


# ------------------------------------------------------------------ stop signals (issue 18, 14-15)

# ~3,000 steps of 16^3 (seconds): still running when the signal comes
LONG = {**TINY, "grid": [16, 16, 16], "T_final": 30.0, "initial_condition": "random"}


def _long_sweep(packages_dir) -> Path:
    return packages_dir([{"package_id": "long", "priority": "HIGH", "parameters": LONG}, *tiny_sweep(2)])


def _wait_until_long_runs(tmp_path: Path, drv: Driver) -> None:
    from conftest import PackageLog
    from faults import wait_for

    log = PackageLog(tmp_path / "r.zarr.logs", "long")  # the store's own logs
    wait_for(lambda: "started on" in log.read_text(), proc=drv, what="the long run to start")


def _lock_free(store: Path) -> bool:
    import fcntl
    import os

    fd = os.open(store / "lock.json", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "sig, code, how", [(signal.SIGTERM, 143, "stopped by SIGTERM"), (signal.SIGHUP, 129, "stopped by SIGHUP")]
)
def test_fault_driver_sigterm_sighup_stop_cleanly_checkpoint_and_resume(
    tmp_path: Path, packages_dir, local_client, sig, code, how
):
    import os
    import time

    d = _long_sweep(packages_dir)
    store = tmp_path / "r.zarr"
    args = ("run", str(d), "--store", str(store), "--mode", "sequential", "--no-progress")
    # a grace longer than the default 10 s: a loaded machine's worker may need more to answer
    # (twice it did not, and no checkpoint was saved); a stop still ends well within it
    grace = {"DASK_SWEEP__INTERRUPT_GRACE": "40"}
    drv = Driver(tmp_path, *args, name=f"stopped-by-{sig.name}", env=grace)
    try:
        _wait_until_long_runs(tmp_path, drv)
        t0 = time.monotonic()
        os.killpg(drv.pid, sig)  # as a batch system (every process of the job) or a closed terminal
        assert drv.popen.wait(timeout=90) == code, drv.output()
        took = time.monotonic() - t0
    finally:
        drv.cleanup()
    assert took < 60, took
    assert drv.stderr.strip().splitlines() == [
        f"sweep run: {how}; finished runs are kept, run again to resume"
    ]
    assert "saving checkpoints of 1 running run(s)" in drv.stdout
    long_id = _run_id(d, "long")
    # the default checkpoint interval (300 s) did not pass: this checkpoint was asked for by the stop
    steps = checkpoint_steps(store)
    assert long_id in steps, drv.output()
    step = steps[long_id]
    assert step > 0
    assert _lock_free(store) and (store / "lock.json").read_bytes() == b""  # released cleanly
    again = Driver(tmp_path, *args, name="after-stop")
    assert again.wait() == 0, again.output()
    rec = records(store)[long_id]
    assert rec.status == "done" and rec.resumed_from_step == step
    from sweep.engine import run_sweep

    clean = tmp_path / "clean.zarr"
    assert run_sweep(d, clean, client=local_client, progress_bar=False, out=io.StringIO()).exit_code == 0
    assert_results_equal(clean, store)
    assert checkpoint_steps(store) == {} and partial_files(store) == []


def _still_running(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Those of ``pids`` still running (not gone, not a zombie) after at most ``timeout`` s: a
    SIGKILLed process takes a moment to be torn down by the kernel (a CI run saw one there)."""
    import contextlib

    import psutil

    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    running = []
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.status() != psutil.STATUS_ZOMBIE:
                running.append(p.pid)
    return running


def test_fault_driver_second_ctrl_c_stops_at_once(tmp_path: Path, packages_dir):
    import os
    import time

    import psutil
    from faults import pause_env, wait_for

    d = _long_sweep(packages_dir)
    store = tmp_path / "r.zarr"
    env, flag = pause_env(tmp_path, "stopping", seconds=300)  # a first stop that takes long
    drv = Driver(
        tmp_path, "run", str(d), "--store", str(store), "--mode", "sequential", "--no-progress", env=env
    )
    try:
        _wait_until_long_runs(tmp_path, drv)
        workers = [p.pid for p in psutil.Process(drv.pid).children(recursive=True)]
        os.killpg(drv.pid, signal.SIGINT)  # Ctrl-C: the terminal's process group
        wait_for(lambda: flag.exists() and flag.read_text().strip(), proc=drv, what="the first stop")
        t0 = time.monotonic()
        os.killpg(drv.pid, signal.SIGINT)  # and again
        assert drv.popen.wait(timeout=30) == 130, drv.output()
        took = time.monotonic() - t0
    finally:
        drv.cleanup()
    assert took < 5, took
    (line,) = drv.stderr.strip().splitlines()
    assert line.startswith("sweep: SIGINT again: stopped at once"), drv.stderr
    assert not _still_running(workers)
    assert _lock_free(store)
