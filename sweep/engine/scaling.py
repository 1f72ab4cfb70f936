"""How many workers a queue-mode sweep asks for, and which ones it lets go: ``cluster.adapt``
with the sweep's own target.

The policy: as many workers as there are runs not finished (running or waiting), up to
``--jobs`` jobs, and no more than the predicted work left can keep busy for a job's start-up
time each; when runs finish, idle workers (whole jobs, never one with a run) are retired, down
to none at the end.

Why our own target on top of ``cluster.adapt`` rather than Dask's: ``Scheduler.adaptive_target``
estimates the work from task durations it has learned per task *prefix*; our tasks are one per
package with names of their own, so it would count every queued run as 0.5 s (``unknown-task-
duration``): ten 3-hour runs would ask for one worker with the default 5 s target duration, and
a thousand 5-ms runs for a hundred. The driver knows the runs left and their predicted times
(``sweep.engine.predict``). The rest is ``distributed.deploy.Adaptive`` unchanged: it submits
and cancels jobs through dask-jobqueue, waits ``wait_count`` intervals before letting a worker
go, and cancels queued jobs first when the demand falls. Its own ``workers_to_close`` would
pick busy workers when the target is low enough, which reruns their runs from their arguments;
ours retires idle ones only.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

from distributed.deploy import Adaptive
from distributed.protocol import pickle

__all__ = ["SweepAdaptive", "wanted_workers", "job_key", "JobSnapshot"]


def wanted_workers(runs_left: int, work_left: float | None, max_workers: int, job_start: float) -> int:
    """Workers a sweep wants: one per run not finished, at most ``max_workers``, and at most
    one per ``job_start`` seconds of predicted work left (a job that would be busy for less than
    its own start-up does not pay; unknown work: no such cap). Zero when nothing is left."""
    if runs_left <= 0:
        return 0
    n = min(runs_left, max_workers)
    if work_left is not None and job_start > 0:
        n = min(n, max(1, math.ceil(work_left / job_start)))
    return max(1, n)


def _job_of(grouped: bool, ws: Any) -> str:
    """The job a worker belongs to: dask-jobqueue names a job's workers ``<job name>-<i>`` when
    it has several worker processes, else ``<job name>``."""
    name = str(ws.name)
    return name.rsplit("-", 1)[0] if grouped else name


def job_key(grouped: bool) -> Callable[[Any], str]:
    """``Adaptive``'s ``worker_key``: workers of one job are retired together (picklable)."""
    return functools.partial(_job_of, grouped)


JobSnapshot = tuple[tuple[str, str | None, str, int], ...]  # (job name, job id, state, workers)


class SweepAdaptive(Adaptive):
    """``distributed.deploy.Adaptive`` whose target is the sweep's demand (``demand()``, set by
    the driver; 0 until then) and which retires only idle jobs.

    It also takes, on the cluster's event loop where they change, a snapshot of the cluster's
    jobs (``jobs``: name, job id, ``submitting``/``queued``/``running``, connected workers) for
    the driver's status document.
    """

    demand: Callable[[], int] | None = None
    jobs: JobSnapshot = ()
    snapshot_time: float = 0.0
    _seen_running: set[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._seen_running = set()  # ids of jobs whose workers connected once
        super().__init__(*args, **kwargs)

    async def target(self) -> int:
        """The sweep's demand (``Adaptive`` clamps it to minimum and maximum)."""
        self._snapshot()
        demand = self.demand
        return int(demand()) if demand is not None else 0

    async def workers_to_close(self, target: int) -> list[str]:
        """Names of idle workers to retire, whole jobs at a time, at most down to ``target``."""
        surplus = len(self.plan) - target
        if surplus <= 0:
            return []
        # without n/target the scheduler proposes idle workers only (it stops at a busy group)
        names = await self.scheduler.workers_to_close(
            key=pickle.dumps(self.worker_key) if self.worker_key else None, attribute="name"
        )
        groups: dict[str, list[str]] = {}
        for name in names:
            groups.setdefault(self._job_name(name), []).append(name)
        out: list[str] = []
        for members in groups.values():
            if len(out) + len(members) <= surplus:
                out += members
        return out

    def _snapshot(self) -> None:
        try:
            connected: dict[str, int] = {}
            for info in self.cluster.scheduler_info.get("workers", {}).values():
                job = self._job_name(info.get("name", ""))
                connected[job] = connected.get(job, 0) + 1
            jobs = []
            cluster: Any = self.cluster
            for name, job in list(cluster.workers.items()):
                jid = getattr(job, "job_id", None)
                n = connected.get(str(name), 0)
                state = "running" if n else ("queued" if jid else "submitting")
                if not n and jid and str(jid) in self._seen_running:
                    state = "ending"  # its workers left (walltime margin): the job ends
                if n and jid:
                    self._seen_running.add(str(jid))
                jobs.append((str(name), None if jid is None else str(jid), state, n))
            self.jobs = tuple(jobs)
            self.snapshot_time = time.time()
        except Exception:  # a snapshot is information only: the scaling goes on
            pass

    def _job_name(self, worker_name: Any) -> str:
        """The job (spec name) a worker of this cluster belongs to."""
        key: Any = self.worker_key
        return str(key(_Named(worker_name))) if key is not None else str(worker_name)


class _Named:
    """Just enough of a ``WorkerState`` for a worker key: its name."""

    def __init__(self, name: Any) -> None:
        self.name = name
