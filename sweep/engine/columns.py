"""A sweep's per-package state as columns over its plan: what the driver and ``SweepResult``
hold for a million packages without a million objects or dict entries.

``RunEntries``: run id -> ``PlanEntry`` of the runs to do (a sorted array of their run ids);
``Backlog``: those runs not submitted yet, in priority order (positions and a cursor);
``QueuedLines``: each run's ``queued`` log line, made when its package's next line is written;
``RunColumn``: run id -> a small value (the driver's final status and attempt of each run), one
code per run of the plan;
``StatusView``, ``PriorityView``, ``SkippedView``: ``SweepResult``'s mappings and list, read
from codes. Each makes what it hands out on access.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping, MutableMapping, Sequence, ValuesView
from typing import Any

import numpy as np

from ..spec import PackageTable
from ..spec.table import run_key
from .plan import Plan, PlanEntry

__all__ = [
    "RunEntries",
    "Backlog",
    "QueuedLines",
    "RunColumn",
    "StatusView",
    "PriorityView",
    "SkippedView",
    "STATUS_LABELS",
]

# status codes of StatusView (failure classes are added as met)
STATUS_LABELS = ("done", "skipped", "cancelled", "planned")
DONE, SKIPPED, CANCELLED, PLANNED = range(4)


class RunEntries(Mapping[str, PlanEntry]):
    """run id -> ``PlanEntry`` of the plan's packages at ``positions`` (the runs to do)."""

    def __init__(self, plan: Plan, positions: np.ndarray) -> None:
        self.plan = plan
        self.positions = positions
        keys = plan.packages.run_keys()[positions]
        order = np.argsort(keys, kind="stable")
        self._keys, self._order = keys[order], order
        self._by_id: dict[str, int] | None = None
        if plan.packages._cols is None:  # packages given as objects: their run ids as they are
            self._by_id = {plan.packages.run_id(int(p)): k for k, p in enumerate(positions)}

    def index(self, run_id: str) -> int | None:
        """The run's index among ``positions`` (None: not a run of this sweep)."""
        if self._by_id is not None:
            return self._by_id.get(run_id)
        key = run_key(run_id) if isinstance(run_id, str) else None
        if key is None:
            return None
        at = int(np.searchsorted(self._keys, np.uint64(key)))
        if at < len(self._keys) and int(self._keys[at]) == key:
            return int(self._order[at])
        return None

    def __getitem__(self, run_id: str) -> PlanEntry:
        k = self.index(run_id)
        if k is None:
            raise KeyError(run_id)
        return self.plan[int(self.positions[k])]

    def __contains__(self, run_id: object) -> bool:
        return isinstance(run_id, str) and self.index(run_id) is not None

    def __iter__(self) -> Iterator[str]:
        table = self.plan.packages
        for p in _each(self.positions):
            yield table.run_id(p)

    def __len__(self) -> int:
        return len(self.positions)

    def backlog(self) -> Backlog:
        """The runs in priority order (stable: the plan's order within a priority)."""
        codes = self.plan.packages.priority_codes()[self.positions]
        return Backlog(self.plan.packages, self.positions[np.argsort(codes, kind="stable")])


class Backlog:
    """Run ids not submitted yet, in order: positions of a table and a cursor (a deque's
    ``popleft``, ``[0]``, ``len``, ``clear`` and iteration)."""

    def __init__(self, table: PackageTable, positions: np.ndarray) -> None:
        self.table = table
        self.positions = positions
        self.next = 0

    def __len__(self) -> int:
        return len(self.positions) - self.next

    def __bool__(self) -> bool:
        return self.next < len(self.positions)

    def __getitem__(self, i: int) -> str:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.table.run_id(int(self.positions[self.next + i]))

    def popleft(self) -> str:
        rid = self[0]
        self.next += 1
        return rid

    def clear(self) -> None:
        self.next = len(self.positions)

    def __iter__(self) -> Iterator[str]:
        for p in _each(self.positions[self.next :]):
            yield self.table.run_id(p)


def _each(positions: np.ndarray, chunk: int = 4096) -> Iterator[int]:
    """The positions as ints, a chunk at a time (a list of a million ints is ~40 MB, and an
    iteration left open keeps it)."""
    for start in range(0, len(positions), chunk):
        yield from positions[start : start + chunk].tolist()


class QueuedLines:
    """Each run's ``queued: <reason> (run <id>)`` line (stamped when the sweep queued them),
    handed to the package's log with its next line (``SweepLogs.defer_from``), or at the end."""

    def __init__(self, plan: Plan, positions: np.ndarray, stamp: str) -> None:
        self.plan = plan
        self.head = stamp
        self.waiting = np.zeros(len(plan), dtype=bool)
        self.waiting[positions] = True

    def _line(self, p: int) -> list[str]:
        self.waiting[p] = False
        table = self.plan.packages
        return [f"{table.package_id(p)}\t{self.head} queued: {self.plan.reason(p)} (run {table.run_id(p)})\n"]

    def pop(self, package_id: str) -> list[str]:
        """The package's waiting line (none: written already, or not a run of this sweep)."""
        p = self.plan.packages.position_of(package_id)
        return self._line(p) if p is not None and self.waiting[p] else []

    def rest(self) -> Iterator[tuple[str, list[str]]]:
        """(package id, line) of every line still waiting, in the plan's order."""
        for p in np.flatnonzero(self.waiting).tolist():
            yield self.plan.packages.package_id(p), self._line(p)


