"""Walltime-safe Dask workers on HPC queues (prototype for issue 14; the lead moves it into
``sweep/engine/``): a run that is still going when its job's walltime nears writes a checkpoint
and returns it, and the driver resubmits it from there on another worker or the next job.

Why a plugin and not ``--lifetime`` alone (distributed 2026.8, read in worker.py and
scheduler.py, and measured on a real SLURM in tests/test_hpc_walltime.py): when a worker's
lifetime expires, ``Worker.close_gracefully`` asks the scheduler to ``retire_workers``, which
only waits for the worker's *in-memory* results to be copied elsewhere, not for executing tasks.
The scheduler then removes the worker (``expected=True``: no KilledWorker, no suspicious count)
and reschedules its executing tasks from their original arguments, while the old thread runs on
in the closing worker (until it ends, ``Worker.close``'s 30 s executor timeout, or the job is
cancelled ``distributed.deploy.lost-worker-timeout`` after the removal) and its result is thrown
away. The worker's status is ``closing_gracefully`` for only milliseconds before ``closing``
(never seen by a task polling every 0.2 s), too short to hand anything back; a
``WorkerPlugin.teardown`` or a scheduler plugin's ``remove_worker`` runs after the removal. So
the task restarts from zero: dask/dask-jobqueue#122, #416, #597, #691.

The mechanism here, all public APIs:

1. ``lifetime_args`` turns a job's walltime into ``--lifetime``/``--lifetime-stagger`` worker
   arguments (dask-jobqueue's ``worker_extra_args``) so every worker leaves cleanly a margin
   before the walltime even if nothing else runs (the backstop).
2. ``WalltimeGuard`` (a ``WorkerPlugin``) computes when its worker must be gone: the earlier of
   the worker's own lifetime (``Worker.lifetime``, stagger drawn) and the job's end from the
   queue (``job_end_time``) less a margin. ``grace`` seconds before that it *drains* the
   worker: it sets its flag and calls ``Scheduler.retire_workers(close_workers=False,
   remove=False)``, which sets the worker ``closing_gracefully`` (no new task is sent or started
   here) but keeps it in the cluster, so results still flow. It then waits until no task runs
   and no result waits to be fetched, retires the worker for good (``remove=True``) and closes
   it with its nanny, which ends the job early instead of idling until the walltime.
3. A run loops over its steps with ``run_steps``, which checks ``preempt_requested()`` between
   steps (a status read and a dict lookup: 0.23 us measured), and on a drain returns a
   ``StepOutcome`` with status ``"preempted"`` carrying the state as its checkpoint.
4. ``drive`` (the driver loop) resubmits a preempted run from that checkpoint; a preemption is
   not a failure and not a lost worker.

Limits: a step longer than ``grace`` is cut off by the close (the run then restarts from the
arguments it was submitted with, as plain Dask does); a worker holding results no client fetches
in time closes without them (they are recomputed); the job's end is read once, when the plugin
starts (a walltime extended later by the admin is not seen).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from distributed import as_completed, get_worker
from distributed.core import Status
from distributed.diagnostics.plugin import WorkerPlugin

__all__ = [
    "parse_walltime",
    "lifetime_args",
    "parse_time_left",
    "job_end_time",
    "jobs_time_left",
    "WalltimeGuard",
    "preempt_requested",
    "StepOutcome",
    "run_steps",
    "RunLedger",
    "drive",
    "QueueUnavailable",
    "preflight_sbatch",
]

# Worker states in which a running task should stop at its next step and hand back its state.
_LEAVING = frozenset({Status.closing_gracefully, Status.closing, Status.closed})

_WALLTIME = re.compile(r"^(?:(?P<d>\d+)-)?(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+)$")


def parse_walltime(text: str) -> float:
    """Seconds in a SLURM/PBS walltime: ``[D-]HH:MM:SS``, ``MM:SS`` or ``D-HH:MM:SS``.

    Raises ValueError naming the value and the accepted forms (``1h`` is not one).
    """
    m = _WALLTIME.match(text.strip())
    if m is None:
        raise ValueError(f"bad walltime {text!r}; allowed: HH:MM:SS, MM:SS or D-HH:MM:SS")
    d, h, mi, s = (int(m.group(k) or 0) for k in ("d", "h", "m", "s"))
    return float(((d * 24 + h) * 60 + mi) * 60 + s)


def lifetime_args(walltime: str | float, margin: float, stagger: float = 0.0) -> list[str]:
    """``worker_extra_args`` making each worker retire ``margin`` seconds or more before its
    job's walltime: ``--lifetime (walltime - margin - stagger)s --lifetime-stagger {stagger}s``.

    The worker's clock starts a few seconds after its job's (Python start-up), which adds to
    the margin. ``--lifetime-restart`` is deliberately absent: a restarted worker would live
    in a job about to be killed; the job must end so the queue can start a fresh one.
    """
    seconds = parse_walltime(walltime) if isinstance(walltime, str) else float(walltime)
    life = seconds - margin - stagger
    if life <= 0:
        raise ValueError(
            f"walltime {walltime!r} leaves no lifetime after a margin of {margin:g} s "
            f"and a stagger of {stagger:g} s; give a longer walltime"
        )
    args = ["--lifetime", f"{life:g}s"]
    if stagger > 0:
        args += ["--lifetime-stagger", f"{stagger:g}s"]
    return args


def parse_time_left(text: str) -> float | None:
    """Seconds in squeue's ``%L`` (time left): ``SS``, ``MM:SS``, ``HH:MM:SS``,
    ``D-HH:MM:SS``; None for ``UNLIMITED``, ``NOT_SET``, ``INVALID`` or anything else."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return float(text)
    try:
        return parse_walltime(text)
    except ValueError:
        return None


