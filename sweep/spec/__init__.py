"""Package files -> validated, immutable ``Package`` objects; ``sweep new``'s grids. Re-exports only.

``package``: the Package, its run identity, priorities; ``files``: reading files safely;
``cache``: the validation cache; ``check``: checking a directory; ``select``: choosing packages;
``generate``: writing a package directory from a grid; ``table``: packages as columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from .check import check_directory, check_document, load_packages, memory_need
    from .files import MAX_FILE_BYTES
    from .generate import (
        append_packages,
        expand_grids,
        listed_ids,
        parse_grid,
        parse_value,
        read_document,
        read_grid_file,
        write_packages,
    )
    from .package import (
        FILE_PARAMETER_NAMES,
        FILE_TO_SOLVER,
        PACKAGE_GLOB,
        PACKAGE_KEYS,
        PRIORITIES,
        PRIORITY_CHOICES,
        SOLVER_TO_FILE,
        SUMMARY_FILE,
        Package,
        canonical_json,
        check_priority,
        id_problem,
        package_document,
        run_id_of,
    )
    from .select import select_packages, selection_label
    from .table import PackageTable

# imported on first use: reading a store (sweep.store.blobs needs spec.files alone) does not
# import the checks, the generator and the solvers' registry
_LAZY = {
    "check_directory": "sweep.spec.check",
    "check_document": "sweep.spec.check",
    "load_packages": "sweep.spec.check",
    "memory_need": "sweep.spec.check",
    "MAX_FILE_BYTES": "sweep.spec.files",
    "append_packages": "sweep.spec.generate",
    "expand_grids": "sweep.spec.generate",
    "listed_ids": "sweep.spec.generate",
    "parse_grid": "sweep.spec.generate",
    "parse_value": "sweep.spec.generate",
    "read_document": "sweep.spec.generate",
    "read_grid_file": "sweep.spec.generate",
    "write_packages": "sweep.spec.generate",
    "FILE_PARAMETER_NAMES": "sweep.spec.package",
    "FILE_TO_SOLVER": "sweep.spec.package",
    "PACKAGE_GLOB": "sweep.spec.package",
    "PACKAGE_KEYS": "sweep.spec.package",
    "PRIORITIES": "sweep.spec.package",
    "PRIORITY_CHOICES": "sweep.spec.package",
    "SOLVER_TO_FILE": "sweep.spec.package",
    "SUMMARY_FILE": "sweep.spec.package",
    "Package": "sweep.spec.package",
    "canonical_json": "sweep.spec.package",
    "check_priority": "sweep.spec.package",
    "id_problem": "sweep.spec.package",
    "package_document": "sweep.spec.package",
    "run_id_of": "sweep.spec.package",
    "select_packages": "sweep.spec.select",
    "selection_label": "sweep.spec.select",
    "PackageTable": "sweep.spec.table",
}

__all__ = [
    "FILE_PARAMETER_NAMES",
    "FILE_TO_SOLVER",
    "MAX_FILE_BYTES",
    "PACKAGE_GLOB",
    "PACKAGE_KEYS",
    "PRIORITIES",
    "PRIORITY_CHOICES",
    "SOLVER_TO_FILE",
    "SUMMARY_FILE",
    "Package",
    "PackageTable",
    "append_packages",
    "canonical_json",
    "check_document",
    "check_directory",
    "check_priority",
    "expand_grids",
    "listed_ids",
    "id_problem",
    "load_packages",
    "memory_need",
    "package_document",
    "parse_grid",
    "parse_value",
    "read_document",
    "read_grid_file",
    "run_id_of",
    "select_packages",
    "selection_label",
    "write_packages",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
