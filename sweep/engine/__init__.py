"""The sweep engine: run a package directory's sweep on Dask into a store. Re-exports only.

``options``: ``SweepOptions``, every option validated once; ``sweep``: ``run_sweep``; ``plan``:
what runs and why (``sweep explain``); ``driver``: the loop, with ``submit`` (packages ->
tasks), ``commits`` (the store's writer thread), ``checkpoints`` (the checkpoint relay),
``recovery`` (retries, watchdog); ``worker``: what runs on a worker; ``cluster``: where it
runs; ``memory``: does a run fit; ``connection``, ``logs``, ``progress``.

Imported on first use (PEP 562): ``sweep --help`` must not pay for importing Dask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from .options import SweepOptions
    from .plan import PlanEntry, explain_packages, plan_sweep
    from .sweep import SweepResult, SweepStart, default_log_dir, exit_code_of, run_sweep

_EXPORTS: dict[str, str] = {
    "SweepOptions": "sweep.engine.options",
    "PlanEntry": "sweep.engine.plan",
    "explain_packages": "sweep.engine.plan",
    "plan_sweep": "sweep.engine.plan",
    "SweepResult": "sweep.engine.sweep",
    "SweepStart": "sweep.engine.sweep",
    "default_log_dir": "sweep.engine.sweep",
    "exit_code_of": "sweep.engine.sweep",
    "run_sweep": "sweep.engine.sweep",
}

__all__ = [
    "PlanEntry",
    "SweepOptions",
    "SweepResult",
    "SweepStart",
    "default_log_dir",
    "exit_code_of",
    "explain_packages",
    "plan_sweep",
    "run_sweep",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