def jobs_time_left(
    job_ids: Iterable[str], squeue: str = "squeue", env: Mapping[str, str] | None = None, timeout: float = 10
) -> dict[str, float | None]:
    """Seconds of walltime left per SLURM job id: a number for a running job, None for a
    pending one (or one without a limit); jobs that ended are absent. One ``squeue -j ID,...
    -o '%i %T %L'`` call. Raises ``OSError``/``subprocess.SubprocessError`` when squeue is
    missing, fails or hangs."""
    ids = [str(j) for j in job_ids]
    if not ids:
        return {}
    out = subprocess.run(
        [squeue, "-h", "-j", ",".join(ids), "-o", "%i %T %L"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else dict(env),
    )
    if out.returncode != 0:
        # exit 1 when no listed job is known any more (after MinJobAge, 300 s by default)
        if "Invalid job id" in out.stderr:
            return {}
        raise OSError(f"squeue exited {out.returncode}: {out.stderr.strip()}")
    left: dict[str, float | None] = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        # asked by id, squeue also lists ended jobs (COMPLETED, TIMEOUT...) with their full limit
        if len(parts) == 3 and parts[1] in ("RUNNING", "PENDING"):
            left[parts[0]] = parse_time_left(parts[2]) if parts[1] == "RUNNING" else None
    return left


def job_end_time(job_id: str | None = None) -> float | None:
    """When this SLURM job's walltime ends (``time.time()`` seconds), or None outside a SLURM
    job, without squeue, or for a job without a limit.

    SLURM 22.05 sets no ``SLURM_JOB_END_TIME`` in the job (measured; newer releases document it
    and it is used when present); otherwise this asks ``squeue -j $SLURM_JOB_ID`` for ``%L``
    (time left: free of time zones, unlike ``%e``).
    """
    job_id = job_id or os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    end = os.environ.get("SLURM_JOB_END_TIME")
    if end and end.isdigit():
        return float(end)
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    try:
        left = jobs_time_left([job_id], squeue=squeue).get(job_id)
    except (OSError, subprocess.SubprocessError):
        return None
    return None if left is None else time.time() + left


def _process_start() -> float:
    """Creation time of this process: the worker's lifetime clock starts a little later, so
    counting from here errs on the early side."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:
        return time.time()


class WalltimeGuard(WorkerPlugin):
    """Drains a worker ``grace`` seconds before it must be gone, so that its runs checkpoint
    and return (``preempt_requested`` turns True), then retires and closes it.

    It must be gone at the earlier of its ``--lifetime`` end and ``margin`` seconds before its
    job's walltime (``job_end``: a callable giving the end as ``time.time()`` seconds or None;
    ``job_end_time`` by default). With neither known the guard does nothing. Register it from
    the driver with ``client.register_plugin(WalltimeGuard(grace=...))``: every worker that
    joins later gets it too.
    """

    name = "ns-sweep-walltime-guard"
    idempotent = True
    # the guard's events ({"action": "drain" | "close", ...}): client.get_events(topic) or
    # client.subscribe_topic(topic, handler) on the driver
    topic = "ns-sweep-walltime"

    def __init__(
        self,
        grace: float = 30.0,
        margin: float = 10.0,
        job_end: Callable[[], float | None] | None = None,
        poll: float = 0.1,
    ) -> None:
        self.grace = grace
        self.margin = margin
        self.job_end = job_end
        self.poll = poll
        # set up on the worker (the driver's copy is only pickled)
        self.draining: threading.Event | None = None
        self.deadline: float | None = None  # time.time() by which the worker must be gone
        self.drained_at: float | None = None
        self._tasks: list[asyncio.Task] = []

    def setup(self, worker: Any) -> None:
        """Start the watch on the worker's event loop."""
        self.draining = threading.Event()
        self._tasks.append(asyncio.ensure_future(self._watch(worker)))

    def teardown(self, worker: Any) -> None:
        """Stop the watch when the worker closes for another reason."""
        if self.draining is not None and not self.draining.is_set():
            for task in self._tasks:
                task.cancel()

    def _deadline(self, worker: Any) -> tuple[float, str] | None:
        ends = []
        if worker.lifetime:
            ends.append((_process_start() + worker.lifetime, "lifetime"))
        job_end = (self.job_end or job_end_time)()
        if job_end is not None:
            ends.append((job_end - self.margin, "job-end"))
        return min(ends) if ends else None

    async def _watch(self, worker: Any) -> None:
        # squeue runs in a thread: never block the worker's event loop on the queue
        found = await asyncio.to_thread(self._deadline, worker)
        if found is None:
            return
        self.deadline, source = found
        await asyncio.sleep(max(0.0, self.deadline - self.grace - time.time()))
        if worker.status not in (Status.running, Status.paused) or self.draining is None:
            return
        self.draining.set()
        self.drained_at = time.time()
        running = len(worker.state.all_running_tasks)
        worker.log_event(
            self.topic,
            {
                "action": "drain",
                "worker": worker.address,
                "job_id": os.environ.get("SLURM_JOB_ID"),
                "running": running,
                "deadline": self.deadline,
                "source": source,
                "time": self.drained_at,
            },
        )
        # closing_gracefully on both sides: nothing new starts here, results still reach the
        # scheduler. (If the worker holds the only copy of a result and no other worker can
        # take it, the scheduler aborts this and sets it back to running: the flag still holds.)
        await worker.scheduler.retire_workers(
            workers=[worker.address],
            close_workers=False,
            remove=False,
            stimulus_id=f"walltime-guard-drain-{time.time()}",
        )
        while (worker.state.all_running_tasks or worker.data) and time.time() < self.deadline:
            await asyncio.sleep(self.poll)
        left = len(worker.state.all_running_tasks)  # > 0: runs that ignored the flag, cut off
        worker.log_event(
            self.topic,
            {
                "action": "close",
                "worker": worker.address,
                "job_id": os.environ.get("SLURM_JOB_ID"),
                "cut_off": left,
                "waited": time.time() - self.drained_at,
                "time": time.time(),
            },
        )
        # What Worker.close_gracefully does, which would now only wait: its status is
        # already closing_gracefully. The scheduler reschedules tasks queued here (expected).
        retired = await worker.scheduler.retire_workers(
            workers=[worker.address],
            close_workers=False,
            remove=True,
            stimulus_id=f"walltime-guard-retire-{time.time()}",
        )
        if worker.address not in retired:
            # it still holds the only copy of a result: the close loses it (recomputed), and
            # tasks queued here count as suspicious (KilledWorker with allowed-failures 0)
            worker.log_event(
                self.topic, {"action": "not-retired", "worker": worker.address, "time": time.time()}
            )
        # A task of its own: the close awaits every plugin's teardown, this one's included.
        self._tasks.append(asyncio.ensure_future(worker.close(nanny=True, reason="walltime-guard")))


