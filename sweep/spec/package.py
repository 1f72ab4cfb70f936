"""A package: what to run, how urgently, and its free-form tags; and a run's identity.

A sweep directory holds ``priority_summary.json`` (package ids under HIGH, MEDIUM and LOW)
and one ``package_XXXX.json`` per package::

    {"package_id": "re400-dt0.01", "priority": "HIGH",
     "parameters": {"Re": 400, "dt": 0.01, "T_final": 0.5, "grid": [16, 16, 16]},
     "tags": {"study": "demo"}}

A run's identity (``run_id``) is a hash of its canonical solver parameters, not of the file:
two packages with the same physics share one run. A package may name its solver (``"solver":
"openfoam"``, with its ``"case"``: ``sweep.solvers.registry``); without one it runs the built-in
spectral solver, whose run ids are what they always were. Another solver's run id also hashes
the solver's name and its template's content hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from solver.params import DEPRECATED_NAMES, PARAMS, SolverParams

from ..errors import option_error
from ..solvers.registry import DEFAULT_SOLVER
from ..solvers.run_params import RunParams

__all__ = [
    "PRIORITIES",
    "PRIORITY_CHOICES",
    "SUMMARY_FILE",
    "PACKAGE_GLOB",
    "PACKAGE_NAME",
    "package_file_names",
    "PACKAGE_KEYS",
    "DEFAULT_SOLVER",
    "FILE_TO_SOLVER",
    "SOLVER_TO_FILE",
    "FILE_PARAMETER_NAMES",
    "MAX_ID_LENGTH",
    "Package",
    "run_id_of",
    "canonical_json",
    "check_priority",
    "id_problem",
    "package_document",
]

PRIORITIES: tuple[str, ...] = ("HIGH", "MEDIUM", "LOW")
PRIORITY_CHOICES: tuple[str, ...] = (*PRIORITIES, "ALL")  # what --priority accepts
SUMMARY_FILE = "priority_summary.json"
PACKAGE_GLOB = "package_*.json"
PACKAGE_NAME = re.compile(r"package_.*\.json")  # PACKAGE_GLOB as a regular expression (fullmatch)
MAX_ID_LENGTH = 64

# keys of a package file -> what each holds (the "allowed" list of unknown-key errors)
PACKAGE_KEYS: dict[str, str] = {
    "package_id": "the package's id (a plain name)",
    "priority": "one of " + ", ".join(PRIORITIES) + " (optional; must agree with the summary)",
    "parameters": "solver parameters by name",
    "tags": "free-form object kept as provenance (optional)",
    "solver": "the solver's registered name (optional; default spectral; sweep.solvers.registry)",
    "case": "the solver's template: an OpenFOAM case (a bundled name or a directory) or a command "
    "directory; a relative path starts at the package directory",
}

# Package files write the solver's declared names (``grid``, as simulate() and the store do).
# FILE_TO_SOLVER: older names a file may still use (``grid_size``), read with a deprecation
# message; SOLVER_TO_FILE: names written differently in files (none any more).
FILE_TO_SOLVER: dict[str, str] = dict(DEPRECATED_NAMES)
SOLVER_TO_FILE: dict[str, str] = {}
FILE_PARAMETER_NAMES: tuple[str, ...] = tuple(PARAMS)

_ID_RE = re.compile(r"[A-Za-z0-9._-]+")
_NO_TAGS: dict[str, Any] = {}  # the tags of every package without any (never changed: Package is immutable)


def canonical_json(params: SolverParams) -> str:
    """The canonical JSON text of a run's identity parameters (sorted keys, no spaces)."""
    return params.canonical_json()


def run_id_of(params: SolverParams | RunParams | Mapping[str, Any]) -> str:
    """A run's identity: 16 hex digits of the SHA-256 of its canonical parameters.

    Two packages with identical physics share one run; any edit of an identity
    parameter makes a new run. Execution-only parameters (FFT backend, threads) do not count.
    A plain mapping holds spectral parameters; a ``RunParams`` (another solver's run) hashes
    its solver's name and template hash too.
    """
    p = params if isinstance(params, RunParams) else SolverParams.coerce(params)
    return hashlib.sha256(p.canonical_json().encode()).hexdigest()[:16]


