"""Write a package directory from a grid: the cartesian product of value lists.

A grid is ``{"priority": "HIGH", "parameters": {"Re": [100, 400], "dt": 0.01, ...},
"tags": {...}}`` (a scalar is a one-value list), optionally with ``"solver"`` and ``"case"``
(another solver than the spectral one: its declared parameters are the grid's); a grid file
(TOML or YAML) holds one grid at top level or several under ``grids``. Package ids are derived
from the swept values, so the same grid always gives the same ids and files.

Bounded before anything is expanded or written: a grid file is a regular file of at most
1 MiB, nested at most ``MAX_DEPTH`` deep, holding at most ``MAX_GRID_VALUES`` values once
YAML aliases are followed (a "billion laughs" file is refused, not expanded), no key twice;
a grid's tags take at most ``MAX_TAGS_BYTES`` of JSON; the combinations are counted first
and refused above ``max_packages`` (``sweep new --max-packages``, setting
``sweep.new.max-packages``). A refused grid writes nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import threading
import warnings
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from solver.params import PARAMS, deprecation_message, parameter_problems

from ..errors import ConfigError, config_error, option_error
from ..faults import fault_point
from ..solvers.protocol import FieldError, Solver
from ..solvers.registry import DEFAULT_SOLVER, SolverCache
from .check import one_of
from .files import MAX_DEPTH, MAX_FILE_BYTES, file_problem, read_bytes
from .package import (
    FILE_PARAMETER_NAMES,
    FILE_TO_SOLVER,
    PRIORITIES,
    SUMMARY_FILE,
    id_problem,
    package_document,
)
from .summary import summary_document

__all__ = [
    "GRID_KEYS",
    "MAX_GRID_VALUES",
    "MAX_TAGS_BYTES",
    "count_combinations",
    "expand_grids",
    "read_document",
    "read_grid_file",
    "write_packages",
    "append_packages",
    "listed_ids",
    "parse_value",
    "parse_grid",
    "relocated_case",
]

GRID_KEYS = ("priority", "parameters", "tags", "solver", "case")
MAX_GRID_VALUES = 100_000  # values in a grid file, aliases followed: far more than any real grid
MAX_TAGS_BYTES = 64 << 10  # JSON of one grid's tags (copied into each of its package files)
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


_GRID_TEXT = re.compile(r"([0-9]+)(?:x([0-9]+)x([0-9]+))?")


def parse_grid(text: str) -> Any:
    """A grid as the command line writes it: ``32`` (a cube), ``16x16x32`` (the form package
    ids use) or ``16,16,32`` -> [nx, ny, nz]; a list's values are left for the check to name,
    other text is a ConfigError naming the forms."""
    m = _GRID_TEXT.fullmatch(text.strip())
    if m is not None:
        n = [int(g) for g in m.groups() if g is not None]
        return n * 3 if len(n) == 1 else n
    if "," in text:
        return parse_value(text)
    raise ConfigError(
        f"grid: bad value {text!r}; allowed: N (a cube), NXxNYxNZ (as package ids write it) or "
        "NX,NY,NZ, e.g. 32 or 16x16x32",
        option="grid",
    )


def _values(name: str, v: Any) -> list[Any]:
    """The list of values of one grid axis (a grid axis is a list of triples)."""
    if name == "grid":
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


def count_combinations(grids: Sequence[Mapping[str, Any]]) -> int:
    """The number of packages ``grids`` expand to (exact: counted, not expanded)."""
    total = 0
    for grid in grids:
        params = grid.get("parameters") or {}
        n = 1
        if isinstance(params, Mapping):
            spectral = grid.get("solver", DEFAULT_SOLVER) == DEFAULT_SOLVER
            for k, v in params.items():
                n *= len(_values(k, v) if spectral else _axis(v))
        total += n
    return total


def _max_packages(limit: int | None) -> int:
    """The bound on the packages of one ``sweep new`` (``sweep.new.max-packages`` when None)."""
    from .. import config

    value = config.get("new.max-packages") if limit is None else limit
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise option_error("max_packages", limit, "an integer >= 1") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise option_error("max_packages", limit if limit is not None else value, "an integer >= 1")
    return value


def expand_grids(
    grids: Sequence[Mapping[str, Any]],
    *,
    source: str = "grid",
    base: str = ".",
    directory: str | None = None,
    max_packages: int | None = None,
    taken: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Package documents of every combination of every grid, ids included; ConfigError on bad input.

    Ids name the parameters that vary (``Re400-dt0.01``); when one of those is in ``taken`` (the
    ids of the sweep the packages are added to), every package is named by every value given
    (``Re400-dt0.005-T20-n48x48x48``), so an added package never borrows another's id.

    ``base``: where a grid's relative ``case`` path starts (the grid file's directory, or the
    current one); ``directory``: where the packages go (their ``case`` is written relative to
    it; default ``base``); more than ``max_packages`` combinations (counted before any is made;
    default: the ``sweep.new.max-packages`` setting) are refused.
    """
    limit = _max_packages(max_packages)
    n_combos = count_combinations(grids)
    if n_combos > limit:
        raise ConfigError(
            f"{source}: parameters: bad value {n_combos} combinations; allowed: at most {limit} "
            "packages (fewer values, or raise the bound: max_packages / --max-packages N, or the "
            "sweep.new.max-packages setting)"
        )
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
        tags = grid.get("tags") or {}
        if len(json.dumps(tags)) > MAX_TAGS_BYTES:
            problems.append(
                f"{where}: tags: bad value: {len(json.dumps(tags))} bytes of JSON; allowed: at most "
                f"{MAX_TAGS_BYTES} bytes (tags are copied into every package file)"
            )
            continue
        solver_name, case, solver = _grid_solver(grid, where, solvers, problems)
        if solver is None:
            continue
        spectral = solver_name == DEFAULT_SOLVER
        if spectral:  # older names (grid_size): read as the parameter's name, with a warning
            for old in [k for k in params if k in FILE_TO_SOLVER and FILE_TO_SOLVER[k] not in params]:
                warnings.warn(deprecation_message(old, f"{where}: parameters."), FutureWarning, stacklevel=2)
                params = {FILE_TO_SOLVER[k] if k == old else k: v for k, v in params.items()}
        names = FILE_PARAMETER_NAMES if spectral else tuple(solver.params)
        for key in params:
            if key not in names:
                problems.append(
                    f"{where}: parameters.{key}: bad value {key!r}; allowed: {one_of(key, names)}"
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
    given = [n for n in dict.fromkeys(order) if any(n in c[1] for c in combos)]
    if not swept:  # one package: named by every value given (not `run`, the same for every sweep)
        swept = given
    mixed = len({c[3] for c in combos}) > 1  # ids then start with the solver's name
    if taken and any(_package_id(c, swept, mixed, i) in taken for i, c in enumerate(combos)):
        swept = given
    docs: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, combo in enumerate(combos):
        prio, values, tags, solver_name, case, solver = combo
        spectral = solver_name == DEFAULT_SOLVER
        raw = values
        found = parameter_problems(raw) if spectral else solver.parameter_problems(raw) if solver else []
        for err in found:
            fname = err.field
            problems.append(
                f"{source}: parameters.{fname}: bad value {err.value!r} (in combination {i + 1}: "
                f"{json.dumps(values)}); allowed: {err.allowed}"
            )
        pid = _package_id(combo, swept, mixed, i)
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


def _package_id(combo: tuple[Any, ...], names: Sequence[str], mixed: bool, i: int) -> str:
    """The id of combination ``i``: its values of ``names`` (``Re400-dt0.01``), after the
    solver's name when the sweep mixes solvers; ``pkgNNNN`` when that is no valid id."""
    _, values, _, solver_name, _, solver = combo
    parts = [solver_name] if mixed else []
    for n in names:
        if solver_name == DEFAULT_SOLVER:
            if n in PARAMS:
                parts.append(f"{_ID_NAMES.get(n, n)}{_fmt(values.get(n, PARAMS[n].default))}")
        elif solver is not None and n in solver.params:
            parts.append(f"{n}{_fmt(values.get(n, solver.params[n].default))}")
    pid = "-".join(parts) if parts else "run"
    return pid if id_problem(pid) is None else f"pkg{i + 1:04d}"


def read_document(path: str, what: str = "grid file") -> Any:
    """The content of a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file: a regular file, read
    bounded (see the module docstring); one-line ConfigErrors (``what`` names the kind of file)."""
    readers = {".toml": _read_toml, ".yaml": _read_yaml, ".yml": _read_yaml}
    ext = os.path.splitext(path)[1].lower()
    if ext not in readers:
        raise ConfigError(
            f"{path}: (file): bad value {ext or '(no extension)'!r}; allowed: one of " + ", ".join(readers)
        )
    problems: list[str] = []
    why = file_problem(path, path, None)  # a FIFO or device is never opened
    text = read_bytes(path, path, problems) if why is None else None
    if text is None:
        raise ConfigError((why or problems[0]).replace("a readable file", f"a readable {what}"))
    try:
        doc = readers[ext](text)
    except RecursionError:
        raise ConfigError(
            f"{path}: (nesting): bad value: nested deeper than {MAX_DEPTH} levels; allowed: "
            f"tables and lists at most {MAX_DEPTH} deep"
        ) from None
    except ValueError as exc:  # tomllib.TOMLDecodeError and yaml.YAMLError (wrapped) are ValueErrors
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "digits" in first:  # Python's limit on the digits of an int
            first = "bad value: an integer of more than 4300 digits"
        raise ConfigError(
            f"{path}: (syntax): {first}; allowed: valid {ext.lstrip('.').upper()}, numbers within "
            "each parameter's bounds"
        ) from None
    if (why := _unbounded(doc, path)) is not None:
        raise ConfigError(why)
    return doc


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


def _unbounded(doc: Any, path: str) -> str | None:
    """Why a loaded grid file is refused: nested deeper than MAX_DEPTH (a YAML alias of its own
    anchor nests without end) or more than MAX_GRID_VALUES values with aliases followed
    (counted with an early stop: an alias bomb is never expanded); None when it is bounded."""
    budget = MAX_GRID_VALUES
    tops: list[tuple[str, Any]] = [("(top level)", doc)]
    if isinstance(doc, dict):
        tops = []
        for key, value in doc.items():
            if key == "grids" and isinstance(value, list):
                tops += [
                    (f"grids[{i}].{k}", v)
                    for i, g in enumerate(value)
                    if isinstance(g, dict)
                    for k, v in g.items()
                ]
            else:
                tops.append((str(key), value))
    for field, value in tops:
        stack = [(value, 2)]
        while stack:
            v, depth = stack.pop()
            budget -= 1
            if budget < 0:
                return (
                    f"{path}: {field}: bad value: more than {MAX_GRID_VALUES} values (YAML aliases "
                    "repeat what they name); allowed: a grid of at most "
                    f"{MAX_GRID_VALUES} values in all"
                )
            if isinstance(v, (dict, list)):
                if depth > MAX_DEPTH:
                    return (
                        f"{path}: {field}: bad value: nested deeper than {MAX_DEPTH} levels (or a YAML "
                        f"alias inside its own anchor); allowed: tables and lists at most {MAX_DEPTH} deep"
                    )
                stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))
    return None