def preempt_requested() -> bool:
    """True when the worker running this task is leaving (its ``WalltimeGuard`` drains it, or
    it is retired gracefully for any reason): stop at the next step and return a checkpoint.
    False outside a Dask worker. Cheap enough to call between any two steps."""
    try:
        worker = get_worker()
    except ValueError:
        return False
    if worker.status in _LEAVING:
        return True
    guard = worker.plugins.get(WalltimeGuard.name)
    return isinstance(guard, WalltimeGuard) and guard.draining is not None and guard.draining.is_set()


@dataclass
class StepOutcome:
    """One attempt at a stepped run: ``done`` with its final state, or ``preempted`` with the
    state after ``step`` steps as its checkpoint (resubmit with ``state``/``step``)."""

    run_id: str
    status: str  # "done" or "preempted"
    step: int  # steps done in total, this attempt included
    state: Any
    start_step: int
    job_id: str | None = None
    worker: str | None = None
    started: float = 0.0  # time.time() of this attempt's start and end
    ended: float = 0.0


def run_steps(
    run_id: str,
    step_fn: Callable[[Any, int], Any],
    state: Any,
    start_step: int,
    n_steps: int,
    *,
    should_stop: Callable[[], bool] = preempt_requested,
    on_checkpoint: Callable[[Any, int], None] | None = None,
) -> StepOutcome:
    """Advance ``state`` from ``start_step`` to ``n_steps`` with ``state = step_fn(state, i)``,
    checking ``should_stop()`` before each step. When it says stop, the state so far is the
    forced checkpoint: handed to ``on_checkpoint(state, step)`` (e.g. to publish it) and
    returned in a ``preempted`` outcome. The work lost is nothing done since that checkpoint.
    """
    try:
        worker: str | None = get_worker().address
    except ValueError:
        worker = None
    t0 = time.time()
    step = start_step
    while step < n_steps:
        if should_stop():
            if on_checkpoint is not None:
                on_checkpoint(state, step)
            return StepOutcome(
                run_id,
                "preempted",
                step,
                state,
                start_step,
                os.environ.get("SLURM_JOB_ID"),
                worker,
                t0,
                time.time(),
            )
        state = step_fn(state, step)
        step += 1
    return StepOutcome(
        run_id, "done", step, state, start_step, os.environ.get("SLURM_JOB_ID"), worker, t0, time.time()
    )


