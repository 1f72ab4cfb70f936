"""An OpenFOAM case template: its files, its manifest (``sweep-case.yaml``) and its parameters.

A case is a directory: an OpenFOAM case (``0/``, ``constant/``, ``system/``) plus the manifest
that declares the parameters, how each maps onto the files (foamDictionary entries and
``${...}`` template fields), the steps to run and the outputs to read. ``load_case`` takes a
bundled case by name (``cavity``) or any directory, reads every file into memory and checks the
manifest against the files, so a bad case fails on the driver with one line, not on a worker.

The loaded ``CaseTemplate`` holds the files as bytes and travels with each task (it pickles as
its files and is parsed again on arrival): workers need no shared disk and no copy of the case.
"""

from __future__ import annotations

import math
import re
import shlex
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from solver.output import RunResult
from solver.params import Param
from sweep.errors import ConfigError

from ..errors import check_keys, config_line
from ..expressions import Expression, compile_expression, template_fields
from ..manifest import (
    COMMON_PARAMS,
    KEEP_FIELDS,
    DeclaredSolver,
    declare_params,
    load_manifest,
    parse_time_block,
)
from ..protocol import CHECKPOINT_KEY, FieldError
from ..template import TemplateTree, read_tree, rebuilt

__all__ = [
    "MANIFEST",
    "CASES_DIR",
    "Entry",
    "Profile",
    "Outputs",
    "CaseTemplate",
    "bundled_cases",
    "load_case",
    "case_from_tree",
    "load_solver",
]

MANIFEST = "sweep-case.yaml"
CASES_DIR = Path(__file__).with_name("cases")

_TOP_KEYS = (
    "description",
    "constants",
    "params",
    "time",
    "entries",
    "templated",
    "steps",
    "application",
    "outputs",
)
_OUTPUT_KEYS = ("probes", "profiles", "fields")
_PROFILE_KEYS = (
    "file",
    "column",
    "scale",
    "coord",
    "coord_column",
    "coord_scale",
    "units",
    "long_name",
    "coord_units",
    "coord_long_name",
)


@dataclass(frozen=True)
class Entry:
    """One foamDictionary entry set from an expression: ``file`` and the ``/``-separated path
    of the entry inside it (``constant/transportProperties/nu`` is file
    ``constant/transportProperties``, entry ``nu``)."""

    file: str
    entry: str
    value: Expression


@dataclass(frozen=True)
class Profile:
    """A sampled line read at the final time: one column of a raw set file, scaled, on its
    own coordinate (another column, scaled)."""

    name: str
    file: str  # relative path; {time} is the final time's name
    column: int
    scale: Expression
    coord: str
    coord_column: int
    coord_scale: Expression
    units: str = ""
    long_name: str = ""
    coord_units: str = ""
    coord_long_name: str = ""


