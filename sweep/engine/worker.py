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

Two outcomes are neither done nor failed: ``preempted`` (the worker is leaving, e.g. its job's
walltime nears: the run stopped between two steps and hands back its state as a forced
checkpoint, see ``sweep.engine.walltime``) and ``declined`` (the run did not start here: the
worker is leaving, or its time left is far shorter than the run's predicted time while a fresh
job would give it more). The driver resubmits both, from the checkpoint, without counting a
failure or a retry.
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
from ..faults import step_delay
from ..provenance import hostname, utc_now
from .walltime import declines, job_id, preempt_requested, worker_time_left

__all__ = [
    "WorkItem",
    "Outcome",
    "EXCEPTION_CLASSES",
    "failure_class_of",
    "run_package",
    "run_packages",
    "KernelWarmUp",
    "checkpoint_variable_name",
    "request_checkpoints",
    "stop_runs",
    "RunStopped",
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
    predicted_seconds: float | None = None  # the driver's prediction of this attempt's time
    fresh_life: float | None = None  # seconds a fresh job's worker would give it (queue modes)
    lifetime_fit: float = 0.0  # the lifetime-vs-prediction policy's fraction (0: off)
    rate_key: str = ""  # the run's RunSize.label, to refresh its prediction from the driver's rates
    point_steps: float = 0.0  # grid points times the steps this attempt has to do
    # look for a newer checkpoint in the relay first (a run long enough to have one: the
    # scheduler may rerun this very task after losing its worker, see _newest_resume)
    relay_resume: bool = False

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
    status: str  # "done", "failed", "preempted" or "declined"
    failure_class: str | None = None  # diverged, timeout, error (worker-lost is the driver's)
    error: str | None = None
    result: Any = None
    provenance: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None  # preempted: the encoded State to resume from

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


# sweep channel -> checkpoint requests so far, in this worker process (request_checkpoints);
# the channels of stopped sweeps, whose runs end at their next step (stop_runs)
_CHECKPOINT_REQUESTS: dict[str, int] = {}
_STOPPED: set[str] = set()


class RunStopped(Exception):
    """The sweep was stopped (Ctrl-C, SIGTERM): the run ends at its next step."""


def request_checkpoints(channel: str) -> None:
    """Ask every run of the sweep ``channel`` running in this worker process for a checkpoint at
    its next step (a stopped driver calls it on every worker with ``Client.run``)."""
    _CHECKPOINT_REQUESTS[channel] = _CHECKPOINT_REQUESTS.get(channel, 0) + 1


def stop_runs(channel: str) -> None:
    """End every run of the sweep ``channel`` in this worker process at its next step (a stopped
    driver, after the checkpoints: a running task cannot be cancelled otherwise, and the
    cluster would wait for it to end before killing its worker)."""
    _STOPPED.add(channel)


def checkpoint_variable_name(channel: str, run_id: str) -> str:
    """Name of the scheduler-side variable holding a run's latest checkpoint."""
    return f"{channel}-ckpt-{run_id}"


def rates_variable_name(channel: str) -> str:
    """Name of the scheduler-side variable holding the driver's latest measured rates
    (seconds per grid-point-step by ``RunSize.label``), for the lifetime-vs-prediction policy."""
    return f"{channel}-rates"


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
        "job_id": job_id(),
        "attempt": item.attempt,
        "start_time": started,
        "resumed_from_step": None,
        "checkpoints_sent": 0,
    }
    why_not = _why_not_here(item)
    if why_not is not None:  # before any work: nothing is lost, the driver places it again
        note(f"not started on {messenger.address}: {why_not}")
        prov.update(end_time=utc_now(), wall_time=time.time() - t0, seconds=0.0)
        return Outcome(item.package_id, item.run_id, "declined", None, why_not, None, prov, log, item.resume)
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


def run_packages(items: list[WorkItem]) -> list[Outcome]:
    """Run a batch of (tiny) packages one after the other on this worker: one task, one outcome
    per package (the driver commits each on its own). A package the worker should not start
    (it is leaving) comes back ``declined`` at once, as a task of its own would."""
    return [run_package(item) for item in items]


def _why_not_here(item: WorkItem) -> str | None:
    """Why this worker should not start the run (None: start it)."""
    if preempt_requested():
        return "its worker is leaving"
    left = worker_time_left()
    if left is None or not item.lifetime_fit or item.fresh_life is None:
        return None
    if left >= item.lifetime_fit * item.fresh_life:
        return None  # early in its life: never declines (and asks the scheduler nothing)
    predicted = _fresh_prediction(item)
    if declines(predicted, left, item.fresh_life, item.lifetime_fit):
        return (
            f"its worker has {left:.0f} s left, the run is predicted to need {predicted:.0f} s "
            f"and a fresh job would give it {item.fresh_life:.0f} s"
        )
    return None


def _fresh_prediction(item: WorkItem) -> float | None:
    """The run's predicted time from the driver's latest rates (they may have been learned
    after the run was submitted), else the prediction it was submitted with."""
    if item.channel is None or not item.rate_key:
        return item.predicted_seconds
    try:
        from distributed import Variable, get_client

        rates = Variable(rates_variable_name(item.channel), client=get_client()).get(timeout=0)
        return float(rates[item.rate_key]) * item.point_steps
    except Exception:  # none published yet, or not this key: what the driver said at submission
        return item.predicted_seconds


