"""What a sweep would do with each package, and why (``sweep explain``, ``sweep run --dry-run``).

``plan_sweep`` is the run/skip decision the engine acts on, so ``sweep explain`` and
``sweep run --dry-run`` never disagree (and both print through ``explanation_lines``);
``explain_packages`` adds what a person needs to trust it: whether the run resumes from a
checkpoint, which earlier results of the same package are now stale (kept, but for other
parameters), and which packages share one run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..gc_pause import paused_gc
from ..provenance import solver_version
from ..spec import Package
from ..store import Store, is_local

__all__ = [
    "PlanEntry",
    "plan_sweep",
    "Explanation",
    "explain_packages",
    "explain_store",
    "explanation_lines",
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


@paused_gc()
def plan_sweep(
    packages: Sequence[Any],
    done: set[str],
    failed: dict[str, str] | None = None,
    checkpoints: dict[str, int] | None = None,
    stale_checkpoints: dict[str, str | None] | None = None,
) -> list[PlanEntry]:
    """Decide for each package whether it runs, and why, given the store's state.

    ``done``: run ids committed as done; ``failed``: run id -> failure class of earlier
    attempts; ``checkpoints``: run id -> step of a saved checkpoint;
    ``stale_checkpoints``: run id -> solver version of a checkpoint this solver will not
    resume (another version rounds differently: the run starts over).
    """
    failed = failed or {}
    checkpoints = checkpoints or {}
    stale_checkpoints = stale_checkpoints or {}
    first: dict[str, str] = {}
    out = []
    for p in packages:
        rid = p.run_id
        if rid in done:
            out.append(PlanEntry(p, "skip", _DONE))  # one string for all (the line names the run)
        elif rid in first:
            out.append(PlanEntry(p, "skip", f"same parameters as {first[rid]} (run {rid}): runs once"))
        else:
            first[rid] = p.package_id
            if rid in stale_checkpoints:
                why = (
                    f"starts over: its checkpoint was written by solver "
                    f"{stale_checkpoints[rid] or '(unknown version)'}, this is {solver_version()}"
                )
            elif rid in checkpoints:
                why = f"resumes from its checkpoint at step {checkpoints[rid]}"
            elif rid in failed:
                why = f"failed before ({failed[rid]}): runs again"
            else:
                why = _NEW
            out.append(PlanEntry(p, "run", why))
    return out


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

    done: set[str]  # run ids committed as done
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
    done = store.done_run_ids()  # columns only: no provenance is read for planning
    failed = {r: cls for r, (cls, _) in store.failures().items()}
    ckpts = {r: c for r, c in store.checkpoints().items() if r not in done}
    steps = {r: (-1 if s is None else s) for r, (s, _) in ckpts.items()}
    stale = {r: v for r, (_, v) in ckpts.items() if v != solver_version()}
    return StoreState(done, failed, steps, stale, store.run_ids_by_package() if by_package else {})


@paused_gc()
def explain_packages(packages: Sequence[Package], store: Store | None) -> list[Explanation]:
    """One Explanation per package, in the order given."""
    done, failed, steps, old_checkpoints, by_package = store_state(store)
    plan = plan_sweep(packages, done, failed, steps, old_checkpoints)
    sharing: dict[str, list[str]] = {}
    for p in packages:
        sharing.setdefault(p.run_id, []).append(p.package_id)
    out = []
    for entry in plan:
        pkg: Package = entry.package
        rid = pkg.run_id
        action = (
            "resume"
            if entry.action == "run" and rid in steps and rid not in old_checkpoints
            else entry.action
        )
        earlier = by_package.get(pkg.package_id)
        stale = (
            ()
            if not earlier or earlier == {rid}
            else tuple(sorted(r for r in earlier if r != rid and r in done))
        )
        same = sharing[rid]
        shares = () if len(same) == 1 else tuple(x for x in same if x != pkg.package_id)
        out.append(Explanation(pkg, action, entry.reason, stale, shares))
    return out


def explanation_lines(
    entries: Sequence[Explanation], *, scope: str, store: str, dry_run: bool = False
) -> list[str]:
    """The lines ``sweep explain`` and ``sweep run --dry-run`` print: one per package, then a
    summary (``scope`` says which packages were asked for, ``store`` where they were looked up)."""
    width = max((len(e.package_id) for e in entries), default=10)
    lines = [e.line(width) for e in entries]
    counts = Counter(e.action for e in entries)
    stale = sum(bool(e.stale_runs) for e in entries)
    summary = (
        f"{counts['run'] + counts['resume']} would run ({counts['resume']} resuming from a checkpoint), "
        f"{counts['skip']} skipped ({scope}); {stale} with stale results; store {store}"
    )
    lines.append(
        f"dry run: {summary}; nothing was started or written"
        if dry_run
        else f"{len(entries)} package(s): {summary}"
    )
    return lines


def explain_store(packages: Sequence[Package], store_url: str) -> tuple[list[Explanation], str]:
    """``explain_packages`` against the store at ``store_url`` (read only; a local store that
    does not exist yet holds nothing), and how to name that store in a message."""
    import os

    if is_local(store_url) and not os.path.exists(store_url.removeprefix("file://")):
        return explain_packages(packages, None), "(no store yet)"
    with Store.open(store_url, mode="r") as st:
        return explain_packages(packages, st), store_url
