"""What every external-program solver (``openfoam``, ``command``) shares.

- errors: the solver error classes of ``solver.errors``, with the program's own words;
- parameters declared in a manifest file (``params:`` blocks) as ``solver.params.Param``;
- expressions of parameters (``U * L / Re``) and ``${...}`` template fields;
- the template tree: a directory held in memory as ``{relative path: bytes}`` with its content
  hash (shipped with the task: workers need no shared disk);
- running a program in its own process group under a deadline, and a scratch directory.

Nothing here knows OpenFOAM; ``sweep.solvers.openfoam`` and ``sweep.solvers.command`` build on it.
"""

from __future__ import annotations

import ast
import atexit
import collections
import contextlib
import functools
import hashlib
import json
import math
import operator
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from solver.errors import DivergedError, ParameterError, SolverError, SolverTimeout
from solver.params import Param
from sweep.errors import ConfigError

__all__ = [
    "ExternalSolverError",
    "ProgramDiverged",
    "ProgramTimeout",
    "show",
    "config_line",
    "check_keys",
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
    "Expression",
    "compile_expression",
    "format_value",
    "template_fields",
    "render_fields",
    "TemplateTree",
    "read_tree",
    "MAX_TEMPLATE_BYTES",
    "ProgramRun",
    "SCRATCH_ENV",
    "run_program",
    "describe_exit",
    "kill_live_groups",
    "scratch_dir",
]


# ----------------------------------------------------------------------------------------------
# Errors: the engine maps solver.errors classes to failure classes (error, diverged, timeout)


class _KeptScratch:
    """Mixin: a failed run's kept scratch directory, named at the end of the message."""

    scratch: str | None = None

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} [scratch kept at {self.scratch}]" if self.scratch else text


class ExternalSolverError(_KeptScratch, SolverError):
    """An external program failed (non-zero exit, fatal error, missing output): failure class
    ``error``. The message is one line: the program and its own last meaningful words."""


class ProgramDiverged(_KeptScratch, DivergedError):
    """An external program's run blew up (floating-point exception, NaN): class ``diverged``."""

    def __init__(self, program: str, step: int, time: float, cfl: float, reason: str) -> None:
        super().__init__(step, time, cfl, reason)
        self.program = program
        where = f" at step {step} (t={time:.6g})" if step >= 0 else ""
        courant = f" (Courant max {cfl:.3g})" if math.isfinite(cfl) else ""
        self.args = (f"{program} diverged{where}: {reason}{courant}; reduce dt or raise the resolution",)


class ProgramTimeout(_KeptScratch, SolverTimeout):
    """The deadline passed while an external program ran: class ``timeout``. Its whole process
    group was killed."""

    def __init__(self, program: str, step: int, time: float, deadline: float) -> None:
        super().__init__(step, time, deadline)
        self.program = program
        where = f" at step {step} (t={time:.6g})" if step >= 0 else ""
        self.args = (f"deadline passed while {program} ran{where}; its process group was killed",)


# ----------------------------------------------------------------------------------------------
# One-line configuration errors (the format of sweep.spec: file, field, value, allowed)


def show(value: Any) -> str:
    """A value as it appears in an error message (JSON where possible)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def config_line(file: str, fieldname: str, value: Any, allowed: str) -> str:
    """``file: field: bad value V; allowed: A`` (one line)."""
    return f"{file}: {fieldname}: bad value {show(value)}; allowed: {allowed}"


def check_keys(
    mapping: Any, allowed: Collection[str], file: str, where: str, required: Collection[str] = ()
) -> Mapping[str, Any]:
    """``mapping`` if it is a mapping with only ``allowed`` keys and every ``required`` one;
    else a one-line ConfigError naming the file and the key."""
    if not isinstance(mapping, Mapping):
        raise ConfigError(
            config_line(file, where or "(file)", mapping, "a mapping with keys " + ", ".join(allowed))
        )
    for key in mapping:
        if key not in allowed:
            raise ConfigError(
                config_line(file, f"{where}.{key}".lstrip("."), key, "one of " + ", ".join(allowed))
            )
    for key in required:
        if key not in mapping:
            name = f"{where}.{key}" if where else key
            raise ConfigError(f"{file}: {name}: missing; required: " + ", ".join(required))
    return mapping


# ----------------------------------------------------------------------------------------------
# Parameters declared in a manifest:  name: {default, type, unit, doc, gt/ge/lt/le, choices, identity}

_PARAM_KEYS = ("default", "type", "unit", "doc", "gt", "ge", "lt", "le", "choices", "identity")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


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
            return allowed
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


# ----------------------------------------------------------------------------------------------
# Expressions of parameters and constants: numbers, names, + - * / // % ** and unary signs

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: lambda a, b: _pow(a, b),
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def _pow(a: Any, b: Any) -> Any:
    if isinstance(b, (int, float)) and abs(b) > 64:  # 10 ** 10 ** 10 would not end
        raise ValueError(f"exponent {b} is too large (at most 64)")
    return a**b


@dataclass(frozen=True)
class Expression:
    """An arithmetic expression over named values, checked once; ``evaluate`` is pure."""

    text: str
    tree: ast.expr = field(repr=False, compare=False)
    names: frozenset[str] = frozenset()

    def evaluate(self, values: Mapping[str, Any]) -> Any:
        """The expression's value for ``values`` (a mapping holding every name it uses)."""
        return _eval(self.tree, values)


