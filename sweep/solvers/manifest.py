"""Parameters declared in a template's manifest file (``params:``), checked and hashed.

A template-based solver (an OpenFOAM case, a command directory) declares its parameters in a
``params:`` block of its manifest (``sweep-case.yaml``, ``sweep-command.yaml``); each becomes a
``solver.params.Param`` (default, unit, doc, check, identity), as the spectral solver declares
its own in ``solver/params.py``. ``DeclaredSolver`` is what every such solver shares: validation,
run identity (the template's content hash and the identity parameters), step counts. A bad
declaration is one line naming the file, the field, the bad value and what is allowed.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import yaml

from solver.errors import ParameterError
from solver.params import Param
from sweep.errors import ConfigError

from .errors import check_keys, config_line, show
from .template import TemplateTree

__all__ = [
    "declare_params",
    "COMMON_PARAMS",
    "KEEP_FIELDS",
    "parameter_problems",
    "validate_params",
    "identity_values",
    "time_problems",
    "DeclaredSolver",
    "parse_time_block",
    "load_manifest",
]


_PARAM_KEYS = ("default", "type", "unit", "doc", "gt", "ge", "lt", "le", "choices", "identity")


# every declared number is bounded: an integer fits in 64 bits (it is compared, never converted
# to float: a 400-digit one would overflow), a float is finite
_INT_LIMIT = 2**63 - 1


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return -_INT_LIMIT <= v <= _INT_LIMIT
    return isinstance(v, float) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -_INT_LIMIT <= v <= _INT_LIMIT


# type name -> (accepts the value?, coerce, what it is)
_TYPES: dict[str, tuple[Callable[[Any], bool], Callable[[Any], Any], str]] = {
    "float": (_is_number, float, "a finite number"),
    "int": (_is_int, int, "an integer"),
    "bool": (lambda v: isinstance(v, bool), bool, "true or false"),
    "str": (lambda v: isinstance(v, str), str, "a string"),
}

_BOUNDS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "gt": (operator.gt, ">"),
    "ge": (operator.ge, ">="),
    "lt": (operator.lt, "<"),
    "le": (operator.le, "<="),
}


def _make_check(
    kind: str, bounds: dict[str, Any], choices: tuple[Any, ...] | None
) -> Callable[[Any], str | None]:
    accepts, _, what = _TYPES[kind]
    words = [what] + [f"{sym} {bounds[b]:g}" for b, (_, sym) in _BOUNDS.items() if b in bounds]
    allowed = " ".join(words[:1]) + (" " + " and ".join(words[1:]) if words[1:] else "")
    if choices is not None:
        allowed = "one of " + ", ".join(show(c) for c in choices)

    def check(v: Any) -> str | None:
        if not accepts(v):
            huge = isinstance(v, int) and not isinstance(v, bool)  # beyond 64 bits
            return f"{allowed} (of at most 19 digits)" if huge else allowed
        if choices is not None and v not in choices:
            return allowed
        for b, limit in bounds.items():
            if not _BOUNDS[b][0](v, limit):
                return allowed
        return None

    return check


def declare_params(block: Any, file: str, reserved: Collection[str] = ()) -> dict[str, Param]:
    """The ``params:`` block of a manifest as ``Param`` declarations (in file order).

    A bad declaration (unknown key or type, a default its own check refuses, a reserved name)
    is a one-line ConfigError naming the file and the field.
    """
    if block is None:
        block = {}
    if not isinstance(block, Mapping):
        raise ConfigError(config_line(file, "params", block, "a mapping of parameter name -> declaration"))
    out: dict[str, Param] = {}
    for name, decl in block.items():
        where = f"params.{name}"
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(config_line(file, where, name, "a Python identifier (letters, digits, _)"))
        if name in reserved:
            raise ConfigError(
                config_line(
                    file,
                    where,
                    name,
                    "a name other than " + ", ".join(reserved) + " (declared by the solver itself)",
                )
            )
        check_keys(decl, _PARAM_KEYS, file, where, required=("default", "type"))
        kind = decl["type"]
        if kind not in _TYPES:
            raise ConfigError(config_line(file, f"{where}.type", kind, "one of " + ", ".join(_TYPES)))
        bounds = {b: decl[b] for b in _BOUNDS if b in decl}
        for b, limit in bounds.items():
            if not _is_number(limit) or kind not in ("float", "int"):
                raise ConfigError(
                    config_line(file, f"{where}.{b}", limit, "a number (for type float or int)")
                )
        choices = decl.get("choices")
        if choices is not None and not (isinstance(choices, list) and choices):
            raise ConfigError(config_line(file, f"{where}.choices", choices, "a non-empty list"))
        identity = decl.get("identity", True)
        if not isinstance(identity, bool):
            raise ConfigError(config_line(file, f"{where}.identity", identity, "true or false"))
        check = _make_check(kind, bounds, tuple(choices) if choices else None)
        problem = check(decl["default"])
        if problem is not None:
            raise ConfigError(config_line(file, f"{where}.default", decl["default"], problem))
        out[name] = Param(
            name,
            decl["default"],
            str(decl.get("unit", "-")),
            str(decl.get("doc", "")),
            check,
            _TYPES[kind][1],
            identity,
        )
    return out


def _bool_check(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


# Declared by a solver whose template lists final fields among its outputs (it changes the result).
KEEP_FIELDS = Param(
    "keep_fields",
    False,
    "-",
    "store the final fields (outputs.fields) on the cell dimension, with the cell centres",
    _bool_check,
    bool,
)

# Execution-only parameters of every external-program solver (not part of a run's identity).
COMMON_PARAMS: Mapping[str, Param] = MappingProxyType(
    {
        "keep_failed": Param(
            "keep_failed",
            False,
            "-",
            "keep the scratch directory of a failed run on its worker (its path ends the error)",
            _bool_check,
            bool,
            identity=False,
        ),
    }
)


def parameter_problems(params: Mapping[str, Param], raw: Mapping[str, Any]) -> list[ParameterError]:
    """Every problem with a raw parameter mapping (unknown keys, types, ranges), in declaration
    order, as ``solver.params.parameter_problems`` gives them (``field``, ``value``, ``allowed``)."""
    return _validated(params, raw)[1]


def _validated(
    params: Mapping[str, Param], raw: Mapping[str, Any]
) -> tuple[dict[str, Any], list[ParameterError]]:
    values = {name: p.coerce(p.default) for name, p in params.items()}
    problems: list[ParameterError] = []
    for key, v in raw.items():
        p = params.get(key)
        if p is None:
            problems.append(ParameterError(key, v, "a known parameter: " + ", ".join(params)))
            continue
        msg = p.check(v)
        if msg is not None:
            problems.append(ParameterError(key, v, msg))
        else:
            values[key] = p.coerce(v)
    order = {name: i for i, name in enumerate(params)}
    problems.sort(key=lambda e: order.get(e.field, -1))
    return values, problems


def validate_params(
    params: Mapping[str, Param],
    raw: Mapping[str, Any],
    source: str,
    cross_check: Callable[[Mapping[str, Any]], list[ParameterError]] | None = None,
) -> dict[str, Any]:
    """All values (defaults filled in, coerced) of a raw mapping, or a one-line ConfigError
    naming ``source`` (e.g. the package file), the parameter, the bad value and what is allowed."""
    values, problems = _validated(params, raw)
    if not problems and cross_check is not None:
        problems = cross_check(values)
    if problems:
        e = problems[0]
        raise ConfigError(config_line(source, f"parameters.{e.field}", e.value, e.allowed))
    return values


def identity_values(params: Mapping[str, Param], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values that define a run's identity (``identity=True``), sorted by name."""
    return {k: values[k] for k in sorted(values) if params[k].identity}


