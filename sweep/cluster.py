"""Where a sweep runs: a registry of cluster modes that each give a connected Dask ``Client``.

- ``sequential``: a ``LocalCluster`` of one worker process with one thread. A process (not a
  thread) so that a run that stops answering can be killed by restarting its worker.
- ``parallel``: a ``LocalCluster`` of ``max_parallel`` worker processes with one thread each
  (the solver holds the GIL between FFT calls, so threads would not help).
- a remote scheduler: ``tcp://host:port``, ``tls://host:port`` (with CA, certificate and key
  files) or a scheduler file written by ``dask scheduler --scheduler-file``. Its workers may
  share no disk with this process: everything travels through Dask.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["MODES", "SCHEMES", "ClusterHandle", "connect", "check_remote", "usable_cores",
           "tls_security", "wrap_client"]


def usable_cores() -> int:
    """Cores this process may use (the CPU affinity mask, not the machine's total)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@dataclass
class ClusterHandle:
    """A connected client, and the cluster we started for it (None for a remote scheduler)."""

    client: Any
    description: str
    cluster: Any = None
    own_client: bool = True
    workers_per_host: int = 1
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's address, when the scheduler serves one."""
        try:
            return self.client.dashboard_link
        except Exception:  # no bokeh on a remote scheduler, or no HTTP server
            return None

    def close(self) -> None:
        """Close what we opened (a client given by the caller stays open)."""
        if self.own_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _local(n_workers: int, *, dashboard: bool = True) -> ClusterHandle:
    import dask.config
    from distributed import Client, LocalCluster

    # The solver reads SWEEP_WORKERS_PER_HOST to split the host's cores among worker
    # processes for its FFT threads (one worker may use all cores; FFT bits do not depend on it).
    env = {"SWEEP_WORKERS_PER_HOST": str(n_workers)}
    # A lost worker fails its task at once (KilledWorker), so the engine resubmits the run
    # with its latest checkpoint instead of the scheduler rerunning it from the original one.
    # Worker processes spawned while SIGINT is ignored keep ignoring it: Ctrl-C then reaches
    # only the driver, which cancels the runs and closes the cluster in order (instead of every
    # worker dying at once and distributed printing pages of tracebacks).
    prev = None
    if threading.current_thread() is threading.main_thread():
        prev = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0" if dashboard else None,
                env=env,
            )
    finally:
        if prev is not None:
            signal.signal(signal.SIGINT, prev)
    client = Client(cluster)
    return ClusterHandle(client, "", cluster=cluster, workers_per_host=n_workers)


def _sequential(max_parallel: int | None = None, **_: Any) -> ClusterHandle:
    handle = _local(1)
    handle.description = "sequential: LocalCluster, 1 worker process, 1 thread"
    return handle


def _parallel(max_parallel: int | None = None, **_: Any) -> ClusterHandle:
    n = max_parallel or usable_cores()
    handle = _local(n)
    handle.description = f"parallel: LocalCluster, {n} worker processes, 1 thread each"
    return handle


# mode name -> factory(max_parallel=...) -> ClusterHandle
MODES: dict[str, Callable[..., ClusterHandle]] = {
    "sequential": _sequential,
    "parallel": _parallel,
}

# scheduler address schemes we connect to
SCHEMES = ("tcp", "tls")


def tls_security(ca: str | os.PathLike | None, cert: str | os.PathLike | None,
                 key: str | os.PathLike | None) -> Any:
    """A ``distributed.Security`` for a ``tls://`` scheduler, checking the files exist."""
    from distributed.security import Security

    given = {"--tls-ca": ca, "--tls-cert": cert, "--tls-key": key}
    missing = [opt for opt, v in given.items() if v is None]
    if missing:
        raise ConfigError(
            f"a tls:// scheduler needs {', '.join(missing)}: give the CA certificate, this "
            "client's certificate and its private key (PEM files)")
    for opt, v in given.items():
        if not Path(v).is_file():
            raise ConfigError(f"{opt}: no such file {str(v)!r}; give a PEM file")
    return Security(tls_ca_file=str(ca), tls_client_cert=str(cert), tls_client_key=str(key),
                    require_encryption=True)


def check_remote(address: str | None, scheduler_file: str | None, security: Any = None,
                 tls: tuple[Any, Any, Any] = (None, None, None)) -> Any:
    """Check a remote target's options without connecting; returns the Security to use."""
    if scheduler_file is not None:
        if not Path(scheduler_file).is_file():
            raise ConfigError(f"--scheduler-file: no such file {scheduler_file!r}; give the file "
                              "written by `dask scheduler --scheduler-file FILE`")
        if security is None and any(tls):
            security = tls_security(*tls)
        return security
    assert address is not None
    scheme = address.split("://", 1)[0] if "://" in address else ""
    if scheme not in SCHEMES:
        raise ConfigError(
            f"--scheduler: bad address {address!r}; allowed: "
            + " or ".join(f"{s}://HOST:PORT" for s in SCHEMES) + " (or use --scheduler-file)")
    if scheme == "tls" and security is None:
        security = tls_security(*tls)
    return security


def _remote(address: str | None, scheduler_file: str | None, security: Any,
            tls: tuple[Any, Any, Any]) -> ClusterHandle:
    from distributed import Client

    security = check_remote(address, scheduler_file, security, tls)
    if scheduler_file is not None:
        client = Client(scheduler_file=scheduler_file, security=security, timeout="30s")
        return ClusterHandle(client, f"remote scheduler from {scheduler_file}")
    try:
        client = Client(address, security=security, timeout="30s")
    except OSError as exc:
        raise ConfigError(f"--scheduler: cannot reach {address}: {exc}; is `dask scheduler` "
                          "running there and the port open?") from None
    return ClusterHandle(client, f"remote scheduler {address}")


def connect(mode: str = "parallel", *, max_parallel: int | None = None,
            scheduler: str | None = None, scheduler_file: str | None = None,
            security: Any = None, tls_ca: str | None = None, tls_cert: str | None = None,
            tls_key: str | None = None) -> ClusterHandle:
    """Start or connect to the cluster a sweep runs on.

    A ``scheduler`` address or ``scheduler_file`` selects a remote cluster (``mode`` is then
    ignored); otherwise ``mode`` picks a local one from ``MODES``.
    """
    if max_parallel is not None and max_parallel < 1:
        raise ConfigError(f"--max-parallel: bad value {max_parallel}; allowed: an integer >= 1")
    if scheduler is not None or scheduler_file is not None:
        return _remote(scheduler, scheduler_file, security, (tls_ca, tls_cert, tls_key))
    try:
        factory = MODES[mode]
    except KeyError:
        raise ConfigError(f"--mode: bad value {mode!r}; allowed: {', '.join(MODES)}") from None
    return factory(max_parallel=max_parallel)


def wrap_client(client: Any) -> ClusterHandle:
    """A handle around a client the caller owns (the engine leaves it open)."""
    return ClusterHandle(client, f"existing client of {client.scheduler.address}", own_client=False)