def _eval(node: ast.expr, values: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, values), _eval(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, values))
    raise TypeError(f"unsupported expression node {type(node).__name__}")  # compile_expression forbids it


def compile_expression(
    text: Any, names: Collection[str], file: str, where: str, defaults: Mapping[str, Any] | None = None
) -> Expression:
    """``text`` as an Expression over ``names``; a one-line ConfigError for a syntax error, an
    unknown name, anything but arithmetic, or (given ``defaults``) a failure to evaluate at the
    default values (a division by zero, an exponent over 64)."""
    allowed = "an arithmetic expression (+ - * / // % **, numbers) of " + ", ".join(sorted(names))
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ConfigError(config_line(file, where, text, allowed))
    source = str(text).strip()
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError:
        raise ConfigError(config_line(file, where, source, allowed)) from None
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise ConfigError(
                    config_line(file, where, node.id, "a parameter or constant: " + ", ".join(sorted(names)))
                )
            used.add(node.id)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ConfigError(config_line(file, where, source, allowed))
        elif isinstance(node, (ast.BinOp, ast.UnaryOp)):
            table: Mapping[type, Any] = _BINARY if isinstance(node, ast.BinOp) else _UNARY
            if type(node.op) not in table:
                raise ConfigError(config_line(file, where, source, allowed))
        elif not isinstance(node, (ast.operator, ast.unaryop, ast.Load)):
            raise ConfigError(config_line(file, where, source, allowed))
    expr = Expression(source, tree, frozenset(used))
    if defaults is not None:
        try:
            expr.evaluate(defaults)
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise ConfigError(
                config_line(file, where, source, f"an expression valid at the defaults ({exc})")
            ) from None
    return expr


