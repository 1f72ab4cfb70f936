"""The worker side of a sweep: run one package and hand back its outcome.

``run_package`` executes on a Dask worker that may share no disk with the driver, so it touches
no file: the result Dataset, the provenance and the package's log lines travel back as the task
result, and checkpoints travel to the driver through the scheduler (a ``distributed.Variable``
holding the latest one, announced by a worker event), where the driver saves them in the store.
Solver errors become failure classes here, so a failed run is an ordinary result, not a task
error: task errors mean the infrastructure failed (a lost worker), which the driver retries.

The package's solver comes through the registry (``sweep.solvers``): ``WorkItem.solver`` is
None for the built-in spectral solver, else the loaded solver itself (an OpenFOAM case or a
command directory pickles as its files: the worker needs no shared disk). Every solver is
run, checkpointed and resumed through the same calls.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from ..codec import decode_arrays, encode_arrays
from ..provenance import hostname, utc_now

__all__ = [
    "WorkItem",
    "Outcome",
    "EXCEPTION_CLASSES",
    "failure_class_of",
    "run_package",
    "KernelWarmUp",
    "checkpoint_variable_name",
]


@dataclass(frozen=True)
class WorkItem:
    """Everything a worker needs to run one package (sent with the task)."""

    package_id: str
    run_id: str
    priority: str
    params: dict[str, Any]
    timeout: float  # seconds from the start of this attempt
    attempt: int = 1
    checkpoint_every_seconds: float | None = None
    checkpoint_every_steps: int | None = None
    resume: dict[str, Any] | None = None  # encoded checkpoint arrays (see encode_arrays)
    channel: str | None = None  # event topic / variable prefix of this sweep; None: no messages
    progress_every: float = 5.0  # seconds between two progress events
    announce_after: float = 0.5  # seconds a run runs before it announces its start (see _Announcer)
    solver: Any = None  # the package's solver (sweep.solvers.protocol.Solver); None: spectral

    def __dask_tokenize__(self) -> tuple[str, str | None, str, int]:
        """Dask's token of this item (its tokenize protocol): the sweep, the run and the attempt
        identify it. Tasks are submitted under explicit keys, so the token only names the map
        expression; hashing every parameter, tag and checkpoint byte of every item cost the
        driver about a third of a millisecond per package."""
        return ("WorkItem", self.channel, self.run_id, self.attempt)


@dataclass
class Outcome:
    """What came of one attempt at a package: a result, or a failure class and its error.

    ``result`` is the run's ``solver.output.RunResult`` (plain arrays: cheap to send and to
    store); ``dataset`` gives it as the ``xarray.Dataset`` ``solver.simulate`` returns.
    """

    package_id: str
    run_id: str
    status: str  # "done" or "failed"
    failure_class: str | None = None  # diverged, timeout, error (worker-lost is the driver's)
    error: str | None = None
    result: Any = None
    provenance: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    @property
    def dataset(self) -> Any:
        """The result as an ``xarray.Dataset`` (None for a failed run)."""
        if self.result is None or not hasattr(self.result, "to_dataset"):
            return self.result
        return self.result.to_dataset()


def _exception_classes() -> dict[type, str]:
    from solver.errors import DivergedError, SolverTimeout

    return {DivergedError: "diverged", SolverTimeout: "timeout"}


# solver exception -> its failure class (one of sweep.store.FAILURE_CLASSES); anything else
# is "error" ("worker-lost" is the driver's: a task that never returned)
EXCEPTION_CLASSES: dict[type, str] = _exception_classes()


def failure_class_of(exc: BaseException) -> str:
    """The failure class of a solver exception (the most specific registered class wins)."""
    for cls in type(exc).__mro__:
        if cls in EXCEPTION_CLASSES:
            return EXCEPTION_CLASSES[cls]
    return "error"


def checkpoint_variable_name(channel: str, run_id: str) -> str:
    """Name of the scheduler-side variable holding a run's latest checkpoint."""
    return f"{channel}-ckpt-{run_id}"