@dataclass
class RunLedger:
    """The driver's account of one run: its attempts and how it ended."""

    run_id: str
    attempts: list[StepOutcome] = field(default_factory=list)
    status: str = "pending"  # pending, done, failed
    error: str | None = None

    @property
    def preemptions(self) -> int:
        """Attempts that ended by a drain (not failures)."""
        return sum(a.status == "preempted" for a in self.attempts)


def drive(
    client: Any,
    task: Callable[..., StepOutcome],
    runs: Mapping[str, tuple[Any, int]],
    *,
    extra: tuple[Any, ...] = (),
    max_attempts: int = 100,
) -> dict[str, RunLedger]:
    """Run every ``run_id -> (initial state, n_steps)`` through ``task(run_id, state,
    start_step, n_steps, *extra)`` on ``client``, resubmitting each preempted attempt from its
    checkpoint until the run is done. A task error fails the run (a preemption never does);
    so does a run preempted ``max_attempts`` times. Returns the ledger of every run."""
    ledgers = {rid: RunLedger(rid) for rid in runs}
    n_steps = {rid: n for rid, (_, n) in runs.items()}
    futures = as_completed()
    owner: dict[str, str] = {}
    for rid, (state, n) in runs.items():
        fut = client.submit(task, rid, state, 0, n, *extra, key=f"{rid}-attempt-1", pure=False)
        owner[fut.key] = rid
        futures.add(fut)
    for fut in futures:
        rid = owner.pop(fut.key)
        ledger = ledgers[rid]
        try:
            outcome: StepOutcome = fut.result()
        except Exception as exc:  # infrastructure or code failure: the run fails
            ledger.status, ledger.error = "failed", f"{type(exc).__name__}: {exc}"
            continue
        finally:
            fut.release()
        ledger.attempts.append(outcome)
        if outcome.status == "done":
            ledger.status = "done"
        elif len(ledger.attempts) >= max_attempts:
            ledger.status, ledger.error = "failed", f"preempted {len(ledger.attempts)} times"
        else:
            nxt = client.submit(
                task,
                rid,
                outcome.state,
                outcome.step,
                n_steps[rid],
                *extra,
                key=f"{rid}-attempt-{len(ledger.attempts) + 1}",
                pure=False,
            )
            owner[nxt.key] = rid
            futures.add(nxt)
    return ledgers


