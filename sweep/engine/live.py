"""The running sweep's status document: what the driver knows and the store does not (its jobs
and workers, the runs under way and how far they got), written into the store every few seconds
(``Store.write_status``: ``status.json`` inside the store's own tree) so that ``sweep status`` in
another process, even on another host, can show it. The last one stays when the sweep ends
(``state: ended``), with the jobs it used.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from ..provenance import hostname, utc_now

if TYPE_CHECKING:  # pragma: no cover
    from .driver import Driver

__all__ = ["LiveStatus", "STATUS_VERSION"]

STATUS_VERSION = 1


class LiveStatus:
    """Writes the status document of one sweep (``every`` seconds at most)."""

    def __init__(self, every: float, description: str, dashboard: str | None = None) -> None:
        self.every = every
        self.description = description
        # the Dask dashboard's address, asked once at the start: asking the client each time
        # is a call to the scheduler, which waits 30 s for one that is gone
        self.dashboard = dashboard
        self.started = utc_now()
        self._last = 0.0
        self.failed = False  # the store refused the document once: the sweep goes on without it

    def maybe_write(self, driver: Driver) -> None:
        """Write the document if ``every`` seconds passed since the last one."""
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.write(driver, "running")

    def write(self, driver: Driver, state: str) -> None:
        """Write the document now (``state``: running or ended)."""
        if self.failed:
            return
        try:
            driver.store.write_status(self.document(driver, state))
        except OSError as exc:  # a full or read-only disk: the commits say so themselves
            self.failed = True
            driver.log.warning("status document not written: %s", exc)

    def document(self, driver: Driver, state: str) -> dict[str, Any]:
        """The document (JSON-ready)."""
        now = time.time()
        running = []
        for rid, (worker, since) in list(driver.running.items()):
            e = driver.entries.get(rid)
            if e is None:
                continue
            step = driver.steps_done.get(rid)
            running.append(
                {
                    "run_id": rid,
                    "package_id": e.package_id,
                    "priority": e.package.priority,
                    "worker": worker,
                    "job_id": driver.queue.job_of.get(worker) if driver.queue is not None else None,
                    "running_for": round(now - since, 1),
                    "step": step,
                    "n_steps": driver.size_of(rid).steps,
                    "predicted_left": round(driver.predicted_left(rid), 1),
                }
            )
        left = driver.work_left_by_priority() or {}
        return {
            "version": STATUS_VERSION,
            "state": state,
            "host": hostname(),
            "pid": os.getpid(),
            "started": self.started,
            "updated": utc_now(),
            "updated_epoch": now,
            "every": self.every,
            "mode": driver.cluster_kind,
            "cluster": self.description,
            "dashboard": self.dashboard,
            "workers": driver.n_workers(),
            "to_run": len(driver.entries),
            "finished": driver.status.counts(),
            "running": running,
            "predicted_left_by_priority": {p: round(v, 1) for p, v in left.items()},
            "preempted": driver.recovery.n_preempted,
            "jobs": driver.queue.document(ended=state != "running") if driver.queue is not None else None,
        }
