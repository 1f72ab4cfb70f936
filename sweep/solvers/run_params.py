"""``RunParams``: the validated values of one run of a registered solver, with that solver.

The spectral solver's runs hold ``solver.params.SolverParams`` (unchanged, so their run ids are
too); every other solver's runs hold a ``RunParams``, which offers the same reading API
(``p["Re"]``, ``p.Re``, ``as_dict()``, ``canonical()``, ``canonical_json()``). Its
``canonical_json`` is what the run id hashes: the solver's registered name and the solver's own
identity of the values (for a template: its content hash and the identity parameters), so an
edit of the template, or the same values run by another solver, makes a new run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .manifest import identity_values
from .protocol import Solver

__all__ = ["RunParams"]


class RunParams:
    """Validated values (defaults filled in) of ``solver``, registered as ``solver_name``."""

    __slots__ = ("solver_name", "solver", "_values", "_json")
    solver_name: str
    solver: Solver
    _values: Mapping[str, Any]
    _json: str | None

    def __init__(self, solver_name: str, solver: Solver, values: Mapping[str, Any]) -> None:
        _set = object.__setattr__
        _set(self, "solver_name", solver_name)
        _set(self, "solver", solver)
        _set(self, "_values", MappingProxyType(dict(values)))
        _set(self, "_json", None)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("RunParams is immutable")

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunParams) and (self.canonical_json(), self.as_dict()) == (
            other.canonical_json(),
            other.as_dict(),
        )

    def __hash__(self) -> int:
        return hash(self.canonical_json())

    def __repr__(self) -> str:
        return f"RunParams({self.solver_name!r}, {dict(self._values)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (RunParams, (self.solver_name, self.solver, dict(self._values)))

    def as_dict(self) -> dict[str, Any]:
        """Every value, execution-only ones included (what a worker runs)."""
        return dict(self._values)

    def canonical(self) -> dict[str, Any]:
        """The identity parameters, sorted by name (what a run's record keeps as its parameters)."""
        return identity_values(self.solver.params, self._values)

    def identity(self) -> dict[str, Any]:
        """What the run id hashes: the solver's name and its identity of the values."""
        return {"solver": self.solver_name, **self.solver.identity(self._values)}

    def canonical_json(self) -> str:
        """``identity()`` as compact JSON with sorted keys."""
        text = self._json
        if text is None:
            text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
            object.__setattr__(self, "_json", text)
        return text

    @property
    def case(self) -> str | None:
        """The name of the solver's template (``cavity``), None for a solver without one."""
        name = getattr(self.solver, "name", None)
        return str(name) if name else None

    @property
    def template_hash(self) -> str | None:
        """The template's content hash, None for a solver without one."""
        found = self.solver.identity(self._values).get("template_hash")
        return str(found) if found else None
