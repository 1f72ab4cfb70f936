"""Packages become Dask tasks: one task per package, named after it (``run-<package_id>-...``,
so the Dask dashboard shows which packages run), with its package's priority, submitted in
chunks while the workers run.

Tasks go through ``Client.map`` with explicit keys and a priority: Dask's public API, one
self-contained task per package (nothing to optimise, nothing to hash). Tasks are never
retried by the scheduler (``retries=0``): a run whose worker was lost is resubmitted by the
driver itself, from its latest checkpoint (``sweep.engine.recovery``).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from ..spec import PRIORITIES
from .options import SweepOptions
from .plan import PlanEntry
from .worker import WorkItem, run_package

__all__ = ["Submitter"]


class Submitter:
    """The tasks of one sweep: what was submitted (futures, attempts) and what is left."""

    def __init__(
        self,
        client: Any,
        channel: str,
        entries: dict[str, PlanEntry],
        options: SweepOptions,
        extras: Callable[[str, dict[str, Any] | None], dict[str, Any]] | None = None,
    ) -> None:
        self.client = client
        # run_id, resume -> more WorkItem fields (predicted time, placement policy)
        self.extras = extras
        self.channel = channel
        self.tag = channel.removeprefix("sweep-")[:8]  # tells this sweep's task keys apart
        self.entries = entries
        self.options = options
        self.futures: dict[Any, tuple[str, int]] = {}  # future -> (run_id, attempt)
        self.attempt: dict[str, int] = {}
        # packages not submitted yet, in priority order (see submit_next)
        rank = {p: i for i, p in enumerate(PRIORITIES)}
        self.backlog: collections.deque[str] = collections.deque(
            sorted(entries, key=lambda rid: rank.get(entries[rid].package.priority, len(rank)))
        )

    def item(self, run_id: str, attempt: int, resume: dict[str, Any] | None) -> WorkItem:
        """What a worker needs to run one attempt of ``run_id`` (``resume``: encoded checkpoint)."""
        p = self.entries[run_id].package
        o = self.options
        return WorkItem(
            package_id=p.package_id,
            run_id=run_id,
            priority=p.priority,
            params=p.params.as_dict(),
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

    def submit(self, run_ids: list[str], resumes: dict[str, dict[str, Any]]) -> list[Any]:
        """Submit the next attempt of each run, HIGH first; returns the futures."""
        by_prio: dict[str, list[WorkItem]] = {}
        for rid in run_ids:
            self.attempt[rid] = self.attempt.get(rid, 0) + 1
            item = self.item(rid, self.attempt[rid], resumes.get(rid))
            by_prio.setdefault(item.priority, []).append(item)
        out = []
        values = self.options.priority_values
        for prio in PRIORITIES:  # HIGH reaches the scheduler first, and outranks the rest
            items = by_prio.get(prio)
            if not items:
                continue
            keys = [f"run-{it.package_id}-{self.tag}-{it.attempt}" for it in items]
            futures = self.client.map(run_package, items, key=keys, priority=values[prio], retries=0)
            for item, f in zip(items, futures, strict=True):
                self.futures[f] = (item.run_id, item.attempt)
                out.append(f)
        return out

    def submit_next(self, resumes: dict[str, dict[str, Any]]) -> list[Any]:
        """Submit the next chunk of the packages not submitted yet (in priority order).

        The first chunk is small, so the workers start at once; the rest follow while they
        run (submitting 1,000 packages at once kept them idle for most of a second)."""
        if not self.backlog:
            return []
        size = self.options.chunk if self.attempt else self.options.first_chunk
        n = min(size, len(self.backlog))
        return self.submit([self.backlog.popleft() for _ in range(n)], resumes)

    def current(self, run_id: str) -> list[Any]:
        """The futures of the run's current attempt."""
        attempt = self.attempt.get(run_id)
        return [f for f, (r, a) in self.futures.items() if r == run_id and a == attempt]
