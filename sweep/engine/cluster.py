"""Where a sweep runs: a registry of cluster modes that each give a connected Dask ``Client``.

- ``sequential``: a ``LocalCluster`` of one worker process with one thread. A process (not a
  thread) so that a run that stops answering can be killed by restarting its worker.
- ``parallel``: a ``LocalCluster`` of ``max_parallel`` worker processes with one thread each
  (the solver holds the GIL between FFT calls, so threads would not help).

  Local clusters keep other users of the host out: every comm between this process, the
  scheduler and the workers is TLS with throwaway credentials made for the cluster
  (``distributed.Security.temporary()``: in memory only, never in a file, on a command line
  or in an environment), so nobody else can connect to the scheduler and run code in the
  driver (which holds the store's lock) or the workers; everything listens on 127.0.0.1,
  the Dask dashboard too unless ``dashboard_address`` says otherwise (``dashboard_note``
  prints how to reach it over SSH).
- ``slurm``, ``pbs``, ``sge``, ``lsf``: an HPC queue through its dask-jobqueue cluster class
  (``sweep.engine.jobqueue``): jobs started and cancelled as the sweep needs them, workers that
  checkpoint their runs before their job's walltime.
- a remote scheduler: ``tcp://host:port``, ``tls://host:port`` (with CA, certificate and key
  files) or a scheduler file written by ``dask scheduler --scheduler-file``. Its workers may
  share no disk with this process: everything travels through Dask.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from solver.params import THREADS_ENV

from .. import config
from ..errors import ClusterStartError, ConfigError, option_error
from ..machine import usable_cores
from .connection import quiet_distributed
from .interrupts import Interrupted, deferred_stop
from .jobqueue import QUEUES

if TYPE_CHECKING:  # pragma: no cover
    from .options import SweepOptions

__all__ = [
    "MODES",
    "SCHEMES",
    "ClusterHandle",
    "connect",
    "check_remote",
    "tls_security",
    "wrap_client",
    "dashboard_note",
]


@dataclass
class ClusterHandle:
    """A connected client, and the cluster we started for it (None for a remote scheduler)."""

    client: Any
    description: str
    cluster: Any = None
    own_client: bool = True
    queue: Any = None  # a queue mode's QueueRuntime (sweep.engine.jobs): jobs, scaling, guard

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's address, when the scheduler serves one."""
        try:
            link = self.client.dashboard_link
        except Exception:  # no bokeh on a remote scheduler, or no HTTP server
            return None
        return self.queue.dashboard_link(link) if self.queue is not None and link else link

    def close(self) -> None:
        """Close what we opened (a client given by the caller stays open)."""
        if self.own_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _local(n_workers: int, *, dashboard_address: str | None = "127.0.0.1:0") -> ClusterHandle:
    from distributed import Client

    # Each worker process gets its share of the host's cores for one run's threads (FFTs and
    # array kernels: the results do not depend on the count), through the solver's own setting.
    env = {THREADS_ENV: str(max(1, usable_cores() // n_workers))}
    # A lost worker fails its task at once (KilledWorker), so the engine resubmits the run
    # with its latest checkpoint instead of the scheduler rerunning it from the original one.
    # Worker processes ignore SIGINT, SIGTERM and SIGHUP (sweep.engine.worker_setup): Ctrl-C
    # (the terminal's whole process group), a closed terminal or a batch system's SIGTERM
    # (every process of the job) stop only the driver, which asks the runs for checkpoints,
    # ends them and closes the cluster in order (sweep.engine.interrupts).
    attempts = max(1, int(config.get("cluster-start-attempts")))
    cluster = client = None
    # a stop signal while the cluster starts is acted on once it is up (or has failed): a start
    # cut short would leave its tasks and processes behind
    with deferred_stop() as stopped:
        for attempt in range(1, attempts + 1):
            try:
                cluster = _start_local_cluster(n_workers, dashboard_address, env)
                break
            except Exception as exc:  # a worker process that died (killed, out of memory) as it started
                if stopped:  # the stop signal killed a starting worker too: the stop is what counts
                    break
                why = " ".join(f"{type(exc).__name__}: {exc}".split())
                if attempt == attempts:
                    raise ClusterStartError(
                        f"cannot start the local Dask cluster ({attempts} attempts, sweep.cluster-start-"
                        f"attempts): {why}; nothing ran: check the memory and process limits (ulimit -u), "
                        "try fewer --max-parallel or --mode sequential, and run again"
                    ) from None
                logging.getLogger("sweep.engine").warning(
                    "local cluster: a worker process failed while it started (%s); starting it again "
                    "(%d of %d)",
                    why,
                    attempt + 1,
                    attempts,
                )
        if cluster is not None and not stopped:
            client = Client(cluster)  # with the cluster's credentials
    if stopped:
        with quiet_distributed():
            for opened in (client, cluster):
                if opened is not None:
                    opened.close()
        raise Interrupted(stopped[0])
    return ClusterHandle(client, "", cluster=cluster)


def _start_local_cluster(n_workers: int, dashboard_address: str | None, env: dict[str, str]) -> Any:
    """One attempt at the LocalCluster (a failed one closes what it started); each of its worker
    processes ignores the stop signals (``sweep.engine.worker_setup``, a preload: restarted
    workers too)."""
    import dask.config
    from distributed import LocalCluster
    from distributed.security import Security

    _start_resource_tracker()
    preload = [*dask.config.get("distributed.worker.preload", []), "sweep.engine.worker_setup"]
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=dashboard_address,
            env=env,
            security=Security.temporary(),  # TLS: see the module docstring
            preload=preload,
        )


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (a child that the cluster's processes use) with
    SIGHUP ignored: it ignores SIGINT and SIGTERM itself, and a closed terminal must not kill it
    under a driver that stops cleanly (it would be relaunched and print tracebacks)."""
    from multiprocessing import resource_tracker

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
        resource_tracker.ensure_running()
        return
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        resource_tracker.ensure_running()  # a no-op once it runs
    finally:
        signal.signal(signal.SIGHUP, previous)


def _sequential(
    max_parallel: int | None = None, dashboard_address: str | None = "127.0.0.1:0", **_: Any
) -> ClusterHandle:
    handle = _local(1, dashboard_address=dashboard_address)
    handle.description = "sequential: LocalCluster, 1 worker process, 1 thread"
    return handle


def _parallel(
    max_parallel: int | None = None, dashboard_address: str | None = "127.0.0.1:0", **_: Any
) -> ClusterHandle:
    n = max_parallel or usable_cores()
    handle = _local(n, dashboard_address=dashboard_address)
    handle.description = f"parallel: LocalCluster, {n} worker processes, 1 thread each"
    return handle


def _queue(
    name: str, *, options: SweepOptions, log_dir: Path, queue_spec: Any = None, **_: Any
) -> ClusterHandle:
    from .jobqueue import prepare_queue, start_queue
    from .jobs import QueueRuntime

    spec = queue_spec if queue_spec is not None else prepare_queue(options)
    cluster, adaptive, failures = start_queue(spec, log_dir)
    try:
        client = _client_of(cluster)
    except BaseException:
        cluster.close()
        raise
    runtime = QueueRuntime(spec, cluster, adaptive, failures)
    return ClusterHandle(client, spec.describe(), cluster=cluster, queue=runtime)


def _client_of(cluster: Any) -> Any:
    from distributed import Client

    return Client(cluster)


# mode name -> factory(max_parallel=..., dashboard_address=..., options=..., log_dir=...) -> ClusterHandle
MODES: dict[str, Callable[..., ClusterHandle]] = {
    "sequential": _sequential,
    "parallel": _parallel,
    # the HPC queues: sweep.engine.jobqueue.QUEUES
    **{name: functools.partial(_queue, name) for name in QUEUES},
}

# scheduler address schemes we connect to
SCHEMES = ("tcp", "tls")


def tls_security(
    ca: str | os.PathLike | None, cert: str | os.PathLike | None, key: str | os.PathLike | None
) -> Any:
    """A ``distributed.Security`` for a ``tls://`` scheduler, checking the files exist."""
    from distributed.security import Security

    given = {"tls_ca": ca, "tls_cert": cert, "tls_key": key}
    missing = [opt for opt, v in given.items() if v is None]
    if missing:
        raise ConfigError(
            f"{missing[0]}: missing; allowed: a tls:// scheduler needs {', '.join(missing)}: the CA "
            "certificate, this client's certificate and its private key (PEM files)",
            option=missing[0],
        )
    for opt, v in given.items():
        if not Path(str(v)).is_file():
            raise option_error(opt, str(v), "an existing PEM file (no such file)")
    return Security(
        tls_ca_file=str(ca), tls_client_cert=str(cert), tls_client_key=str(key), require_encryption=True
    )


_TLS_OPTIONS = ("tls_ca", "tls_cert", "tls_key")


def tls_files_refused(tls: tuple[Any, Any, Any], why: str) -> ConfigError:
    """The error for TLS files given where they would be ignored (never silently: plain TCP)."""
    opt, value = next((o, v) for o, v in zip(_TLS_OPTIONS, tls, strict=True) if v is not None)
    return option_error(opt, str(value), f"the TLS files only with a tls:// scheduler ({why})")


def _scheduler_file_address(path: str) -> str:
    """The address in a scheduler file (``dask scheduler --scheduler-file``), read bounded."""
    from ..spec.files import file_problem, read_bytes

    allowed = "the file written by `dask scheduler --scheduler-file FILE`"
    problems: list[str] = []
    if not os.path.lexists(path):
        raise option_error("scheduler_file", path, f"{allowed} (no such file)")
    why = file_problem(path, path, None)  # a FIFO is never opened
    text = read_bytes(path, path, problems) if why is None else None
    try:
        address = json.loads(text or b"").get("address") if text is not None else None
    except (ValueError, AttributeError):
        address = None
    if not isinstance(address, str) or not address:
        detail = why or (problems[0] if problems else "a JSON object with the scheduler's address")
        raise option_error("scheduler_file", path, f"{allowed}: {detail.rsplit(': ', 1)[-1]}")
    return address


def check_remote(
    address: str | None,
    scheduler_file: str | None,
    security: Any = None,
    tls: tuple[Any, Any, Any] = (None, None, None),
) -> Any:
    """Check a remote target's options without connecting; returns the Security to use.

    A scheduler file is read for its address: a ``tls://`` scheduler needs the TLS files (or
    ``security``) either way, and TLS files given for a ``tcp://`` one are refused (they would
    be ignored: the sweep would run in plain text)."""
    if scheduler_file is not None:
        address = _scheduler_file_address(scheduler_file)
    else:
        assert address is not None
    scheme = address.split("://", 1)[0] if "://" in address else ""
    if scheme not in SCHEMES:
        if scheduler_file is not None:  # a protocol Dask knows and we do not check (ucx://, ...)
            return security
        raise option_error(
            "scheduler", address, " or ".join(f"{s}://HOST:PORT" for s in SCHEMES) + " (or a scheduler file)"
        )
    if scheme == "tcp" and any(v is not None for v in tls):
        raise tls_files_refused(tls, f"this one is {address}: give its tls:// address, or drop them")
    if scheme == "tls" and security is None:
        security = tls_security(*tls)
    return security


def _remote(address: str | None, scheduler_file: str | None, security: Any) -> ClusterHandle:
    from distributed import Client

    option = "scheduler_file" if scheduler_file is not None else "scheduler"
    target = address if scheduler_file is None else f"the scheduler of {scheduler_file}"
    try:
        if scheduler_file is not None:
            client = Client(scheduler_file=scheduler_file, security=security, timeout="30s")
        else:
            client = Client(address, security=security, timeout="30s")
    except OSError as exc:  # unreachable, or TLS credentials it does not accept
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(
            f"{option}: cannot reach {target}: {why}; allowed: a running `dask scheduler` whose "
            "port is open (and, for tls://, the CA, certificate and key it accepts)",
            option=option,
        ) from None
    if scheduler_file is not None:
        return ClusterHandle(client, f"remote scheduler from {scheduler_file}")
    return ClusterHandle(client, f"remote scheduler {address}")


def connect(options: SweepOptions, log_dir: Path | None = None, queue_spec: Any = None) -> ClusterHandle:
    """Start or connect to the cluster a sweep runs on (``options`` are validated already).

    A ``scheduler`` address or ``scheduler_file`` selects a remote cluster (``mode`` is then
    ignored); otherwise ``mode`` picks a local one or an HPC queue from ``MODES`` (queue modes
    put their job logs in ``log_dir/jobs``; ``queue_spec``: their settings, checked already).
    """
    if options.remote:
        return _remote(options.scheduler, options.scheduler_file, options.security)
    assert options.mode is not None
    return MODES[options.mode](
        max_parallel=options.max_parallel,
        dashboard_address=options.dashboard_address,
        options=options,
        log_dir=Path(log_dir) if log_dir is not None else Path.cwd() / "logs",
        queue_spec=queue_spec,
    )


def wrap_client(client: Any) -> ClusterHandle:
    """A handle around a client the caller owns (the engine leaves it open)."""
    return ClusterHandle(client, f"existing client of {client.scheduler.address}", own_client=False)


def dashboard_note(link: str | None) -> str:
    """What to add after a dashboard's address: how to reach one that listens on this host only."""
    from urllib.parse import urlparse

    if not link:
        return ""
    url = urlparse(link)
    if url.hostname not in ("127.0.0.1", "localhost", "::1") or url.port is None:
        return ""
    p = url.port
    return (
        f" (this host only; from your machine: ssh -N -L {p}:127.0.0.1:{p} {socket.gethostname()}, "
        f"then open http://localhost:{p}{url.path})"
    )
