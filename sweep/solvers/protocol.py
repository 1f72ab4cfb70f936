"""What the sweep layer needs of a solver: the ``Solver`` protocol, and the errors of a package's
``solver`` and ``case`` fields.

A solver is an object that declares its parameters once (``params``: name ->
``solver.params.Param``), checks raw values against them, says what defines a run (its
identity) and runs one set of values into a ``solver.output.RunResult``. The built-in
spectral solver (``sweep.solvers.spectral``), an OpenFOAM case (``CaseTemplate``), a command
directory (``CommandSpec``) and any solver another package registers
(``sweep.solvers.registry``) all have this shape, so validation, ``sweep new``, ``sweep
explain``, run identity, the worker side and the results work the same for every one.

A solver that can stop between two steps when asked (``supports_stop``, optional: False when
absent) takes a ``stop`` option, a callable asked between steps, and raises
``solver.errors.SolverStopped`` with its checkpoint when it says True: the engine uses it when a
worker's job nears its walltime (``sweep.engine.walltime``).

A solver that can resume (``supports_resume``) also turns its checkpoints into plain arrays and
back (``checkpoint_to_arrays``, ``checkpoint_from_arrays``): the engine relays them to the
driver, which keeps them in the store, as it does the spectral solver's states. The arrays hold
``step`` (int64, one element) and ``params_json`` (uint8: ``checkpoint_key(values)``): a run
resumes only from a checkpoint whose key is its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from solver.errors import ParameterError
from solver.output import RunResult
from solver.params import Param
from sweep.errors import ConfigError

__all__ = ["Solver", "SolverLoader", "FieldError", "CHECKPOINT_KEY", "checkpoint_key_of"]

CHECKPOINT_KEY = "params_json"  # the array of a checkpoint naming what it resumes (as solver.State)


@runtime_checkable
class Solver(Protocol):
    """A solver as the registry hands it out (see the module docstring)."""

    params: Mapping[str, Param]  # every parameter, declared once, in the order to show them
    supports_resume: bool

    def validate(self, raw: Mapping[str, Any], source: str = "parameters") -> dict[str, Any]:
        """Every value (defaults filled in, coerced), or a one-line ConfigError naming ``source``."""
        ...

    def parameter_problems(self, raw: Mapping[str, Any]) -> list[ParameterError]:
        """Every problem with raw values (unknown names, types, ranges), in declaration order."""
        ...

    def identity(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """What defines a run of these values, JSON-safe (hashed with the solver's name)."""
        ...

    def run(self, values: Mapping[str, Any], **options: Any) -> RunResult:
        """Run once. Options the engine passes: ``deadline`` (a ``time.time()`` value),
        ``progress(step, n_steps, t)``, ``checkpoint(state)``, ``checkpoint_every_seconds``,
        ``checkpoint_every_steps``, ``resume`` (a checkpoint to continue from); and
        ``checkpoint_now()`` (True: take a checkpoint at once) to a solver whose
        ``checkpoint_on_demand`` attribute is True (optional)."""
        ...


# A registry entry: (the package's "case" value or None, the directory relative paths start
# from) -> the solver. Raises FieldError("case", ...) for a case it cannot find or does not take,
# and a one-line ConfigError for a broken template.
SolverLoader = Callable[[str | None, Path], Solver]


class FieldError(ConfigError):
    """A bad value of one field of a package file (``solver``, ``case``): the line is completed
    with the file's name by whoever reads the file (``<file>: <field>: bad value ...``)."""

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        from .errors import show

        self.field, self.value, self.allowed = field, value, allowed
        what = "missing" if value is None else f"bad value {show(value)}"
        super().__init__(f"{field}: {what}; allowed: {allowed}", option=field)

    def line(self, file: str) -> str:
        """The problem as a line naming ``file``."""
        return f"{file}: {self}"


def checkpoint_key_of(arrays: Mapping[str, Any]) -> str | None:
    """The key of checkpoint arrays (``params_json`` as text), None when they carry none."""
    raw = arrays.get(CHECKPOINT_KEY)
    if raw is None:
        return None
    return np.asarray(raw, dtype=np.uint8).tobytes().decode("utf-8", "replace")
