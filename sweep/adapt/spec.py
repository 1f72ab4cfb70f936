"""The spec of an adaptive sweep (TOML or YAML), checked like package files: one line per problem.

name = "tg-dt-limit"      # prefix of its package ids; its runs are tagged with it
packages = "tg-dt-limit"  # the sweep directory it writes packages into (relative to the spec)
priority = "HIGH"         # of its runs (default MEDIUM)
solver = "spectral"       # optional (the default solver)

[parameters]              # fixed parameters, as in package files
Re = 1600
grid = [16, 16, 16]

[derived]                 # parameters computed from the others (arithmetic)
T_final = "40 * dt"

[vary.dt]                 # one table per varied parameter
bounds = [0.1, 3.0]
scale = "log"             # or "linear" (the default)

[objective]
reducer = "diverged"      # final(energy), max(dissipation), argmax(dissipation, time), python:m:f

[learner]
type = "Learner1D"        # Learner1D, Learner2D, LearnerND
loss = "default"
points_per_round = 2      # default: the cluster's workers

[stop]                    # the first rule reached ends it (default: 50 runs)
runs = 15
loss = 0.01
seconds = 3600
"""

from __future__ import annotations

import difflib
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solver.params import DEPRECATED_NAMES, deprecation_message

from ..errors import ConfigError
from ..spec import (
    FILE_PARAMETER_NAMES,
    PRIORITIES,
    check_document,
    id_problem,
    package_document,
    read_document,
)
from ..spec.files import problem_line
from .learners import Axis, check_learner
from .objectives import Objective, parse_objective

__all__ = ["SPEC_KEYS", "AdaptSpec", "Stop", "load_spec"]

# keys of a spec file -> what each holds (the "allowed" list of unknown-key errors)
SPEC_KEYS: dict[str, str] = {
    "name": "prefix of the package ids (a plain name)",
    "packages": "the sweep directory the points are written to",
    "priority": "priority of the runs",
    "solver": "the solver (default spectral)",
    "case": "the solver's case or template, when it takes one",
    "parameters": "fixed parameters",
    "derived": "parameters computed from others",
    "vary": "the varied parameters with their bounds",
    "objective": "what the learner learns",
    "learner": "the learner",
    "stop": "when to stop",
}
_VARY_KEYS = ("bounds", "scale")
_OBJECTIVE_KEYS = ("reducer",)
_LEARNER_KEYS = ("type", "loss", "points_per_round")
_STOP_KEYS = ("runs", "loss", "seconds")
DEFAULT_RUNS = 50


@dataclass(frozen=True)
class Stop:
    """When an adaptive sweep ends: after ``runs`` points, at a learner loss of at most ``loss``,
    or after ``seconds`` of wall time (whichever comes first)."""

    runs: int = DEFAULT_RUNS
    loss: float | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class AdaptSpec:
    """A checked adaptive-sweep spec."""

    path: str
    name: str
    packages: Path
    priority: str
    fixed: dict[str, Any]
    derived: dict[str, Any]  # name -> Expression (sweep.solvers.expressions)
    axes: tuple[Axis, ...]
    objective: Objective
    learner: str
    loss: str
    points_per_round: int | None
    stop: Stop
    solver_keys: dict[str, Any] = field(default_factory=dict)  # "solver"/"case" of its packages

    def parameters(self, point: tuple[float, ...]) -> dict[str, Any]:
        """The package parameters of a learner point (fixed, varied, then derived)."""
        values = dict(self.fixed)
        for axis, x in zip(self.axes, point, strict=True):
            values[axis.name] = axis.from_learner(x)
        for name, expr in self.derived.items():
            values[name] = _plain(expr.evaluate(values))
        return values

    def package_id(self, point: tuple[float, ...]) -> str:
        """The id of a point's package: the spec's name and the varied values (all digits that
        tell two points apart), as ``sweep new`` names packages after the swept values."""
        parts = [self.name] + [
            f"{a.name}{a.from_learner(x):.12g}" for a, x in zip(self.axes, point, strict=True)
        ]
        pid = "-".join(parts)
        if id_problem(pid) is None:
            return pid
        import hashlib

        return f"{self.name[:40]}-{hashlib.sha1(repr(point).encode()).hexdigest()[:16]}"

    def document(self, point: tuple[float, ...], round_no: int) -> dict[str, Any]:
        """The package document of a point (tagged with the spec's name, the point in the
        learner's coordinates and its round)."""
        doc = package_document(
            self.package_id(point),
            self.priority,
            self.parameters(point),
            {"adapt": self.name, "adapt_point": list(point), "adapt_round": round_no},
        )
        doc.update(self.solver_keys)
        return doc


