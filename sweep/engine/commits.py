"""The store's writer thread: results are committed in a thread of their own, in order.

A commit is mostly file-system calls, which then overlap with the driver's work (gathering the
next results, logs) and the scheduler's, instead of adding to them. A run counts as done
(status, logs, progress) only once its commit returned; any other use of the store waits for
the pending commits first (``sync``), so the store is used by one thread at a time.

One long-lived thread takes the results from a queue (no ``concurrent.futures.Future``, with
its lock and condition, per run: ~40 us of a tiny package's engine cost).
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..faults import fault_point
from .worker import Outcome

__all__ = ["CommitWriter"]

_WAITING, _DONE, _FAILED, _DROPPED = 0, 1, 2, 3


class _Job:
    """One result waiting for (or through) its commit."""

    __slots__ = ("outcome", "prov", "state", "error")

    def __init__(self, outcome: Outcome, prov: dict[str, Any]) -> None:
        self.outcome = outcome
        self.prov = prov
        self.state = _WAITING
        self.error: BaseException | None = None


class CommitWriter:
    """Commits results in order; ``on_done(outcome, provenance)`` runs in the driver's thread."""

    def __init__(
        self,
        store: Any,
        max_pending: int,
        on_done: Callable[[Outcome, dict[str, Any]], None],
        had_checkpoint: Callable[[str], bool],
    ) -> None:
        self.store = store
        self.max_pending = max_pending  # results waiting in memory: bounded
        self.on_done = on_done
        self.had_checkpoint = had_checkpoint  # whether a run's checkpoint must be dropped after it
        self.pending: collections.deque[_Job] = collections.deque()
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()  # the thread says a job ended
        self._closing = False

    def commit(self, outcome: Outcome, prov: dict[str, Any]) -> None:
        """Queue a done run's result for the writer thread."""
        if self._thread is None:
            self._closing = False
            self._thread = threading.Thread(target=self._loop, name="sweep-store", daemon=True)
            self._thread.start()
        if len(self.pending) >= self.max_pending:
            self.reap(block=1)
        job = _Job(outcome, prov)
        self.pending.append(job)
        self._queue.put(job)

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._closing:  # close(): queued results are dropped (their runs are redone)
                job.state = _DROPPED
            else:
                try:
                    self._commit(job.outcome.run_id, job.outcome.result, job.prov)
                    job.state = _DONE
                except BaseException as exc:  # a full disk: raised in the driver's thread
                    job.error = exc
                    job.state = _FAILED
            with self._cond:
                self._cond.notify_all()

    def _commit(self, run_id: str, result: Any, prov: dict[str, Any]) -> None:
        """Commit one result (in the writer thread)."""
        fault_point("before-commit", run_id)
        self.store.commit_run(run_id, result, prov)
        fault_point("after-commit", run_id)  # done, its checkpoint not yet dropped
        if self.had_checkpoint(run_id):
            self.store.drop_checkpoint(run_id)

    def reap(self, block: int = 0) -> None:
        """Finish the runs whose commits returned, in order (waiting for the first ``block``
        of them); a commit's error (a full disk) is raised here."""
        while self.pending:
            job = self.pending[0]
            if job.state == _WAITING:
                if block <= 0:
                    return
                with self._cond:
                    while job.state == _WAITING:
                        self._cond.wait(0.5)
            self.pending.popleft()
            block -= 1
            if job.state == _FAILED:
                assert job.error is not None
                raise job.error
            if job.state == _DONE:
                self.on_done(job.outcome, job.prov)

    def sync(self) -> None:
        """Wait for every pending commit (before any other use of the store)."""
        self.reap(block=len(self.pending))

    def close(self) -> None:
        """Stop the writer thread: the commit under way ends, queued ones are dropped (their
        runs are not done: the next sweep runs them)."""
        if self._thread is None:
            return
        self._closing = True
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        while self.pending:  # count those that made it (the sweep's summary says so)
            job = self.pending.popleft()
            if job.state == _DONE:
                self.on_done(job.outcome, job.prov)
