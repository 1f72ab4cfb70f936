"""Package files: load a sweep directory into frozen, typed ``Package`` objects.

A sweep directory holds ``priority_summary.json`` (package ids under HIGH, MEDIUM and LOW)
and one ``package_XXXX.json`` per package::

    {"package_id": "re400-dt0.01", "priority": "HIGH",
     "parameters": {"Re": 400, "dt": 0.01, "T_final": 0.5, "grid_size": [16, 16, 16]},
     "tags": {"study": "demo"}}

``load_packages`` checks the whole directory and raises one ``ConfigError`` whose
``.problems`` lists every problem, one line each (``<file>: <field>: bad value <v>;
allowed: <...>``). Parameter checks are the solver's own (``solver.params``); nothing
here restates a default or a range.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from solver.params import PARAMS, SolverParams, parameter_problems

from .bulk import paused_gc
from .errors import ConfigError

__all__ = [
    "PRIORITIES",
    "SUMMARY_FILE",
    "PACKAGE_GLOB",
    "PACKAGE_KEYS",
    "FILE_TO_SOLVER",
    "SOLVER_TO_FILE",
    "MAX_FILE_BYTES",
    "MAX_ID_LENGTH",
    "Package",
    "run_id_of",
    "canonical_json",
    "load_packages",
    "select_packages",
    "check_priority",
    "config_error",
    "check_directory",
    "id_problem",
    "memory_need",
    "default_worker_memory",
    "package_document",
]

PRIORITIES: tuple[str, ...] = ("HIGH", "MEDIUM", "LOW")
SUMMARY_FILE = "priority_summary.json"
PACKAGE_GLOB = "package_*.json"
MAX_FILE_BYTES = 1 << 20  # 1 MiB: a package is a few hundred bytes; more is a mistake
MAX_ID_LENGTH = 64

# keys of a package file -> what each holds (the "allowed" list of unknown-key errors)
PACKAGE_KEYS: dict[str, str] = {
    "package_id": "the package's id (a plain name)",
    "priority": "one of " + ", ".join(PRIORITIES) + " (optional; must agree with the summary)",
    "parameters": "solver parameters by name",
    "tags": "free-form object kept as provenance (optional)",
}
# names in package files that differ from the solver's declared names
FILE_TO_SOLVER: dict[str, str] = {"grid_size": "grid"}
SOLVER_TO_FILE: dict[str, str] = {v: k for k, v in FILE_TO_SOLVER.items()}
FILE_PARAMETER_NAMES: tuple[str, ...] = tuple(SOLVER_TO_FILE.get(n, n) for n in PARAMS)

_ID_RE = re.compile(r"[A-Za-z0-9._-]+")
_PACKAGE_RE = re.compile(r"package_.*\.json")


def canonical_json(params: SolverParams) -> str:
    """The canonical JSON text of a run's identity parameters (sorted keys, no spaces)."""
    return params.canonical_json()


def run_id_of(params: SolverParams | Mapping[str, Any]) -> str:
    """A run's identity: 16 hex digits of the SHA-256 of its canonical parameters.

    Two packages with identical physics share one run; any edit of an identity
    parameter makes a new run. Execution-only parameters (FFT backend, threads) do not count.
    """
    p = SolverParams.coerce(params)
    return hashlib.sha256(canonical_json(p).encode()).hexdigest()[:16]


class Package:
    """One validated package: what to run, how urgently, and its free-form tags (immutable).

    ``params`` is built on first use when the package came from the validation cache, so
    planning 10,000 packages does not construct 10,000 SolverParams.
    """

    __slots__ = ("package_id", "priority", "_params", "tags", "path", "_run_id", "_values")

    def __init__(self, package_id: str, priority: str, params: SolverParams | None = None,
                 tags: Mapping[str, Any] | None = None, path: str | None = None, *,
                 run_id: str | None = None, values: Mapping[str, Any] | None = None) -> None:
        if params is None and values is None:
            raise TypeError("Package needs params (SolverParams) or validated values")
        _set = object.__setattr__  # one call per slot: 3x faster than a loop (10,000 per plan)
        _set(self, "package_id", package_id)
        _set(self, "priority", priority)
        _set(self, "_params", params)
        _set(self, "tags", dict(tags) if tags else {})
        _set(self, "path", path)
        _set(self, "_run_id", run_id)
        _set(self, "_values", values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Package is immutable")

    @property
    def params(self) -> SolverParams:
        """The validated solver parameters."""
        if self._params is None:
            object.__setattr__(self, "_params", SolverParams(self._values))
        return self._params

    @property
    def run_id(self) -> str:
        """Hash of the canonical solver parameters (see ``run_id_of``)."""
        if self._run_id is None:
            object.__setattr__(self, "_run_id", run_id_of(self.params))
        return self._run_id

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Package) and (self.package_id, self.priority, self.run_id)
                == (other.package_id, other.priority, other.run_id))

    def __hash__(self) -> int:
        return hash((self.package_id, self.priority, self.run_id))

    def __repr__(self) -> str:
        return f"Package({self.package_id!r}, {self.priority!r}, run_id={self.run_id!r})"


