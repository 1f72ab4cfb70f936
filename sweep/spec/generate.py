"""Write a package directory from a grid: the cartesian product of value lists.

A grid is ``{"priority": "HIGH", "parameters": {"Re": [100, 400], "dt": 0.01, ...},
"tags": {...}}`` (a scalar is a one-value list), optionally with ``"solver"`` and ``"case"``
(another solver than the spectral one: its declared parameters are the grid's); a grid file
(TOML or YAML) holds one grid at top level or several under ``grids``. Package ids are derived
from the swept values, so the same grid always gives the same ids and files.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from solver.params import PARAMS, parameter_problems

from ..errors import ConfigError, config_error
from ..solvers.protocol import FieldError, Solver
from ..solvers.registry import DEFAULT_SOLVER, SolverCache
from .package import (
    FILE_PARAMETER_NAMES,
    FILE_TO_SOLVER,
    PRIORITIES,
    SOLVER_TO_FILE,
    SUMMARY_FILE,
    id_problem,
    package_document,
)

__all__ = [
    "GRID_KEYS",
    "expand_grids",
    "read_document",
    "read_grid_file",
    "write_packages",
    "append_packages",
    "parse_value",
    "relocated_case",
]

GRID_KEYS = ("priority", "parameters", "tags", "solver", "case")
# short names used in generated ids
_ID_NAMES = {"Re": "Re", "dt": "dt", "T_final": "T", "grid": "n"}


def parse_value(text: str) -> Any:
    """A command-line value: ``16,16,16`` -> [16, 16, 16]; numbers, true/false/null; else text."""
    if "," in text:
        return [parse_value(t) for t in text.split(",") if t]
    try:
        return json.loads(text)
    except ValueError:
        return text


def _values(name: str, v: Any) -> list[Any]:
    """The list of values of one grid axis (a grid_size axis is a list of triples)."""
    if name == "grid_size":
        if isinstance(v, (list, tuple)) and v and all(isinstance(x, (list, tuple)) for x in v):
            return [list(x) for x in v]
        return [v]
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _axis(v: Any) -> list[Any]:
    """The list of values of one grid axis of another solver's parameters."""
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "x".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def relocated_case(case: Any, base: str, directory: str) -> Any:
    """A ``case`` given relative to ``base`` as the package files in ``directory`` must write it
    (relative to that directory). A plain name (a bundled case) stays as it is: write
    ``./name`` for a directory of that name."""
    if not isinstance(case, str) or not (os.sep in case or "/" in case or case.startswith("~")):
        return case
    path = os.path.expanduser(case)
    if os.path.isabs(path):
        return case
    target = os.path.relpath(os.path.join(os.path.abspath(base), path), os.path.abspath(directory))
    return target if "/" in target or os.sep in target else f"./{target}"


def _grid_solver(
    grid: Mapping[str, Any], where: str, solvers: SolverCache, problems: list[str]
) -> tuple[str, Any, Solver | None]:
    """(solver name, case, loaded solver or None with a problem) of one grid."""
    name, case = grid.get("solver", DEFAULT_SOLVER), grid.get("case")
    try:
        return name, case, solvers.get(name, case)
    except FieldError as exc:
        problems.append(f"{where}: {exc}")
    except ConfigError as exc:
        problems.append(str(exc))
    return name, case, None


