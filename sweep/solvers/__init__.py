"""Solvers beyond the built-in spectral one: OpenFOAM cases and any command. Re-exports only.

``openfoam``: an OpenFOAM case template (bundled ``cavity`` or a directory with
``sweep-case.yaml``) run in a scratch directory; ``command``: any executable with an input file
rendered from the parameters and declared output files; ``base``: what both share (parameters
declared in a manifest, the template tree and its hash, process groups under a deadline).
"""

from __future__ import annotations

from .command import CommandSpec, load_command, run_command
from .errors import ExternalSolverError, ProgramDiverged, ProgramTimeout
from .openfoam import CaseCheckpoint, CaseTemplate, load_case, run_case
from .template import TemplateTree

__all__ = [
    "ExternalSolverError",
    "ProgramDiverged",
    "ProgramTimeout",
    "TemplateTree",
    "CommandSpec",
    "load_command",
    "run_command",
    "CaseCheckpoint",
    "CaseTemplate",
    "load_case",
    "run_case",
]
