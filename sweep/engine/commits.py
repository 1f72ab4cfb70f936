"""The store's writer thread: results are committed in a thread of their own, in order.

A commit is mostly file-system calls, which then overlap with the driver's work (gathering the
next results, logs) and the scheduler's, instead of adding to them. A run counts as done
(status, logs, progress) only once its commit returned; any other use of the store waits for
the pending commits first (``sync``), so the store is used by one thread at a time.
"""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable
from typing import Any

from ..faults import fault_point
from .worker import Outcome

__all__ = ["CommitWriter"]


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
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.pending: collections.deque[tuple[Any, Outcome, dict[str, Any]]] = collections.deque()

    def commit(self, outcome: Outcome, prov: dict[str, Any]) -> None:
        """Queue a done run's result for the writer thread."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sweep-store")
        if len(self.pending) >= self.max_pending:
            self.reap(block=1)
        fut = self._pool.submit(self._commit, outcome.run_id, outcome.result, prov)
        self.pending.append((fut, outcome, prov))

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
            fut, outcome, prov = self.pending[0]
            if block <= 0 and not fut.done():
                return
            fut.result()
            self.pending.popleft()
            block -= 1
            self.on_done(outcome, prov)

    def sync(self) -> None:
        """Wait for every pending commit (before any other use of the store)."""
        self.reap(block=len(self.pending))

    def close(self) -> None:
        """Stop the writer thread: the commit under way ends, queued ones are dropped (their
        runs are not done: the next sweep runs them)."""
        if self._pool is None:
            return
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None
        while self.pending:  # count those that made it (the sweep's summary says so)
            fut, outcome, prov = self.pending.popleft()
            if fut.cancelled() or fut.exception() is not None:
                continue
            self.on_done(outcome, prov)