def _plain(v: Any) -> Any:
    """A derived value as JSON wants it: an integral float of an integer expression stays float."""
    return float(v) if isinstance(v, float) else v


def _table(
    doc: Mapping[str, Any], key: str, keys: tuple[str, ...], file: str, *, required: bool = False
) -> dict:
    value = doc.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{file}: {key}: missing; allowed: a table with keys " + ", ".join(keys))
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(problem_line(file, key, value, "a table with keys " + ", ".join(keys)))
    for k in value:
        if k not in keys:
            raise ConfigError(problem_line(file, f"{key}.{k}", k, _one_of(k, keys)))
    return dict(value)


def _one_of(value: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(value), list(choices), n=1)
    return "one of " + ", ".join(choices) + (f" (did you mean {close[0]}?)" if close else "")


def _number(value: Any, file: str, where: str, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(problem_line(file, where, value, allowed))
    return float(value)


def _axes(doc: Mapping[str, Any], file: str) -> tuple[Axis, ...]:
    vary = doc.get("vary")
    if not isinstance(vary, Mapping) or not vary:
        raise ConfigError(
            problem_line(
                file, "vary", vary, "a table of varied parameters, e.g. [vary.dt] bounds = [0.01, 0.5]"
            )
        )
    axes = []
    for name, table in vary.items():
        where = f"vary.{name}"
        if name not in FILE_PARAMETER_NAMES:
            raise ConfigError(
                problem_line(file, where, name, "a parameter: " + _one_of(name, FILE_PARAMETER_NAMES))
            )
        if not isinstance(table, Mapping) or "bounds" not in table:
            raise ConfigError(problem_line(file, where, table, "a table with bounds = [low, high] and scale"))
        for k in table:
            if k not in _VARY_KEYS:
                raise ConfigError(problem_line(file, f"{where}.{k}", k, _one_of(k, _VARY_KEYS)))
        bounds = table["bounds"]
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise ConfigError(problem_line(file, f"{where}.bounds", bounds, "[low, high]"))
        lo = _number(bounds[0], file, f"{where}.bounds", "two finite numbers [low, high]")
        hi = _number(bounds[1], file, f"{where}.bounds", "two finite numbers [low, high]")
        if not lo < hi:
            raise ConfigError(problem_line(file, f"{where}.bounds", bounds, "[low, high] with low < high"))
        scale = table.get("scale", "linear")
        if scale not in ("linear", "log"):
            raise ConfigError(problem_line(file, f"{where}.scale", scale, "linear or log"))
        if scale == "log" and lo <= 0:
            raise ConfigError(problem_line(file, f"{where}.bounds", bounds, "bounds > 0 on a log scale"))
        axes.append(Axis(name, lo, hi, scale == "log"))
    return tuple(axes)


def _derived(doc: Mapping[str, Any], fixed: Mapping[str, Any], axes: tuple[Axis, ...], file: str) -> dict:
    from ..solvers.expressions import compile_expression

    table = _table(doc, "derived", tuple(FILE_PARAMETER_NAMES), file)
    taken = set(fixed) | {a.name for a in axes}
    names = [k for k, v in fixed.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    names += [a.name for a in axes]
    out = {}
    for name, text in table.items():
        if name in taken:
            raise ConfigError(
                problem_line(file, f"derived.{name}", name, "a parameter that is neither fixed nor varied")
            )
        out[name] = compile_expression(text, names, file, f"derived.{name}")
    return out


def _stop(doc: Mapping[str, Any], file: str) -> Stop:
    table = _table(doc, "stop", _STOP_KEYS, file)
    runs = table.get("runs", DEFAULT_RUNS)
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ConfigError(problem_line(file, "stop.runs", runs, "an integer >= 1"))
    loss = table.get("loss")
    if loss is not None and not _number(loss, file, "stop.loss", "a number > 0") > 0:
        raise ConfigError(problem_line(file, "stop.loss", loss, "a number > 0"))
    seconds = table.get("seconds")
    if seconds is not None and not _number(seconds, file, "stop.seconds", "seconds > 0") > 0:
        raise ConfigError(problem_line(file, "stop.seconds", seconds, "seconds > 0"))
    return Stop(runs, None if loss is None else float(loss), None if seconds is None else float(seconds))


def load_spec(
    path: str | os.PathLike[str], *, packages_dir: str | os.PathLike[str] | None = None
) -> AdaptSpec:
    """The checked spec at ``path``; a one-line ConfigError naming the file, the field, the bad
    value and what is allowed for the first problem. ``packages_dir`` overrides the spec's
    sweep directory (the copy ``sweep adapt`` keeps in it is read with its own directory)."""
    file = os.fspath(path)
    doc = read_document(file, "adaptive-sweep spec")
    if not isinstance(doc, Mapping):
        raise ConfigError(
            problem_line(file, "(top level)", type(doc).__name__, "a table of " + ", ".join(SPEC_KEYS))
        )
    for key in doc:
        if key not in SPEC_KEYS:
            raise ConfigError(problem_line(file, key, key, "a key: " + _one_of(key, SPEC_KEYS)))
    name = doc.get("name", Path(file).stem)
    if (why := id_problem(name)) is not None or len(str(name)) > 40:
        raise ConfigError(problem_line(file, "name", name, why or "a plain name of at most 40 characters"))
    packages = doc.get("packages", name)
    if not isinstance(packages, str) or not packages:
        raise ConfigError(problem_line(file, "packages", packages, "a directory path"))
    priority = doc.get("priority", "MEDIUM")
    if priority not in PRIORITIES:
        raise ConfigError(problem_line(file, "priority", priority, "one of " + ", ".join(PRIORITIES)))
    solver_keys = {k: doc[k] for k in ("solver", "case") if k in doc}
    fixed = _table(doc, "parameters", (*FILE_PARAMETER_NAMES, *DEPRECATED_NAMES), file)
    for old in [k for k in fixed if k in DEPRECATED_NAMES]:  # grid_size: read as grid, for a release
        warnings.warn(deprecation_message(old, f"{file}: parameters."), FutureWarning, stacklevel=2)
        fixed[DEPRECATED_NAMES[old]] = fixed.pop(old)
    axes = _axes(doc, file)
    clash = [a.name for a in axes if a.name in fixed]
    if clash:
        raise ConfigError(
            problem_line(file, f"vary.{clash[0]}", clash[0], "a parameter not also fixed in [parameters]")
        )
    derived = _derived(doc, fixed, axes, file)
    objective = parse_objective(
        _table(doc, "objective", _OBJECTIVE_KEYS, file, required=True).get("reducer"), file
    )
    learner = _table(doc, "learner", _LEARNER_KEYS, file)
    kind = learner.get(
        "type", "Learner1D" if len(axes) == 1 else "Learner2D" if len(axes) == 2 else "LearnerND"
    )
    loss = learner.get("loss", "default")
    check_learner(kind, loss, len(axes), file)
    per_round = learner.get("points_per_round")
    if per_round is not None and (
        isinstance(per_round, bool) or not isinstance(per_round, int) or per_round < 1
    ):
        raise ConfigError(problem_line(file, "learner.points_per_round", per_round, "an integer >= 1"))
    where = Path(packages_dir) if packages_dir is not None else Path(file).resolve().parent / packages
    spec = AdaptSpec(
        file,
        str(name),
        where,
        priority,
        fixed,
        derived,
        axes,
        objective,
        kind,
        loss,
        per_round,
        _stop(doc, file),
        solver_keys,
    )
    _check_corners(spec)
    return spec


def _check_corners(spec: AdaptSpec) -> None:
    """The package of every corner of the bounds must be valid (the solver's own checks), so a
    bad spec fails before any run, not at the first unlucky point."""
    import itertools

    for corner in itertools.product(*[a.bounds for a in spec.axes]):
        problems = check_document(spec.path, spec.document(tuple(corner), 0))
        if problems:
            raise ConfigError(problems[0])
