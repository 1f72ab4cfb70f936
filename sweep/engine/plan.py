"""What a sweep would do with each package, and why (``sweep explain``, ``sweep run --dry-run``).

``plan_sweep`` is the run/skip decision the engine acts on, so ``sweep explain`` and
``sweep run --dry-run`` never disagree (and both print through ``explanation_lines``);
``explain_packages`` adds what a person needs to trust it: whether the run resumes from a
checkpoint, which earlier results of the same package are now stale (kept, but for other
parameters), and which packages share one run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, NamedTuple, overload

import numpy as np

from ..gc_pause import paused_gc
from ..provenance import solver_version
from ..spec import Package, PackageTable
from ..spec.run_ids import RunIdSet
from ..store import Store, is_local

__all__ = [
    "PlanEntry",
    "Plan",
    "plan_sweep",
    "Explanation",
    "explain_packages",
    "explain_store",
    "Explanations",
    "explanation_lines",
    "iter_explanation_lines",
    "StoreState",
    "store_state",
]


@dataclass(frozen=True, slots=True)
class PlanEntry:
    """What a sweep does with one package: ``run`` it or ``skip`` it, and why."""

    package: Package
    action: str  # "run" or "skip"
    reason: str

    @property
    def package_id(self) -> str:
        return self.package.package_id


_DONE = "done: its run is in the store"
_NEW = "new"
_ACTIONS = ("run", "skip")  # action codes
_RUN, _SKIP = 0, 1
_REASON_NEW, _REASON_DONE, _REASON_OTHER = 0, 1, 2  # reason codes (other: in Plan.notes)


class Plan(Sequence[PlanEntry]):
    """The plan as columns: each package's action and reason as a code, the few reasons
    that name something (a shared run, a checkpoint, an earlier failure) by position;
    ``plan[i]`` is package i's ``PlanEntry``, made on access (a million entries were 64
    bytes each, with their packages ~500 more)."""

    def __init__(
        self, packages: PackageTable, actions: np.ndarray, reasons: np.ndarray, notes: dict[int, str]
    ) -> None:
        self.packages = packages
        self.actions = actions  # uint8: 0 run, 1 skip
        self.reasons = reasons  # uint8: 0 new, 1 done, 2 in notes
        self.notes = notes

    def __len__(self) -> int:
        return len(self.packages)

    @overload
    def __getitem__(self, i: int) -> PlanEntry: ...
    @overload
    def __getitem__(self, i: slice) -> list[PlanEntry]: ...
    def __getitem__(self, i: int | slice) -> PlanEntry | list[PlanEntry]:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        i = range(len(self))[i]
        return PlanEntry(self.packages[i], self.action(i), self.reason(i))

    def __iter__(self) -> Iterator[PlanEntry]:
        for i in range(len(self)):
            yield self[i]

    def action(self, i: int) -> str:
        return _ACTIONS[self.actions[i]]

    def done_mask(self) -> np.ndarray:
        """Whether each package's run is done in the store (bool)."""
        return self.reasons == _REASON_DONE

    def reason(self, i: int) -> str:
        code = self.reasons[i]
        return _NEW if code == _REASON_NEW else _DONE if code == _REASON_DONE else self.notes[i]

    def positions(self, action: str) -> np.ndarray:
        """The positions of the packages with this action (``run`` or ``skip``)."""
        return np.flatnonzero(self.actions == _ACTIONS.index(action))


