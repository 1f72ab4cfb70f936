"""dask-jobqueue against a real one-node SLURM (tests/slurm.py): SLURMCluster scales up, runs
tasks inside SLURM jobs and adapts back to no job; PBSCluster works through Debian's torque
wrappers (qsub/qstat/qdel over the same SLURM); which of jobqueue.yaml and keyword arguments
wins; and the submission preflight of sweep/hpc_prototype.py. Figures print with ``-s``.
"""

# ruff: noqa: F811  (test arguments named after the imported `slurm` fixture)
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from slurm import Slurm, slurm  # noqa: F401  (the fixture; the lead moves it to conftest.py)

LOOPBACK = {"dashboard_address": "127.0.0.1:0", "host": "127.0.0.1"}


def _wait(cond: Callable[[], object], timeout: float, what: str) -> float:
    """Poll ``cond()`` every 0.1 s; the seconds until it held (fails after ``timeout``)."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.1)
    return time.monotonic() - t0


@pytest.mark.cluster
@pytest.mark.slow
def test_slurm_cluster_scales_up_runs_tasks_and_adapts_to_zero(slurm: Slurm, tmp_path: Path) -> None:
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    from sweep.hpc_prototype import job_end_time, jobs_time_left

    logs = tmp_path / "jobs"
    t0 = time.monotonic()
    with (
        SLURMCluster(
            cores=1,
            memory="512MiB",
            processes=1,
            walltime="00:05:00",
            queue=slurm.partition,
            log_directory=str(logs),
            scheduler_options=LOOPBACK,
        ) as cluster,
        Client(cluster) as client,
    ):
        assert cluster.dashboard_link.startswith("http://127.0.0.1:")
        cluster.scale(2)
        client.wait_for_workers(1, timeout=60)
        first = time.monotonic() - t0
        client.wait_for_workers(2, timeout=60)
        both = time.monotonic() - t0
        job_ids = {job.job_id for job in cluster.workers.values()}
        assert len(job_ids) == 2
        queue = {row[0]: row[1:] for row in slurm.squeue("%i %j %T")}
        assert {jid: queue[jid] for jid in job_ids} == {jid: ["dask-worker", "RUNNING"] for jid in job_ids}
        ran_in = set(client.gather(client.map(os.getenv, ["SLURM_JOB_ID"] * 8, pure=False)))
        assert ran_in <= job_ids and ran_in
        # walltime left: from the driver (job ids of cluster.workers, one squeue call) and from
        # inside each job (SLURM 22.05 sets no SLURM_JOB_END_TIME: squeue -j $SLURM_JOB_ID)
        left = jobs_time_left(job_ids)
        assert set(left) == job_ids and all(270 < v <= 300 for v in left.values() if v), left
        ends = client.run(job_end_time)
        assert len(ends) == 2 and all(abs(e - time.time() - 300) < 30 for e in ends.values()), ends
        assert client.submit(os.getenv, "SLURM_JOB_END_TIME", pure=False).result() is None
        assert {p.name for p in logs.iterdir()} >= {f"dask-worker-{j}.err" for j in job_ids}

        cluster.adapt(minimum=0, maximum=2)
        t1 = time.monotonic()
        _wait(
            lambda: not client.scheduler_info()["workers"] and not slurm.squeue(),
            60,
            "adapt(minimum=0) back to no worker and an empty queue",
        )
        to_zero = time.monotonic() - t1
    print(
        f"\nSLURMCluster: first worker {first:.1f} s, both {both:.1f} s after creation; "
        f"adapt to 0 workers and an empty queue in {to_zero:.1f} s"
    )


@pytest.mark.cluster
@pytest.mark.slow
def test_pbs_cluster_runs_tasks_through_torque_wrappers(
    slurm: Slurm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dask_jobqueue import PBSCluster
    from distributed import Client

    # The wrapper's qsub passes its own `-e NAME.e%A` to sbatch, overriding `#PBS -e DIR/`:
    # job logs land in the current directory, not log_directory.
    monkeypatch.chdir(tmp_path)
    t0 = time.monotonic()
    with (
        PBSCluster(
            cores=1,
            memory="512MiB",
            processes=1,
            walltime="00:05:00",
            queue=slurm.partition,
            scheduler_options=LOOPBACK,
        ) as cluster,
        Client(cluster) as client,
    ):
        assert "#PBS -l walltime=00:05:00" in cluster.job_script()
        cluster.scale(1)
        client.wait_for_workers(1, timeout=60)
        first = time.monotonic() - t0
        (job_id,) = [job.job_id for job in cluster.workers.values()]
        assert job_id in slurm.run("qstat")
        assert slurm.squeue("%i %T %l") == [[job_id, "RUNNING", "5:00"]]
        assert client.submit(os.getenv, "SLURM_JOB_ID", pure=False).result() == job_id
    slurm.wait_queue_empty(timeout=30)
    assert list(tmp_path.glob(f"*.e{job_id}"))
    print(f"\nPBSCluster over the torque wrappers: first worker {first:.1f} s after creation")


def test_jobqueue_kwargs_beat_jobqueue_yaml_which_beats_packaged_defaults(tmp_path: Path) -> None:
    """A user's jobqueue.yaml (DASK_CONFIG) fills in what the keyword arguments leave None;
    any keyword argument wins, even a list (worker_extra_args replaces, never merges); None
    cannot unset a value the YAML sets; DASK_JOBQUEUE__SLURM__* variables beat the YAML."""
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "jobqueue.yaml").write_text(
        textwrap.dedent("""\
        jobqueue:
          slurm:
            queue: yamlq
            walltime: "00:07:00"
            account: yamlacct
            worker-extra-args: ["--lifetime", "6m"]
            job-extra-directives: ["--exclusive"]
        """)
    )
    code = textwrap.dedent("""\
        import json
        from dask_jobqueue import SLURMCluster

        def script(**kw):
            with SLURMCluster(cores=1, memory="1GB", **kw, scheduler_options={
                    "dashboard_address": "127.0.0.1:0", "host": "127.0.0.1"}) as c:
                return c.job_script()

        print(json.dumps({"yaml": script(), "kwargs": script(
            walltime="00:09:00", queue=None, worker_extra_args=["--lifetime", "8m"],
            job_extra_directives=[])}))
        """)
    env = {**os.environ, "DASK_CONFIG": str(tmp_path / "cfg"), "DASK_JOBQUEUE__SLURM__ACCOUNT": "envacct"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    scripts = json.loads(out.stdout.strip().splitlines()[-1])
    yaml_only, with_kwargs = scripts["yaml"], scripts["kwargs"]
    assert "#SBATCH -p yamlq" in yaml_only and "#SBATCH -t 00:07:00" in yaml_only
    assert "#SBATCH -A envacct" in yaml_only  # the environment variable beats the file
    assert "--lifetime 6m" in yaml_only and "#SBATCH --exclusive" in yaml_only
    assert "#SBATCH -t 00:09:00" in with_kwargs and "00:07:00" not in with_kwargs
    assert "--lifetime 8m" in with_kwargs and "6m" not in with_kwargs
    assert "--exclusive" not in with_kwargs  # an empty list is a value too
    assert "#SBATCH -p yamlq" in with_kwargs  # queue=None falls back to the YAML


@pytest.mark.cluster
def test_preflight_sbatch_reports_a_bad_queue_in_one_line_and_submits_nothing(
    slurm: Slurm, tmp_path: Path
) -> None:
    from dask_jobqueue import SLURMCluster

    from sweep.hpc_prototype import QueueUnavailable, preflight_sbatch

    def script(**kw: Any) -> str:
        with SLURMCluster(
            cores=1, memory="512MiB", walltime="00:05:00", scheduler_options=LOOPBACK, **kw
        ) as c:
            return str(c.job_script())

    assert "to start at" in preflight_sbatch(script(queue=slurm.partition))
    with pytest.raises(QueueUnavailable, match=r"^sbatch --test-only: .*invalid partition.*nosuch"):
        preflight_sbatch(script(queue="nosuch"))
    with pytest.raises(QueueUnavailable, match="Requested node configuration is not available"):
        preflight_sbatch(script(queue=slurm.partition).replace("--mem=512M", "--mem=100G"))
    with pytest.raises(QueueUnavailable, match=r"no `nosuch-sbatch` on PATH"):
        preflight_sbatch(script(), sbatch="nosuch-sbatch")
    # a controller that does not answer (nothing listens on its port): cut off at the timeout
    dead = tmp_path / "dead.conf"
    dead.write_text(
        slurm.conf.read_text().replace(
            next(line for line in slurm.conf.read_text().splitlines() if line.startswith("SlurmctldPort=")),
            "SlurmctldPort=9",
        )
    )
    t0 = time.monotonic()
    with pytest.raises(QueueUnavailable, match=r"no answer from the SLURM controller within 2 s"):
        preflight_sbatch(
            script(queue=slurm.partition), timeout=2, env={**os.environ, "SLURM_CONF": str(dead)}
        )
    assert time.monotonic() - t0 < 5
    assert slurm.squeue() == []
