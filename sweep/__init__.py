"""Dask sweep engine for Navier-Stokes parameter studies. Re-exports only.

The names are imported on first use (PEP 562), so ``sweep --help`` and ``sweep validate``
do not pay for importing xarray, zarr and Dask.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Package": "sweep.spec",
    "load_packages": "sweep.spec",
    "run_id_of": "sweep.spec",
    "RunRecord": "sweep.store",
    "Store": "sweep.store",
    "open_results": "sweep.results",
    "open_run_tree": "sweep.results",
    "results_frame": "sweep.results",
    "export_index": "sweep.results",
    "to_grid": "sweep.results",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from .results import export_index, open_results, open_run_tree, results_frame, to_grid
    from .spec import Package, load_packages, run_id_of
    from .store import RunRecord, Store


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sweep' has no attribute {name!r}")