class RunColumn(MutableMapping[str, Any]):
    """run id -> a value kept as one small code per run of ``entries`` (0: no value): the
    driver's status and attempt of each run, which a dict held as ~100 bytes a run (its id as
    a string of its own) for every run finished, a million at the end of a million-package sweep.

    ``labels``: the values are these strings (a new one is added when met); None: the values are
    small positive integers kept as they are. A run id not among ``entries`` (none is expected)
    goes to a dict beside.
    """

    def __init__(self, entries: Mapping[str, Any], labels: Sequence[str] | None = None) -> None:
        self._runs = entries if isinstance(entries, RunEntries) else None
        self._ids: list[str] = [] if self._runs is not None else list(entries)
        self._at = None if self._runs is not None else {rid: k for k, rid in enumerate(self._ids)}
        self.labels = None if labels is None else list(labels)
        dtype = np.uint8 if labels is not None else np.uint16
        self.codes = np.zeros(len(entries), dtype=dtype)
        self._max = int(np.iinfo(dtype).max)
        self._n = 0
        self._other: dict[str, Any] = {}

    def _index(self, run_id: object) -> int | None:
        if not isinstance(run_id, str):
            return None
        return self._runs.index(run_id) if self._runs is not None else self._at.get(run_id)  # type: ignore[union-attr]

    def _id(self, k: int) -> str:
        runs = self._runs
        return runs.plan.packages.run_id(int(runs.positions[k])) if runs is not None else self._ids[k]

    def _decode(self, code: int) -> Any:
        return self.labels[code - 1] if self.labels is not None else code

    def __getitem__(self, run_id: str) -> Any:
        k = self._index(run_id)
        if k is None or not self.codes[k]:
            return self._other[run_id]
        return self._decode(int(self.codes[k]))

    def __setitem__(self, run_id: str, value: Any) -> None:
        k = self._index(run_id)
        if k is None:
            self._other[run_id] = value
            return
        if self.labels is not None:
            if value not in self.labels:
                self.labels.append(value)
            code = self.labels.index(value) + 1
        else:
            code = int(value)
        if not 0 < code <= self._max:
            raise ValueError(f"{value!r} cannot be kept in a {self.codes.dtype} column")
        self._n += not self.codes[k]
        self.codes[k] = code

    def __delitem__(self, run_id: str) -> None:
        k = self._index(run_id)
        if k is None or not self.codes[k]:
            del self._other[run_id]
            return
        self.codes[k] = 0
        self._n -= 1

    def __contains__(self, run_id: object) -> bool:
        k = self._index(run_id)
        return bool(self.codes[k]) if k is not None else run_id in self._other

    def __iter__(self) -> Iterator[str]:
        for k in np.flatnonzero(self.codes).tolist():
            yield self._id(k)
        yield from list(self._other)

    def __len__(self) -> int:
        return self._n + len(self._other)

    def counts(self) -> dict[Any, int]:
        """How many runs have each value (as ``Counter(self.values())``, without a loop over runs)."""
        out = {self._decode(c): int(n) for c, n in enumerate(np.bincount(self.codes)) if c and n}
        for v in self._other.values():
            out[v] = out.get(v, 0) + 1
        return out


class _Values(ValuesView[str]):
    def __init__(self, view: StatusView) -> None:
        super().__init__(view)
        self.view = view

    def __iter__(self) -> Iterator[str]:
        view = self.view
        labels = view.labels
        return (labels[c] for c in view.codes.tolist())


class _Items(ItemsView[str, str]):
    def __init__(self, view: StatusView) -> None:
        super().__init__(view)
        self.view = view

    def __iter__(self) -> Iterator[tuple[str, str]]:
        view = self.view
        labels, table = view.labels, view.table
        return ((table.package_id(i), labels[c]) for i, c in enumerate(view.codes.tolist()))


class StatusView(Mapping[str, str]):
    """package_id -> status (done, skipped, cancelled, planned, a failure class) of every
    package of ``table``, from one code each."""

    def __init__(self, table: PackageTable, codes: np.ndarray, labels: Sequence[str] = STATUS_LABELS) -> None:
        self.table = table
        self.codes = codes  # uint8, one per package
        self.labels = list(labels)

    def code(self, label: str) -> int:
        """The code of a status (a new failure class gets the next one)."""
        if label not in self.labels:
            self.labels.append(label)
        return self.labels.index(label)

    def __getitem__(self, package_id: str) -> str:
        i = self.table.position_of(package_id)
        if i is None:
            raise KeyError(package_id)
        return self.labels[self.codes[i]]

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self.table)):
            yield self.table.package_id(i)

    def __len__(self) -> int:
        return len(self.table)

    def values(self) -> ValuesView[str]:
        return _Values(self)

    def items(self) -> ItemsView[str, str]:
        return _Items(self)

    def present(self) -> list[str]:
        """The statuses that occur (each once)."""
        return [self.labels[c] for c in np.unique(self.codes).tolist()]


class PriorityView(Mapping[str, str]):
    """package_id -> priority of every package of ``table``."""

    def __init__(self, table: PackageTable) -> None:
        self.table = table

    def __getitem__(self, package_id: str) -> str:
        i = self.table.position_of(package_id)
        if i is None:
            raise KeyError(package_id)
        return self.table.priority(i)

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self.table)):
            yield self.table.package_id(i)

    def __len__(self) -> int:
        return len(self.table)


class SkippedView(Sequence[tuple[str, str]]):
    """(package_id, reason) of each package the plan skips, in its order."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.positions = plan.positions("skip")

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        p = int(self.positions[i])
        return self.plan.packages.package_id(p), self.plan.reason(p)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]