# ---------------------------------------------------------------------------- memory


def memory_need(params: SolverParams) -> int:
    """Bytes one run of ``params`` needs on a worker (the solver's own estimate)."""
    from solver import memory_estimate

    return int(memory_estimate(params))


def default_worker_memory() -> int:
    """A worker's memory when none is given: what a default LocalCluster gives each worker."""
    import psutil

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return int(psutil.virtual_memory().total // max(1, cores))


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


# ---------------------------------------------------------------------------- checks


def _line(file: str, fieldname: str, value: Any, allowed: str) -> str:
    return f"{file}: {fieldname}: bad value {_show(value)}; allowed: {allowed}"


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def id_problem(value: Any) -> str | None:
    """Why ``value`` is not a safe package id (None when it is one)."""
    allowed = (f"a plain name of at most {MAX_ID_LENGTH} letters, digits, '-', '_', '.' "
               "(no path separators, no '..')")
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        return allowed
    if not _ID_RE.fullmatch(value) or ".." in value or value in (".",):
        return allowed
    return None


def _json_type(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "true/false", type(None): "null"}.get(
        type(v), "number")


def _check_package_doc(name: str, doc: Any, problems: list[str]) -> tuple[str | None, Any, dict | None, dict]:
    """Field checks of one parsed package file; returns (id, priority, solver raw, tags)."""
    if not isinstance(doc, dict):
        problems.append(_line(name, "(top level)", _json_type(doc), "a JSON object with keys "
                              + ", ".join(PACKAGE_KEYS)))
        return None, None, None, {}
    for key in doc:
        if key not in PACKAGE_KEYS:
            problems.append(_line(name, key, key, "one of the keys " + ", ".join(PACKAGE_KEYS)))
    pid = doc.get("package_id")
    if "package_id" not in doc:
        problems.append(f"{name}: package_id: missing; allowed: a plain name, e.g. \"re400-dt0.01\"")
        pid = None
    elif (why := id_problem(pid)) is not None:
        problems.append(_line(name, "package_id", pid, why))
        pid = None
    prio = doc.get("priority")
    if prio is not None and prio not in PRIORITIES:
        problems.append(_line(name, "priority", prio, "one of " + ", ".join(PRIORITIES)))
        prio = None
    tags = doc.get("tags", {})
    if not isinstance(tags, dict):
        problems.append(_line(name, "tags", tags, "a JSON object (free-form provenance)"))
        tags = {}
    raw = doc.get("parameters")
    if "parameters" not in doc:
        problems.append(f"{name}: parameters: missing; allowed: an object of solver parameters: "
                        + ", ".join(FILE_PARAMETER_NAMES))
        return pid, prio, None, tags
    if not isinstance(raw, dict):
        problems.append(_line(name, "parameters", raw, "an object of solver parameters: "
                              + ", ".join(FILE_PARAMETER_NAMES)))
        return pid, prio, None, tags
    solver_raw: dict[str, Any] = {}
    for key, value in raw.items():
        sname = FILE_TO_SOLVER.get(key, key)
        if sname not in PARAMS or key in SOLVER_TO_FILE:  # e.g. "grid": the file says grid_size
            hint = f" (write {SOLVER_TO_FILE[key]!r})" if key in SOLVER_TO_FILE else ""
            problems.append(_line(name, f"parameters.{key}", key,
                                  "one of " + ", ".join(FILE_PARAMETER_NAMES) + hint))
            continue
        solver_raw[sname] = value
    return pid, prio, solver_raw, tags


def _solver_params(name: str, raw: dict[str, Any], problems: list[str]) -> SolverParams | None:
    try:  # the common case in one pass; only a bad package pays for the full report
        return SolverParams(raw)
    except ValueError:
        pass
    for err in parameter_problems(raw):
        fname = SOLVER_TO_FILE.get(err.field, err.field)
        problems.append(_line(name, f"parameters.{fname}", err.value, err.allowed))
    return None


_FIRST_READ = 1 << 16  # one read() takes a whole package file (a few hundred bytes)


def _read_bytes(path: str, name: str, problems: list[str]) -> bytes | None:
    """A file's bytes; None (with a problem line) when unreadable or over MAX_FILE_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY)  # os-level I/O, no fstat: 3x faster than open() for tiny files
        try:
            text = os.read(fd, _FIRST_READ)
            if len(text) == _FIRST_READ:  # a big file: read on, but never past the limit
                parts, total = [text], len(text)
                while total <= MAX_FILE_BYTES and (chunk := os.read(fd, _FIRST_READ)):
                    parts.append(chunk)
                    total += len(chunk)
                if total > MAX_FILE_BYTES:
                    size = max(total, os.fstat(fd).st_size)
                    problems.append(_line(name, "(file size)", f"{size} bytes",
                                          f"at most {MAX_FILE_BYTES} bytes (1 MiB); a package needs a few hundred"))
                    return None
                text = b"".join(parts)
            return text
        finally:
            os.close(fd)
    except OSError as exc:
        problems.append(f"{name}: (file): cannot read: {exc.strerror}; allowed: a readable file")
    return None


def _parse_json(text: bytes, name: str, problems: list[str]) -> Any:
    """Parse JSON text; None (with a problem line naming line and column) when invalid."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(f"{name}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}; "
                        "allowed: a JSON object (check quotes, commas and brackets)")
    except UnicodeDecodeError as exc:
        problems.append(f"{name}: byte {exc.start}: invalid JSON: not UTF-8 text; allowed: a UTF-8 JSON file")
    return None


