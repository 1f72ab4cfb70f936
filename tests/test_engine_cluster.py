"""Cluster modes: what each local mode starts, and clear errors for bad cluster options
(checked once, by SweepOptions, in the Python API's parameter names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from solver.params import THREADS_ENV
from sweep.engine.cluster import MODES, connect, tls_security
from sweep.engine.options import SweepOptions
from sweep.errors import ConfigError
from sweep.machine import usable_cores


@pytest.mark.cluster
@pytest.mark.parametrize("mode, max_parallel, n_workers", [("sequential", None, 1), ("parallel", 2, 2)])
def test_connect_local_mode_starts_single_threaded_worker_processes(mode, max_parallel, n_workers):
    handle = connect(SweepOptions(mode=mode, max_parallel=max_parallel))
    try:
        workers = handle.client.scheduler_info(n_workers=-1)["workers"]
        assert len(workers) == n_workers
        assert all(w["nthreads"] == 1 for w in workers.values())
        # worker processes, not threads of this process: a stuck run can be killed
        pids = set(handle.client.run(__import__("os").getpid).values())
        assert len(pids) == n_workers and __import__("os").getpid() not in pids
        assert handle.dashboard_link and handle.dashboard_link.startswith("http")
        # each worker's share of the cores for one run's threads, through the solver's own setting
        env = handle.client.run(lambda: __import__("os").environ.get(THREADS_ENV))
        assert set(env.values()) == {str(max(1, usable_cores() // n_workers))}
    finally:
        handle.close()


def test_connect_unknown_mode_lists_the_valid_ones():
    with pytest.raises(
        ConfigError, match=r"mode: bad value 'turbo'; allowed: sequential, parallel, slurm, pbs"
    ):
        SweepOptions(mode="turbo")
    assert set(MODES) == {"sequential", "parallel", "slurm", "pbs", "sge", "lsf"}


def test_connect_bad_scheduler_scheme_says_what_is_allowed():
    with pytest.raises(
        ConfigError, match=r"scheduler: bad value 'http://x:1'; allowed: tcp://HOST:PORT or tls://HOST:PORT"
    ):
        SweepOptions(scheduler="http://x:1")


def test_connect_tls_without_files_names_the_missing_options():
    with pytest.raises(
        ConfigError, match=r"tls_ca: missing; allowed: a tls:// scheduler needs tls_ca, tls_cert, tls_key"
    ):
        SweepOptions(scheduler="tls://127.0.0.1:1")


def test_tls_security_missing_file_is_named(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ConfigError, match=r"tls_cert: bad value '.*cert.pem'; allowed: an existing PEM file"):
        tls_security(ca, tmp_path / "cert.pem", tmp_path / "key.pem")


def test_connect_missing_scheduler_file_is_refused(tmp_path: Path):
    with pytest.raises(
        ConfigError, match=r"scheduler_file: bad value '.*nope.json'; allowed: the file written by"
    ):
        SweepOptions(scheduler_file=str(tmp_path / "nope.json"))


def test_connect_bad_max_parallel_is_refused():
    with pytest.raises(ConfigError, match=r"max_parallel: bad value 0; allowed: an integer >= 1"):
        SweepOptions(mode="parallel", max_parallel=0)
