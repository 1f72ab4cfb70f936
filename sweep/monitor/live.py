"""What the store's status document (``status.json``, written by a running sweep's driver: see
``sweep.engine.live``) says about the sweep now: whether it runs, its workers, its HPC jobs
(queued, running, walltime left) and the runs under way. After the sweep, the same document
tells which jobs it used; the runs' own records add the jobs and walltime ends each run went
through.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..units import format_duration

__all__ = ["LiveSweep", "live_sweep", "jobs_of_records", "live_lines", "running_lines", "run_progress"]


@dataclass(frozen=True)
class LiveSweep:
    """The sweep behind a status document, as of ``now``."""

    state: str  # "running", "ended", or "stale" (said running, but stopped updating)
    age: float  # seconds since the document was written
    mode: str
    host: str
    pid: int | None
    workers: int
    running: list[dict[str, Any]]  # runs under way: run_id, package_id, priority, step, ...
    jobs: dict[str, Any] | None  # the queue's part (sweep.engine.jobs.QueueRuntime.document)
    document: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether a sweep is running now (its workers count for the ETA)."""
        return self.state == "running"

    def jobs_by_state(self) -> dict[str, list[dict[str, Any]]]:
        """The current jobs grouped by state (submitting, queued, running, ending)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for job in (self.jobs or {}).get("current", []) or []:
            out.setdefault(str(job.get("state")), []).append(job)
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``sweep status --json``)."""
        return {
            "state": self.state,
            "age_seconds": round(self.age, 1),
            "mode": self.mode,
            "host": self.host,
            "pid": self.pid,
            "workers": self.workers,
            "running_runs": self.running,
            "jobs": self.jobs,
        }


def live_sweep(document: Mapping[str, Any] | None, now: float | None = None) -> LiveSweep | None:
    """Read a status document (None: the store has none)."""
    if not document:
        return None
    now = time.time() if now is None else now
    try:
        updated = float(document.get("updated_epoch") or 0.0)
        every = float(document.get("every") or 5.0)
    except (TypeError, ValueError):
        return None
    age = max(0.0, now - updated)
    state = str(document.get("state") or "ended")
    if state == "running" and age > max(3 * every, 30.0):
        state = "stale"  # its driver died, or was stopped without a last word
    pid = document.get("pid")
    return LiveSweep(
        state=state,
        age=age,
        mode=str(document.get("mode") or "?"),
        host=str(document.get("host") or "?"),
        pid=int(pid) if isinstance(pid, int) else None,
        workers=int(document.get("workers") or 0),
        running=[dict(r) for r in document.get("running") or [] if isinstance(r, Mapping)],
        jobs=dict(document["jobs"]) if isinstance(document.get("jobs"), Mapping) else None,
        document=dict(document),
    )


def jobs_of_records(records: Iterable[Any]) -> dict[str, Any]:
    """What the runs' records say about batch jobs: the jobs they ran in, the runs that went
    through a walltime end (preempted) and how often."""
    jobs: set[str] = set()
    preempted_runs = preemptions = 0
    for rec in records:
        prov = getattr(rec, "provenance", None) or {}
        if not isinstance(prov, Mapping):
            continue
        jobs.update(str(j) for j in prov.get("jobs") or ())
        n = int(prov.get("preemptions") or 0)
        preemptions += n
        preempted_runs += n > 0
    return {
        "jobs": sorted(jobs, key=lambda j: (len(j), j)),
        "preempted_runs": preempted_runs,
        "preemptions": preemptions,
    }


def _left(job: Mapping[str, Any]) -> str:
    left = job.get("walltime_left")
    return (
        f"{job.get('job_id')} ({format_duration(float(left))} left)"
        if left is not None
        else str(job.get("job_id"))
    )


MAX_RUNNING_LINES = 10  # runs under way listed by `sweep status`; the rest are counted


def run_progress(run: Mapping[str, Any]) -> str:
    """``step 469/600 (78%)`` of a run under way (``step ?`` before its first progress report)."""
    step, total = run.get("step"), run.get("n_steps")
    if not isinstance(step, int):
        return "step ?" + (f"/{total}" if isinstance(total, int) else "")
    if isinstance(total, int) and total > 0:
        return f"step {step}/{total} ({100 * step // total}%)"
    return f"step {step}"


def running_lines(live: LiveSweep) -> list[str]:
    """One line per run under way: package, priority, step/total, how long, where, time left."""
    width = max([len(str(r.get("package_id"))) for r in live.running] + [4])
    out = []
    for r in live.running[:MAX_RUNNING_LINES]:
        left = r.get("predicted_left")
        out.append(
            f"  {str(r.get('package_id')):<{width}}  {str(r.get('priority') or ''):<6}  {run_progress(r)}, "
            f"running for {format_duration(float(r.get('running_for') or 0.0))} on {r.get('worker')}"
            + (f", about {format_duration(float(left))} left" if isinstance(left, (int, float)) else "")
        )
    if len(live.running) > MAX_RUNNING_LINES:
        out.append(f"  ... and {len(live.running) - MAX_RUNNING_LINES} more (sweep status --json lists them)")
    return out


def live_lines(live: LiveSweep | None, from_records: Mapping[str, Any] | None = None) -> list[str]:
    """The lines of ``sweep status`` about the sweep under way (or the last one) and its jobs."""
    lines = []
    if live is not None:
        where = f"{live.mode} on {live.host} (pid {live.pid})"
        if live.state == "running":
            lines.append(
                f"sweep running: {where}, {live.workers} worker(s), {len(live.running)} run(s) under way "
                f"(updated {format_duration(live.age)} ago)"
            )
            lines += running_lines(live)
        elif live.state == "stale":
            lines.append(
                f"sweep: the last one ({where}) stopped updating its status {format_duration(live.age)} ago "
                "without ending (killed?): run the same `sweep run` again to resume it"
            )
        else:
            lines.append(f"sweep: none running; the last one ({where}) ended {format_duration(live.age)} ago")
        jobs = live.jobs
        if jobs is not None:
            head = f"jobs ({jobs.get('system')}, at most {jobs.get('max_jobs')}"
            if jobs.get("walltime"):
                head += f", walltime {format_duration(float(jobs['walltime']))}"
            head += ")"
            if live.state == "running":
                groups = live.jobs_by_state()
                parts = [
                    f"{len(groups.get('running', []))} running"
                    + (
                        ": " + ", ".join(_left(j) for j in groups["running"]) if groups.get("running") else ""
                    ),
                    f"{len(groups.get('queued', [])) + len(groups.get('submitting', []))} queued",
                ]
                if groups.get("ending"):
                    parts.append(f"{len(groups['ending'])} ending (walltime margin)")
                lines.append(f"{head}: " + "; ".join(parts))
            history = jobs.get("history") or {}
            if history:
                ends: dict[str, int] = {}
                for h in history.values():
                    why = str(h.get("ended") or "running")
                    ends[why] = ends.get(why, 0) + 1
                lines.append(
                    f"jobs used by this sweep: {len(history)} ("
                    + ", ".join(f"{n} {why}" for why, n in sorted(ends.items()))
                    + f"); walltime ends survived: {jobs.get('drains', 0)}"
                )
    if from_records and from_records.get("jobs"):
        lines.append(
            f"runs in the store ran in {len(from_records['jobs'])} batch job(s); "
            f"{from_records['preempted_runs']} run(s) continued after a walltime end "
            f"({from_records['preemptions']} time(s) in all, from forced checkpoints)"
        )
    return lines