def _read_json(path: str, name: str, problems: list[str]) -> Any:
    """Parse one JSON file; None (with a problem line) when unreadable, too big or invalid."""
    text = _read_bytes(path, name, problems)
    return None if text is None else _parse_json(text, name, problems)


# ---------------------------------------------------------------------------- validation cache
# Checking a package is a pure function of its bytes and of the checking code, so a file
# whose bytes were checked before (same SHA-1, same code) needs no second check: every
# file is read and hashed on every pass (no trust in modification times, so an edit is
# always seen), and only files with new bytes are parsed and validated. Only packages
# without problems are cached; the cross-file checks (ids, summary, priorities, memory)
# always run.

CACHE_ENV = "NS_SWEEP_CACHE_DIR"  # directory of the validation cache; "off" disables it


@functools.lru_cache(maxsize=1)
def _fingerprint() -> str:
    """Hash of the code whose rules a cached verdict depends on."""
    import solver
    import solver.params

    h = hashlib.sha1()
    mods = [solver.params, sys.modules[__name__], getattr(solver, "memory", None)]
    for mod in mods:
        path = getattr(mod, "__file__", None)
        if path:
            with open(path, "rb") as f:
                h.update(f.read())
    h.update(str(getattr(solver, "SOLVER_VERSION", "")).encode())
    return h.hexdigest()


def _cache_file(directory: str) -> str | None:
    root = os.environ.get(CACHE_ENV)
    if root is not None and root.strip().lower() in ("", "off", "0", "no"):
        return None
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "ns-sweep")
    key = hashlib.sha1(os.path.abspath(directory).encode()).hexdigest()[:16]
    return os.path.join(root, f"packages-{key}.json")


