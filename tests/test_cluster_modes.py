"""Cluster modes: what each local mode starts, and clear errors for bad cluster options."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.cluster import MODES, connect, tls_security
from sweep.errors import ConfigError


@pytest.mark.cluster
@pytest.mark.parametrize("mode, max_parallel, n_workers", [("sequential", None, 1), ("parallel", 2, 2)])
def test_connect_local_mode_starts_single_threaded_worker_processes(mode, max_parallel, n_workers):
    handle = connect(mode, max_parallel=max_parallel)
    try:
        workers = handle.client.scheduler_info(n_workers=-1)["workers"]
        assert len(workers) == n_workers
        assert all(w["nthreads"] == 1 for w in workers.values())
        # worker processes, not threads of this process: a stuck run can be killed
        pids = set(handle.client.run(__import__("os").getpid).values())
        assert len(pids) == n_workers and __import__("os").getpid() not in pids
        assert handle.dashboard_link and handle.dashboard_link.startswith("http")
        env = handle.client.run(lambda: __import__("os").environ.get("SWEEP_WORKERS_PER_HOST"))
        assert set(env.values()) == {str(n_workers)}
    finally:
        handle.close()


def test_connect_unknown_mode_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"--mode: bad value 'turbo'; allowed: sequential, parallel"):
        connect("turbo")
    assert set(MODES) == {"sequential", "parallel"}


def test_connect_bad_scheduler_scheme_says_what_is_allowed():
    with pytest.raises(ConfigError, match=r"--scheduler: bad address 'http://x:1'; allowed: tcp://HOST:PORT or tls://HOST:PORT"):
        connect(scheduler="http://x:1")


def test_connect_tls_without_files_names_the_missing_options():
    with pytest.raises(ConfigError, match=r"needs --tls-ca, --tls-cert, --tls-key"):
        connect(scheduler="tls://127.0.0.1:1")


def test_tls_security_missing_file_is_named(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ConfigError, match=r"--tls-cert: no such file .*cert.pem"):
        tls_security(ca, tmp_path / "cert.pem", tmp_path / "key.pem")


def test_connect_missing_scheduler_file_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"--scheduler-file: no such file"):
        connect(scheduler_file=str(tmp_path / "nope.json"))


def test_connect_bad_max_parallel_is_refused():
    with pytest.raises(ConfigError, match=r"--max-parallel: bad value 0; allowed: an integer >= 1"):
        connect("parallel", max_parallel=0)
