"""The zarr result store. Re-exports only.

``store``: the ``Store`` facade (open, lock, schema, queries, commits); ``blobs``: bytes at a
path or fsspec URL; ``lock``: the single-writer lock; ``records`` / ``table``: a run's record
and the index in memory; ``log`` / ``index``: records since the index and its compacted
generations; ``groups`` / ``packed``: a run's data as its own group or stacked in a batch;
``checkpoints``; ``zarr_docs``: the one zarr-document encoder; ``write_errors``; ``results``:
``open_results`` and the other readers for analysis (imported on first use: xarray, pandas).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .blobs import is_local, open_blobs
from .groups import MARKER_ATTR
from .records import FAILURE_CLASSES, STATUSES, RunRecord
from .schema import SCHEMA_VERSION
from .store import Store
from .table import RunTable
from .variables import SERIES_DIM

if TYPE_CHECKING:  # pragma: no cover
    from .results import align_time, export_index, open_results, open_run_tree, results_frame, to_grid

_LAZY = dict.fromkeys(
    ("open_results", "align_time", "results_frame", "export_index", "open_run_tree", "to_grid"),
    "sweep.store.results",
)

__all__ = [
    "FAILURE_CLASSES",
    "MARKER_ATTR",
    "SCHEMA_VERSION",
    "SERIES_DIM",
    "STATUSES",
    "RunRecord",
    "RunTable",
    "Store",
    "align_time",
    "export_index",
    "is_local",
    "open_blobs",
    "open_results",
    "open_run_tree",
    "results_frame",
    "to_grid",
]

# the readers import xarray and pandas: on first use only
__getattr__, _dir = lazy_exports(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)