@paused_gc()
def plan_sweep(
    packages: Sequence[Any],
    done: AbstractSet[str],
    failed: dict[str, str] | None = None,
    checkpoints: dict[str, int] | None = None,
    stale_checkpoints: dict[str, str | None] | None = None,
) -> Plan:
    """Decide for each package whether it runs, and why, given the store's state.

    ``done``: run ids committed as done; ``failed``: run id -> failure class of earlier
    attempts; ``checkpoints``: run id -> step of a saved checkpoint;
    ``stale_checkpoints``: run id -> solver version of a checkpoint this solver will not
    resume (another version rounds differently: the run starts over). A package whose run
    another package before it has (not done) is skipped: it runs once. Column-wise: the
    ``Plan`` holds codes, not an entry per package.
    """
    failed = failed or {}
    checkpoints = checkpoints or {}
    stale_checkpoints = stale_checkpoints or {}
    table = PackageTable.of(packages)
    n = len(table)
    is_done = table.run_id_mask(done) if done else np.zeros(n, dtype=bool)
    _, first_of, inverse = np.unique(table.run_keys(), return_index=True, return_inverse=True)
    first = first_of[inverse.reshape(-1)]  # each package's first package of the same run
    shared = (first != np.arange(n)) & ~is_done
    actions = np.where(is_done | shared, _SKIP, _RUN).astype(np.uint8)
    reasons = np.where(is_done, _REASON_DONE, _REASON_NEW).astype(np.uint8)
    notes: dict[int, str] = {}
    for i in np.flatnonzero(shared).tolist():
        notes[i] = f"same parameters as {table.package_id(int(first[i]))} (run {table.run_id(i)}): runs once"
    known = np.zeros(n, dtype=bool)
    for found in (stale_checkpoints, checkpoints, failed):
        if found:
            known |= table.run_id_mask(found)
    for i in np.flatnonzero(known & (actions == _RUN)).tolist():
        rid = table.run_id(i)
        if rid in stale_checkpoints:
            notes[i] = (
                f"starts over: its checkpoint was written by solver "
                f"{stale_checkpoints[rid] or '(unknown version)'}, this is {solver_version()}"
            )
        elif rid in checkpoints:
            notes[i] = f"resumes from its checkpoint at step {checkpoints[rid]}"
        elif rid in failed:
            notes[i] = f"failed before ({failed[rid]}): runs again"
    reasons[list(notes)] = _REASON_OTHER
    return Plan(table, actions, reasons, notes)


class Explanation(NamedTuple):
    """One package's fate: ``action`` is run, resume or skip; ``reason`` says why.

    (A NamedTuple: immutable, and 10,000 of them are made in a few milliseconds.)
    """

    package: Package
    action: str
    reason: str
    stale_runs: tuple[str, ...] = ()  # done runs of this package id with other parameters (kept)
    shares_with: tuple[str, ...] = ()  # other packages with the same parameters (one run)

    @property
    def package_id(self) -> str:
        return self.package.package_id

    def line(self, width: int = 0) -> str:
        """One line for the terminal."""
        notes = [self.reason]
        if self.stale_runs:
            notes.append(
                f"stale: earlier result(s) {', '.join(self.stale_runs)} of this package "
                "had other parameters (kept in the store)"
            )
        if self.shares_with:
            notes.append(f"shares run with {', '.join(self.shares_with)}")
        return (
            f"{self.action:<6} {self.package_id:<{width}} {self.package.priority:<6} "
            f"run {self.package.run_id}  " + "; ".join(notes)
        )


class StoreState(NamedTuple):
    """What planning needs to know of a store."""

    done: AbstractSet[str]  # run ids committed as done
    failed: dict[str, str]  # run id -> failure class
    checkpoints: dict[str, int]  # run id -> checkpoint step (-1: not recorded), runs not done
    stale_checkpoints: dict[str, str | None]  # run id -> version, checkpoints of another solver
    by_package: dict[str, set[str]]  # package id -> run ids recorded for it


@paused_gc()
def store_state(store: Store | None, *, by_package: bool = True) -> StoreState:
    """The store's state for ``plan_sweep`` (nothing done when ``store`` is None); without
    ``by_package`` its ``by_package`` is empty (only ``explain_packages`` needs it: a set per
    package of a 100,000-run store)."""
    if store is None:
        return StoreState(set(), {}, {}, {}, {})
    # columns only, no provenance; as keys: a set of a million id strings was ~100 MB
    done = RunIdSet(store.done_run_id_array())
    failed = {r: cls for r, (cls, _) in store.failures().items()}
    ckpts = {r: c for r, c in store.checkpoints().items() if r not in done}
    steps = {r: (-1 if s is None else s) for r, (s, _) in ckpts.items()}
    stale = {r: v for r, (_, v) in ckpts.items() if v != solver_version()}
    return StoreState(done, failed, steps, stale, store.run_ids_by_package() if by_package else {})


