"""Check a package directory: every file, every field, ids, the priority summary and memory.

``check_directory`` reports every problem at once, one line each (``<file>: <field>: bad
value <v>; allowed: <...>``); ``load_packages`` raises them as one ``ConfigError``.
Parameter checks are the solver's own (``solver.params``, or the declarations of the solver
the package names: ``sweep.solvers.registry``); nothing here restates a default or a range.
A solver's template (an OpenFOAM case, a command directory) is loaded once per pass, and a
problem in it is reported once, naming its file.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import stat
import warnings
from array import array
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from solver.params import DEPRECATED_NAMES, PARAMS, SolverParams, deprecation_message, parameter_problems

from ..errors import ConfigError, config_error
from ..gc_pause import paused_gc
from ..machine import memory_per_worker
from ..solvers.protocol import FieldError, Solver
from ..solvers.registry import DEFAULT_SOLVER, SolverCache
from ..solvers.run_params import RunParams
from ..units import format_bytes
from .cache import FileStat, ValidationCache, cache_file, stat_key
from .files import file_problem, json_type, parse_json, problem_line, read_bytes
from .package import (
    FILE_PARAMETER_NAMES,
    FILE_TO_SOLVER,
    PACKAGE_GLOB,
    PACKAGE_KEYS,
    PRIORITIES,
    SUMMARY_FILE,
    id_problem,
    package_file_names,
)
from .snapshot import Snapshot
from .summary import PrioritySummary, read_summary
from .table import PackageColumns, PackageTable

__all__ = ["check_directory", "check_document", "load_packages", "memory_need", "memory_problem", "one_of"]

_PRIORITY = {p: p for p in PRIORITIES}
# a deprecated parameter name as a JSON key (a cheap look at the bytes, cached verdicts too)
_OLD_NAMES = re.compile(rb'"(' + b"|".join(re.escape(k.encode()) for k in DEPRECATED_NAMES) + rb')"\s*:')


def one_of(value: Any, choices: Sequence[str], what: str = "") -> str:
    """``one of [what ]a, b, c``, with ``(did you mean 'b'?)`` when ``value`` is close to one."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    head = f"one of {what} " if what else "one of "
    return head + ", ".join(choices) + (f" (did you mean {close[0]!r}?)" if close else "")


def memory_need(params: SolverParams | RunParams) -> int:
    """Bytes one run of ``params`` needs on a worker (the spectral solver's own estimate; 0 for
    other solvers, whose programs' memory ns-sweep cannot know)."""
    if isinstance(params, RunParams):
        return 0
    from solver import memory_estimate

    return int(memory_estimate(params))


def memory_problem(name: str, grid: Any, need: int, worker_memory: int) -> str:
    """The one line of a run that needs more than a worker's memory (``sweep validate``,
    ``sweep new``, ``sweep explain`` and ``sweep run`` on a local cluster say the same)."""
    return problem_line(
        name,
        "parameters.grid",
        list(grid),
        f"a grid whose run fits in one worker's memory (it needs {format_bytes(need)}, a worker "
        f"has {format_bytes(worker_memory)}); use a smaller grid or more memory per worker "
        "(--worker-memory)",
    )