class QueueUnavailable(RuntimeError):
    """The batch system cannot take the sweep's jobs; the message is one line saying why."""


def preflight_sbatch(
    job_script: str, *, sbatch: str = "sbatch", timeout: float = 15.0, env: Mapping[str, str] | None = None
) -> str:
    """Ask SLURM whether it would run ``job_script`` (``cluster.job_script()``) without
    submitting it (``sbatch --test-only``, ~10 ms): returns SLURM's answer ("Job N to start at
    ... in partition P") or raises ``QueueUnavailable`` with one line.

    Why: dask-jobqueue calls ``sbatch`` only inside ``scale``/``adapt``, on its event loop,
    where a failure is only logged and the cluster waits for workers forever; a controller
    that is down makes every SLURM command retry for ~9 s before failing. This turns a missing
    ``sbatch``, a silent controller (cut at ``timeout``), a bad partition, walltime or memory
    into an error before any job exists.
    """
    path = shutil.which(sbatch)
    if path is None:
        raise QueueUnavailable(
            f"no `{sbatch}` on PATH: SLURM's commands are not installed or "
            "not loaded here (module load slurm?)"
        )
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="ns-sweep-preflight-") as f:
        f.write(job_script)
        f.flush()
        try:
            out = subprocess.run(
                [path, "--test-only", f.name],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=None if env is None else dict(env),
            )
        except subprocess.TimeoutExpired:
            raise QueueUnavailable(
                f"sbatch --test-only: no answer from the SLURM controller within {timeout:g} s; "
                "is slurmctld running, and does SLURM_CONF name the right cluster?"
            ) from None
    lines = [ln.strip() for ln in out.stderr.splitlines() if ln.strip()]
    if out.returncode != 0:
        # the most telling line: a fatal one, else the first error, else the last line
        fatal = [ln for ln in lines if ln.startswith("sbatch: fatal:")]
        errors = [ln for ln in lines if ln.startswith("sbatch: error:")]
        if fatal:
            line = fatal[-1]
        elif errors:
            line = errors[0]
        else:
            line = lines[-1] if lines else f"exit code {out.returncode}"
        raise QueueUnavailable("sbatch --test-only: " + re.sub(r"^sbatch: (error|fatal): ", "", line))
    return lines[-1] if lines else ""
