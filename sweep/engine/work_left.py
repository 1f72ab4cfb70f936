"""The work a sweep has left: grid-point-steps of the runs not finished, by priority and rate key.

Counting it means building every run's parameters (~25 us a run: half a minute for a million
packages). Done at once, it held the driver loop that long before its first status document,
with nothing gathered or submitted meanwhile; ``WorkLeft`` counts the runs a slice at a time in
the loop's idle moments (``scan``), and answers only once every run is counted. Runs that
finish are taken off as they end (a sum over every run at each status document grew with the
sweep: seconds per pass at 100,000 packages).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .columns import RunColumn
from .plan import PlanEntry

__all__ = ["WorkLeft"]

# (priority, rate key) -> [a RunSize of that key, grid-point-steps of the runs not finished]
Groups = dict[tuple[str, Any], list[Any]]


class WorkLeft:
    """Grid-point-steps of the runs of ``entries`` not in ``finished``, counted a slice at a time.

    ``size_of(run_id)``: the run's ``RunSize`` (computed and let go: a million entries must not
    be kept).
    """

    def __init__(
        self,
        entries: Mapping[str, PlanEntry],
        finished: Mapping[str, Any],
        size_of: Callable[[str], Any],
    ) -> None:
        self.entries = entries
        self.finished = finished
        self.size_of = size_of
        self._groups: Groups = {}
        self._todo: Iterator[str] | None = iter(entries)  # runs not counted yet (None: all counted)
        self._counted = RunColumn(entries)  # 1: the run's steps are in the groups

    @property
    def complete(self) -> bool:
        """Every run is counted."""
        return self._todo is None

    def scan(self, budget: float | None = None) -> None:
        """Count runs for about ``budget`` seconds (all of them when ``budget`` is None)."""
        if self._todo is None:
            return
        end = time.monotonic() + budget if budget is not None else float("inf")
        for n, rid in enumerate(self._todo, 1):
            if rid not in self.finished:
                size = self.size_of(rid)
                g = self._groups.setdefault((self.entries[rid].package.priority, size.key), [size, 0.0])
                g[1] += size.point_steps
                self._counted[rid] = 1
            if n % 16 == 0 and time.monotonic() >= end:
                return
        self._todo = None

    def groups(self) -> Groups | None:
        """(priority, rate key) -> [RunSize, point-steps left]; None until every run is counted."""
        return self._groups if self._todo is None else None

    def finish(self, run_id: str, size: Any) -> None:
        """The run (of size ``size``) is finished: its steps are no longer left."""
        if run_id not in self._counted:
            return  # not counted yet: the scan skips it, as it is finished by then
        del self._counted[run_id]
        g = self._groups.get((self.entries[run_id].package.priority, size.key))
        if g is not None:
            g[1] -= size.point_steps