def _check_package_doc(
    name: str, doc: Any, problems: list[str]
) -> tuple[str | None, Any, dict | None, dict, Any, Any]:
    """Field checks of one parsed package file; returns (id, priority, solver raw, tags,
    solver name, case). The raw parameters of another solver than the spectral one are
    returned as written (that solver checks them)."""
    if not isinstance(doc, dict):
        problems.append(
            problem_line(
                name, "(top level)", json_type(doc), "a JSON object with keys " + ", ".join(PACKAGE_KEYS)
            )
        )
        return None, None, None, {}, DEFAULT_SOLVER, None
    for key in doc:
        if key not in PACKAGE_KEYS:
            problems.append(problem_line(name, key, key, one_of(key, list(PACKAGE_KEYS), "the keys")))
    pid = doc.get("package_id")
    if "package_id" not in doc:
        problems.append(f'{name}: package_id: missing; allowed: a plain name, e.g. "re400-dt0.01"')
        pid = None
    elif (why := id_problem(pid)) is not None:
        problems.append(problem_line(name, "package_id", pid, why))
        pid = None
    prio = doc.get("priority")
    if prio is not None and prio not in PRIORITIES:
        problems.append(problem_line(name, "priority", prio, "one of " + ", ".join(PRIORITIES)))
        prio = None
    tags = doc.get("tags", {})
    if not isinstance(tags, dict):
        problems.append(problem_line(name, "tags", tags, "a JSON object (free-form provenance)"))
        tags = {}
    solver, case = doc.get("solver", DEFAULT_SOLVER), doc.get("case")
    raw = doc.get("parameters")
    names = (
        FILE_PARAMETER_NAMES
        if solver == DEFAULT_SOLVER
        else (f"those its solver declares (sweep new DIR --solver {solver} --case CASE --help lists them)",)
    )
    if "parameters" not in doc:
        problems.append(
            f"{name}: parameters: missing; allowed: an object of solver parameters: " + ", ".join(names)
        )
        return pid, prio, None, tags, solver, case
    if not isinstance(raw, dict):
        allowed = "an object of solver parameters: " + ", ".join(names)
        problems.append(problem_line(name, "parameters", raw, allowed))
        return pid, prio, None, tags, solver, case
    if solver != DEFAULT_SOLVER or case is not None:
        return pid, prio, raw, tags, solver, case
    solver_raw: dict[str, Any] = {}
    for key, value in raw.items():
        sname = str(FILE_TO_SOLVER.get(key, key))  # JSON keys are strings
        if sname not in PARAMS:
            problems.append(problem_line(name, f"parameters.{key}", key, one_of(key, FILE_PARAMETER_NAMES)))
            continue
        if key != sname and sname in raw:
            problems.append(
                problem_line(name, f"parameters.{key}", key, f"{sname!r} or its older name {key!r}, not both")
            )
            continue
        solver_raw[sname] = value
    return pid, prio, solver_raw, tags, solver, case


class _Solvers:
    """The solvers the packages of one directory name, loaded once each (``SolverCache``); a
    bad ``solver`` or ``case`` value is a problem of each file that has it, a broken template
    one problem (naming the template's file) however many packages use it."""

    def __init__(self, directory: str, problems: list[str]) -> None:
        self.cache = SolverCache(directory)
        self.problems = problems
        self.reported: set[str] = set()

    def get(self, name: str, solver: Any, case: Any) -> Solver | None:
        """The solver of file ``name`` (None, with a problem line, when it cannot be had)."""
        try:
            return self.cache.get(solver, case)
        except FieldError as exc:
            self.problems.append(exc.line(name))
        except ConfigError as exc:
            if str(exc) not in self.reported:
                self.reported.add(str(exc))
                self.problems.append(str(exc))
        return None

    def quiet(self, solver: str, case: str | None) -> Solver | None:
        """The solver, or None when it cannot be had (a cache hit then checks the file again)."""
        try:
            return self.cache.get(solver, case)
        except ConfigError:
            return None


def _solver_values(
    name: str, solver: Solver, solver_name: str, raw: dict[str, Any], problems: list[str]
) -> RunParams | None:
    """The validated values of another solver's package, or None with its problems."""
    found = solver.parameter_problems(raw)
    for err in found:
        problems.append(problem_line(name, f"parameters.{err.field}", err.value, err.allowed))
    return None if found else RunParams(solver_name, solver, solver.validate(raw, name))


def _solver_params(name: str, raw: dict[str, Any], problems: list[str]) -> SolverParams | None:
    try:  # the common case in one pass; only a bad package pays for the full report
        return SolverParams(raw)
    except ValueError:
        pass
    for err in parameter_problems(raw):
        problems.append(problem_line(name, f"parameters.{err.field}", err.value, err.allowed))
    return None


def _run_id(params: SolverParams | RunParams) -> str:
    """``run_id_of`` of validated parameters (without coercing them again)."""
    return hashlib.sha256(params.canonical_json().encode()).hexdigest()[:16]


