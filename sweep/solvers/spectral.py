"""The built-in pseudo-spectral solver (``solver/``) as a registered solver: the default one.

Nothing here changes what the spectral solver does or how its runs are identified: its
parameters are ``solver.params.PARAMS``, a run's identity is ``SolverParams.canonical()`` and
its run id is the hash ``sweep.spec.run_id_of`` has always computed (no solver name, no
template), so stores written before other solvers existed stay valid. Its checkpoints are
``solver.State`` objects, whose arrays already carry their key (``params_json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from solver.errors import ParameterError
from solver.output import RunResult
from solver.params import PARAMS, Param, SolverParams, parameter_problems
from sweep.errors import ConfigError

from .errors import config_line
from .protocol import FieldError

__all__ = ["NAME", "SpectralSolver", "SPECTRAL", "load_solver"]

NAME = "spectral"


class SpectralSolver:
    """The ``Solver`` interface over ``solver.simulate.run_simulation`` (one instance: SPECTRAL)."""

    name = NAME
    supports_resume = True  # solver.State: a resumed run is bit-identical to an uninterrupted one
    supports_stop = True  # run(stop=...): SolverStopped with the State between two steps
    checkpoint_on_demand = True  # run() takes checkpoint_now (a stopped sweep asks for one)

    @property
    def params(self) -> Mapping[str, Param]:
        """``solver.params.PARAMS`` (package files write the same names)."""
        return PARAMS

    def validate(self, raw: Mapping[str, Any], source: str = "parameters") -> dict[str, Any]:
        """All values (defaults filled in), or a one-line ConfigError naming ``source``."""
        problems = parameter_problems(raw)
        if problems:
            e = problems[0]
            raise ConfigError(config_line(source, f"parameters.{e.field}", e.value, e.allowed))
        return SolverParams(raw).as_dict()

    def parameter_problems(self, raw: Mapping[str, Any]) -> list[ParameterError]:
        """``solver.params.parameter_problems``."""
        return parameter_problems(raw)

    def identity(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``SolverParams.canonical()``: the identity parameters, defaults filled in."""
        return SolverParams(values).canonical()

    def run(
        self,
        values: Mapping[str, Any],
        *,
        deadline: float | None = None,
        progress: Any = None,
        checkpoint: Any = None,
        checkpoint_every_seconds: float | None = None,
        checkpoint_every_steps: int | None = None,
        resume: Any = None,
        stop: Any = None,
        checkpoint_now: Any = None,
    ) -> RunResult:
        """``solver.simulate.run_simulation`` (``resume``: a ``solver.State``; ``stop()``: asked
        between steps, True ends the run with ``SolverStopped`` carrying its State)."""
        from solver.simulate import run_simulation

        return run_simulation(
            SolverParams(values),
            deadline=deadline,
            progress=progress,
            checkpoint=checkpoint,
            checkpoint_every_steps=checkpoint_every_steps,
            checkpoint_every_seconds=checkpoint_every_seconds,
            resume=resume,
            stop=stop,
            checkpoint_now=checkpoint_now,
        )

    def checkpoint_key(self, values: Mapping[str, Any]) -> str:
        """``solver.State.params_key``: the identity parameters and the solver version."""
        from solver import State

        return State.params_key(SolverParams(values).canonical())

    def checkpoint_to_arrays(self, state: Any, values: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``State.to_arrays()`` (its ``params_json`` is already the key)."""
        arrays: dict[str, np.ndarray] = state.to_arrays()
        return arrays

    def checkpoint_from_arrays(self, arrays: Mapping[str, Any]) -> Any:
        """``State.from_arrays``."""
        from solver import State

        return State.from_arrays(dict(arrays))


SPECTRAL = SpectralSolver()


def load_solver(case: str | None, base: Path) -> SpectralSolver:
    """The registry's entry: the spectral solver takes no case (all it needs is in the package)."""
    if case is not None:
        raise FieldError(
            "case",
            case,
            'no case: the spectral solver takes its parameters only (a case belongs to "solver": '
            '"openfoam" or "command")',
        )
    return SPECTRAL