@dataclass(frozen=True)
class Outputs:
    """What the result holds besides the log's residuals: probes functions, profiles, fields."""

    probes: tuple[str, ...] = ()
    profiles: tuple[Profile, ...] = ()
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class CaseTemplate(DeclaredSolver):
    """A checked case: files, parameters and how to run it (see the module docstring)."""

    name: str
    source: str
    tree: TemplateTree = field(repr=False)
    description: str
    params: Mapping[str, Param] = field(repr=False)
    constants: Mapping[str, Any] = field(repr=False)
    time_end: str | None
    time_step: str | None
    entries: tuple[Entry, ...] = field(repr=False)
    templated: Mapping[str, Mapping[str, Expression]] = field(repr=False)
    steps: tuple[tuple[str, ...], ...]
    application: str
    outputs: Outputs = field(repr=False)

    supports_resume = True  # run(..., resume=CaseCheckpoint) restarts from a saved time
    solver_name: ClassVar[str] = "openfoam"

    def __reduce__(self) -> tuple[Any, ...]:
        # a task carries the files only; the manifest is checked again where it arrives (once
        # per worker process for the same files)
        return (rebuilt, (case_from_tree, self.tree, self.name, self.source))

    def run(self, params: Mapping[str, Any], **options: Any) -> RunResult:
        """``run_case(self, params, **options)``: the same call for every template solver."""
        from .run import run_case  # run imports this module

        return run_case(self, params, **options)

    def checkpoint_to_arrays(self, ckpt: Any, values: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """A ``CaseCheckpoint`` as plain arrays (``CaseCheckpoint.to_arrays``) with its key."""
        key = np.frombuffer(self.checkpoint_key(values).encode(), dtype=np.uint8).copy()
        arrays: dict[str, np.ndarray] = ckpt.to_arrays()
        return {**arrays, CHECKPOINT_KEY: key}

    def checkpoint_from_arrays(self, arrays: Mapping[str, Any]) -> Any:
        """The ``CaseCheckpoint`` of ``checkpoint_to_arrays``."""
        from .run import CaseCheckpoint

        return CaseCheckpoint.from_arrays(arrays)


def bundled_cases() -> list[str]:
    """Names of the cases shipped with ns-sweep."""
    return sorted(p.name for p in CASES_DIR.iterdir() if (p / MANIFEST).is_file())


def load_case(case: str | Path) -> CaseTemplate:
    """A bundled case by name (``"cavity"``) or a case directory (a path), read and checked.

    A plain name is a bundled case first: write ``./cavity`` for a directory of that name.

    A missing directory, a directory without ``sweep-case.yaml`` or a bad manifest is a
    one-line ConfigError naming the file, the field, the bad value and what is allowed.
    """
    text = str(case)
    bundled = CASES_DIR / text
    if isinstance(case, str) and "/" not in text and (bundled / MANIFEST).is_file():
        return case_from_tree(read_tree(bundled), text, f"bundled:{text}")
    path = Path(text).expanduser()
    if not path.is_dir():
        raise ConfigError(
            config_line(
                text,
                "(case)",
                text,
                "a bundled case ("
                + ", ".join(bundled_cases())
                + f") or an existing case directory with {MANIFEST}",
            )
        )
    if not (path / MANIFEST).is_file():
        raise ConfigError(
            config_line(
                str(path / MANIFEST),
                "(file)",
                None,
                f"a case manifest {MANIFEST} in the case directory (see the bundled "
                f"{CASES_DIR / 'cavity' / MANIFEST})",
            )
        )
    return case_from_tree(read_tree(path), path.resolve().name, str(path.resolve()))


def load_solver(case: str | None, base: Path) -> CaseTemplate:
    """The solver registry's entry for ``"solver": "openfoam"``: ``case`` is a bundled case's
    name or a case directory, relative to ``base`` (the package directory) unless absolute.

    A case the package does not give, or a directory without ``sweep-case.yaml``, is a
    FieldError of field ``case``; a broken case a one-line ConfigError naming its file.
    """
    allowed = (
        f"a bundled case ({', '.join(bundled_cases())}) or a case directory with {MANIFEST} "
        "(a relative path starts at the package directory)"
    )
    if not isinstance(case, str) or not case:
        raise FieldError("case", case, allowed)
    if "/" not in case and (CASES_DIR / case / MANIFEST).is_file():
        return load_case(case)
    path = Path(case).expanduser()
    path = path if path.is_absolute() else Path(base) / path
    if not (path / MANIFEST).is_file():
        raise FieldError("case", case, allowed)
    return load_case(path)


def case_from_tree(tree: TemplateTree, name: str, source: str) -> CaseTemplate:
    """A CaseTemplate from files in memory (how a task's case is rebuilt on a worker)."""
    home = CASES_DIR / name if source.startswith("bundled:") else Path(source)
    file = str(home / MANIFEST)
    doc = load_manifest(tree, MANIFEST, file)
    check_keys(doc, _TOP_KEYS, file, "", required=("params", "steps", "application"))

    constants = _constants(doc.get("constants"), file)
    declared = declare_params(doc["params"], file, reserved=(*COMMON_PARAMS, KEEP_FIELDS.name))
    clash = set(declared) & set(constants)
    if clash:
        name0 = sorted(clash)[0]
        raise ConfigError(
            config_line(file, f"constants.{name0}", name0, "a name that is not also a parameter")
        )
    outputs = _outputs(doc.get("outputs"), file, [*declared, *constants])
    params = {**declared, **COMMON_PARAMS}
    if outputs.fields:
        params[KEEP_FIELDS.name] = KEEP_FIELDS
    names = [*params, *constants]
    defaults = {**{k: p.coerce(p.default) for k, p in params.items()}, **constants}

    time_end, time_step = parse_time_block(doc.get("time"), file, declared)
    entries = tuple(
        _entry(key, expr, file, names, tree, defaults)
        for key, expr in _mapping(doc.get("entries"), file, "entries").items()
    )
    templated = _templated(doc.get("templated"), file, names, tree, defaults, home)
    steps = _steps(doc["steps"], file)
    application = doc["application"]
    if not any(step[0] == application for step in steps):
        raise ConfigError(
            config_line(
                file,
                "application",
                application,
                "the program of one of the steps: " + ", ".join(s[0] for s in steps),
            )
        )
    description = doc.get("description", "")
    return CaseTemplate(
        name,
        source,
        tree,
        str(description),
        MappingProxyType(params),
        MappingProxyType(constants),
        time_end,
        time_step,
        entries,
        MappingProxyType(templated),
        steps,
        application,
        outputs,
    )


def _mapping(block: Any, file: str, where: str) -> Mapping[Any, Any]:
    """``block`` as a mapping (None: empty), or a one-line ConfigError."""
    if block is None:
        return {}
    if not isinstance(block, Mapping):
        raise ConfigError(config_line(file, where, block, "a mapping"))
    return block


def _constants(block: Any, file: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, v in _mapping(block, file, "constants").items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise ConfigError(config_line(file, f"constants.{name}", name, "a Python identifier"))
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(config_line(file, f"constants.{name}", v, "a finite number"))
        out[name] = v
    return out


def _entry(
    key: Any, expr: Any, file: str, names: list[str], tree: TemplateTree, defaults: Mapping[str, Any]
) -> Entry:
    where = f"entries.{key}"
    parts = str(key).split("/")
    # the longest leading part that is a file of the case is the dictionary; the rest the entry
    for cut in range(len(parts) - 1, 0, -1):
        dict_file = "/".join(parts[:cut])
        if dict_file in tree.files:
            break
    else:
        raise ConfigError(
            config_line(
                file,
                where,
                key,
                "<file of the case>/<entry>[/<sub-entry>...], e.g. constant/transportProperties/nu",
            )
        )
    text = tree.files[dict_file].decode("utf-8", "replace")
    for keyword in parts[cut:]:
        # foamDictionary -set would silently add a misspelt entry: refuse it here
        if not re.search(rf"(^|[\s{{;]){re.escape(keyword)}(\s|;|$)", text, re.MULTILINE):
            raise ConfigError(config_line(file, where, keyword, f"an entry that exists in {dict_file}"))
    value = compile_expression(expr, names, file, where, defaults)
    return Entry(dict_file, "/".join(parts[cut:]), value)


def _templated(
    block: Any, file: str, names: list[str], tree: TemplateTree, defaults: Mapping[str, Any], home: Path
) -> dict[str, dict[str, Expression]]:
    if block is None:
        return {}
    if not isinstance(block, list):
        raise ConfigError(config_line(file, "templated", block, "a list of files of the case"))
    out: dict[str, dict[str, Expression]] = {}
    for rel in block:
        if rel not in tree.files:
            raise ConfigError(
                config_line(
                    file,
                    "templated",
                    rel,
                    "a file of the case: " + ", ".join(sorted(p for p in tree.files if p != MANIFEST)),
                )
            )
        shown = str(home / rel)
        try:
            text = tree.files[rel].decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(config_line(file, "templated", rel, "a UTF-8 text file")) from None
        fields: dict[str, Expression] = {}
        for inner in template_fields(text):
            # a field naming no parameter: the file and the field, and the names that have a value
            fields[inner] = compile_expression(inner, names, shown, "${" + inner + "}", defaults)
        out[rel] = fields
    return out


def _steps(block: Any, file: str) -> tuple[tuple[str, ...], ...]:
    if not isinstance(block, list) or not block:
        raise ConfigError(
            config_line(file, "steps", block, "a non-empty list of commands, e.g. [blockMesh, icoFoam]")
        )
    steps = []
    for i, step in enumerate(block):
        argv = shlex.split(step) if isinstance(step, str) else step
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            raise ConfigError(
                config_line(file, f"steps[{i}]", step, "a command: a string or a list of strings")
            )
        steps.append(tuple(argv))
    return tuple(steps)


def _outputs(block: Any, file: str, names: list[str]) -> Outputs:
    if block is None:
        return Outputs()
    check_keys(block, _OUTPUT_KEYS, file, "outputs")
    probes = block.get("probes") or []
    fields = block.get("fields") or []
    for key, value in (("probes", probes), ("fields", fields)):
        if not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
            raise ConfigError(config_line(file, f"outputs.{key}", value, "a list of names"))
    profiles = []
    for pname, spec in _mapping(block.get("profiles"), file, "outputs.profiles").items():
        where = f"outputs.profiles.{pname}"
        check_keys(spec, _PROFILE_KEYS, file, where, required=("file", "column", "coord", "coord_column"))
        placeholders = {f for _, f, _, _ in string.Formatter().parse(spec["file"]) if f is not None}
        if not placeholders <= {"time"}:
            raise ConfigError(
                config_line(
                    file,
                    f"{where}.file",
                    spec["file"],
                    "a path whose only {placeholder} is {time} (the final time)",
                )
            )
        for col in ("column", "coord_column"):
            if isinstance(spec[col], bool) or not isinstance(spec[col], int) or spec[col] < 0:
                raise ConfigError(config_line(file, f"{where}.{col}", spec[col], "a column index >= 0"))
        profiles.append(
            Profile(
                str(pname),
                spec["file"],
                spec["column"],
                compile_expression(spec.get("scale", 1), names, file, f"{where}.scale"),
                str(spec["coord"]),
                spec["coord_column"],
                compile_expression(spec.get("coord_scale", 1), names, file, f"{where}.coord_scale"),
                str(spec.get("units", "")),
                str(spec.get("long_name", "")),
                str(spec.get("coord_units", "")),
                str(spec.get("coord_long_name", "")),
            )
        )
    return Outputs(tuple(probes), tuple(profiles), tuple(fields))
