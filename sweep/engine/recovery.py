"""What the driver does when the infrastructure fails or moves a run: a lost worker's run is
resubmitted from its latest checkpoint (the engine, not the scheduler, owns retries); a run
whose worker is leaving (preempted: its job's walltime nears) or that a worker declined is
resubmitted from the checkpoint it handed back, which is no failure and uses no retry; a run
that stops answering past its deadline is given up and its worker restarted."""

from __future__ import annotations

import concurrent.futures
import time
from typing import TYPE_CHECKING, Any

from ..codec import decode_arrays, encode_arrays
from .checkpoints import step_of, usable_checkpoint

if TYPE_CHECKING:  # pragma: no cover
    from .driver import Driver

__all__ = ["Recovery", "PARK_SECONDS"]

# a run a leaving worker declined waits at most this long for that worker to be gone
PARK_SECONDS = 10.0


class Recovery:
    """Retries, the watchdog and worker restarts of one sweep (``driver`` holds its state)."""

    def __init__(self, driver: Driver) -> None:
        self.d = driver
        self.n_retries = 0
        self.lost: dict[str, int] = {}  # run_id -> workers lost under it (what --retries bounds)
        self.n_preempted = 0
        self.n_declined = 0
        self.declines: dict[str, int] = {}  # run_id -> times a worker did not start it
        self.stalled: dict[str, int] = {}  # run_id -> preemptions in a row without a step done
        # run_id -> (its checkpoint, the leaving worker that declined it, since): see unpark
        self.parked: dict[str, tuple[dict[str, Any] | None, str, float]] = {}
        self._restarter: concurrent.futures.ThreadPoolExecutor | None = None
        self.restarts: list[tuple[str, Any]] = []  # (worker, concurrent future of its restart)

    def handle_lost(self, future: Any, run_id: str) -> list[Any]:
        """A task error means the infrastructure failed: retry, resuming from the checkpoint;
        returns the new futures (none when the retries are used up)."""
        d = self.d
        pid = d.entries[run_id].package_id
        try:
            exc = future.exception(timeout=5)
            text = f"{type(exc).__name__}: {exc}".splitlines()[0]
        except Exception as e2:
            text = f"{type(e2).__name__}: {e2}".splitlines()[0]
        d.running.pop(run_id, None)
        attempt = self.lost[run_id] = self.lost.get(run_id, 0) + 1
        d.drain_events()  # a checkpoint announced before the loss is saved first
        d.commits.sync()
        if attempt <= d.options.retries and not d.stopping:
            arrays = usable_checkpoint(d.store, run_id, d.entries[run_id].package, d.log)
            resume = None
            where = "from the start"
            if arrays is not None:
                resume = encode_arrays(arrays)
                where = f"from its checkpoint (step {step_of(arrays)})"
            d.log.warning(
                "%s: worker lost (%s); retry %d of %d %s", pid, text, attempt, d.options.retries, where
            )
            d.logs.package(pid, f"worker lost ({text}); retrying {where}", stamped=True)
            self.n_retries += 1
            return d.tasks.submit([run_id], {run_id: resume} if resume else {})
        msg = f"worker lost {attempt} time(s), retries exhausted: {text}"
        d.store.record_failure(run_id, "worker-lost", msg, d.provenance(run_id, None))
        d.log.error("%s: %s", pid, msg)
        d.relay.forget(run_id)
        d.finish(run_id, "worker-lost", [f"failed (worker-lost): {msg}", "status: worker-lost"])
        return []

    def handle_moved(self, outcome: Any) -> list[Any]:
        """A run that stopped because its worker is leaving (``preempted``) or that a worker
        did not start (``declined``): save the checkpoint it handed back in the store (a driver
        that dies now loses nothing) and resubmit it from there; returns the new futures.

        A run preempted ``sweep.max-stalled`` times in a row without a step done (a step longer
        than a job's life) fails with class ``error`` instead of going round for ever.
        """
        d = self.d
        rid = outcome.run_id
        pid = d.entries[rid].package_id
        d.running.pop(rid, None)
        prov = outcome.provenance or {}
        resume = outcome.checkpoint
        if outcome.status == "declined":
            self.n_declined += 1
            if "is leaving" not in (outcome.error or ""):  # the policy's: at most 3 per run
                self.declines[rid] = self.declines.get(rid, 0) + 1
            d.logs.package(pid, outcome.log)
            d.log.info("%s: not started on %s: %s", pid, prov.get("worker", "?"), outcome.error or "")
            worker = prov.get("worker")
            if d.queue is not None and worker:
                left = d.queue.time_left(worker)
                fits = (
                    left is None
                    or left <= 0
                    or any(
                        d.predicted_left(r) <= left
                        for r in d.entries
                        if r not in d.status and r not in d.running and r != rid
                    )
                )
                d.queue.declined(d, worker, fits)
        else:
            self.n_preempted += 1
            step, start = prov.get("to_step"), prov.get("from_step")
            self.stalled[rid] = self.stalled.get(rid, 0) + 1 if step == start else 0
            d.logs.package(pid, outcome.log)
            if resume is not None:
                d.relay.keep(rid, pid, decode_arrays(resume), what="forced checkpoint")
            d.log.info(
                "%s: preempted at step %s on %s (job %s): resubmitted from its forced checkpoint",
                pid,
                step,
                prov.get("worker", "?"),
                prov.get("job_id") or "-",
            )
            if self.stalled[rid] >= 3:
                msg = (
                    f"preempted {self.stalled[rid]} times in a row without finishing a step: a step takes "
                    "longer than a job gives it; give a longer --walltime or a smaller --walltime-margin"
                )
                d.commits.sync()
                d.store.record_failure(rid, "error", msg, d.provenance(rid, outcome))
                d.relay.forget(rid)
                d.finish(rid, "error", [f"failed (error): {msg}", "status: error"])
                return []
        if d.stopping:
            return []
        worker = prov.get("worker")
        if outcome.status == "declined" and "is leaving" in (outcome.error or "") and worker:
            # submitted now it went straight back to that worker, for as long as it stayed
            # (the declined outcome it held, a result's only copy, held its retirement back):
            # 50 declines of one run in a CI run, each counted as an attempt
            self.parked[rid] = (resume, worker, time.monotonic())
            d.log.info("%s: held back until %s is gone (at most %g s)", pid, worker, PARK_SECONDS)
            return []
        # no worker restriction: the run waits at the scheduler for the next free worker (a
        # loose restriction to a worker that then leaves strands it: distributed 2026.8 does not
        # reschedule such a no-worker task when another worker joins)
        return d.tasks.submit([rid], {rid: resume} if resume else {})

    def unpark(self) -> list[Any]:
        """Resubmit the parked runs whose leaving worker is gone, or that waited
        ``PARK_SECONDS`` (a worker that stays after all); returns the new futures."""
        if not self.parked:
            return []
        here = self.d.worker_addresses()
        now = time.monotonic()
        new: list[Any] = []
        for rid, (resume, worker, since) in list(self.parked.items()):
            if worker not in here or now - since >= PARK_SECONDS:
                del self.parked[rid]
                new += self.d.tasks.submit([rid], {rid: resume} if resume else {})
        return new

    def watchdog(self) -> list[Any]:
        """Give up on runs past deadline + grace whose worker no longer answers; the other runs
        of its task (a batch) are resubmitted. Returns the new futures."""
        d = self.d
        now = time.time()
        limit = d.options.timeout + d.options.timeout_grace
        new: list[Any] = []
        for rid, (worker, t0) in list(d.running.items()):
            if now - t0 <= limit or rid in d.status:
                continue
            futs = d.tasks.current(rid)
            if not futs or futs[0].done():
                continue
            pid = d.entries[rid].package_id
            d.client.cancel(futs, force=True)
            others = []
            for f in futs:
                for r, a in d.tasks.futures.pop(f, ()):
                    if r != rid and r not in d.status and a == d.tasks.attempt.get(r):
                        others.append(r)
            msg = (
                f"no result {limit:.0f} s after the start (timeout {d.options.timeout:g} s + grace "
                f"{d.options.timeout_grace:g} s); its worker {worker} was restarted"
            )
            d.log.error("%s: %s", pid, msg)
            self.restart_worker(worker)
            d.commits.sync()
            d.store.record_failure(rid, "timeout", msg, d.provenance(rid, None))
            d.relay.forget(rid)
            d.finish(rid, "timeout", [f"failed (timeout): {msg}", "status: timeout"])
            if others and not d.stopping:
                d.log.info("%d run(s) of the same task as %s submitted again", len(others), pid)
                for r in others:
                    d.running.pop(r, None)
                new += d.tasks.submit(others, {})
        return new

    def restart_worker(self, worker: str) -> None:
        """Restart a worker in the background: a restart takes up to a minute, during which
        the other runs' results are still committed as they come."""
        if self._restarter is None:
            self._restarter = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sweep-restart")
        self.restarts.append(
            (
                worker,
                self._restarter.submit(
                    self.d.client.restart_workers,
                    [worker],
                    timeout=self.d.options.restart_timeout,
                    raise_for_error=False,
                ),
            )
        )

    def reap_restarts(self, wait: bool = False) -> None:
        """Log the restarts that finished (all of them, waiting, with ``wait``)."""
        for worker, fut in list(self.restarts):
            if not (wait or fut.done()):
                continue
            self.restarts.remove((worker, fut))
            try:
                self.d.log.info("restart of %s: %s", worker, fut.result())
            except Exception as exc:  # no nanny (remote worker): it stays busy; say so
                self.d.log.error("could not restart worker %s: %s", worker, exc)

    def close(self) -> None:
        """Stop waiting for restarts under way."""
        if self._restarter is not None:
            self._restarter.shutdown(wait=False, cancel_futures=True)
            self._restarter = None
