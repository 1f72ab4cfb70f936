"""run_sweep through the Python API on a real one-worker LocalCluster the test owns:
priority order, stop-on-error, timeouts, and the checkpoint/resume path (issue 6's base)."""

from __future__ import annotations

import io
import re
from datetime import datetime
from pathlib import Path

import pytest
from conftest import TINY, PackageLog, assert_stores_identical, store_records, tiny_sweep

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# ~20 steps at 8^3: long enough that the start order is unambiguous, still ~0.1 s
STEPS20 = {**TINY, "T_final": 0.2}


@pytest.fixture(scope="module")
def client1():
    """One worker process with one thread; a lost worker fails its task at once (the engine
    retries it from its checkpoint), as on the clusters the engine starts itself."""
    import dask.config
    from distributed import Client, LocalCluster

    # lost-worker-timeout: LocalCluster closes a nanny whose worker name is absent 15 s after
    # a loss; a later test's restart falling on that moment would lose the worker for good
    with dask.config.set(
        {"distributed.scheduler.allowed-failures": 0, "distributed.deploy.lost-worker-timeout": "1h"}
    ):
        with (
            LocalCluster(
                n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client


def _sweep(pkgs: Path, store: Path, client, **kw):
    from sweep.engine import run_sweep

    return run_sweep(pkgs, store, client=client, progress_bar=False, out=io.StringIO(), **kw)


def test_run_sweep_high_priority_packages_start_first(tmp_path: Path, packages_dir, client1):
    # package files list LOW and MEDIUM ids first: the order must come from the priorities
    pkgs = tiny_sweep(9, priorities=("LOW", "MEDIUM", "HIGH"), T_final=0.2)
    d = packages_dir(pkgs)
    res = _sweep(d, tmp_path / "r.zarr", client1)
    assert res.exit_code == 0
    recs = sorted(
        store_records(tmp_path / "r.zarr").values(), key=lambda r: datetime.fromisoformat(r.start_time)
    )
    assert [r.priority for r in recs] == ["HIGH"] * 3 + ["MEDIUM"] * 3 + ["LOW"] * 3
    assert res.counts["done"] == 9
    assert {p: dict(c) for p, c in res.by_priority.items()} == {
        "HIGH": {"done": 3},
        "MEDIUM": {"done": 3},
        "LOW": {"done": 3},
    }


def test_run_sweep_stop_on_error_cancels_unfinished_keeps_finished(tmp_path: Path, packages_dir, client1):
    pkgs = tiny_sweep(8, priorities=("LOW",), T_final=0.3)
    pkgs[0]["priority"] = "HIGH"
    pkgs[0]["parameters"] = {**TINY, "cfl_limit": 0.001}  # diverges at once
    pkgs[1]["priority"] = "HIGH"
    d = packages_dir(pkgs)
    store = tmp_path / "r.zarr"
    res = _sweep(d, store, client1, stop_on_error=True)
    assert res.exit_code == 1
    assert res.status["p000"] == "diverged"
    assert res.counts["cancelled"] >= 1
    done = {k for k, r in store_records(store).items() if r.status == "done"}
    assert len(done) == res.counts["done"] and len(done) < 7
    # continue-on-error (the default) then finishes the rest, skipping what was kept
    res2 = _sweep(d, store, client1)
    assert res2.exit_code == 1 and res2.status["p000"] == "diverged"
    assert res2.counts["done"] + res2.counts["skipped"] == 7
    assert res2.counts["skipped"] == len(done)


def test_run_sweep_timeout_is_class_timeout_and_exit_124(tmp_path: Path, packages_dir, client1):
    pkgs = tiny_sweep(3, priorities=("LOW",))
    pkgs[0]["priority"] = "HIGH"  # runs first, holds the only worker until its deadline
    pkgs[0]["parameters"] = {**TINY, "grid": [16, 16, 16], "dt": 0.001, "T_final": 500.0}
    d = packages_dir(pkgs)
    store = tmp_path / "r.zarr"
    res = _sweep(d, store, client1, timeout=1.5)
    assert res.exit_code == 124
    assert res.status == {"p000": "timeout", "p001": "done", "p002": "done"}
    (rec,) = [r for r in store_records(store).values() if r.status == "failed"]
    assert rec.failure_class == "timeout" and "deadline" in rec.error


def _capture_state(params: dict, step: int):
    import solver
    from sweep.spec import FILE_TO_SOLVER

    p = {FILE_TO_SOLVER.get(k, k): v for k, v in params.items()}
    states = []
    solver.simulate(p, checkpoint=states.append, checkpoint_every_steps=step)
    return states[0]


def test_run_sweep_resumes_from_a_stored_checkpoint_bit_identical(tmp_path: Path, packages_dir, client1):
    from sweep.store import Store

    params = {**STEPS20, "initial_condition": "random"}
    d = packages_dir([{"package_id": "ck", "priority": "HIGH", "parameters": params}])
    clean = tmp_path / "clean.zarr"
    assert _sweep(d, clean, client1).exit_code == 0
    (run_id,) = store_records(clean)
    state = _capture_state(params, 7)
    assert state.step == 7
    resumed = tmp_path / "resumed.zarr"
    with Store.open(str(resumed), mode="a") as st:
        st.save_checkpoint(run_id, state.to_arrays(), step=7)

    from sweep.engine import run_sweep

    plan = run_sweep(d, resumed, dry_run=True, out=io.StringIO()).plan
    assert plan[0].reason == "resumes from its checkpoint at step 7"
    res = _sweep(d, resumed, client1)
    assert res.exit_code == 0
    rec = store_records(resumed)[run_id]
    assert rec.resumed_from_step == 7 and rec.resumed_from_checkpoint
    assert_stores_identical(clean, resumed)
    with Store.open(str(resumed), mode="r") as st:
        assert st.checkpoint_run_ids() == set()  # dropped once the run is done


def test_run_sweep_saves_checkpoints_from_workers_in_the_store(tmp_path: Path, packages_dir, client1):
    params = {**TINY, "grid": [16, 16, 16], "T_final": 1.0, "initial_condition": "random"}
    d = packages_dir([{"package_id": "ck", "priority": "HIGH", "parameters": params}])
    clean, ck = tmp_path / "clean.zarr", tmp_path / "ck.zarr"
    assert _sweep(d, clean, client1).exit_code == 0
    res = _sweep(d, ck, client1, checkpoint_every_steps=25, log_dir=tmp_path / "logs")
    assert res.exit_code == 0
    log = PackageLog(tmp_path / "logs", "ck").read_text()
    # the worker sends each one (steps 25, 50, 75); the driver saves those it receives while
    # the run goes on: it fetches the newest, so on a fast machine it may skip the first ones
    assert re.search(r"checkpoint at step (25|50|75) saved in the store", log), log
    (rec,) = store_records(ck).values()
    assert rec.provenance["checkpoints_sent"] == 3
    assert_stores_identical(clean, ck)  # checkpointing changes no bit


def test_run_sweep_retries_a_lost_worker_from_its_checkpoint(tmp_path: Path, packages_dir, client1):
    """Kill the worker mid-run: the run is resubmitted once and resumes from its checkpoint."""
    import os
    import signal
    import threading
    import time

    params = {**TINY, "grid": [16, 16, 16], "T_final": 2.0, "initial_condition": "random"}
    d = packages_dir([{"package_id": "lost", "priority": "HIGH", "parameters": params}])
    logs = tmp_path / "logs"
    killed = []

    def killer():
        deadline = time.time() + 120
        log = PackageLog(logs, "lost")
        while time.time() < deadline:
            if log.exists() and "checkpoint at step" in log.read_text():
                pids = client1.run(os.getpid)
                for pid in pids.values():
                    os.kill(pid, signal.SIGKILL)
                killed.extend(pids.values())
                return
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    store = tmp_path / "r.zarr"
    res = _sweep(d, store, client1, checkpoint_every_steps=20, log_dir=logs, retries=1)
    t.join()
    assert killed, "the run finished before a checkpoint arrived"
    assert res.exit_code == 0 and res.retries == 1
    (rec,) = store_records(store).values()
    assert rec.attempts == 2 and rec.resumed_from_step is not None and rec.resumed_from_step >= 20
    text = PackageLog(logs, "lost").read_text()
    assert "worker lost" in text and "retrying from its checkpoint" in text
    clean = tmp_path / "clean.zarr"
    assert _sweep(d, clean, client1).exit_code == 0
    assert_stores_identical(clean, store)


def test_run_sweep_watchdog_restarts_a_worker_that_stops_answering(tmp_path: Path, packages_dir, client1):
    """A worker frozen mid-run (SIGSTOP: the solver cannot even reach its deadline check) is
    given up past timeout + grace: failure class timeout, the worker restarted, the sweep ends."""
    import os
    import signal
    import threading
    import time

    import dask.config

    d = packages_dir(
        [
            {
                "package_id": "stuck",
                "priority": "HIGH",
                "parameters": {**TINY, "grid": [16, 16, 16], "T_final": 500.0},
            }
        ]
    )
    store, logs = tmp_path / "r.zarr", tmp_path / "logs"
    (pid,) = client1.run(os.getpid).values()
    frozen = []

    def freeze():
        deadline = time.time() + 60
        while time.time() < deadline:
            log = PackageLog(logs, "stuck")
            if log.exists() and "started on" in log.read_text():
                os.kill(pid, signal.SIGSTOP)
                frozen.append(pid)
                return
            time.sleep(0.02)

    t = threading.Thread(target=freeze, daemon=True)
    t.start()
    try:
        with dask.config.set({"sweep.timeout-grace": 0.5, "sweep.tick": 0.1}):
            res = _sweep(d, store, client1, timeout=2.0, log_dir=logs)
    finally:
        t.join()
        if frozen:
            try:
                os.kill(pid, signal.SIGCONT)  # the restart normally killed it already
            except ProcessLookupError:
                pass
    assert frozen, "the run never started"
    assert res.status == {"stuck": "timeout"} and res.exit_code == 124
    (rec,) = store_records(store).values()
    assert rec.failure_class == "timeout" and "was restarted" in rec.error
    # a fresh worker process took its place, and it runs the next sweep
    client1.wait_for_workers(1, timeout=30)
    assert pid not in client1.run(os.getpid).values()
    # it loaded the solver's kernels when it joined (KernelWarmUp), before any run: even an
    # 8^3 run gets the fastest set, and no run pays its start-up against its timeout
    from solver.kernels import installed_kernel_sets

    auto_on_8cubed = client1.run(lambda: __import__("solver.kernels").kernels.resolve_kernels("auto", 512))
    assert set(auto_on_8cubed.values()) == {installed_kernel_sets()[0]}
    d2 = packages_dir(tiny_sweep(2), name="next")
    assert _sweep(d2, tmp_path / "next.zarr", client1).exit_code == 0


# a grid whose run needs more memory than this machine has (the workers' limit is its total)
HUGE = {**TINY, "grid": [2048, 2048, 2048]}


def test_run_sweep_unfit_package_on_existing_cluster_refused_before_anything_is_created(
    tmp_path: Path, packages_dir, client1
):
    from sweep.errors import ConfigError

    pkgs = tiny_sweep(2)
    pkgs.append({"package_id": "huge", "priority": "LOW", "parameters": HUGE})
    d = packages_dir(pkgs)
    store, logs = tmp_path / "r.zarr", tmp_path / "logs"
    with pytest.raises(
        ConfigError,
        match=r"package_0002\.json: parameters\.grid: bad value "
        r"\[2048, 2048, 2048\].*fits in a worker's memory",
    ):
        _sweep(d, store, client1, log_dir=logs)
    assert not store.exists() and not logs.exists()


def test_run_sweep_unfit_package_already_done_does_not_count(tmp_path: Path, packages_dir, client1):
    """A run done earlier (on bigger workers) never runs again: it is no reason to refuse."""
    from store_data import provenance, result_like

    from sweep.spec import load_packages
    from sweep.store import Store

    pkgs = tiny_sweep(1)
    pkgs.append({"package_id": "huge", "priority": "LOW", "parameters": HUGE})
    d = packages_dir(pkgs)
    huge = next(p for p in load_packages(d, check_memory=False) if p.package_id == "huge")
    store = tmp_path / "r.zarr"
    with Store.open(store, mode="a") as st:
        st.commit_run(huge.run_id, result_like(huge.params), provenance(huge.params, "huge"))
    res = _sweep(d, store, client1)
    assert res.exit_code == 0 and res.status == {"p000": "done", "huge": "skipped"}


def test_run_sweep_short_runs_log_where_and_when_they_started(tmp_path: Path, packages_dir, client1):
    """Runs shorter than runner.ANNOUNCE_AFTER send no start event: their log still says
    where and when each attempt started, first."""
    d = packages_dir(tiny_sweep(2))
    logs = tmp_path / "logs"
    assert _sweep(d, tmp_path / "r.zarr", client1, log_dir=logs).exit_code == 0
    (address,) = client1.scheduler_info()["workers"]
    for pid in ("p000", "p001"):
        lines = PackageLog(logs, pid).read_text().splitlines()
        assert " queued: new (run " in lines[0]
        stamp, rest = lines[1].split(" ", 1)
        assert rest == f"started on {address} (attempt 1)"
        datetime.fromisoformat(stamp)
        assert lines[-1] == "status: done"


@pytest.mark.parametrize("package_id", ["sweep", "SWEEP", "Sweep"])
def test_run_sweep_package_named_like_the_main_log_keeps_its_own_log(
    tmp_path: Path, packages_dir, client1, package_id: str
):
    pkgs = [
        {"package_id": package_id, "priority": "HIGH", "parameters": {**TINY, "Re": 50.0}},
        *tiny_sweep(1),
    ]
    d = packages_dir(pkgs)
    logs = tmp_path / "logs"
    assert _sweep(d, tmp_path / "r.zarr", client1, log_dir=logs).exit_code == 0
    main = (logs / "sweep.log").read_text()
    # the main log has timestamped engine lines only: none of a package's own lines
    assert not [ln for ln in main.splitlines() if "queued: new" in ln or ln == "status: done"], main
    # its lines are in the sweep's file of package lines, under its id, as any package's
    own = PackageLog(logs, package_id).lines()
    assert own[-1] == "status: done" and any("queued: new" in ln for ln in own), own
    assert sorted(p.name for p in logs.iterdir() if not p.name.startswith("packages-")) == ["sweep.log"]