class Explanations(Sequence[Explanation]):
    """``explain_packages``'s answer as columns: ``entries[i]`` is package i's
    ``Explanation``, made on access (the plan's codes, the few shared runs by position)."""

    def __init__(
        self,
        plan: Plan,
        resume: np.ndarray,
        shares: dict[int, list[int]],
        done: AbstractSet[str],
        by_package: dict[str, set[str]],
    ) -> None:
        self.plan = plan
        self.resume = resume  # bool: runs that resume from a checkpoint
        self.shares = shares  # run key code -> positions of the packages sharing that run (2+)
        self._codes: np.ndarray | None = None
        self.done = done
        self.by_package = by_package

    def __len__(self) -> int:
        return len(self.plan)

    @overload
    def __getitem__(self, i: int) -> Explanation: ...
    @overload
    def __getitem__(self, i: slice) -> list[Explanation]: ...
    def __getitem__(self, i: int | slice) -> Explanation | list[Explanation]:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        i = range(len(self))[i]
        table = self.plan.packages
        pkg = table[i]
        rid, pid = pkg.run_id, pkg.package_id
        action = "resume" if self.resume[i] else self.plan.action(i)
        earlier = self.by_package.get(pid) if self.by_package else None
        stale = (
            ()
            if not earlier or earlier == {rid}
            else tuple(sorted(r for r in earlier if r != rid and r in self.done))
        )
        same = self._shared(i)
        shares = tuple(table.package_id(j) for j in same if j != i)
        return Explanation(pkg, action, self.plan.reason(i), stale, shares)

    def __iter__(self) -> Iterator[Explanation]:
        for i in range(len(self)):
            yield self[i]

    def _shared(self, i: int) -> list[int]:
        if not self.shares:
            return []
        if self._codes is None:
            self._codes = np.full(len(self), -1, dtype=np.int64)
            for code, rows in self.shares.items():
                self._codes[rows] = code
        code = int(self._codes[i])
        return [] if code < 0 else self.shares[code]

    def counts(self) -> tuple[Counter[str], int]:
        """Packages by action (run, resume, skip), and how many have stale results."""
        actions = self.plan.actions
        n_resume = int(self.resume.sum())
        counts = Counter(
            {
                "run": int((actions == _RUN).sum()) - n_resume,
                "resume": n_resume,
                "skip": int((actions == _SKIP).sum()),
            }
        )
        stale = 0
        if self.by_package:  # only packages with an earlier result of their id can have one
            table = self.plan.packages
            for i in range(len(self)):
                earlier = self.by_package.get(table.package_id(i))
                if earlier and earlier != {table.run_id(i)} and any(r in self.done for r in earlier):
                    stale += bool(self[i].stale_runs)
        return counts, stale

    def id_width(self) -> int:
        return int(self.plan.packages.id_lengths().max()) if len(self) else 10


@paused_gc()
def explain_packages(packages: Sequence[Package], store: Store | None) -> Explanations:
    """One Explanation per package, in the order given (a sequence that makes each on access)."""
    done, failed, steps, old_checkpoints, by_package = store_state(store)
    plan = plan_sweep(packages, done, failed, steps, old_checkpoints)
    table = plan.packages
    resume = plan.actions == _RUN
    if steps:
        resume &= table.run_id_mask(steps)
        if old_checkpoints:
            resume &= ~table.run_id_mask(old_checkpoints)
    else:
        resume &= False
    _, inverse, counts = np.unique(table.run_keys(), return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    shares: dict[int, list[int]] = {}
    for i in np.flatnonzero(counts[inverse] > 1).tolist():
        shares.setdefault(int(inverse[i]), []).append(i)
    return Explanations(plan, resume, shares, done, by_package)


def explanation_lines(
    entries: Sequence[Explanation], *, scope: str, store: str, dry_run: bool = False
) -> list[str]:
    """The lines ``sweep explain`` and ``sweep run --dry-run`` print: one per package, then a
    summary (``scope`` says which packages were asked for, ``store`` where they were looked up)."""
    return list(iter_explanation_lines(entries, scope=scope, store=store, dry_run=dry_run))


def iter_explanation_lines(
    entries: Sequence[Explanation], *, scope: str, store: str, dry_run: bool = False
) -> Iterator[str]:
    """``explanation_lines`` one at a time (a million lines are printed as they are made)."""
    if isinstance(entries, Explanations):
        width = entries.id_width()
        counts, stale = entries.counts()
    else:
        width = max((len(e.package_id) for e in entries), default=10)
        counts = Counter(e.action for e in entries)
        stale = sum(bool(e.stale_runs) for e in entries)
    for e in entries:
        yield e.line(width)
    summary = (
        f"{counts['run'] + counts['resume']} would run ({counts['resume']} resuming from a checkpoint), "
        f"{counts['skip']} skipped ({scope}); {stale} with stale results; store {store}"
    )
    yield (
        f"dry run: {summary}; nothing was started or written"
        if dry_run
        else f"{len(entries)} package(s): {summary}"
    )


def explain_store(packages: Sequence[Package], store_url: str) -> tuple[Explanations, str]:
    """``explain_packages`` against the store at ``store_url`` (read only; a local store that
    does not exist yet holds nothing), and how to name that store in a message."""
    import os

    if is_local(store_url) and not os.path.exists(store_url.removeprefix("file://")):
        return explain_packages(packages, None), "(no store yet)"
    with Store.open(store_url, mode="r") as st:
        return explain_packages(packages, st), store_url
