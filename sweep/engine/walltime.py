"""Walltime-safe workers: a run that is still going when its job's walltime nears stops at its
next step with a forced checkpoint, hands it back, and continues in another job.

Why a worker plugin and not ``--lifetime`` alone (distributed 2026.8, measured on a real SLURM in
tests/test_hpc_walltime.py): when a worker's lifetime expires, ``Worker.close_gracefully`` asks
the scheduler to ``retire_workers``, which waits only for the worker's *in-memory* results, not
for executing tasks; the scheduler removes the worker and reruns its tasks from their original
arguments, while the old thread runs on in the closing worker and its result is thrown away
(dask/dask-jobqueue#122, #416, #597, #691). The worker is ``closing_gracefully`` for only
milliseconds, too short for a task to notice.

The mechanism (public APIs only):

1. ``lifetime_args`` gives each worker ``--lifetime``/``--lifetime-stagger`` (dask-jobqueue's
   ``worker_extra_args``): the stagger spreads the ends of workers that started together, and
   the lifetime is the backstop that makes a worker leave even if the guard fails.
2. ``WalltimeGuard`` (a ``WorkerPlugin`` the driver registers) computes when its worker must be
   gone: the earlier of its lifetime's end and its job's end (``squeue`` time left for SLURM,
   the job's start, which is its nanny's, plus the walltime for every system) less
   ``margin / 4``. ``3 * margin / 4`` before that it *drains* the worker:
   ``Scheduler.retire_workers(close_workers=False, remove=False)`` sets it
   ``closing_gracefully`` (nothing new starts there) but keeps it, so results still flow;
   ``preempt_requested()`` turns True. When no task runs and no result waits, it retires the
   worker for good and closes it with its nanny, which ends the job early.
3. ``run_package`` passes ``preempt_requested`` to the solver as its ``stop`` callback (checked
   between steps: 0.23 us); the solver then raises ``SolverStopped`` with its state, and the
   outcome ``preempted`` carries that state as a checkpoint to the driver, which saves it in the
   store and resubmits the run from it. The work lost is what the run did since that forced
   checkpoint: nothing.

Limits: a step longer than the drain's grace (``3 * margin / 4``) is cut off by the close (the
run then continues from its last periodic checkpoint); the job's end is read once, when the
worker starts (a walltime extended later by the admin is not seen).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from distributed import get_worker
from distributed.core import Status
from distributed.diagnostics.plugin import WorkerPlugin

from ..units import format_walltime, parse_walltime

__all__ = [
    "JOB_ID_VARIABLES",
    "parse_walltime",
    "format_walltime",
    "lifetime_args",
    "parse_time_left",
    "jobs_time_left",
    "job_end_time",
    "job_id",
    "WalltimeGuard",
    "drain_worker",
    "preempt_requested",
    "worker_time_left",
    "declines",
]

# Worker states in which a running task should stop at its next step and hand back its state.
_LEAVING = frozenset({Status.closing_gracefully, Status.closing, Status.closed})

# the environment variable holding the job id inside a job, by batch system (the first set wins)
JOB_ID_VARIABLES = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID")


def lifetime_args(walltime: float, margin: float, stagger: float = 0.0) -> list[str]:
    """``worker_extra_args`` giving each worker a lifetime that ends ``margin / 4`` seconds
    before its walltime (``walltime`` seconds) counted from the worker's start, drawn up to
    ``2 * stagger`` seconds earlier: ``--lifetime (walltime - margin/4 - stagger)s
    --lifetime-stagger {stagger}s``. The guard drains ``3 * margin / 4`` before the earlier of
    that and the job's own end; the lifetime alone is the backstop should the guard fail (it
    then leaves in time if the worker started within ``margin / 4`` of its job).

    ``--lifetime-restart`` is deliberately absent: a restarted worker would live in a job about
    to be killed; the job must end so that the queue can start a fresh one.
    """
    life = walltime - margin / 4 - stagger
    if life <= 0:
        raise ValueError(
            f"a walltime of {format_walltime(walltime)} leaves no lifetime after a margin of "
            f"{margin:g} s and a stagger of {stagger:g} s; give a longer walltime or a smaller margin"
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


def job_id() -> str | None:
    """The batch job this process runs in (SLURM, PBS, LSF or SGE), else None."""
    return next((os.environ[v] for v in JOB_ID_VARIABLES if os.environ.get(v)), None)


def job_end_time() -> float | None:
    """When this SLURM job's walltime ends (``time.time()`` seconds), or None outside a SLURM
    job, without squeue, or for a job without a limit.

    SLURM 22.05 sets no ``SLURM_JOB_END_TIME`` in the job (measured; newer releases document it
    and it is used when present); otherwise this asks ``squeue -j $SLURM_JOB_ID`` for ``%L``
    (time left: free of time zones, unlike ``%e``).
    """
    jid = os.environ.get("SLURM_JOB_ID")
    if not jid:
        return None
    end = os.environ.get("SLURM_JOB_END_TIME")
    if end and end.isdigit():
        return float(end)
    squeue = shutil.which("squeue")
    if squeue is None:
        return None
    try:
        left = jobs_time_left([jid], squeue=squeue).get(jid)
    except (OSError, subprocess.SubprocessError):
        return None
    return None if left is None else time.time() + left


def _process_starts() -> tuple[float, float]:
    """Creation times of this process and of its parent (the nanny, which the job script starts
    at once: the job's start, give or take milliseconds); now when unknown (errs late-safe: the
    lifetime and squeue bounds still hold)."""
    try:
        import psutil

        me = psutil.Process()
        parent = me.parent()
        mine = float(me.create_time())
        return mine, float(parent.create_time()) if parent is not None else mine
    except Exception:
        now = time.time()
        return now, now


class WalltimeGuard(WorkerPlugin):
    """Drains a worker before its job's walltime so that its runs stop with a forced checkpoint
    and hand it back (``preempt_requested`` turns True), then retires and closes it.

    It must be gone ``margin / 4`` seconds before the earliest of: its ``--lifetime``'s end, its
    job's end from the queue (``job_end``, a callable giving a ``time.time()`` value or None;
    ``job_end_time`` by default) and its job's start plus ``walltime`` seconds (when given). The
    drain starts ``3 * margin / 4`` seconds before that. With none of them known it does
    nothing. Register it with ``client.register_plugin``: workers that join later get it too.
    """

    name = "ns-sweep-walltime-guard"
    idempotent = True
    # the guard's events ({"action": "watch" | "drain" | "close" | "not-retired", ...}), to
    # client.subscribe_topic(topic, handler) on the driver
    topic = "ns-sweep-walltime"

    def __init__(
        self,
        margin: float = 60.0,
        walltime: float | None = None,
        job_end: Callable[[], float | None] | None = None,
        poll: float = 0.1,
    ) -> None:
        self.margin = margin
        self.walltime = walltime
        self.job_end = job_end
        self.poll = poll
        # set up on the worker (the driver's copy is only pickled)
        self.draining: threading.Event | None = None
        self.drain_at: float | None = None  # time.time() at which the drain starts
        self.deadline: float | None = None  # time.time() by which the worker must be gone
        self.drained_at: float | None = None
        self._tasks: list[asyncio.Task] = []
        self._wake: asyncio.Event | None = None
        self._early: str | None = None  # why drain_now was asked

    @property
    def grace(self) -> float:
        """Seconds between the drain and the deadline: a step and the hand-back fit in it."""
        return 0.75 * self.margin

    def setup(self, worker: Any) -> None:
        """Start the watch on the worker's event loop."""
        self.draining = threading.Event()
        self._tasks.append(asyncio.ensure_future(self._watch(worker)))

    def drain_now(self, why: str) -> bool:
        """Drain at once, as if the walltime were near (on the worker's event loop: from
        ``client.run(drain_worker, workers=[...])``); whether the watch was waiting for it."""
        if self._wake is None or self._wake.is_set():
            return False
        self._early = why
        self._wake.set()
        return True

    def teardown(self, worker: Any) -> None:
        """Stop the watch when the worker closes for another reason."""
        if self.draining is not None and not self.draining.is_set():
            for task in self._tasks:
                task.cancel()

    def _deadline(self, worker: Any) -> tuple[float, float | None, str] | None:
        """(deadline, the job's end when known, what set the deadline), or None."""
        mine, job_start = _process_starts()
        ends = []
        job_end = (self.job_end or job_end_time)()
        if self.walltime is not None:
            job_end = min(job_end, job_start + self.walltime) if job_end else job_start + self.walltime
        if job_end is not None:
            ends.append((job_end - self.margin / 4, "job-end"))
        if worker.lifetime:
            ends.append((mine + worker.lifetime, "lifetime"))
        if not ends:
            return None
        deadline, source = min(ends)
        return deadline, job_end, source

    async def _watch(self, worker: Any) -> None:
        # squeue runs in a thread: never block the worker's event loop on the queue
        found = await asyncio.to_thread(self._deadline, worker)
        if found is None:
            return
        self.deadline, job_end, source = found
        self.drain_at = self.deadline - self.grace
        worker.log_event(
            self.topic,
            {
                "action": "watch",
                "worker": worker.address,
                "job_id": job_id(),
                # seconds from now, not time stamps: the hosts' clocks may differ
                "drain_in": self.drain_at - time.time(),
                "job_end_in": None if job_end is None else job_end - time.time(),
                "source": source,
            },
        )
        self._wake = asyncio.Event()
        try:  # until the drain is due, or drain_now asks for it sooner
            await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, self.drain_at - time.time()))
            source = self._early or source
        except TimeoutError:
            pass
        if worker.status not in (Status.running, Status.paused) or self.draining is None:
            return
        self.draining.set()
        self.drained_at = time.time()
        worker.log_event(
            self.topic,
            {
                "action": "drain",
                "worker": worker.address,
                "job_id": job_id(),
                "running": len(worker.state.all_running_tasks),
                "deadline_in": self.deadline - self.drained_at,
                "source": source,
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
                "job_id": job_id(),
                "cut_off": left,
                "waited": time.time() - self.drained_at,
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
            # it still holds the only copy of a result: the close loses it (recomputed)
            worker.log_event(self.topic, {"action": "not-retired", "worker": worker.address})
        # A task of its own: the close awaits every plugin's teardown, this one's included.
        self._tasks.append(asyncio.ensure_future(_leave(worker)))


async def _leave(worker: Any) -> None:
    """End the worker and its nanny, so that the job ends. Asking the nanny to close (which
    stops its worker process) ends the job ~1 s sooner than ``Worker.close(nanny=True)``, after
    which the nanny waits 2 s for a worker process that does not exit by itself (distributed
    2026.8, measured)."""
    try:
        if worker.nanny:
            await worker.rpc(worker.nanny).terminate(reason="walltime-guard")
        else:
            await worker.close(reason="walltime-guard")
    except OSError:  # the nanny stopped this process while answering: the expected end
        pass


def drain_worker(why: str = "retired early", *, dask_worker: Any = None) -> bool:
    """``client.run`` target: drain this worker now through its guard (its runs stop with a
    forced checkpoint, no task starts here any more, then it leaves and its job ends); whether
    it had a guard that was waiting."""
    guard = dask_worker.plugins.get(WalltimeGuard.name)
    return isinstance(guard, WalltimeGuard) and guard.drain_now(why)


def _guard() -> tuple[Any, WalltimeGuard | None]:
    try:
        worker = get_worker()
    except ValueError:
        return None, None
    guard = worker.plugins.get(WalltimeGuard.name)
    return worker, guard if isinstance(guard, WalltimeGuard) else None


def preempt_requested() -> bool:
    """True when the worker running this task is leaving (its ``WalltimeGuard`` drains it, or
    it is retired or closed for any reason): stop at the next step and return a checkpoint.
    False outside a Dask worker. Cheap enough to call between any two steps."""
    worker, guard = _guard()
    if worker is None:
        return False
    if worker.status in _LEAVING:
        return True
    return guard is not None and guard.draining is not None and guard.draining.is_set()


def worker_time_left() -> float | None:
    """Seconds until this worker's guard drains it (negative once it drains), or None when it
    has no guard or its end is unknown (not in a batch job, or not yet read)."""
    _, guard = _guard()
    if guard is None or guard.drain_at is None:
        return None
    return guard.drain_at - time.time()


def declines(predicted: float | None, left: float | None, fresh: float | None, fit: float) -> bool:
    """The lifetime-vs-prediction policy: a worker with ``left`` seconds of life does not start
    a run when that is less than ``fit`` times both the run's ``predicted`` seconds and the
    life a fresh job would give it (``fresh``): far too short for the run, while a fresh job
    would do better. ``fit`` 0 disables it; anything unknown: the run starts."""
    if not fit or predicted is None or left is None or fresh is None:
        return False
    return left < fit * predicted and left < fit * fresh
