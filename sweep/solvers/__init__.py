"""The solvers a sweep can run, and their registry. Re-exports only.

``registry``: a package's ``"solver"`` name -> its loader (``spectral``, the default and the
built-in ``solver/``; ``openfoam``; ``command``; plug-ins through the entry point group
``ns_sweep.solvers``); ``protocol``: what every solver offers (``Solver``); ``spectral``: the
built-in solver behind that interface; ``run_params``: the validated values of a run of any
other solver (``RunParams``, hashed into its run id with the solver's name and template).
``openfoam``: an OpenFOAM case template (bundled ``cavity`` or a directory with
``sweep-case.yaml``) run in a scratch directory; ``command``: any executable with an input file
rendered from the parameters and declared output files. What the template solvers share:
``manifest`` (declared parameters), ``expressions`` (``${...}`` fields), ``template`` (the
in-memory tree and its hash), ``process`` (process groups under a deadline), ``errors``.

Imported on first use (PEP 562): the spectral path and ``sweep new --help`` import nothing of
OpenFOAM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from .command import CommandSpec, load_command, run_command
    from .errors import ExternalSolverError, ProgramDiverged, ProgramTimeout
    from .openfoam import CaseCheckpoint, CaseTemplate, load_case, run_case
    from .protocol import CHECKPOINT_KEY, FieldError, Solver, SolverLoader, checkpoint_key_of
    from .registry import (
        BUILTIN_SOLVERS,
        DEFAULT_SOLVER,
        ENTRY_POINT_GROUP,
        SolverCache,
        load_solver,
        solver_loader,
        solver_names,
    )
    from .run_params import RunParams
    from .spectral import SPECTRAL, SpectralSolver
    from .template import TemplateTree

_EXPORTS: dict[str, str] = {
    "CommandSpec": "sweep.solvers.command",
    "load_command": "sweep.solvers.command",
    "run_command": "sweep.solvers.command",
    "ExternalSolverError": "sweep.solvers.errors",
    "ProgramDiverged": "sweep.solvers.errors",
    "ProgramTimeout": "sweep.solvers.errors",
    "CaseCheckpoint": "sweep.solvers.openfoam",
    "CaseTemplate": "sweep.solvers.openfoam",
    "load_case": "sweep.solvers.openfoam",
    "run_case": "sweep.solvers.openfoam",
    "CHECKPOINT_KEY": "sweep.solvers.protocol",
    "FieldError": "sweep.solvers.protocol",
    "Solver": "sweep.solvers.protocol",
    "SolverLoader": "sweep.solvers.protocol",
    "checkpoint_key_of": "sweep.solvers.protocol",
    "BUILTIN_SOLVERS": "sweep.solvers.registry",
    "DEFAULT_SOLVER": "sweep.solvers.registry",
    "ENTRY_POINT_GROUP": "sweep.solvers.registry",
    "SolverCache": "sweep.solvers.registry",
    "load_solver": "sweep.solvers.registry",
    "solver_loader": "sweep.solvers.registry",
    "solver_names": "sweep.solvers.registry",
    "RunParams": "sweep.solvers.run_params",
    "SPECTRAL": "sweep.solvers.spectral",
    "SpectralSolver": "sweep.solvers.spectral",
    "TemplateTree": "sweep.solvers.template",
}

__all__ = [
    "BUILTIN_SOLVERS",
    "CHECKPOINT_KEY",
    "DEFAULT_SOLVER",
    "ENTRY_POINT_GROUP",
    "SPECTRAL",
    "CaseCheckpoint",
    "CaseTemplate",
    "CommandSpec",
    "ExternalSolverError",
    "FieldError",
    "ProgramDiverged",
    "ProgramTimeout",
    "RunParams",
    "Solver",
    "SolverCache",
    "SolverLoader",
    "SpectralSolver",
    "TemplateTree",
    "checkpoint_key_of",
    "load_case",
    "load_command",
    "load_solver",
    "run_case",
    "run_command",
    "solver_loader",
    "solver_names",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