def format_value(v: Any) -> str:
    """A value as text in an input file: shortest round-trip floats, true/false for booleans."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


_FIELD = re.compile(r"\$\{([^{}]*)\}")  # ${...}; a bare $name (OpenFOAM's macro syntax) is left alone


def template_fields(text: str) -> list[str]:
    """The expressions inside the ``${...}`` fields of a text, in order."""
    return [m.group(1) for m in _FIELD.finditer(text)]


def render_fields(text: str, fields: Mapping[str, Expression], values: Mapping[str, Any]) -> str:
    """``text`` with each ``${expr}`` replaced by the formatted value of its compiled expression."""
    return _FIELD.sub(lambda m: format_value(fields[m.group(1)].evaluate(values)), text)


# ----------------------------------------------------------------------------------------------
# The template tree: a directory in memory, hashed

MAX_TEMPLATE_BYTES = 64 << 20  # every task carries its template: results and big meshes stay out
_IGNORED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".ipynb_checkpoints"})
_IGNORED_SUFFIXES = (".pyc", "~")


@dataclass(frozen=True)
class TemplateTree:
    """A directory's files as ``{posix relative path: bytes}`` plus which ones are executable.

    ``digest`` is the SHA-256 over every file in sorted path order of (path, executable flag,
    size, bytes): edit any file, rename it or flip its mode, and the digest changes.
    """

    files: Mapping[str, bytes]
    executable: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))  # read-only

    def __reduce__(self) -> tuple[Any, ...]:
        return (TemplateTree, (dict(self.files), self.executable))  # a mappingproxy does not pickle

    @functools.cached_property
    def digest(self) -> str:
        """The content hash (64 hex digits; computed once: run ids of every package use it)."""
        h = hashlib.sha256()
        for path in sorted(self.files):
            data = self.files[path]
            mode = "x" if path in self.executable else "-"
            h.update(f"{path}\0{mode}\0{len(data)}\0".encode())
            h.update(data)
        return h.hexdigest()

    @property
    def size(self) -> int:
        """Total bytes of the files."""
        return sum(len(b) for b in self.files.values())

    def write(self, dest: Path, replace: Mapping[str, bytes] | None = None) -> None:
        """Write the files under ``dest`` (``replace`` overrides some files' bytes)."""
        replace = replace or {}
        for path, data in self.files.items():
            target = dest / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(replace.get(path, data))
            if path in self.executable:
                target.chmod(0o755)


def read_tree(directory: Path, what: str = "case directory") -> TemplateTree:
    """A directory's files (VCS and cache directories skipped; symlinks followed) as a
    TemplateTree; a one-line ConfigError if it is missing or larger than MAX_TEMPLATE_BYTES."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(config_line(str(directory), f"({what})", str(directory), f"an existing {what}"))
    files: dict[str, bytes] = {}
    executable: set[str] = set()
    total = 0
    for root, dirs, names in os.walk(directory, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED_DIRS)
        for name in sorted(names):
            if name.endswith(_IGNORED_SUFFIXES):
                continue
            path = Path(root) / name
            rel = path.relative_to(directory).as_posix()
            data = path.read_bytes()
            total += len(data)
            if total > MAX_TEMPLATE_BYTES:
                raise ConfigError(
                    config_line(
                        str(directory),
                        f"({what} size)",
                        f"over {total >> 20} MiB",
                        f"at most {MAX_TEMPLATE_BYTES >> 20} MiB: the template travels "
                        "with every task; remove results (time directories, logs)",
                    )
                )
            files[rel] = data
            if os.access(path, os.X_OK):
                executable.add(rel)
    return TemplateTree(files, frozenset(executable))


# ----------------------------------------------------------------------------------------------
# Running a program in its own process group under a deadline

# every program of a run gets its scratch path in this variable: find its processes by it
SCRATCH_ENV = "NS_SWEEP_SCRATCH"
_LIVE_GROUPS: set[int] = set()  # process groups started here and not yet reaped


def kill_live_groups() -> None:
    """Kill every process group this process started and still runs (at exit; a Dask worker
    plugin's teardown can call it too)."""
    for pgid in list(_LIVE_GROUPS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        _LIVE_GROUPS.discard(pgid)


atexit.register(kill_live_groups)


@dataclass
class ProgramRun:
    """How a program ended: exit code (negative: killed by that signal), and whether it was
    stopped because the deadline passed or because a line watcher asked (``stop_reason``)."""

    argv: tuple[str, ...]
    returncode: int
    wall_time: float
    timed_out: bool = False
    stop_reason: str | None = None
    stderr_tail: list[str] = field(default_factory=list)


def _group_alive(pgid: int) -> bool:
    """Whether a process group still has a member that is not a zombie (a zombie is dead; it
    waits for its parent, or for PID 1, which in some containers reaps slowly or never)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not proc.is_dir():  # pragma: no cover - not Linux: trust killpg
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # state ppid pgrp ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the group, SIGKILL it after ``grace`` seconds, reap the leader, and wait until
    no member is left alive."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _reap_group(proc)


def _reap_group(proc: subprocess.Popen[bytes]) -> None:
    """Reap the leader and SIGKILL what is left of its group until no member is alive (at most
    5 s: a member in uninterruptible sleep cannot be waited for longer)."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait()
    end = time.monotonic() + 5.0
    while _group_alive(pgid) and time.monotonic() < end:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.01)
    _LIVE_GROUPS.discard(pgid)


def run_program(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    deadline: float | None,
    stdout_path: Path,
    stderr_path: Path | None = None,
    on_line: Callable[[str], str | None] | None = None,
    grace: float = 1.0,
    tail_lines: int = 20,
) -> ProgramRun:
    """Run ``argv`` in ``cwd`` (with ``PWD`` set to it) in a new session and process group.

    Output goes to ``stdout_path`` (stderr too unless ``stderr_path`` is given). Each complete
    line of the main output is passed to ``on_line``; a non-None return stops the run (kill
    the group) with that reason. When ``deadline`` (``time.time()`` seconds) passes, the whole
    group is killed (SIGTERM, SIGKILL after ``grace`` s). Members the program left running
    after it exited are killed too: nothing this call started outlives it.
    """
    cwd = Path(cwd)
    full_env = {**env, "PWD": str(cwd)}
    t0 = time.time()
    if deadline is not None and t0 >= deadline:
        return ProgramRun(tuple(argv), -signal.SIGKILL, 0.0, timed_out=True)
    with contextlib.ExitStack() as stack:
        # unbuffered: the log on disk is complete up to the last line a watcher has seen
        out = stack.enter_context(open(stdout_path, "wb", buffering=0))
        err = stack.enter_context(open(stderr_path, "wb", buffering=0)) if stderr_path is not None else None
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if err is not None else subprocess.STDOUT,
            start_new_session=True,
        )
        _LIVE_GROUPS.add(proc.pid)
        try:
            run = _pump(proc, out, err, deadline, on_line, grace, tail_lines)
        except BaseException:
            _kill_group(proc, grace=0.0)
            raise
    run.argv = tuple(argv)
    run.wall_time = time.time() - t0
    return run


def _pump(
    proc: subprocess.Popen[bytes],
    out: Any,
    err: Any,
    deadline: float | None,
    on_line: Callable[[str], str | None] | None,
    grace: float,
    tail_lines: int,
) -> ProgramRun:
    """Copy the program's output to its files and watch it until it ends or must be stopped."""
    assert proc.stdout is not None
    main_fd = proc.stdout.fileno()
    files = {main_fd: out}
    if err is not None:
        assert proc.stderr is not None
        files[proc.stderr.fileno()] = err
    tail_fd = proc.stderr.fileno() if err is not None and proc.stderr is not None else main_fd
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    partial = dict.fromkeys(files, b"")
    stop_reason: str | None = None
    timed_out = False

    def take(fd: int, raw: bytes) -> str | None:
        line = raw.decode("utf-8", "replace")
        if fd == tail_fd:
            tail.append(line)
        return on_line(line) if fd == main_fd and on_line is not None else None

    with selectors.DefaultSelector() as sel:
        for fd in files:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map() and stop_reason is None:
            wait = 0.2 if deadline is None else min(0.2, deadline - time.time())
            if wait <= 0:
                timed_out = True
                break
            events = sel.select(wait)
            for key, _ in events:
                fd = int(key.fd)
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    sel.unregister(fd)
                    continue
                files[fd].write(chunk)
                *lines, partial[fd] = (partial[fd] + chunk).split(b"\n")
                for raw in lines:
                    stop_reason = take(fd, raw) or stop_reason
            # the program exited but a member it left running holds the pipe open: stop reading
            if not events and proc.poll() is not None:
                break
    if not timed_out and stop_reason is None:
        for fd, rest in partial.items():
            if rest:
                stop_reason = take(fd, rest) or stop_reason
    if timed_out or stop_reason is not None:
        _kill_group(proc, grace)
    else:
        _reap_group(proc)  # reap it and kill whatever it left behind in its group
    assert proc.returncode is not None
    return ProgramRun((), proc.returncode, 0.0, timed_out, stop_reason, list(tail))


def describe_exit(returncode: int) -> str:
    """``exit code N`` or ``killed by SIGNAME`` (a negative return code)."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


@contextlib.contextmanager
def scratch_dir(root: str | os.PathLike[str] | None, prefix: str, keep_failed: bool) -> Iterator[Path]:
    """A fresh scratch directory (``tempfile.mkdtemp`` under ``root``, default the system's temp
    directory), removed when the block ends; kept if it ends with an exception and
    ``keep_failed``: then the exception names ``host:path``."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    try:
        yield path
    except BaseException as exc:
        if keep_failed and isinstance(exc, Exception):
            where = f"{socket.gethostname()}:{path}"
            if isinstance(exc, _KeptScratch):
                exc.scratch = where
            else:
                exc.add_note(f"scratch kept at {where}")
        else:
            shutil.rmtree(path, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