class _Announcer:
    """A daemon thread per worker process sending the start events of the runs still running
    ``WorkItem.announce_after`` seconds after they started (polled: no wake-up per run).

    The driver needs the start of a run that may stop answering (its watchdog) and shows long
    runs as running; a start event for each of many tiny runs would cost the worker, the
    scheduler and the driver more than the run itself. A run that ends sooner reports where
    and when it started in its outcome. (A run stuck from its start while holding the GIL is
    announced by nobody: Dask's worker time-to-live then removes its silent worker, and the
    run is retried.)
    """

    def __init__(self, period: float) -> None:
        self.period = period  # polling period: a quarter of the shortest announce_after seen
        self.pending: dict[int, tuple[float, Callable[[], None]]] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, due: float, send: Callable[[], None], after: float) -> int:
        """Call ``send()`` at ``time.monotonic() >= due`` (``after`` seconds from now) unless
        removed before; returns a token for ``remove``."""
        self.period = min(self.period, max(0.01, after / 4))
        token = next(self._ids)
        self.pending[token] = (due, send)
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="sweep-announcer", daemon=True)
                    self._thread.start()
        return token

    def remove(self, token: int) -> None:
        self.pending.pop(token, None)

    def _loop(self) -> None:
        while True:
            time.sleep(self.period)
            now = time.monotonic()
            for token, (due, send) in self.pending.copy().items():  # a copy: runs come and go
                if due <= now and self.pending.pop(token, None) is not None:
                    try:
                        send()
                    except Exception:  # a closing worker: the run's outcome says it all
                        pass


_announcer = _Announcer(period=0.125)


class _Messenger:
    """Sends small events (start, progress, checkpoint announcements) to the driver."""

    def __init__(self, channel: str | None) -> None:
        self.channel = channel
        self.worker = None
        self.address = "local"
        if channel is not None:
            try:
                from distributed import get_worker

                self.worker = get_worker()
                self.address = self.worker.address
            except ValueError:  # called outside a worker (a plain function call)
                self.worker = None

    def event(self, msg: dict[str, Any]) -> None:
        if self.worker is not None and self.channel is not None:
            self.worker.log_event(self.channel, msg)

    def publish_checkpoint(self, run_id: str, payload: dict[str, Any]) -> bool:
        """Put the latest checkpoint where the driver can fetch it; False outside Dask."""
        if self.worker is None or self.channel is None:
            return False
        from distributed import Variable, get_client

        Variable(checkpoint_variable_name(self.channel, run_id), client=get_client()).set(payload)
        return True


def run_package(item: WorkItem) -> Outcome:
    """Run one package's simulation on this worker; never raises for a solver failure."""
    t0 = time.time()
    started = utc_now()
    messenger = _Messenger(item.channel)
    log: list[str] = []

    def note(line: str) -> None:
        log.append(f"{utc_now()} {line}")

    prov: dict[str, Any] = {
        "host": hostname(),
        "pid": os.getpid(),
        "worker": messenger.address,
        "attempt": item.attempt,
        "start_time": started,
        "resumed_from_step": None,
        "checkpoints_sent": 0,
    }
    m0 = time.monotonic()
    token = None
    if messenger.worker is not None:

        def announce() -> None:  # elapsed, not a time stamp: the hosts' clocks may differ
            messenger.event(
                {
                    "event": "start",
                    "run_id": item.run_id,
                    "package_id": item.package_id,
                    "worker": messenger.address,
                    "time": t0,
                    "attempt": item.attempt,
                    "elapsed": time.monotonic() - m0,
                }
            )

        token = _announcer.add(m0 + item.announce_after, announce, item.announce_after)
    note(
        f"started attempt {item.attempt} on {prov['host']} ({messenger.address}), timeout {item.timeout:g} s"
    )
    try:
        return _run(item, t0, prov, messenger, log, note)
    finally:
        if token is not None:
            _announcer.remove(token)


