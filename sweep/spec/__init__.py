"""Package files -> validated, immutable ``Package`` objects; ``sweep new``'s grids. Re-exports only.

``package``: the Package, its run identity, priorities; ``files``: reading files safely;
``cache``: the validation cache; ``check``: checking a directory; ``select``: choosing packages;
``generate``: writing a package directory from a grid; ``table``: packages as columns.
"""

from __future__ import annotations

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
