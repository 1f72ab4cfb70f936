"""Objectives of an adaptive sweep: a scalar computed from a run's stored result.

A small registry of reducers over result variables, written as in the spec file:
``final(energy)``, ``max(dissipation)``, ``min(v)``, ``mean(v)``, ``argmax(dissipation, time)``,
``argmin(v, coord)``, ``diverged`` (1 for a run that diverged, 0 for a done one), and a user
function ``python:package.module:function`` (or ``python:package.module.function``), called
with the run's ``xarray.Dataset`` (None for a diverged run) and its ``RunRecord``, returning a
float (or None: not told).

A run that errored or timed out has no value: the adaptive loop reports it and tells the
learner nothing. A diverged run has a value only for ``diverged`` (and for user functions that
accept it).
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..spec.files import problem_line

__all__ = ["REDUCERS", "Objective", "parse_objective"]


def _final(values: np.ndarray, coord: np.ndarray | None) -> float:
    return float(values[-1])


def _argmax(values: np.ndarray, coord: np.ndarray | None) -> float:
    assert coord is not None
    return float(coord[int(np.nanargmax(values))])


def _argmin(values: np.ndarray, coord: np.ndarray | None) -> float:
    assert coord is not None
    return float(coord[int(np.nanargmin(values))])


# name -> (reducer of a 1-D variable, whether it takes a coordinate argument)
REDUCERS: dict[str, tuple[Callable[[np.ndarray, np.ndarray | None], float], bool]] = {
    "final": (_final, False),
    "max": (lambda v, c: float(np.nanmax(v)), False),
    "min": (lambda v, c: float(np.nanmin(v)), False),
    "mean": (lambda v, c: float(np.nanmean(v)), False),
    "argmax": (_argmax, True),
    "argmin": (_argmin, True),
}
_CALL = re.compile(r"^\s*(\w+)\s*\(\s*(\w+)\s*(?:,\s*(\w+)\s*)?\)\s*$")
_ALLOWED = (
    "diverged, "
    + ", ".join(f"{n}(variable" + (", coordinate)" if c else ")") for n, (_, c) in REDUCERS.items())
    + ", or python:module:function"
)


@dataclass(frozen=True)
class Objective:
    """How to turn a run into the number the learner is told."""

    text: str  # as written in the spec
    kind: str  # "diverged", a REDUCERS name, or "python"
    variable: str | None = None
    coordinate: str | None = None
    function: Callable[[Any, Any], float | None] | None = None

    def of_done(self, ds: Any, record: Any) -> float | None:
        """The value of a done run (its stored Dataset and RunRecord); None: no value."""
        if self.kind == "diverged":
            return 0.0
        if self.function is not None:
            return _number(self.function(ds, record))
        reducer, _ = REDUCERS[self.kind]
        assert self.variable is not None
        if self.variable not in ds.variables:
            return None
        var = ds[self.variable]
        coord = None
        if self.coordinate is not None:
            if self.coordinate not in var.coords:
                return None
            coord = np.asarray(var[self.coordinate].values)
        return _number(reducer(np.asarray(var.values).reshape(-1), coord))

    def of_diverged(self, record: Any) -> float | None:
        """The value of a diverged run (1 for ``diverged``; a user function decides; else None)."""
        if self.kind == "diverged":
            return 1.0
        if self.function is not None:
            return _number(self.function(None, record))
        return None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def parse_objective(text: Any, file: str, where: str = "objective.reducer") -> Objective:
    """The Objective written as ``text`` in a spec file; a one-line ConfigError otherwise."""
    if not isinstance(text, str):
        raise ConfigError(problem_line(file, where, text, _ALLOWED))
    if text.strip() == "diverged":
        return Objective(text, "diverged")
    if text.startswith("python:"):
        return Objective(text, "python", function=_user_function(text, file, where))
    m = _CALL.match(text)
    if m is None or m.group(1) not in REDUCERS:
        raise ConfigError(problem_line(file, where, text, _ALLOWED))
    name, variable, coordinate = m.groups()
    if REDUCERS[name][1] != (coordinate is not None):
        raise ConfigError(problem_line(file, where, text, _ALLOWED))
    return Objective(text, name, variable, coordinate)


def _user_function(text: str, file: str, where: str) -> Callable[[Any, Any], float | None]:
    target = text.removeprefix("python:")
    # python:package.module:function, or the dotted path python:package.module.function
    module, _, name = target.partition(":") if ":" in target else target.rpartition(".")
    allowed = "python:package.module:function, a function of (dataset, record) returning a number"
    if not module or not name:
        raise ConfigError(problem_line(file, where, text, allowed))
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            problem_line(file, where, text, f"{allowed} ({type(exc).__name__}: {exc})")
        ) from None
    if not callable(fn):
        raise ConfigError(problem_line(file, where, text, allowed))
    return fn


def check_variables(objective: Objective, variables: Mapping[str, Any], file: str) -> None:
    """ConfigError when the objective names a variable the solver's results do not have."""
    if objective.variable is not None and objective.variable not in variables:
        raise ConfigError(
            problem_line(
                file,
                "objective.reducer",
                objective.text,
                "a reducer of a result variable: " + ", ".join(sorted(variables)),
            )
        )