def expand_grids(
    grids: Sequence[Mapping[str, Any]],
    *,
    source: str = "grid",
    base: str = ".",
    directory: str | None = None,
) -> list[dict[str, Any]]:
    """Package documents of every combination of every grid, ids included; ConfigError on bad input.

    ``base``: where a grid's relative ``case`` path starts (the grid file's directory, or the
    current one); ``directory``: where the packages go (their ``case`` is written relative to
    it; default ``base``).
    """
    problems: list[str] = []
    combos: list[tuple[str, dict[str, Any], dict[str, Any], str, Any, Solver | None]] = []
    solvers = SolverCache(base)
    for gi, grid in enumerate(grids):
        where = source if len(grids) == 1 else f"{source}: grids[{gi}]"
        for key in grid:
            if key not in GRID_KEYS:
                problems.append(
                    f"{where}: {key}: bad value {key!r}; allowed: one of the keys " + ", ".join(GRID_KEYS)
                )
        prio = grid.get("priority", "MEDIUM")
        if prio not in PRIORITIES:
            problems.append(
                f"{where}: priority: bad value {prio!r}; allowed: one of " + ", ".join(PRIORITIES)
            )
        params = grid.get("parameters") or {}
        if not isinstance(params, Mapping):
            problems.append(
                f"{where}: parameters: bad value {params!r}; allowed: a table of parameter value lists"
            )
            continue
        solver_name, case, solver = _grid_solver(grid, where, solvers, problems)
        if solver is None:
            continue
        spectral = solver_name == DEFAULT_SOLVER
        names = FILE_PARAMETER_NAMES if spectral else tuple(solver.params)
        for key in params:
            if key not in names:
                problems.append(
                    f"{where}: parameters.{key}: bad value {key!r}; allowed: one of " + ", ".join(names)
                )
        axes = {k: _values(k, v) if spectral else _axis(v) for k, v in params.items() if k in names}
        for choice in itertools.product(*axes.values()):
            values = dict(zip(axes, choice, strict=True))
            combos.append((prio, values, dict(grid.get("tags") or {}), solver_name, case, solver))
    if problems:
        raise config_error(problems)
    # the swept names are those taking more than one value over all grids: they name the ids
    order = [*FILE_PARAMETER_NAMES, *(n for c in combos if c[5] is not None for n in c[5].params)]
    swept = [
        n for n in dict.fromkeys(order) if len({json.dumps(c[1].get(n), sort_keys=True) for c in combos}) > 1
    ]
    mixed = len({c[3] for c in combos}) > 1  # ids then start with the solver's name
    docs: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, (prio, values, tags, solver_name, case, solver) in enumerate(combos):
        spectral = solver_name == DEFAULT_SOLVER
        raw = {FILE_TO_SOLVER.get(k, k): v for k, v in values.items()} if spectral else values
        found = parameter_problems(raw) if spectral else solver.parameter_problems(raw) if solver else []
        for err in found:
            fname = SOLVER_TO_FILE.get(err.field, err.field) if spectral else err.field
            problems.append(
                f"{source}: parameters.{fname}: bad value {err.value!r} (in combination {i + 1}: "
                f"{json.dumps(values)}); allowed: {err.allowed}"
            )
        parts = [solver_name] if mixed else []
        for n in swept:
            if spectral:
                declared = FILE_TO_SOLVER.get(n, n)
                if declared in PARAMS:
                    value = values.get(n, PARAMS[declared].default)
                    parts.append(f"{_ID_NAMES.get(declared, n)}{_fmt(value)}")
            elif solver is not None and n in solver.params:
                parts.append(f"{n}{_fmt(values.get(n, solver.params[n].default))}")
        pid = "-".join(parts) if parts else "run"
        if id_problem(pid) is not None:
            pid = f"pkg{i + 1:04d}"
        if pid in seen:
            problems.append(
                f"{source}: parameters: bad value {json.dumps(values)}; allowed: each combination "
                f"once (combinations {seen[pid] + 1} and {i + 1} are the same)"
            )
        seen[pid] = i
        docs.append(
            package_document(
                pid,
                prio,
                values,
                tags,
                solver=solver_name,
                case=relocated_case(case, base, directory if directory is not None else base),
            )
        )
    if problems:
        raise config_error(problems)
    return docs


def read_document(path: str, what: str = "grid file") -> Any:
    """The content of a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file; one-line ConfigErrors
    (``what`` names the kind of file in them)."""
    readers = {".toml": _read_toml, ".yaml": _read_yaml, ".yml": _read_yaml}
    ext = os.path.splitext(path)[1].lower()
    if ext not in readers:
        raise ConfigError(
            f"{path}: (file): bad value {ext or '(no extension)'!r}; allowed: one of " + ", ".join(readers)
        )
    try:
        return readers[ext](path)
    except OSError as exc:
        raise ConfigError(
            f"{path}: (file): cannot read: {exc.strerror}; allowed: a readable {what}"
        ) from None
    except ValueError as exc:  # tomllib.TOMLDecodeError and yaml.YAMLError (wrapped) are ValueErrors
        raise ConfigError(
            f"{path}: (syntax): {str(exc).splitlines()[0]}; allowed: valid {ext.lstrip('.').upper()}"
        ) from None