def _read_summary(directory: str, n_files: int, problems: list[str]) -> PrioritySummary | None:
    """The directory's priority summary, or None when it is missing or unusable."""
    path = os.path.join(directory, SUMMARY_FILE)
    if not os.path.lexists(path):
        problems.append(
            f"{SUMMARY_FILE}: (file): missing; allowed: a JSON object "
            '{"HIGH": [ids], "MEDIUM": [ids], "LOW": [ids]} (sweep new writes one)'
        )
        return None
    if (why := file_problem(path, SUMMARY_FILE, directory)) is not None:  # never open a FIFO
        problems.append(why)
        return None
    return read_summary(path, n_files, problems)


def _each_name(listing: str) -> Iterator[str]:
    """The names of a NUL-separated listing, in order."""
    start, end = 0, len(listing)
    while start < end:
        stop = listing.find("\0", start)
        stop = end if stop < 0 else stop
        yield listing[start:stop]
        start = stop + 1


def _with_repeated_ids(problems: list[str], packages: PackageColumns, at: array) -> list[str]:
    """``problems`` with the line of each file whose package id an earlier file has, where the
    pass would have said it (``at``: the length of problems then, per row of ``packages``)."""
    out: list[str] = []
    done = 0
    for row, first in packages.repeated():
        out += problems[done : at[row]]
        done = at[row]
        why = f"an id used by one file only (also in {packages.name(first)})"
        out.append(problem_line(packages.name(row), "package_id", packages.package_id(row), why))
    return out + problems[done:] if out else problems


def check_directory(
    directory: str | os.PathLike[str], *, worker_memory: int | None = None, check_memory: bool = True
) -> tuple[PackageTable, list[str]]:
    """Every package of ``directory`` (a ``PackageTable``, in file-name order) and every
    problem found, one line each.

    ``worker_memory``: bytes of one worker; None: ``machine.memory_per_worker()``. The two are
    independent: a package with a problem is left out of the packages.
    """
    packages, problems, _ = _check(os.fspath(directory), worker_memory, check_memory)
    return packages, problems