def _read_toml(text: bytes) -> Any:
    import tomllib  # a key twice is a TOML error already

    return tomllib.loads(text.decode("utf-8-sig"))


def _read_yaml(text: bytes) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader: no Python objects
    except yaml.YAMLError as exc:
        raise ValueError(" ".join(str(exc).split())) from None


def _yaml_loader() -> Any:
    """PyYAML's SafeLoader refusing a key twice in one mapping (it would keep the last one)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: Any, node: Any) -> Any:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f'bad value: the key "{key_node.value}" twice in one mapping',
                        key_node.start_mark,
                    )
                seen.add(key_node.value)
        return (yield from yaml.SafeLoader.construct_yaml_map(loader, node))

    Loader.add_constructor("tag:yaml.org,2002:map", mapping)
    return Loader


_NUMBER_LIST = re.compile(r"\[\s*(-?[0-9.eE+-]+(?:,\s*-?[0-9.eE+-]+)*)\s*\]")


def _dumps(doc: Mapping[str, Any]) -> str:
    """Indented JSON with short number lists on one line ("grid": [16, 16, 16])."""
    text = json.dumps(doc, indent=2)
    return (
        _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
        + "\n"
    )


def write_packages(directory: str, docs: Sequence[Mapping[str, Any]], *, force: bool = False) -> list[str]:
    """Write package files and the priority summary; refuses to replace packages unless ``force``.

    With ``force`` the old ``package_*.json`` files are removed first, so no package of the
    previous grid lingers. Every file's text is made (and checked to be at most 1 MiB) before
    the first one is written; each is written to a new temporary file, then renamed into
    place (never through a link found there). Returns the written file names.
    """
    width = max(4, len(str(len(docs))))
    texts: dict[str, bytes] = {}
    for i, doc in enumerate(docs, start=1):
        name = f"package_{i:0{width}d}.json"
        texts[name] = _dumps(doc).encode()
        if len(texts[name]) > MAX_FILE_BYTES:
            raise ConfigError(
                f"{name}: (file size): bad value {len(texts[name])} bytes; allowed: at most "
                f"{MAX_FILE_BYTES} bytes (smaller tags)"
            )
    texts[SUMMARY_FILE] = (json.dumps(summary_document(docs), indent=2) + "\n").encode()
    os.makedirs(directory, exist_ok=True)
    old = sorted(
        e.name
        for e in os.scandir(directory)
        if e.name == SUMMARY_FILE or (e.name.startswith("package_") and e.name.endswith(".json"))
    )
    if old and not force:
        files = [n for n in old if n != SUMMARY_FILE] or old
        raise ConfigError(
            f"{directory}: (directory): bad value {len(files)} existing package file(s) "
            f"(e.g. {files[0]}); allowed: an empty directory, --append to add packages to them, "
            "or --force to replace them"
        )
    for name in old:
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            raise ConfigError(f"{path}: (file): bad value: a directory; allowed: package files only")
    for name in old:
        os.unlink(os.path.join(directory, name))  # a link is removed, never what it points at
    for name, data in texts.items():
        _write_new(os.path.join(directory, name), data)
    return [n for n in texts if n != SUMMARY_FILE]


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold back the stop signals (Ctrl-C, SIGTERM, SIGHUP) while the block runs: one that
    arrives is raised again, and handled as usual, when it ends. (Python handlers, not a
    thread's signal mask: the kernel may deliver a signal to any other thread.)"""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread handles signals (and may set their handlers)
        return
    arrived: list[int] = []
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = {s: signal.signal(s, lambda sig, _frame: arrived.append(sig)) for s in stops}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        for sig in dict.fromkeys(arrived):
            signal.raise_signal(sig)


