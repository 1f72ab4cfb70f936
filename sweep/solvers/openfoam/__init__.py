"""The ``openfoam`` solver: OpenFOAM cases as sweep runs. Re-exports only.

``load_case`` reads a case template (a bundled one by name, or a directory with a
``sweep-case.yaml`` manifest); ``run_case`` runs it with parameters in a scratch directory and
returns a ``solver.output.RunResult``; ``ghia`` holds Ghia et al. (1982)'s Table I.
"""

from __future__ import annotations

from .case import CASES_DIR, MANIFEST, CaseTemplate, bundled_cases, case_from_tree, load_case
from .ghia import GHIA_CITATION, GHIA_U, GHIA_Y, ghia_u
from .parse import LogSeries, parse_log
from .run import CaseCheckpoint, openfoam_env, run_case

__all__ = [
    "CASES_DIR",
    "MANIFEST",
    "CaseTemplate",
    "CaseCheckpoint",
    "bundled_cases",
    "case_from_tree",
    "load_case",
    "run_case",
    "openfoam_env",
    "LogSeries",
    "parse_log",
    "GHIA_CITATION",
    "GHIA_U",
    "GHIA_Y",
    "ghia_u",
]