@paused_gc()
def _check(
    directory: str,
    worker_memory: int | None,
    check_memory: bool,
    seen: tuple[str, np.ndarray] | None = None,
) -> tuple[PackageTable, list[str], int | None]:
    """``check_directory``'s pass, and the largest memory a package needs; None when the
    pass said more than its problems (a deprecated name's warning: said on every pass).
    ``seen``: the package files' listing and stats, as ``Snapshot.of`` just read them (every
    one a regular file), so as not to list and stat a million files twice."""
    problems: list[str] = []
    if not os.path.isdir(directory):
        raise ConfigError(
            f"{directory}: (directory): not found; allowed: a directory with "
            f"{SUMMARY_FILE} and {PACKAGE_GLOB} files (sweep new DIR creates one)"
        )
    odd: set[str] = set()  # entries named like packages that are not plain regular files
    stats: np.ndarray | None = None  # each file's stat, when seen gives them
    if seen is None:
        # every entry named like a package: one that is not a regular file of the directory is
        # a problem (seen from its directory entry and lstat: it is never opened)
        names, odd = package_file_names(directory)
        n_names = len(names)
        listing = "\0".join(names)  # the names in one string (a file name has no NUL): ~1/4 of the list
        del names
    else:
        listing, stats = seen
        n_names = len(stats)
    summary = _read_summary(directory, n_names, problems)
    if check_memory and worker_memory is None:
        worker_memory = memory_per_worker()
    cache = ValidationCache(cache_file(directory))
    solvers = _Solvers(directory, problems)
    old_names: dict[str, list[str]] = {}  # deprecated parameter name -> files that write it
    at = array("q")  # per row of packages: where in problems a line on its id would go
    unreadable: list[str] = []
    prefix = os.path.join(directory, "")
    packages = PackageColumns(prefix)  # columns, not a million objects (sweep.spec.table)
    largest = 0  # bytes the largest run needs
    for row, name in enumerate(_each_name(listing)):
        before = len(problems)
        path = prefix + name
        if name in odd and (why := file_problem(path, name, directory)):
            problems.append(why)
            unreadable.append(name)
            continue
        st: os.stat_result | FileStat | None = None
        if stats is not None:
            st = FileStat(*stats[row].tolist())
        else:
            try:
                st = os.stat(path)
            except OSError:
                pass
        # a regular file whose stat key is what it was when its bytes were hashed: not read (a
        # file writing a deprecated name keeps no stat key: it is read, and said, every pass)
        known = None if st is None or not stat.S_ISREG(st.st_mode) else cache.known(name, stat_key(st))
        text: bytes | None = None
        hit: list[Any] | None
        if known is not None:
            digest, hit = known
        else:
            text = read_bytes(path, name, problems)
            if text is None:
                unreadable.append(name)
                continue
            old_name = _OLD_NAMES.search(text)  # also when the verdict is cached: said on every pass
            if old_name is not None:
                old_names.setdefault(old_name.group(1).decode(), []).append(name)
            digest = hashlib.sha1(text).digest()
            hit = cache.verdict(digest)
            cache.record_file(name, st if old_name is None else None, digest)
        params: SolverParams | RunParams | None = None
        solver, case, solver_obj = DEFAULT_SOLVER, None, None
        if hit is not None and len(hit) > 6:
            # another solver's package: its verdict holds while its template gives the same run
            # id (the id hashes the template's content: an edited case is checked again)
            solver, case = hit[6]
            solver_obj = solvers.quiet(solver, case)
            cached_values = json.loads(hit[2])
            if (
                solver_obj is None
                or set(cached_values) != set(solver_obj.params)
                or _run_id(RunParams(solver, solver_obj, cached_values)) != hit[4]
            ):
                hit, solver, case, solver_obj = None, DEFAULT_SOLVER, None, None
                cache.forget(digest)
        if hit is not None:
            pid, prio, values, tags, run_id, need = hit[:6]
            prio = _PRIORITY.get(prio, prio)  # one string each, not one per package
        else:
            if text is None:
                text = read_bytes(path, name, problems)
                if text is None:
                    unreadable.append(name)
                    continue
            doc = parse_json(text, name, problems)
            if doc is None:
                unreadable.append(name)
                continue
            pid, prio, raw, tags, solver, case = _check_package_doc(name, doc, problems)
            if solver == DEFAULT_SOLVER and case is None:
                params = _solver_params(name, raw, problems) if raw is not None else None
            else:
                solver_obj = solvers.get(name, solver, case)
                if solver_obj is not None and raw is not None:
                    params = _solver_values(name, solver_obj, solver, raw, problems)
            values, run_id, need = None, None, None
            if isinstance(params, RunParams):
                values, run_id, need = params.as_dict(), _run_id(params), 0
            elif params is not None:
                values = raw  # as written (solver names): small to cache; SolverParams fills defaults
                run_id = _run_id(params)
                need = memory_need(params)  # memoised by solver.memory
        if isinstance(values, dict):  # kept as its JSON text: a fifth of the memory of a dict
            values = json.dumps(values, separators=(",", ":"))
        if hit is None and len(problems) == before and values is not None:
            verdict = [pid, prio, values, tags, run_id, need]
            if solver_obj is not None:
                verdict.append([solver, case])
            cache.record_verdict(digest, verdict)
        if pid is not None:
            at.append(len(problems))  # an id another file has too: said here (found after the pass)
            if summary is not None:
                listed, clash = summary.priority_of(pid)
                if clash:
                    problems.append(
                        problem_line(
                            name,
                            "package_id",
                            pid,
                            f"an id matched by patterns of one priority in {SUMMARY_FILE} (it matches "
                            f"{clash}; list the id under its priority)",
                        )
                    )
                elif listed is None:
                    problems.append(
                        problem_line(
                            name,
                            "package_id",
                            pid,
                            f"an id listed under a priority in {SUMMARY_FILE} "
                            "(add it, or a pattern matching it, under HIGH, MEDIUM or LOW)",
                        )
                    )
                elif prio is not None and prio != listed:
                    problems.append(
                        problem_line(
                            name, "priority", prio, f"{listed!r}, the priority {SUMMARY_FILE} gives it"
                        )
                    )
                prio = prio or listed
        largest = max(largest, need or 0)
        if need is not None and check_memory and worker_memory is not None and need > worker_memory:
            problems.append(
                memory_problem(
                    name, json.loads(values or "{}").get("grid", PARAMS["grid"].default), need, worker_memory
                )
            )
        if pid is not None:
            ok = len(problems) == before and values is not None and prio is not None
            extras = None if not tags and solver_obj is None else (tags, solver, case, solver_obj)
            packages.append(pid, prio, name, values, run_id, extras, ok)
    problems[:] = _with_repeated_ids(problems, packages, at)
    del at
    for old, files in old_names.items():
        more = f" (and {len(files) - 1} more file(s))" if len(files) > 1 else ""
        warnings.warn(deprecation_message(old, f"{files[0]}{more}: parameters."), FutureWarning, stacklevel=2)
    cache.save()
    if summary is not None:
        fix = f", or fix {', '.join(unreadable)}" if unreadable else ""
        for prio, pattern in summary.unmatched_patterns():
            problems.append(
                problem_line(
                    SUMMARY_FILE,
                    prio,
                    pattern,
                    f"a pattern matching the id of a {PACKAGE_GLOB} file (remove it, or add packages{fix})",
                )
            )
        for pid, prio in summary.ids.items():
            if not packages.has_id(pid):
                problems.append(
                    problem_line(
                        SUMMARY_FILE,
                        prio,
                        pid,
                        f"ids of existing {PACKAGE_GLOB} files (add the package file or remove the id{fix})",
                    )
                )
    if not n_names and not problems:
        problems.append(
            f"{directory}: (directory): no {PACKAGE_GLOB} files; allowed: a directory "
            "with package files (sweep new DIR creates some)"
        )
    return packages.table(), problems, None if old_names else largest


