"""`sweep run --mode slurm` and `--mode pbs` on a real one-node SLURM (tests/slurm.py; PBS through
Debian's torque wrappers over the same SLURM): results bit-identical to `--mode parallel`, the
worker jobs seen in squeue and gone at the end, jobs that follow the work, no job for a sweep
with nothing left to run, `sweep status` showing the jobs while the sweep runs and after it;
bad options and an unreachable SLURM as one line and exit 2; which of the options and the
user's jobqueue.yaml wins. Figures print with ``-s``.
"""

# ruff: noqa: F811  (test arguments named after the `slurm` fixture of conftest.py)
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY, run_cli, tiny_sweep
from faults import Driver, assert_results_equal, records, wait_for
from slurm import Slurm

# jobs start in about a second on the test SLURM (a real cluster: tens of seconds or more)
QUEUE_ENV = {"DASK_SWEEP__JOBQUEUE__JOB_START_SECONDS": "5"}


class QueueWatch:
    """Samples ``squeue`` every 0.2 s in a thread: (seconds since start, [(job id, name, state)])."""

    def __init__(self, slurm: Slurm) -> None:
        self.slurm = slurm
        self.samples: list[tuple[float, list[tuple[str, str, str]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.t0 = time.monotonic()

    def _loop(self) -> None:
        while not self._stop.is_set():
            rows = [(r[0], r[1], r[2]) for r in self.slurm.squeue("%i %j %T") if len(r) == 3]
            self.samples.append((time.monotonic() - self.t0, rows))
            time.sleep(0.2)

    def __enter__(self) -> QueueWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def job_ids(self, name: str = "dask-worker") -> set[str]:
        """Every job of that name seen in the queue."""
        return {jid for _, rows in self.samples for jid, jname, _ in rows if jname == name}

    def counts(self, states: tuple[str, ...] = ("PENDING", "RUNNING")) -> list[int]:
        """Jobs in ``states`` at each sample."""
        return [sum(1 for _, _, st in rows if st in states) for _, rows in self.samples]


def _submissions(slurm: Slurm) -> int:
    """Jobs the controller accepted so far (its log has a line per submission)."""
    log = slurm.root / "log" / "slurmctld.log"
    return log.read_text(errors="replace").count("_slurm_rpc_submit_batch_job: JobId=")


def _sweep_args(slurm: Slurm, store: Path, logs: Path, *extra: str) -> list[str]:
    return [
        "--store",
        str(store),
        "--mode",
        "slurm",
        "--walltime",
        "00:05:00",
        "--job-cores",
        "1",
        "--job-memory",
        "1GiB",
        "--queue",
        slurm.partition,
        "--log-dir",
        str(logs),
        "--no-progress",
        *extra,
    ]


@pytest.mark.cluster
@pytest.mark.slow
def test_slurm_sweep_matches_parallel_bit_for_bit_and_leaves_no_job(
    slurm: Slurm, tmp_path: Path, packages_dir, local_client
) -> None:
    from sweep.engine import run_sweep

    d = packages_dir(tiny_sweep(5, initial_condition="random"))
    store, logs = tmp_path / "slurm.zarr", tmp_path / "logs"
    t0 = time.monotonic()
    with QueueWatch(slurm) as watch:
        proc = run_cli("run", str(d), *_sweep_args(slurm, store, logs, "--jobs", "2"), env=QUEUE_ENV)
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cluster: slurm: SLURMCluster, up to 2 job(s) of 1 core(s)" in proc.stdout
    seen = watch.job_ids()
    assert seen, "squeue never saw a dask-worker job"
    cleared = slurm.wait_queue_empty(timeout=20)  # none left: cancelled at the end, not abandoned
    assert {f"dask-worker-{j}.err" for j in seen} <= {p.name for p in (logs / "jobs").iterdir()}

    clean = tmp_path / "parallel.zarr"
    ref = run_sweep(d, clean, client=local_client, progress_bar=False, out=io.StringIO())
    assert ref.exit_code == 0
    assert_results_equal(clean, store)
    recs = records(store)
    assert {r.provenance["mode"] for r in recs.values()} == {"slurm"}
    assert set().union(*(r.provenance["jobs"] for r in recs.values())) <= seen

    # after the sweep, `sweep status` tells the jobs from the store (the last status document
    # and the runs' records)
    status = run_cli("status", "--store", str(store), "--packages", str(d))
    assert status.returncode == 0, status.stderr
    assert "sweep: none running; the last one (slurm on" in status.stdout
    assert f"jobs used by this sweep: {len(seen)} (" in status.stdout
    assert "runs in the store ran in" in status.stdout

    # a sweep with nothing left to run submits no job at all
    before = _submissions(slurm)
    again = run_cli("run", str(d), *_sweep_args(slurm, store, logs, "--jobs", "2"), env=QUEUE_ENV)
    assert again.returncode == 0, again.stderr
    assert "0 to run, 5 skipped as already done" in again.stdout
    assert _submissions(slurm) == before and slurm.squeue() == []
    print(
        f"\nslurm sweep of 5 tiny packages: {took:.1f} s, {len(seen)} job(s); "
        f"queue empty {cleared:.1f} s later"
    )


@pytest.mark.cluster
@pytest.mark.slow
def test_slurm_jobs_follow_the_work_and_status_shows_them(slurm: Slurm, tmp_path: Path, packages_dir) -> None:
    """One long run (HIGH, ~20 s) and four short ones (~3 s) with --jobs 2 (the node's cores):
    two jobs at the start, one once the long run is the only one left, none at the end; `sweep
    status` in another process shows the running jobs with their walltime left and an ETA per
    priority."""
    step = 0.05
    pkgs = [{"package_id": "long", "priority": "HIGH", "parameters": {**TINY, "T_final": 4.0}}] + [
        {
            "package_id": f"short{i}",
            "priority": "LOW",
            "parameters": {**TINY, "Re": 200.0 + i, "T_final": 0.6},
        }
        for i in range(4)
    ]
    d = packages_dir(pkgs)
    store, logs = tmp_path / "adapt.zarr", tmp_path / "logs"
    env = {**QUEUE_ENV, "NS_SWEEP_TEST_STEP_SECONDS": str(step)}
    with QueueWatch(slurm) as watch:
        drv = Driver(tmp_path, "run", str(d), *_sweep_args(slurm, store, logs, "--jobs", "2"), env=env)
        try:

            def mid_sweep_status() -> dict[str, Any] | None:
                out = run_cli("status", "--store", str(store), "--packages", str(d), "--json")
                if out.returncode != 0:
                    return None
                doc = json.loads(out.stdout)
                live = doc.get("sweep") or {}
                running = [
                    j
                    for j in (live.get("jobs") or {}).get("current", [])
                    if j["state"] == "running" and j["walltime_left"] is not None  # its guard reported
                ]
                return doc if live.get("state") == "running" and len(running) >= 2 else None

            doc = wait_for(
                mid_sweep_status, timeout=60, what="status showing running jobs", proc=drv, every=0.5
            )
            assert drv.wait(timeout=120) == 0, drv.output()
        finally:
            drv.cleanup()
        slurm.wait_queue_empty(timeout=20)
    live = doc["sweep"]
    running = [j for j in live["jobs"]["current"] if j["state"] == "running"]
    assert all(0 < j["walltime_left"] <= 300 for j in running), running
    assert live["workers"] >= 2 and live["jobs"]["max_jobs"] == 2
    assert set(doc["eta_by_priority"]) <= {"HIGH", "LOW"} and doc["eta_seconds"] is not None

    counts = watch.counts()
    peak = max(counts)
    at_peak = counts.index(peak)
    tail = counts[at_peak:]
    assert peak == 2, counts  # one job per run left, up to --jobs
    # fewer jobs while only the long run is left, before the sweep ends
    assert 1 in tail and tail.index(1) < len(tail) - 1, counts
    assert counts[-1] == 0 or slurm.squeue() == []
    recs = records(store)
    assert len(recs) == 5 and {r.status for r in recs.values()} == {"done"}
    print(f"\njobs over time (every 0.2 s): {counts}")


@pytest.mark.cluster
@pytest.mark.slow
def test_pbs_mode_sweep_through_torque_wrappers_matches_parallel(
    slurm: Slurm, tmp_path: Path, packages_dir, local_client
) -> None:
    """--mode pbs: PBSCluster's qsub/qstat/qdel, here Debian's torque wrappers over the test
    SLURM. The wrapper's qsub puts job logs relative to where it runs: the sweep submits from
    its log directory, so nothing lands in the working directory."""
    from sweep.engine import run_sweep

    d = packages_dir(tiny_sweep(3))
    store, logs, cwd = tmp_path / "pbs.zarr", tmp_path / "logs", tmp_path / "cwd"
    cwd.mkdir()
    args = ["run", str(d), "--store", str(store), "--mode", "pbs", "--jobs", "1", "--walltime", "00:05:00"]
    args += ["--job-cores", "1", "--job-memory", "1GiB", "--queue", slurm.partition, "--log-dir", str(logs)]
    with QueueWatch(slurm) as watch:
        proc = run_cli(*args, "--no-progress", cwd=cwd, env=QUEUE_ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cluster: pbs: PBSCluster" in proc.stdout
    seen = watch.job_ids()
    assert seen
    slurm.wait_queue_empty(timeout=20)
    assert list(cwd.iterdir()) == []  # nothing outside the store and the log directory
    assert any(p.name.endswith(tuple(f".e{j}" for j in seen)) for p in (logs / "jobs").iterdir())
    clean = tmp_path / "parallel.zarr"
    assert run_sweep(d, clean, client=local_client, progress_bar=False, out=io.StringIO()).exit_code == 0
    assert_results_equal(clean, store)


@pytest.mark.parametrize(
    ("extra", "expect"),
    [
        (
            ["--mode", "foo"],
            "argument --mode: invalid choice: 'foo' (choose from 'sequential', 'parallel', 'slurm'",
        ),
        (["--mode", "slurm", "--walltime", "1h"], "--walltime: bad value '1h'; allowed: HH:MM:SS, MM:SS or"),
        (
            ["--mode", "slurm", "--job-memory", "lots"],
            "--job-memory: bad value 'lots'; allowed: a size such as",
        ),
        (["--mode", "parallel", "--jobs", "3"], "--jobs: bad value '3'; allowed: only with a queue mode"),
    ],
)
def test_queue_bad_option_exits_2_with_one_line_and_no_store(
    tmp_path: Path, packages_dir, extra: list[str], expect: str
) -> None:
    d = packages_dir(tiny_sweep(1))
    store = tmp_path / "never.zarr"
    proc = run_cli("run", str(d), "--store", str(store), *extra, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert expect in line and "Traceback" not in proc.stderr
    assert not store.exists()


@pytest.mark.cluster
def test_unreachable_slurm_exits_2_with_one_line_no_hang_no_store(
    slurm: Slurm, tmp_path: Path, packages_dir
) -> None:
    d = packages_dir(tiny_sweep(1))
    store = tmp_path / "never.zarr"
    args = [
        "run",
        str(d),
        "--store",
        str(store),
        "--mode",
        "slurm",
        "--job-cores",
        "1",
        "--job-memory",
        "1GiB",
    ]
    # no SLURM commands here: an empty PATH (the CLI itself runs by its absolute path)
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = run_cli(*args, env={"PATH": str(empty)}, timeout=60)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "--mode: no `sbatch` on PATH: SLURM's commands are not installed" in line
    # a controller that does not answer (nothing listens on its port): cut at the queue timeout
    dead = tmp_path / "dead.conf"
    conf = slurm.conf.read_text()
    port_line = next(ln for ln in conf.splitlines() if ln.startswith("SlurmctldPort="))
    dead.write_text(conf.replace(port_line, "SlurmctldPort=9"))
    t0 = time.monotonic()
    proc = run_cli(
        *args,
        env={"SLURM_CONF": str(dead), "DASK_SWEEP__JOBQUEUE__QUEUE_TIMEOUT": "3"},
        timeout=60,
    )
    took = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "--mode: sbatch --test-only: no answer from the SLURM controller within 3 s" in line
    assert took < 15 and "Traceback" not in proc.stderr
    # a partition SLURM does not have: its own words, before any job exists
    proc = run_cli(*args, "--queue", "nosuch", timeout=60)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "--mode: sbatch --test-only: invalid partition" in line and "nosuch" in line
    assert not store.exists() and slurm.squeue() == []


@pytest.mark.cluster
def test_queue_options_beat_jobqueue_yaml_which_fills_the_rest(slurm: Slurm, tmp_path: Path) -> None:
    """The user's jobqueue.yaml gives what the options do not (cores, memory, account, extra
    directives); an option wins over it (walltime); DASK_JOBQUEUE__* beats the file; lists add
    up (--job-extra after the YAML's directives); the job logs always go to the sweep's logs; the
    dashboard listens on 127.0.0.1 unless --dashboard-address says otherwise."""
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "jobqueue.yaml").write_text(
        textwrap.dedent(f"""\
        jobqueue:
          slurm:
            cores: 1
            memory: 768MiB
            queue: {slurm.partition}
            walltime: "00:07:00"
            account: yamlacct
            job-extra-directives: ["--comment=from-yaml"]
        """)
    )
    code = textwrap.dedent("""\
        from pathlib import Path
        from sweep.engine.options import SweepOptions
        from sweep.engine.jobqueue import prepare_queue, _job_script
        spec = prepare_queue(SweepOptions(mode="slurm", walltime="00:09:00", job_extra="--comment=ours"))
        print(_job_script(spec))
        print("WALLTIME", spec.walltime, "PROCESSES", spec.processes, "MEMORY", spec.memory)
        wide = SweepOptions(mode="slurm", walltime="00:09:00", dashboard_address="0.0.0.0:8799")
        dash = [s.scheduler_options["dashboard_address"] for s in (spec, prepare_queue(wide))]
        print("DASHBOARD", *dash)
        """)
    env = {**os.environ, "DASK_CONFIG": str(tmp_path / "cfg"), "DASK_JOBQUEUE__SLURM__ACCOUNT": "envacct"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    script = out.stdout
    assert "#SBATCH -t 00:09:00" in script and "00:07:00" not in script  # the option wins
    assert f"#SBATCH -p {slurm.partition}" in script and "#SBATCH -n 1" in script  # the YAML fills in
    assert "#SBATCH -A envacct" in script  # the environment beats the file
    assert script.index("--comment=from-yaml") < script.index("--comment=ours")  # lists add up
    assert "--lifetime" in script and "NS_SOLVER_THREADS" in script
    assert "WALLTIME 540.0 PROCESSES 1 MEMORY 805306368" in script
    # the dashboard on this host only unless --dashboard-address exposes it (issue 18 item 5)
    assert "DASHBOARD 127.0.0.1:0 0.0.0.0:8799" in script
