"""The solver registry: the ``"solver"`` name of a package file -> the function that loads it.

Built in: ``spectral`` (the default: ``solver/``), ``openfoam`` (an OpenFOAM case: a bundled one
by name or a case directory, the package's ``"case"``) and ``command`` (any program: a
directory with ``sweep-command.yaml``). Other packages add solvers through the entry point
group ``ns_sweep.solvers``: the entry point's name is the solver's name, its object a loader
``load(case: str | None, base: pathlib.Path) -> Solver`` (``sweep.solvers.protocol``). A
built-in name cannot be taken by an entry point.

Loaders are imported on first use (``sweep new --help`` and the spectral path import nothing of
OpenFOAM); a name that is not registered is a one-line error listing the registered ones.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.errors import ConfigError

from .protocol import FieldError, Solver, SolverLoader

if TYPE_CHECKING:  # pragma: no cover
    from importlib.metadata import EntryPoint

__all__ = [
    "DEFAULT_SOLVER",
    "ENTRY_POINT_GROUP",
    "BUILTIN_SOLVERS",
    "solver_names",
    "solver_loader",
    "load_solver",
    "SolverCache",
]

DEFAULT_SOLVER = "spectral"
ENTRY_POINT_GROUP = "ns_sweep.solvers"

# name -> "module:loader", imported when a package names the solver
BUILTIN_SOLVERS: Mapping[str, str] = {
    "spectral": "sweep.solvers.spectral:load_solver",
    "openfoam": "sweep.solvers.openfoam.case:load_solver",
    "command": "sweep.solvers.command:load_solver",
}


@functools.lru_cache(maxsize=1)
def _plugins() -> dict[str, EntryPoint]:
    """The entry points of group ``ns_sweep.solvers`` of the installed distributions (read once
    per process: installing a plug-in takes effect in the next one)."""
    from importlib.metadata import entry_points  # ~30 ms: paid by the processes that need it

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in BUILTIN_SOLVERS}


def solver_names() -> list[str]:
    """Every registered solver name: the built-in ones, then the plug-ins' in name order."""
    return [*BUILTIN_SOLVERS, *sorted(_plugins())]


def _allowed_names() -> str:
    return (
        "one of "
        + ", ".join(solver_names())
        + f" (other packages register solvers under the entry point group {ENTRY_POINT_GROUP})"
    )


@functools.cache
def solver_loader(name: str) -> SolverLoader:
    """The loader of solver ``name``; a FieldError (field ``solver``) listing the registered
    names when there is none, a one-line ConfigError when a plug-in fails to import."""
    target = BUILTIN_SOLVERS.get(name)
    if target is not None:
        module, _, attr = target.partition(":")
        loader: Any = getattr(importlib.import_module(module), attr)
        return loader
    ep = _plugins().get(name)
    if ep is None:
        raise FieldError("solver", name, _allowed_names())
    try:
        loaded = ep.load()
    except Exception as exc:  # a broken plug-in: say which, and why, in one line
        raise ConfigError(
            f"solver: bad value {name!r}: its entry point {ep.value} ({ENTRY_POINT_GROUP}) failed to "
            f"load: {type(exc).__name__}: {exc}; allowed: an installed, importable plug-in"
        ) from None
    if not callable(loaded):
        raise ConfigError(
            f"solver: bad value {name!r}: its entry point {ep.value} is not callable; allowed: a "
            "loader load(case, base) -> Solver"
        )
    return loaded


def load_solver(name: str, case: str | None = None, base: str | Path = ".") -> Solver:
    """Solver ``name`` with its ``case`` (relative paths start at ``base``, the package
    directory). Raises FieldError for a bad ``solver`` or ``case`` value, ConfigError for a
    broken template or a loader that returns no solver."""
    if not isinstance(name, str):  # a JSON list or number: no solver's name (nor hashable)
        raise FieldError("solver", name, _allowed_names())
    solver = solver_loader(name)(case, Path(base))
    if not isinstance(solver, Solver):
        raise ConfigError(
            f"solver: bad value {name!r}: its loader returned {type(solver).__name__}; allowed: an "
            "object with params, supports_resume, validate, parameter_problems, identity and run "
            "(sweep.solvers.protocol.Solver)"
        )
    return solver


class SolverCache:
    """Solvers loaded once per pass over a package directory (``base``): 10,000 packages naming
    one case read and hash its files once; a failure is remembered too, and raised again."""

    def __init__(self, base: str | Path) -> None:
        self.base = Path(base)
        self._memo: dict[tuple[Any, Any], Solver | ConfigError] = {}

    def get(self, name: str, case: str | None) -> Solver:
        """``load_solver(name, case, base)``, once per (name, case)."""
        key = (repr(name), repr(case))
        hit = self._memo.get(key)
        if hit is None:
            try:
                hit = load_solver(name, case, self.base)
            except ConfigError as exc:
                hit = exc
            self._memo[key] = hit
        if isinstance(hit, ConfigError):
            raise hit
        return hit