def _load_cache(path: str | None) -> dict[str, list[Any]]:
    """SHA-1 of a file's bytes -> its verdict; empty when absent or written by other code."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
        if doc.get("fingerprint") != _fingerprint():
            return {}
        return dict(doc["entries"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _save_cache(path: str | None, entries: dict[str, list[Any]]) -> None:
    if path is None:
        return
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.partial"
        with open(tmp, "w", encoding="utf-8") as f:
            # dumps, not dump: json.dump streams through the pure-Python encoder (20x slower)
            f.write(json.dumps({"fingerprint": _fingerprint(), "entries": entries}, separators=(",", ":")))
        os.replace(tmp, path)
        _prune_cache(os.path.dirname(path))
    except OSError:  # a cache that cannot be written only costs time
        pass


CACHE_KEEP = 64  # package directories remembered; the least recently rewritten are forgotten


def _prune_cache(root: str) -> None:
    entries = [e for e in os.scandir(root) if e.name.startswith("packages-") and e.name.endswith(".json")]
    if len(entries) > CACHE_KEEP:
        entries.sort(key=lambda e: e.stat().st_mtime)
        for e in entries[: len(entries) - CACHE_KEEP]:
            try:
                os.remove(e.path)
            except OSError:
                pass


def _read_summary(directory: str, problems: list[str]) -> dict[str, str] | None:
    """package id -> priority from the summary, or None when it is missing or unusable."""
    path = os.path.join(directory, SUMMARY_FILE)
    if not os.path.exists(path):
        problems.append(f"{SUMMARY_FILE}: (file): missing; allowed: a JSON object "
                        '{"HIGH": [ids], "MEDIUM": [ids], "LOW": [ids]} (sweep new writes one)')
        return None
    doc = _read_json(path, SUMMARY_FILE, problems)
    if doc is None:
        return None
    if not isinstance(doc, dict):
        problems.append(_line(SUMMARY_FILE, "(top level)", _json_type(doc),
                              "an object with keys " + ", ".join(PRIORITIES)))
        return None
    out: dict[str, str] = {}
    for key, ids in doc.items():
        if key not in PRIORITIES:
            problems.append(_line(SUMMARY_FILE, key, key, "one of the keys " + ", ".join(PRIORITIES)))
            continue
        if not isinstance(ids, list):
            problems.append(_line(SUMMARY_FILE, key, ids, "a list of package ids"))
            continue
        for pid in ids:
            if (why := id_problem(pid)) is not None:
                problems.append(_line(SUMMARY_FILE, key, pid, why))
            elif pid in out:
                where = "twice in " + key if out[pid] == key else f"in both {out[pid]} and {key}"
                problems.append(_line(SUMMARY_FILE, key, pid, f"each id under one priority only (it is {where})"))
            else:
                out[pid] = key
    return out


@paused_gc()
def check_directory(directory: str | os.PathLike[str], *, worker_memory: int | None = None,
                    check_memory: bool = True) -> tuple[list[Package], list[str]]:
    """Every package of ``directory`` and every problem found, one line each.

    ``worker_memory``: bytes of one worker; None: ``default_worker_memory()``. The lists are
    independent: a package with a problem is left out of the packages.
    """
    directory = os.fspath(directory)
    problems: list[str] = []
    if not os.path.isdir(directory):
        raise ConfigError(f"{directory}: (directory): not found; allowed: a directory with "
                          f"{SUMMARY_FILE} and {PACKAGE_GLOB} files (sweep new DIR creates one)")
    summary = _read_summary(directory, problems)
    entries = {e.name: e for e in os.scandir(directory) if e.is_file() and _PACKAGE_RE.fullmatch(e.name)}
    names = sorted(entries)
    if check_memory and worker_memory is None:
        worker_memory = default_worker_memory()
    cache_path = _cache_file(directory)
    cache = _load_cache(cache_path)
    fresh: dict[str, list[Any]] = {}
    seen: dict[str, str] = {}
    unreadable: list[str] = []
    packages: list[Package] = []
    for name in names:
        before = len(problems)
        path = entries[name].path
        text = _read_bytes(path, name, problems)
        if text is None:
            unreadable.append(name)
            continue
        digest = hashlib.sha1(text).hexdigest()
        hit = cache.get(digest)
        params: SolverParams | None = None
        if hit is not None:
            pid, prio, values, tags, run_id, need = hit
        else:
            doc = _parse_json(text, name, problems)
            if doc is None:
                unreadable.append(name)
                continue
            pid, prio, raw, tags = _check_package_doc(name, doc, problems)
            params = _solver_params(name, raw, problems) if raw is not None else None
            values, run_id, need = None, None, None
            if params is not None:
                values = raw  # as written (solver names): small to cache; SolverParams fills defaults
                run_id = hashlib.sha256(params.canonical_json().encode()).hexdigest()[:16]
                need = memory_need(params)  # memoised by solver.memory
        if len(problems) == before and values is not None:
            fresh[digest] = [pid, prio, values, tags, run_id, need]
        if pid is not None:
            if pid in seen:
                problems.append(_line(name, "package_id", pid, f"an id used by one file only (also in {seen[pid]})"))
            else:
                seen[pid] = name
            if summary is not None:
                listed = summary.get(pid)
                if listed is None:
                    problems.append(_line(name, "package_id", pid, f"an id listed under a priority in {SUMMARY_FILE} "
                                          "(add it under HIGH, MEDIUM or LOW)"))
                elif prio is not None and prio != listed:
                    problems.append(_line(name, "priority", prio, f"{listed!r}, the priority {SUMMARY_FILE} gives it"))
                prio = prio or listed
        if need is not None and check_memory and worker_memory is not None and need > worker_memory:
            problems.append(_line(name, "parameters.grid_size", list(values.get("grid", PARAMS["grid"].default)),
                                  f"a grid whose run fits in one worker's memory (it needs "
                                  f"{_fmt_bytes(need)}, a worker has {_fmt_bytes(worker_memory)}); "
                                  "use a smaller grid or more memory per worker (--worker-memory)"))
        if len(problems) == before and pid is not None and values is not None and prio is not None:
            packages.append(Package(pid, prio, params, tags, path, run_id=run_id, values=values))
    if fresh.keys() != cache.keys():  # an entry is a pure function of its key
        _save_cache(cache_path, fresh)
    if summary is not None:
        fix = f", or fix {', '.join(unreadable)}" if unreadable else ""
        for pid, prio in summary.items():
            if pid not in seen:
                problems.append(_line(SUMMARY_FILE, prio, pid, f"ids of existing {PACKAGE_GLOB} files "
                                      f"(add the package file or remove the id{fix})"))
    if not names and not problems:
        problems.append(f"{directory}: (directory): no {PACKAGE_GLOB} files; allowed: a directory "
                        "with package files (sweep new DIR creates some)")
    return packages, problems


def load_packages(directory: str | os.PathLike[str], *, worker_memory: int | None = None,
                  check_memory: bool = True) -> list[Package]:
    """The packages of ``directory``, sorted by priority then id; ConfigError listing every problem."""
    packages, problems = check_directory(directory, worker_memory=worker_memory, check_memory=check_memory)
    if problems:
        raise config_error(problems)
    order = {p: i for i, p in enumerate(PRIORITIES)}
    return sorted(packages, key=lambda p: (order[p.priority], p.package_id))


def check_priority(priority: str) -> None:
    """ConfigError unless ``priority`` is one of PRIORITIES or 'ALL'."""
    if priority != "ALL" and priority not in PRIORITIES:
        raise ConfigError(f"--priority: bad value {priority!r}; allowed: {', '.join((*PRIORITIES, 'ALL'))}")


def select_packages(packages: Sequence[Package], priority: str = "ALL",
                    names: Sequence[str] | None = None) -> list[Package]:
    """The packages a command acts on, in the given order: those of ``priority`` ('ALL': every
    one) and, with ``names``, only the packages named, each by its package_id or its file name
    (with or without '.json'). ConfigError for a name that matches no package, or a named
    package of another priority than ``priority``."""
    check_priority(priority)
    if not names:
        return [p for p in packages if priority in ("ALL", p.priority)]
    keys: dict[str, Package] = {}
    for p in packages:
        keys[p.package_id] = p  # an id wins over another package's file name
        if p.path:
            file = os.path.basename(p.path)
            keys.setdefault(file, p)
            keys.setdefault(file.removesuffix(".json"), p)
    chosen: set[str] = set()
    for name in names:
        p = keys.get(name)
        if p is None:
            close = difflib.get_close_matches(name, [q.package_id for q in packages], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            where = os.path.dirname(packages[0].path) if packages and packages[0].path else "the directory"
            raise ConfigError(f"--package: bad value {name!r}: no package of {where} has this package_id or "
                              f"file name{hint}; allowed: a package_id or a package_*.json file name "
                              "(sweep explain lists them)")
        if priority not in ("ALL", p.priority):
            raise ConfigError(f"--package: {name!r} has priority {p.priority}, not {priority} (--priority); "
                              "drop --priority or name a package of that priority")
        chosen.add(p.package_id)
    return [p for p in packages if p.package_id in chosen]


def config_error(problems: list[str]) -> ConfigError:
    """One ConfigError carrying every problem: the message is all lines, ``.problems`` the list."""
    err = ConfigError("\n".join(problems))
    err.problems = list(problems)  # type: ignore[attr-defined]
    return err


def package_document(package_id: str, priority: str, params: Mapping[str, Any],
                     tags: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document of a package file (solver names mapped to file names)."""
    doc: dict[str, Any] = {
        "package_id": package_id,
        "priority": priority,
        "parameters": {SOLVER_TO_FILE.get(k, k): (list(v) if isinstance(v, tuple) else v)
                       for k, v in params.items()},
    }
    if tags:
        doc["tags"] = dict(tags)
    return doc
