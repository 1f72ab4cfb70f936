"""What the driver does when the infrastructure fails a run: a lost worker's run is resubmitted
from its latest checkpoint (the engine, not the scheduler, owns retries), and a run that stops
answering past its deadline is given up and its worker restarted."""

from __future__ import annotations

import concurrent.futures
import time
from typing import TYPE_CHECKING, Any

from ..codec import encode_arrays
from .checkpoints import step_of, usable_checkpoint

if TYPE_CHECKING:  # pragma: no cover
    from .driver import Driver

__all__ = ["Recovery"]


class Recovery:
    """Retries, the watchdog and worker restarts of one sweep (``driver`` holds its state)."""

    def __init__(self, driver: Driver) -> None:
        self.d = driver
        self.n_retries = 0
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
        attempt = d.tasks.attempt.get(run_id, 1)
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

    def watchdog(self) -> None:
        """Give up on runs past deadline + grace whose worker no longer answers."""
        d = self.d
        now = time.time()
        limit = d.options.timeout + d.options.timeout_grace
        for rid, (worker, t0) in list(d.running.items()):
            if now - t0 <= limit or rid in d.status:
                continue
            futs = d.tasks.current(rid)
            if not futs or futs[0].done():
                continue
            pid = d.entries[rid].package_id
            d.client.cancel(futs, force=True)
            for f in futs:
                d.tasks.futures.pop(f, None)
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