def _newest_resume(item: WorkItem, note: Callable[[str], None]) -> dict[str, Any] | None:
    """The checkpoint to start from: ``item.resume``, or the relay's latest one of this run when
    it is further on.

    Why: a scheduler we did not start (a remote one) reruns a task whose worker it lost, from
    the arguments it was submitted with; the checkpoints that run sent since are in the relay
    (a ``distributed.Variable`` the driver deletes once the run is finished), so this rerun
    continues from the newest instead of from the start. One scheduler round trip, only for
    runs predicted to live long enough to have a checkpoint.
    """
    if not item.relay_resume or item.channel is None:
        return item.resume
    try:
        from distributed import Variable, get_client

        payload = Variable(checkpoint_variable_name(item.channel, item.run_id), client=get_client()).get(
            timeout=0
        )
    except Exception:  # none yet (a TimeoutError), or not on a worker
        return item.resume
    try:
        relay_step = int(decode_arrays(payload)["step"].reshape(-1)[0])
        own = -1 if item.resume is None else int(decode_arrays(item.resume)["step"].reshape(-1)[0])
    except Exception:  # not a checkpoint of ours: ignore it
        return item.resume
    if relay_step <= own:
        return item.resume
    note(f"a checkpoint at step {relay_step} is in the relay: this is a rerun after a lost worker")
    return dict(payload)


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
    delay = step_delay()  # 0 except in the walltime tests
    done_steps = [0]

    def progress(step: int, n_steps: int, t: float) -> None:
        if item.channel in _STOPPED:
            raise RunStopped(f"the sweep was stopped at step {step}")
        done_steps[0] = step
        if delay:
            time.sleep(delay)
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
                    # the driver learns the run's rate from these before any run finished
                    "attempt": item.attempt,
                    "elapsed": now - t0,
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

    seen = [_CHECKPOINT_REQUESTS.get(item.channel or "", 0)]

    def checkpoint_now() -> bool:  # once per request_checkpoints
        asked = _CHECKPOINT_REQUESTS.get(item.channel or "", 0)
        if asked == seen[0]:
            return False
        seen[0] = asked
        return True

    resume = None
    from solver.errors import SolverStopped

    try:
        resume_arrays = _newest_resume(item, note)
        if resume_arrays is not None:
            resume = solver.checkpoint_from_arrays(decode_arrays(resume_arrays))
            prov["resumed_from_step"] = int(resume.step)
            when = getattr(resume, "time", None)
            at = f"t={when:.6g}" if isinstance(when, float) else f"time {getattr(resume, 'time_name', '?')}"
            note(f"resuming from the checkpoint at step {resume.step} ({at})")
        prov["from_step"] = done_steps[0] = 0 if resume is None else int(resume.step)
        want_ckpt = (
            item.channel is not None
            and solver.supports_resume
            and (item.checkpoint_every_seconds is not None or item.checkpoint_every_steps is not None)
        )
        # a worker that is leaving (its job's walltime nears): the run stops at its next step
        # with a forced checkpoint, when its solver can (``supports_stop``; others are cut off
        # at the guard's deadline and continue from their last periodic checkpoint)
        can_stop = {"stop": preempt_requested} if getattr(solver, "supports_stop", False) else {}
        # a stopped sweep asks for a checkpoint at once, of a solver that can take one then
        on_demand = getattr(solver, "checkpoint_on_demand", False) and want_ckpt
        asked = {"checkpoint_now": checkpoint_now} if on_demand else {}
        result = solver.run(
            item.params,
            deadline=t0 + item.timeout,
            progress=progress,
            checkpoint=checkpoint if want_ckpt else None,
            checkpoint_every_steps=item.checkpoint_every_steps if want_ckpt else None,
            checkpoint_every_seconds=item.checkpoint_every_seconds if want_ckpt else None,
            resume=resume,
            **can_stop,
            **asked,
        )
    except SolverStopped as stopped:  # not a failure: the run continues elsewhere from here
        t1 = time.time()
        prov.update(end_time=utc_now(), wall_time=t1 - t0, seconds=t1 - t0, to_step=int(stopped.step))
        note(
            f"stopped at step {stopped.step}: its worker is leaving (job {prov['job_id'] or '-'}); "
            "its state goes back to the driver as a checkpoint"
        )
        payload = encode_arrays(solver.checkpoint_to_arrays(stopped.state, item.params))
        return Outcome(
            item.package_id, item.run_id, "preempted", None, str(stopped), None, prov, log, payload
        )
    except Exception as exc:  # every solver failure is a result; the class says which
        cls = failure_class_of(exc)
        text = f"{type(exc).__name__}: {exc}".splitlines()[0]
        note(f"failed ({cls}): {text}")
        if cls == "error":
            log.extend(traceback.format_exc().rstrip().splitlines())
        t1 = time.time()
        prov.update(end_time=utc_now(), wall_time=t1 - t0, seconds=t1 - t0, to_step=done_steps[0])
        return Outcome(item.package_id, item.run_id, "failed", cls, text, None, prov, log)
    t1 = time.time()
    prov.update(end_time=utc_now(), wall_time=t1 - t0, seconds=t1 - t0, to_step=done_steps[0])
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
        from .connection import DropCancelledTasks

        # tasks the driver cancels (Ctrl-C) are said once, by the driver, not by each worker
        logging.getLogger("distributed.worker.state_machine").addFilter(DropCancelledTasks())
        try:
            from solver.kernels import warm_up_kernels

            warm_up_kernels()
        except Exception as exc:  # a worker whose numba fails still runs every package
            logging.getLogger("sweep.worker").warning(
                "kernel warm-up failed on %s: %s", getattr(worker, "address", "?"), exc
            )
