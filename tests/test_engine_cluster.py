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


# ------------------------------------------------------------------ no open door (issue 18, items 5-6)


@pytest.mark.cluster
def test_local_cluster_refuses_clients_without_its_credentials_dashboard_on_loopback():
    import os
    import signal
    import subprocess
    import sys
    import time
    from urllib.parse import urlparse

    import psutil

    from sweep.engine.worker import KernelWarmUp

    handle = connect(SweepOptions(mode="parallel", max_parallel=1))
    try:
        address = handle.client.scheduler.address
        assert address.startswith("tls://127.0.0.1:"), address
        # the sweep's own client and workers work, the kernel warm-up plugin too
        handle.client.register_plugin(KernelWarmUp())
        assert handle.client.submit(sum, [1, 2, 3]).result() == 6
        # the workers ignore the stop signals (the driver stops them), restarted ones too
        ignored = lambda: [signal.getsignal(s) == signal.SIG_IGN for s in (signal.SIGINT, signal.SIGTERM)]  # noqa: E731
        assert list(handle.client.run(ignored).values()) == [[True, True]]
        (pid,) = handle.client.run(os.getpid).values()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while set(handle.client.run(os.getpid, on_error="ignore").values()) in (set(), {pid}):
            assert time.monotonic() < deadline, "the killed worker was not restarted"
            time.sleep(0.1)
        assert list(handle.client.run(ignored).values()) == [[True, True]]
        # another local user (another process): plain TCP, no credentials, or credentials of its own
        intruder = (
            "import os, sys; from distributed import Client; from distributed.security import Security\n"
            "sec = Security.temporary() if sys.argv[2] == 'own' else None\n"
            "Client(sys.argv[1], security=sec, timeout='5s').run(os.getpid)\n"
            "print('CONNECTED')\n"
        )
        for target, credentials in (
            (address.replace("tls://", "tcp://"), "none"),
            (address, "none"),
            (address, "own"),
        ):
            proc = subprocess.run(
                [sys.executable, "-c", intruder, target, credentials],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode != 0 and "CONNECTED" not in proc.stdout, (target, credentials, proc.stdout)
        # the dashboard listens on the loopback interface only, and says so
        link = handle.dashboard_link
        assert link and link.startswith("http://127.0.0.1:"), link
        port = urlparse(link).port
        listening = [c.laddr for c in psutil.net_connections(kind="tcp") if c.laddr and c.laddr.port == port]
        assert listening and {a.ip for a in listening} == {"127.0.0.1"}, listening
        # the credentials live in the processes' memory: never on a command line or in an environment
        for proc in psutil.Process().children(recursive=True):
            assert "BEGIN" not in " ".join(proc.cmdline())
            assert not any("BEGIN" in v for v in proc.environ().values())
    finally:
        handle.close()


@pytest.mark.cluster
def test_local_cluster_dashboard_can_be_exposed():
    from urllib.parse import urlparse

    import psutil

    handle = connect(SweepOptions(mode="sequential", dashboard_address="0.0.0.0:0"))
    try:
        port = urlparse(handle.dashboard_link).port
        ips = {c.laddr.ip for c in psutil.net_connections(kind="tcp") if c.laddr and c.laddr.port == port}
        assert ips & {"0.0.0.0", "::"}, ips
    finally:
        handle.close()


@pytest.mark.parametrize("bad", ["8787", "localhost", "127.0.0.1:http", "127.0.0.1:70000", ":8787", 8787])
def test_dashboard_address_is_checked(bad):
    with pytest.raises(ConfigError, match=r"dashboard_address: bad value .*; allowed: HOST:PORT"):
        SweepOptions(dashboard_address=bad)


def _scheduler_file(tmp_path: Path, address: str) -> str:
    path = tmp_path / "scheduler.json"
    path.write_text(f'{{"type": "Scheduler", "id": "Scheduler-x", "address": "{address}"}}')
    return str(path)


def test_scheduler_file_of_a_tls_scheduler_needs_the_tls_files(tmp_path: Path):
    with pytest.raises(
        ConfigError, match=r"tls_ca: missing; allowed: a tls:// scheduler needs tls_ca, tls_cert, tls_key"
    ):
        SweepOptions(scheduler_file=_scheduler_file(tmp_path, "tls://127.0.0.1:8786"))


@pytest.mark.parametrize("where", ["address", "scheduler file", "local mode", "queue mode"])
def test_tls_files_with_a_plain_tcp_scheduler_are_refused(tmp_path: Path, where: str):
    files = []
    for name in ("ca", "cert", "key"):
        (tmp_path / f"{name}.pem").write_text("x")
        files.append(str(tmp_path / f"{name}.pem"))
    tls = dict(zip(("tls_ca", "tls_cert", "tls_key"), files, strict=True))
    target = {
        "address": {"scheduler": "tcp://127.0.0.1:8786"},
        "scheduler file": {"scheduler_file": _scheduler_file(tmp_path, "tcp://127.0.0.1:8786")},
        "local mode": {"mode": "parallel"},
        "queue mode": {"mode": "slurm"},  # its cluster is the sweep's own too
    }[where]
    with pytest.raises(
        ConfigError, match=r"tls_ca: bad value .*ca.pem.; allowed: the TLS files only with a tls:// scheduler"
    ):
        SweepOptions(**target, **tls)


@pytest.mark.parametrize("text", ["", "{not json", '{"address": 7}', "[]"])
def test_unreadable_scheduler_file_is_one_line(tmp_path: Path, text: str):
    path = tmp_path / "scheduler.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"scheduler_file: bad value '.*scheduler.json'; allowed: the file"):
        SweepOptions(scheduler_file=str(path))
