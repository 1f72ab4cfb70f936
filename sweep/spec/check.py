"""Check a package directory: every file, every field, ids, the priority summary and memory.

``check_directory`` reports every problem at once, one line each (``<file>: <field>: bad
value <v>; allowed: <...>``); ``load_packages`` raises them as one ``ConfigError``.
Parameter checks are the solver's own (``solver.params``); nothing here restates a default
or a range.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from solver.params import PARAMS, SolverParams, parameter_problems

from ..errors import ConfigError, config_error
from ..gc_pause import paused_gc
from ..machine import memory_per_worker
from ..units import format_bytes
from .cache import cache_file, load_cache, save_cache
from .files import json_type, parse_json, problem_line, read_bytes, read_json
from .package import (
    FILE_PARAMETER_NAMES,
    FILE_TO_SOLVER,
    PACKAGE_GLOB,
    PACKAGE_KEYS,
    PRIORITIES,
    SOLVER_TO_FILE,
    SUMMARY_FILE,
    Package,
    id_problem,
)

__all__ = ["check_directory", "check_document", "load_packages", "memory_need"]

_PACKAGE_RE = re.compile(r"package_.*\.json")


def memory_need(params: SolverParams) -> int:
    """Bytes one run of ``params`` needs on a worker (the solver's own estimate)."""
    from solver import memory_estimate

    return int(memory_estimate(params))


def _check_package_doc(name: str, doc: Any, problems: list[str]) -> tuple[str | None, Any, dict | None, dict]:
    """Field checks of one parsed package file; returns (id, priority, solver raw, tags)."""
    if not isinstance(doc, dict):
        problems.append(
            problem_line(
                name, "(top level)", json_type(doc), "a JSON object with keys " + ", ".join(PACKAGE_KEYS)
            )
        )
        return None, None, None, {}
    for key in doc:
        if key not in PACKAGE_KEYS:
            problems.append(problem_line(name, key, key, "one of the keys " + ", ".join(PACKAGE_KEYS)))
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
    raw = doc.get("parameters")
    if "parameters" not in doc:
        problems.append(
            f"{name}: parameters: missing; allowed: an object of solver parameters: "
            + ", ".join(FILE_PARAMETER_NAMES)
        )
        return pid, prio, None, tags
    if not isinstance(raw, dict):
        problems.append(
            problem_line(
                name, "parameters", raw, "an object of solver parameters: " + ", ".join(FILE_PARAMETER_NAMES)
            )
        )
        return pid, prio, None, tags
    solver_raw: dict[str, Any] = {}
    for key, value in raw.items():
        sname = str(FILE_TO_SOLVER.get(key, key))  # JSON keys are strings
        if sname not in PARAMS or key in SOLVER_TO_FILE:  # e.g. "grid": the file says grid_size
            hint = f" (write {SOLVER_TO_FILE[key]!r})" if key in SOLVER_TO_FILE else ""
            problems.append(
                problem_line(
                    name, f"parameters.{key}", key, "one of " + ", ".join(FILE_PARAMETER_NAMES) + hint
                )
            )
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
        problems.append(problem_line(name, f"parameters.{fname}", err.value, err.allowed))
    return None


def _read_summary(directory: str, problems: list[str]) -> dict[str, str] | None:
    """package id -> priority from the summary, or None when it is missing or unusable."""
    path = os.path.join(directory, SUMMARY_FILE)
    if not os.path.exists(path):
        problems.append(
            f"{SUMMARY_FILE}: (file): missing; allowed: a JSON object "
            '{"HIGH": [ids], "MEDIUM": [ids], "LOW": [ids]} (sweep new writes one)'
        )
        return None
    doc = read_json(path, SUMMARY_FILE, problems)
    if doc is None:
        return None
    if not isinstance(doc, dict):
        problems.append(
            problem_line(
                SUMMARY_FILE, "(top level)", json_type(doc), "an object with keys " + ", ".join(PRIORITIES)
            )
        )
        return None
    out: dict[str, str] = {}
    for key, ids in doc.items():
        if key not in PRIORITIES:
            problems.append(problem_line(SUMMARY_FILE, key, key, "one of the keys " + ", ".join(PRIORITIES)))
            continue
        if not isinstance(ids, list):
            problems.append(problem_line(SUMMARY_FILE, key, ids, "a list of package ids"))
            continue
        for pid in ids:
            if (why := id_problem(pid)) is not None:
                problems.append(problem_line(SUMMARY_FILE, key, pid, why))
            elif pid in out:
                where = "twice in " + key if out[pid] == key else f"in both {out[pid]} and {key}"
                problems.append(
                    problem_line(SUMMARY_FILE, key, pid, f"each id under one priority only (it is {where})")
                )
            else:
                out[pid] = key
    return out


@paused_gc()
def check_directory(
    directory: str | os.PathLike[str], *, worker_memory: int | None = None, check_memory: bool = True
) -> tuple[list[Package], list[str]]:
    """Every package of ``directory`` and every problem found, one line each.

    ``worker_memory``: bytes of one worker; None: ``machine.memory_per_worker()``. The lists are
    independent: a package with a problem is left out of the packages.
    """
    directory = os.fspath(directory)
    problems: list[str] = []
    if not os.path.isdir(directory):
        raise ConfigError(
            f"{directory}: (directory): not found; allowed: a directory with "
            f"{SUMMARY_FILE} and {PACKAGE_GLOB} files (sweep new DIR creates one)"
        )
    summary = _read_summary(directory, problems)
    entries = {e.name: e for e in os.scandir(directory) if e.is_file() and _PACKAGE_RE.fullmatch(e.name)}
    names = sorted(entries)
    if check_memory and worker_memory is None:
        worker_memory = memory_per_worker()
    cache_path = cache_file(directory)
    cache = load_cache(cache_path)
    fresh: dict[str, list[Any]] = {}
    seen: dict[str, str] = {}
    unreadable: list[str] = []
    packages: list[Package] = []
    for name in names:
        before = len(problems)
        path = entries[name].path
        text = read_bytes(path, name, problems)
        if text is None:
            unreadable.append(name)
            continue
        digest = hashlib.sha1(text).hexdigest()
        hit = cache.get(digest)
        params: SolverParams | None = None
        if hit is not None:
            pid, prio, values, tags, run_id, need = hit
        else:
            doc = parse_json(text, name, problems)
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
                problems.append(
                    problem_line(
                        name, "package_id", pid, f"an id used by one file only (also in {seen[pid]})"
                    )
                )
            else:
                seen[pid] = name
            if summary is not None:
                listed = summary.get(pid)
                if listed is None:
                    problems.append(
                        problem_line(
                            name,
                            "package_id",
                            pid,
                            f"an id listed under a priority in {SUMMARY_FILE} "
                            "(add it under HIGH, MEDIUM or LOW)",
                        )
                    )
                elif prio is not None and prio != listed:
                    problems.append(
                        problem_line(
                            name, "priority", prio, f"{listed!r}, the priority {SUMMARY_FILE} gives it"
                        )
                    )
                prio = prio or listed
        if need is not None and check_memory and worker_memory is not None and need > worker_memory:
            problems.append(
                problem_line(
                    name,
                    "parameters.grid_size",
                    list(values.get("grid", PARAMS["grid"].default)),
                    f"a grid whose run fits in one worker's memory (it needs "
                    f"{format_bytes(need)}, a worker has {format_bytes(worker_memory)}); "
                    "use a smaller grid or more memory per worker (--worker-memory)",
                )
            )
        if len(problems) == before and pid is not None and values is not None and prio is not None:
            packages.append(Package(pid, prio, params, tags, path, run_id=run_id, values=values))
    if fresh.keys() != cache.keys():  # an entry is a pure function of its key
        save_cache(cache_path, fresh)
    if summary is not None:
        fix = f", or fix {', '.join(unreadable)}" if unreadable else ""
        for pid, prio in summary.items():
            if pid not in seen:
                problems.append(
                    problem_line(
                        SUMMARY_FILE,
                        prio,
                        pid,
                        f"ids of existing {PACKAGE_GLOB} files (add the package file or remove the id{fix})",
                    )
                )
    if not names and not problems:
        problems.append(
            f"{directory}: (directory): no {PACKAGE_GLOB} files; allowed: a directory "
            "with package files (sweep new DIR creates some)"
        )
    return packages, problems


def load_packages(
    directory: str | os.PathLike[str], *, worker_memory: int | None = None, check_memory: bool = True
) -> list[Package]:
    """The packages of ``directory``, sorted by priority then id; ConfigError listing every problem."""
    packages, problems = check_directory(directory, worker_memory=worker_memory, check_memory=check_memory)
    if problems:
        raise config_error(problems)
    order = {p: i for i, p in enumerate(PRIORITIES)}
    return sorted(packages, key=lambda p: (order[p.priority], p.package_id))


def check_document(name: str, doc: Any) -> list[str]:
    """The problems of one package document (as ``check_directory`` checks a file's content),
    one line each naming ``name``; empty when it is a valid package."""
    problems: list[str] = []
    _, _, raw, _ = _check_package_doc(name, doc, problems)
    if raw is not None:
        _solver_params(name, raw, problems)
    return problems