def _write_new(path: str, data: bytes) -> None:
    """Write a file through a new temporary file (O_EXCL, O_NOFOLLOW) renamed over ``path``."""
    tmp = f"{path}.{os.urandom(4).hex()}.partial"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def listed_ids(directory: str) -> dict[str, list[str]]:
    """The package ids a sweep directory's priority summary lists, by priority (none yet: empty)."""
    summary: dict[str, list[str]] = {p: [] for p in PRIORITIES}
    path = os.path.join(directory, SUMMARY_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            summary.update(json.load(f))
    return summary


def append_packages(directory: str, docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Add package files to an existing sweep directory (or a new one) and list them in its
    priority summary; returns the written file names. An id already in the directory is refused.

    The package files are written first (each through a temporary file and a rename: never a
    file cut short), then the summary replaced atomically, with Ctrl-C, SIGTERM and SIGHUP held
    back until all of it is written (an interrupted ``sweep adapt`` resumes from a directory
    whose every file is listed). A SIGKILL in between leaves files no summary lists, which
    ``sweep validate`` names.
    """
    os.makedirs(directory, exist_ok=True)
    summary_path = os.path.join(directory, SUMMARY_FILE)
    summary = listed_ids(directory)
    known = {pid for ids in summary.values() for pid in ids}
    clash = [d["package_id"] for d in docs if d["package_id"] in known]
    if clash:
        raise ConfigError(
            f"{directory}: package_id: bad value {clash[0]!r}; allowed: an id not yet in the directory"
        )
    taken = {e.name for e in os.scandir(directory) if e.name.startswith("package_")}
    names = []
    n = len(taken)
    with _signals_held():
        for doc in docs:
            n += 1
            while f"package_{n:04d}.json" in taken:
                n += 1
            name = f"package_{n:04d}.json"
            _write_new(os.path.join(directory, name), _dumps(doc).encode())
            taken.add(name)
            summary[doc["priority"]].append(doc["package_id"])
            names.append(name)
        fault_point("append-before-summary")
        _write_new(summary_path, (json.dumps(summary, indent=2) + "\n").encode())
    return names