def _run(
    item: WorkItem,
    t0: float,
    prov: dict[str, Any],
    messenger: _Messenger,
    log: list[str],
    note: Callable[[str], None],
) -> Outcome:
    """The simulation of ``run_package``, its failures turned into failure classes."""
    from ..solvers.spectral import SPECTRAL

    solver = item.solver if item.solver is not None else SPECTRAL
    last_progress = [t0]

    def progress(step: int, n_steps: int, t: float) -> None:
        now = time.time()
        if now - last_progress[0] >= item.progress_every:
            last_progress[0] = now
            messenger.event(
                {
                    "event": "progress",
                    "run_id": item.run_id,
                    "package_id": item.package_id,
                    "step": step,
                    "n_steps": n_steps,
                    "t": t,
                }
            )

    def checkpoint(state: Any) -> None:
        payload = encode_arrays(solver.checkpoint_to_arrays(state, item.params))
        step = int(getattr(state, "step", -1))
        if messenger.publish_checkpoint(item.run_id, payload):
            prov["checkpoints_sent"] += 1
            messenger.event(
                {"event": "checkpoint", "run_id": item.run_id, "package_id": item.package_id, "step": step}
            )
            note(f"checkpoint at step {step} sent to the driver")

    resume = None
    try:
        if item.resume is not None:
            resume = solver.checkpoint_from_arrays(decode_arrays(item.resume))
            prov["resumed_from_step"] = int(resume.step)
            when = getattr(resume, "time", None)
            at = f"t={when:.6g}" if isinstance(when, float) else f"time {getattr(resume, 'time_name', '?')}"
            note(f"resuming from the checkpoint at step {resume.step} ({at})")
        want_ckpt = (
            item.channel is not None
            and solver.supports_resume
            and (item.checkpoint_every_seconds is not None or item.checkpoint_every_steps is not None)
        )
        result = solver.run(
            item.params,
            deadline=t0 + item.timeout,
            progress=progress,
            checkpoint=checkpoint if want_ckpt else None,
            checkpoint_every_steps=item.checkpoint_every_steps if want_ckpt else None,
            checkpoint_every_seconds=item.checkpoint_every_seconds if want_ckpt else None,
            resume=resume,
        )
    except Exception as exc:  # every solver failure is a result; the class says which
        cls = failure_class_of(exc)
        text = f"{type(exc).__name__}: {exc}".splitlines()[0]
        note(f"failed ({cls}): {text}")
        if cls == "error":
            log.extend(traceback.format_exc().rstrip().splitlines())
        t1 = time.time()
        prov.update(end_time=utc_now(), wall_time=t1 - t0)
        return Outcome(item.package_id, item.run_id, "failed", cls, text, None, prov, log)
    t1 = time.time()
    prov.update(end_time=utc_now(), wall_time=t1 - t0)
    note(f"finished in {t1 - t0:.3f} s")
    return Outcome(item.package_id, item.run_id, "done", None, None, result, prov, log)


class KernelWarmUp(WorkerPlugin):
    """Loads the solver's fastest kernel set (numba) in every worker of a sweep when it starts,
    and in a restarted worker when it joins, so that its first run does not pay numba's
    start-up (~1.3 s) against its timeout and small grids get the fast kernels too
    (``solver.kernels.warm_up_kernels``)."""

    name = "ns-sweep-kernel-warm-up"
    idempotent = True  # one warm-up per worker process, however many sweeps register it

    def setup(self, worker: Any) -> None:
        try:
            from solver.kernels import warm_up_kernels

            warm_up_kernels()
        except Exception as exc:  # a worker whose numba fails still runs every package
            logging.getLogger("sweep.worker").warning(
                "kernel warm-up failed on %s: %s", getattr(worker, "address", "?"), exc
            )