def time_problems(values: Mapping[str, Any], end: str | None, step: str | None) -> list[ParameterError]:
    """The checks on an end time and a time step: dt <= T_final, T_final a whole number of steps."""
    if end is None or step is None:
        return []
    T, dt = values[end], values[step]
    if dt > T:
        return [ParameterError(step, dt, f"a time step <= {end} ({T:g})")]
    n = round(T / dt)
    if abs(n * dt - T) > 1e-9 * T:
        return [ParameterError(end, T, f"a whole number of steps of {step}={dt:g} (e.g. {n * dt:.12g})")]
    return []


class DeclaredSolver:
    """Parameter handling of a template-based solver (an OpenFOAM case, a command): needs the
    attributes ``params`` (name -> Param), ``tree`` (TemplateTree), ``time_end`` and
    ``time_step`` (parameter names or None)."""

    params: Mapping[str, Param]
    tree: TemplateTree
    time_end: str | None
    time_step: str | None
    solver_name: ClassVar[str]  # its name in the solver registry ("openfoam", "command")

    @property
    def hash(self) -> str:
        """The template's content hash (SHA-256 of every file's path and bytes)."""
        return self.tree.digest

    def defaults(self) -> dict[str, Any]:
        """Every parameter's default value."""
        return {name: p.coerce(p.default) for name, p in self.params.items()}

    def parameter_problems(self, raw: Mapping[str, Any]) -> list[ParameterError]:
        """Every problem with raw parameters (unknown names, types, ranges, then the time step),
        as ``solver.params.parameter_problems`` reports them."""
        values, problems = _validated(self.params, raw)
        return problems or self._cross_check(values)

    def validate(self, raw: Mapping[str, Any], source: str = "parameters") -> dict[str, Any]:
        """All parameter values (defaults filled in), or a one-line ConfigError naming
        ``source`` (the package file), the parameter, the value and what is allowed."""
        return validate_params(self.params, raw, source, self._cross_check)

    def identity(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """What defines a run: the template's content hash and the identity parameters
        (execution-only ones such as keep_failed left out). The name and path of the template
        do not count: a copied case with the same files gives the same runs."""
        return {"template_hash": self.hash, "params": identity_values(self.params, values)}

    def canonical_json(self, values: Mapping[str, Any]) -> str:
        """``identity(values)`` as compact JSON with sorted keys (what a run id hashes)."""
        return json.dumps(self.identity(values), sort_keys=True, separators=(",", ":"))

    def checkpoint_key(self, values: Mapping[str, Any]) -> str:
        """What a checkpoint of a run of ``values`` must carry to resume it: the solver's name,
        the run's identity and the version of ns-sweep's solvers (``solver.SOLVER_VERSION``, as
        for the spectral solver's states: a new version starts unfinished runs over)."""
        from sweep.provenance import solver_version

        key = {"solver": self.solver_name, "solver_version": solver_version(), **self.identity(values)}
        return json.dumps(key, sort_keys=True)

    def n_steps(self, values: Mapping[str, Any]) -> int | None:
        """Time steps of a run (None when no time parameters are declared)."""
        if self.time_end is None or self.time_step is None:
            return None
        return int(round(values[self.time_end] / values[self.time_step]))

    def _cross_check(self, values: Mapping[str, Any]) -> list[ParameterError]:
        return time_problems(values, self.time_end, self.time_step)


def parse_time_block(block: Any, file: str, params: Mapping[str, Param]) -> tuple[str | None, str | None]:
    """The manifest's ``time: {end: <param>, step: <param>}`` (both float parameters), or Nones."""
    if block is None:
        return None, None
    check_keys(block, ("end", "step"), file, "time", required=("end", "step"))
    floats = [n for n, p in params.items() if isinstance(p.coerce(p.default), float)]
    for key in ("end", "step"):
        if block[key] not in floats:
            raise ConfigError(
                config_line(file, f"time.{key}", block[key], "a float parameter: " + ", ".join(floats))
            )
    return block["end"], block["step"]


def load_manifest(tree: TemplateTree, manifest: str, file: str) -> Any:
    """The YAML document ``manifest`` of a template, or a one-line ConfigError."""
    try:
        return yaml.safe_load(tree.files[manifest].decode("utf-8"))
    except KeyError:
        raise ConfigError(config_line(file, "(file)", None, f"a manifest {manifest}")) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{file}: (file): not valid YAML ({detail}); allowed: a YAML mapping") from None