def load_packages(
    directory: str | os.PathLike[str], *, worker_memory: int | None = None, check_memory: bool = True
) -> PackageTable:
    """The packages of ``directory`` (a ``PackageTable``: a sequence of ``Package``), sorted by
    priority then id; ConfigError listing every problem. A directory whose files did not
    change since a pass that found no problem gives that pass's table (``sweep.spec.snapshot``)."""
    directory = os.fspath(directory)
    if check_memory and worker_memory is None:
        worker_memory = memory_per_worker()
    snapshot = Snapshot.of(directory)  # the files unchanged since a pass: its table, kept
    prefix = os.path.join(directory, "")
    kept = snapshot.load(prefix, worker_memory if check_memory else None) if snapshot else None
    if kept is not None:
        return kept
    seen = (snapshot.listing, snapshot.stats) if snapshot is not None else None
    packages, problems, largest = _check(directory, worker_memory, check_memory, seen)
    if problems:
        raise config_error(problems)
    table = packages.take(np.lexsort((packages.id_array(), packages.priority_codes())))
    if snapshot is not None and largest is not None:
        snapshot.save(table, largest)
    return table


def check_document(
    name: str, doc: Any, base: str | os.PathLike[str] = ".", *, worker_memory: int | None = None
) -> list[str]:
    """The problems of one package document (as ``check_directory`` checks a file's content),
    one line each naming ``name``; empty when it is a valid package. ``base``: where a relative
    ``case`` starts (the package directory); ``worker_memory``: also check that the run fits in
    a worker of that many bytes, as ``check_directory`` does."""
    problems: list[str] = []
    _, _, raw, _, solver, case = _check_package_doc(name, doc, problems)
    if solver == DEFAULT_SOLVER and case is None:
        params = _solver_params(name, raw, problems) if raw is not None else None
        if params is not None and worker_memory is not None:
            need = memory_need(params)
            if need > worker_memory:
                problems.append(memory_problem(name, params.grid, need, worker_memory))
        return problems
    solver_obj = _Solvers(os.fspath(base), problems).get(name, solver, case)
    if solver_obj is not None and raw is not None:
        _solver_values(name, solver_obj, solver, raw, problems)
    return problems