def read_grid_file(path: str) -> list[dict[str, Any]]:
    """The grids of a TOML (``.toml``) or YAML (``.yaml``/``.yml``) grid file."""
    doc = read_document(path)
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{path}: (top level): bad value {type(doc).__name__}; allowed: a table with "
            "keys " + ", ".join(GRID_KEYS) + " or 'grids'"
        )
    if "grids" in doc:
        extra = sorted(set(doc) - {"grids"})
        if extra or not isinstance(doc["grids"], list):
            raise ConfigError(
                f"{path}: grids: bad value {extra or doc['grids']!r}; allowed: 'grids' alone, "
                "a list of tables with keys " + ", ".join(GRID_KEYS)
            )
        return list(doc["grids"])
    return [doc]


def _read_toml(path: str) -> Any:
    import tomllib

    with open(path, "rb") as f:
        return tomllib.load(f)


def _read_yaml(path: str) -> Any:
    import yaml

    with open(path, encoding="utf-8") as f:
        try:
            return yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ValueError(" ".join(str(exc).split())) from None


_NUMBER_LIST = re.compile(r"\[\s*(-?[0-9.eE+-]+(?:,\s*-?[0-9.eE+-]+)*)\s*\]")


def _dumps(doc: Mapping[str, Any]) -> str:
    """Indented JSON with short number lists on one line ("grid_size": [16, 16, 16])."""
    text = json.dumps(doc, indent=2)
    return (
        _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
        + "\n"
    )


def write_packages(directory: str, docs: Sequence[Mapping[str, Any]], *, force: bool = False) -> list[str]:
    """Write package files and the priority summary; refuses to replace packages unless ``force``.

    With ``force`` the old ``package_*.json`` files are removed first, so no package of the
    previous grid lingers. Returns the written file names.
    """
    os.makedirs(directory, exist_ok=True)
    old = sorted(
        e.name
        for e in os.scandir(directory)
        if e.is_file()
        and (e.name == SUMMARY_FILE or (e.name.startswith("package_") and e.name.endswith(".json")))
    )
    if old and not force:
        raise ConfigError(
            f"{directory}: (directory): bad value {len(old)} existing package file(s) "
            f"(e.g. {old[0]}); allowed: an empty directory, or --force to replace them"
        )
    for name in old:
        os.remove(os.path.join(directory, name))
    summary: dict[str, list[str]] = {p: [] for p in PRIORITIES}
    width = max(4, len(str(len(docs))))
    names = []
    for i, doc in enumerate(docs, start=1):
        name = f"package_{i:0{width}d}.json"
        with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
            f.write(_dumps(doc))
        summary[doc["priority"]].append(doc["package_id"])
        names.append(name)
    with open(os.path.join(directory, SUMMARY_FILE), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    return names


def append_packages(directory: str, docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Add package files to an existing sweep directory (or a new one) and list them in its
    priority summary; returns the written file names. An id already in the directory is refused.

    The package files are written first, then the summary replaced atomically (a new file and a
    rename): a crash in between leaves files no summary lists, which ``sweep validate`` names.
    """
    os.makedirs(directory, exist_ok=True)
    summary_path = os.path.join(directory, SUMMARY_FILE)
    summary: dict[str, list[str]] = {p: [] for p in PRIORITIES}
    if os.path.exists(summary_path):
        with open(summary_path, encoding="utf-8") as f:
            summary.update(json.load(f))
    known = {pid for ids in summary.values() for pid in ids}
    clash = [d["package_id"] for d in docs if d["package_id"] in known]
    if clash:
        raise ConfigError(
            f"{directory}: package_id: bad value {clash[0]!r}; allowed: an id not yet in the directory"
        )
    taken = {e.name for e in os.scandir(directory) if e.name.startswith("package_")}
    names = []
    n = len(taken)
    for doc in docs:
        n += 1
        while f"package_{n:04d}.json" in taken:
            n += 1
        name = f"package_{n:04d}.json"
        with open(os.path.join(directory, name), "x", encoding="utf-8") as f:
            f.write(_dumps(doc))
        taken.add(name)
        summary[doc["priority"]].append(doc["package_id"])
        names.append(name)
    tmp = f"{summary_path}.{os.getpid()}.partial"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    os.replace(tmp, summary_path)
    return names
