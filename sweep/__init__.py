"""Dask sweep engine for Navier-Stokes parameter studies. Re-exports only.

The names are imported on first use (PEP 562), so ``sweep --help`` and ``sweep validate``
do not pay for importing xarray, zarr and Dask. ``dir(sweep)`` lists them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "run_sweep": "sweep.engine.sweep",
    "adapt": "sweep.adapt",
    "SweepOptions": "sweep.engine.options",
    "SweepResult": "sweep.engine.sweep",
    "explain_packages": "sweep.engine.plan",
    "Package": "sweep.spec",
    "load_packages": "sweep.spec",
    "select_packages": "sweep.spec",
    "run_id_of": "sweep.spec",
    "RunRecord": "sweep.store",
    "Store": "sweep.store",
    "open_results": "sweep.store.results",
    "align_time": "sweep.store.results",
    "open_run_tree": "sweep.store.results",
    "results_frame": "sweep.store.results",
    "export_index": "sweep.store.results",
    "to_grid": "sweep.store.results",
    "ConfigError": "sweep.errors",
    "StoreError": "sweep.errors",
    "SweepError": "sweep.errors",
}

__all__ = [
    "adapt",
    "align_time",
    "ConfigError",
    "Package",
    "RunRecord",
    "Store",
    "StoreError",
    "SweepError",
    "SweepOptions",
    "SweepResult",
    "explain_packages",
    "export_index",
    "load_packages",
    "open_results",
    "open_run_tree",
    "results_frame",
    "run_id_of",
    "run_sweep",
    "select_packages",
    "to_grid",
]

if TYPE_CHECKING:  # pragma: no cover
    from .adapt import adapt
    from .engine.options import SweepOptions
    from .engine.plan import explain_packages
    from .engine.sweep import SweepResult, run_sweep
    from .errors import ConfigError, StoreError, SweepError
    from .spec import Package, load_packages, run_id_of, select_packages
    from .store import RunRecord, Store
    from .store.results import (
        align_time,
        export_index,
        open_results,
        open_run_tree,
        results_frame,
        to_grid,
    )

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
