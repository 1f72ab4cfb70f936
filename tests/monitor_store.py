"""Test helper for the monitoring tests: real stores with done, failed, stale and pending runs.

Runs are computed by the real solver on tiny grids and written through the real Store API
(``commit_run`` / ``record_failure``); package directories are real files read by
``sweep.spec.load_packages``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from conftest import TINY, write_packages

__all__ = ["SCENARIO", "EXPECTED", "build_scenario", "commit_done", "record_failed", "simulate_tiny"]

# A sweep of 7 packages: p000 and p006 share their parameters (one run); p004's parameters
# were edited after it ran (stale); p005 never ran.
_BASE = {**TINY, "T_final": 0.1}
SCENARIO: list[dict[str, Any]] = [
    {"package_id": "p000", "priority": "HIGH", "parameters": {**_BASE, "Re": 100.0}},
    {"package_id": "p001", "priority": "MEDIUM", "parameters": {**_BASE, "Re": 200.0}},
    {"package_id": "p002", "priority": "LOW", "parameters": {**_BASE, "Re": 300.0}},
    {"package_id": "p003", "priority": "HIGH", "parameters": {**_BASE, "Re": 400.0}},
    {"package_id": "p004", "priority": "MEDIUM", "parameters": {**_BASE, "Re": 500.0}},
    {"package_id": "p005", "priority": "LOW", "parameters": {**_BASE, "Re": 600.0}},
    {"package_id": "p006", "priority": "HIGH", "parameters": {**_BASE, "Re": 100.0}},
]
# What the store holds: package id -> (status, failure class, wall time in seconds)
_STORED = {
    "p000": ("done", None, 2.0),
    "p001": ("done", None, 4.0),
    "p002": ("failed", "diverged", 1.0),
    "p003": ("failed", "timeout", 3.0),
}
_STALE_OLD_RE = 450.0  # p004 ran with Re=450 (wall time 5 s) before being edited to Re=500
EXPECTED = {
    "overall": {
        "total": 7,
        "done": 3,
        "failed": 2,
        "stale": 1,
        "pending": 2,
        "failed_by_class": {"diverged": 1, "timeout": 1, "error": 0, "worker-lost": 0},
    },
    "HIGH": {"total": 3, "done": 2, "failed": 1, "stale": 0, "pending": 0},
    "MEDIUM": {"total": 2, "done": 1, "failed": 0, "stale": 1, "pending": 1},
    "LOW": {"total": 2, "done": 0, "failed": 1, "stale": 0, "pending": 1},
    "runs_in_store": 5,
    "compute_seconds": 2.0 + 4.0 + 1.0 + 3.0 + 5.0,
    "mean_run_seconds": (2.0 + 4.0 + 5.0) / 3,  # the done runs, the stale one included
    # every run has the same grid and step count, so the cost model reduces to mean x pending
    "eta_seconds_1_worker": (2.0 + 4.0 + 5.0) / 3 * 2,
}


@cache
def _simulate(key: tuple[tuple[str, Any], ...]) -> Any:
    import solver

    return solver.simulate(dict(key))


def simulate_tiny(params: Any) -> Any:
    """The real solver's result for ``params`` (cached: tests commit the same runs often)."""
    d = params.canonical() if hasattr(params, "canonical") else dict(params)
    return _simulate(tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in d.items())))


def commit_done(store: Any, pkg: Any, wall_time: float) -> None:
    """Commit ``pkg``'s run as done, through the real store API."""
    store.commit_run(
        pkg.run_id,
        simulate_tiny(pkg.params),
        {
            "params": pkg.params,
            "package_ids": [pkg.package_id],
            "priority": pkg.priority,
            "wall_time": wall_time,
        },
    )


def record_failed(store: Any, pkg: Any, failure_class: str, wall_time: float) -> None:
    """Record ``pkg``'s run as failed with ``failure_class``."""
    store.record_failure(
        pkg.run_id,
        failure_class,
        f"test: {failure_class}",
        {
            "params": pkg.params,
            "package_ids": [pkg.package_id],
            "priority": pkg.priority,
            "wall_time": wall_time,
        },
    )


def build_scenario(
    tmp_path: Path, *, stored: Mapping[str, tuple[str, str | None, float]] | None = None
) -> tuple[Path, Path]:
    """Write SCENARIO's package directory and a store holding ``_STORED`` plus p004's old run.

    Returns (packages_dir, store_path).
    """
    from sweep.spec import load_packages
    from sweep.store import Store

    stored = _STORED if stored is None else stored
    pkgs_dir = tmp_path / "packages"
    store_path = tmp_path / "results.zarr"
    # p004 first ran with other parameters: write that version, commit it, then edit it
    old = [dict(p) for p in SCENARIO]
    old[4] = {**old[4], "parameters": {**old[4]["parameters"], "Re": _STALE_OLD_RE}}
    write_packages(pkgs_dir, old)
    old_pkgs = {p.package_id: p for p in load_packages(pkgs_dir, check_memory=False)}
    with Store.open(store_path, mode="a") as st:
        commit_done(st, old_pkgs["p004"], 5.0)
        for pid, (status, fclass, wall) in stored.items():
            if status == "done":
                commit_done(st, old_pkgs[pid], wall)
            else:
                record_failed(st, old_pkgs[pid], fclass or "error", wall)
    for f in pkgs_dir.glob("*.json"):
        f.unlink()
    write_packages(pkgs_dir, SCENARIO)
    return pkgs_dir, store_path
