"""Packages become Dask tasks, a bounded window of them at a time.

A long package is one task, named after it (``run-<package_id>-...``, so the Dask dashboard
shows which packages run). Tiny packages travel in batches: one task (``runs-<first
package_id>+<others>-...``) runs many of them one after the other (``run_packages``) and hands
back each one's outcome, which the driver commits one by one as before. A batch holds as many
packages as fit in ``batch_seconds`` of predicted run time (``RuntimePredictor``), at most
``max_batch``: a task's overhead (scheduler, worker, messages: a few milliseconds) is then
shared by hundreds of sub-millisecond runs. A package predicted longer than half a batch, or
that resumes from a checkpoint, stays alone.

Only a window of tasks is with the scheduler at once (``in_flight`` per worker, at least
``min_in_flight``): the rest wait in the driver's backlog, in priority order, so the driver's
and the scheduler's memory follow what runs, not the sweep's size, and a HIGH package found
late is not queued behind a million LOW ones already handed out.

Tasks go through ``Client.map`` with explicit keys and a priority: Dask's public API, one
self-contained task per package or batch (nothing to optimise, nothing to hash). Tasks are
never retried by the scheduler (``retries=0``): a run whose worker was lost is resubmitted by
the driver itself, alone, from its latest checkpoint (``sweep.engine.recovery``).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..spec import PRIORITIES
from .columns import Backlog, RunColumn, RunEntries
from .options import SweepOptions
from .plan import PlanEntry
from .worker import WorkItem, run_package, run_packages

__all__ = ["Submitter", "Members"]

# a task's runs: (run_id, attempt) of each (one for a single package, many for a batch)
Members = tuple[tuple[str, int], ...]


class Submitter:
    """The tasks of one sweep: what was submitted (futures, attempts) and what is left.

    ``predict(run_id)``: the predicted seconds of a run (None: no batching by prediction, every
    package alone); ``params_of(run_id)``: its parameters (default: its package's).
    """

    def __init__(
        self,
        client: Any,
        channel: str,
        entries: Mapping[str, PlanEntry],
        options: SweepOptions,
        extras: Callable[[str, dict[str, Any] | None], dict[str, Any]] | None = None,
        predict: Callable[[str], float] | None = None,
        params_of: Callable[[str], Any] | None = None,
    ) -> None:
        self.client = client
        # run_id, resume -> more WorkItem fields (predicted time, placement policy)
        self.extras = extras
        self.predict = predict
        self.params_of = params_of or (lambda rid: entries[rid].package.params)
        self.channel = channel
        self.tag = channel.removeprefix("sweep-")[:8]  # tells this sweep's task keys apart
        self.entries = entries
        self.options = options
        self.futures: dict[Any, Members] = {}  # future -> its runs
        self.attempt = RunColumn(entries)  # run_id -> its latest attempt (a code per run)
        self.workers = 1  # workers the window is sized for (the driver updates it)
        self._seq = itertools.count()
        # packages not submitted yet, in priority order (see submit_next): run_sweep's entries
        # give a Backlog (positions and a cursor, not a million strings)
        self.backlog: Backlog | collections.deque[str]
        if isinstance(entries, RunEntries):
            self.backlog = entries.backlog()
        else:
            rank = {p: i for i, p in enumerate(PRIORITIES)}
            self.backlog = collections.deque(
                sorted(entries, key=lambda rid: rank.get(entries[rid].package.priority, len(rank)))
            )

    @property
    def window(self) -> int:
        """Tasks (single packages or batches) with the scheduler at once, at most."""
        o = self.options
        return max(o.min_in_flight, o.in_flight * max(1, self.workers))

    def item(self, run_id: str, attempt: int, resume: dict[str, Any] | None) -> WorkItem:
        """What a worker needs to run one attempt of ``run_id`` (``resume``: encoded checkpoint)."""
        p = self.entries[run_id].package
        o = self.options
        return WorkItem(
            package_id=p.package_id,
            run_id=run_id,
            priority=p.priority,
            params=self.params_of(run_id).as_dict(),
            timeout=o.timeout,
            attempt=attempt,
            checkpoint_every_seconds=o.checkpoint_every_seconds,
            checkpoint_every_steps=o.checkpoint_every_steps,
            resume=resume,
            channel=self.channel,
            progress_every=o.progress_every,
            announce_after=o.announce_after,
            solver=p.solver_object,  # None for the spectral solver; a template travels as its files
            **(self.extras(run_id, resume) if self.extras is not None else {}),
        )

    def _items(self, run_ids: Iterable[str], resumes: dict[str, dict[str, Any]]) -> list[WorkItem]:
        out = []
        for rid in run_ids:
            self.attempt[rid] = self.attempt.get(rid, 0) + 1
            out.append(self.item(rid, self.attempt[rid], resumes.get(rid)))
        return out

    def submit(self, run_ids: list[str], resumes: dict[str, dict[str, Any]]) -> list[Any]:
        """Submit the next attempt of each run, one task each, HIGH first; returns the futures
        (retries and runs handed back go this way: alone, whatever their size)."""
        return self._map([[it] for it in self._items(run_ids, resumes)])

    def _map(self, tasks: list[list[WorkItem]]) -> list[Any]:
        """Submit tasks (each a list of items: one, or a batch), HIGH first."""
        by_prio: dict[str, list[list[WorkItem]]] = {}
        for task in tasks:
            by_prio.setdefault(task[0].priority, []).append(task)
        out = []
        values = self.options.priority_values
        for prio in PRIORITIES:  # HIGH reaches the scheduler first, and outranks the rest
            group = by_prio.get(prio)
            if not group:
                continue
            singles = [t[0] for t in group if len(t) == 1]
            batches = [t for t in group if len(t) > 1]
            if singles:
                keys = [f"run-{it.package_id}-{self.tag}-{it.attempt}" for it in singles]
                futures = self.client.map(run_package, singles, key=keys, priority=values[prio], retries=0)
                for it, f in zip(singles, futures, strict=True):
                    self.futures[f] = ((it.run_id, it.attempt),)
                    out.append(f)
            if batches:
                keys = [f"runs-{b[0].package_id}+{len(b) - 1}-{self.tag}-{next(self._seq)}" for b in batches]
                futures = self.client.map(run_packages, batches, key=keys, priority=values[prio], retries=0)
                for b, f in zip(batches, futures, strict=True):
                    self.futures[f] = tuple((it.run_id, it.attempt) for it in b)
                    out.append(f)
        return out

    def batch_size(self, run_id: str) -> int:
        """How many packages like ``run_id`` one task takes (1: it goes alone)."""
        o = self.options
        if self.predict is None or o.batch_seconds <= 0 or o.max_batch <= 1:
            return 1
        seconds = self.predict(run_id)
        if seconds * 2 > o.batch_seconds:
            return 1
        return max(1, min(o.max_batch, int(o.batch_seconds / max(seconds, 1e-6))))

    def submit_next(self, resumes: dict[str, dict[str, Any]]) -> list[Any]:
        """Fill the window from the backlog (in priority order); returns the new futures.

        The first tasks are small (``first_chunk`` packages in all), so every worker starts at
        once and the runs' rates are measured before the batches grow to their predicted size.
        """
        room = self.window - len(self.futures)
        if not self.backlog or room <= 0:
            return []
        first = not self.attempt
        cap = max(1, self.options.first_chunk // max(1, self.workers)) if first else None
        tasks: list[list[str]] = []
        while self.backlog and len(tasks) < room:
            rid = self.backlog.popleft()
            size = 1 if rid in resumes else self.batch_size(rid)
            if cap is not None:
                size = min(size, cap)
            batch = [rid]
            prio = self.entries[rid].package.priority
            while len(batch) < size and self.backlog:
                nxt = self.backlog[0]
                if nxt in resumes or self.entries[nxt].package.priority != prio or self.batch_size(nxt) == 1:
                    break
                batch.append(self.backlog.popleft())
            tasks.append(batch)
        return self._map([self._items(batch, resumes) for batch in tasks])

    def current(self, run_id: str) -> list[Any]:
        """The futures of the run's current attempt."""
        attempt = self.attempt.get(run_id)
        return [f for f, members in self.futures.items() if (run_id, attempt) in members]