class Package:
    """One validated package: what to run, how urgently, and its free-form tags (immutable).

    ``params`` is built on first use when the package came from the validation cache, so
    planning 10,000 packages does not construct 10,000 SolverParams. A package of another
    solver than the spectral one (``solver``) holds that solver (``solver_object``: a loaded
    template travels with its tasks) and its ``params`` are a ``RunParams``.
    """

    __slots__ = (
        "package_id",
        "priority",
        "_params",
        "tags",
        "path",
        "_run_id",
        "_values",
        "solver",
        "case",
        "solver_object",
    )
    package_id: str
    priority: str
    tags: dict[str, Any]
    path: str | None
    _params: SolverParams | RunParams | None
    _run_id: str | None
    _values: Mapping[str, Any] | str | None  # validated values, or their JSON text (compact)
    solver: str  # the registered name ("spectral" unless the file names another)
    case: str | None  # the package file's "case", as written
    solver_object: Any  # the loaded solver of a non-spectral package (None: spectral)

    def __init__(
        self,
        package_id: str,
        priority: str,
        params: SolverParams | RunParams | None = None,
        tags: Mapping[str, Any] | None = None,
        path: str | None = None,
        *,
        run_id: str | None = None,
        values: Mapping[str, Any] | str | None = None,
        solver: str = DEFAULT_SOLVER,
        case: str | None = None,
        solver_object: Any = None,
    ) -> None:
        if params is None and values is None:
            raise TypeError("Package needs params (SolverParams or RunParams) or validated values")
        if isinstance(params, RunParams):
            solver, solver_object = params.solver_name, params.solver
        if solver != DEFAULT_SOLVER and solver_object is None:
            raise TypeError(f"Package of solver {solver!r} needs its solver_object")
        _set = object.__setattr__  # one call per slot: 3x faster than a loop (10,000 per plan)
        _set(self, "package_id", package_id)
        _set(self, "priority", priority)
        _set(self, "_params", params)
        _set(self, "tags", dict(tags) if tags else _NO_TAGS)
        _set(self, "path", path)
        _set(self, "_run_id", run_id)
        _set(self, "_values", values)
        _set(self, "solver", solver)
        _set(self, "case", case)
        _set(self, "solver_object", solver_object)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Package is immutable")

    @property
    def params(self) -> Any:
        """The validated solver parameters: ``SolverParams`` (spectral) or ``RunParams``."""
        params = self._params
        if params is None:  # a package from the validation cache: its values were checked
            params = self.build_params()
            object.__setattr__(self, "_params", params)
        return params

    def build_params(self) -> Any:
        """``params``, built again from the validated values unless already built, and not
        kept: the engine holds a run's parameters only while it runs (100,000 kept
        ``SolverParams`` were ~90 MB of a sweep's driver)."""
        if self._params is not None:
            return self._params
        values = self._values or {}
        if isinstance(values, str):
            values = json.loads(values)
        if self.solver_object is None:
            return SolverParams(values)
        return RunParams(self.solver, self.solver_object, values)

    def checkpoint_key(self) -> str:
        """What a checkpoint must carry to resume this package's run (its solver's key)."""
        from ..solvers.spectral import SPECTRAL

        solver = self.solver_object if self.solver_object is not None else SPECTRAL
        key: str = solver.checkpoint_key(self.params.as_dict())
        return key

    @property
    def run_id(self) -> str:
        """Hash of the canonical solver parameters (see ``run_id_of``)."""
        run_id = self._run_id
        if run_id is None:
            run_id = run_id_of(self.params)
            object.__setattr__(self, "_run_id", run_id)
        return run_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Package) and (self.package_id, self.priority, self.run_id) == (
            other.package_id,
            other.priority,
            other.run_id,
        )

    def __hash__(self) -> int:
        return hash((self.package_id, self.priority, self.run_id))

    def __repr__(self) -> str:
        return f"Package({self.package_id!r}, {self.priority!r}, run_id={self.run_id!r})"


def check_priority(priority: str) -> None:
    """ConfigError unless ``priority`` is one of ``PRIORITY_CHOICES``."""
    if priority not in PRIORITY_CHOICES:
        raise option_error("priority", priority, ", ".join(PRIORITY_CHOICES))


def id_problem(value: Any) -> str | None:
    """Why ``value`` is not a safe package id (None when it is one)."""
    allowed = (
        f"a plain name of at most {MAX_ID_LENGTH} letters, digits, '-', '_', '.' "
        "(no path separators, no '..')"
    )
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        return allowed
    if not _ID_RE.fullmatch(value) or ".." in value or value in (".",):
        return allowed
    return None


def package_document(
    package_id: str,
    priority: str,
    params: Mapping[str, Any],
    tags: Mapping[str, Any] | None = None,
    *,
    solver: str = DEFAULT_SOLVER,
    case: str | None = None,
) -> dict[str, Any]:
    """The JSON document of a package file (spectral names mapped to file names); ``solver``
    and ``case`` are written for another solver than the default."""
    doc: dict[str, Any] = {"package_id": package_id, "priority": priority}
    if solver != DEFAULT_SOLVER:
        doc["solver"] = solver
    if case is not None:
        doc["case"] = case
    renamed = SOLVER_TO_FILE if solver == DEFAULT_SOLVER else {}
    doc["parameters"] = {
        renamed.get(k, k): (list(v) if isinstance(v, tuple) else v) for k, v in params.items()
    }
    if tags:
        doc["tags"] = dict(tags)
    return doc


def package_file_names(directory: str) -> tuple[list[str], set[str]]:
    """The names of ``directory``'s entries named like package files (``PACKAGE_NAME``),
    sorted, and those of them that are not plain regular files, seen from their directory
    entries (nothing is opened or followed). OSError when the directory cannot be listed."""
    names: list[str] = []
    odd: set[str] = set()
    for e in os.scandir(directory):
        if PACKAGE_NAME.fullmatch(e.name):
            names.append(e.name)
            if not e.is_file(follow_symlinks=False):
                odd.add(e.name)
    names.sort()
    return names, odd
