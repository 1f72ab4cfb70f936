"""The solver's parameters, each declared exactly once with its default, unit and doc.

Everything else (validation, run identity, and any caller's help text or generator of
parameter sets) reads these declarations; nothing re-states a default or a range elsewhere.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .errors import ParameterError

__all__ = [
    "Param",
    "PARAMS",
    "DEPRECATED_NAMES",
    "deprecation_message",
    "renamed",
    "SolverParams",
    "parameter_problems",
    "INITIAL_CONDITIONS",
    "FFT_BACKENDS",
    "INTEGRATORS",
    "PRECISIONS",
    "MIN_GRID",
    "MAX_GRID",
    "MAX_STEPS",
    "MAX_SEED",
    "THREADS_ENV",
    "usable_cores",
    "default_threads",
]

# Registry keys are listed here so validation needs no heavy import; the modules that
# implement them (initial.py, fft.py, integrators.py) check they agree with these.
INITIAL_CONDITIONS = ("taylor_green", "taylor_green_2d", "abc", "random")
FFT_BACKENDS = ("auto", "pyfftw", "scipy", "numpy")
INTEGRATORS = ("rk4",)
PRECISIONS = ("float64", "float32")
MIN_GRID = 4  # below 4 points the 2/3-rule leaves no resolved mode besides k=0,±1


# Every numeric parameter is bounded (declared below, once): a value that no run could use
# is refused here, before a huge integer can overflow a float or an array, and before a run
# that could never finish is planned.
MAX_GRID = 1 << 14  # points per axis: a 16384^3 run needs petabytes (the memory check refuses far less)
MAX_STEPS = 10**12  # time steps of a run (T_final / dt)
MAX_SEED = 2**63 - 1  # random_seed: a signed 64-bit integer (stored in int64 columns)


def _is_number(v: Any) -> bool:
    """An int or a finite float (never a bool). Huge ints are numbers too: the bounds compare
    them exactly, never converting them to float (which would overflow)."""
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v))


def _positive_float(hi: float) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if not _is_number(v) or not 0 < v <= hi:
            return f"a finite number > 0 and <= {hi:g}"
        return None

    return check


def _float_between(lo: float, hi: float) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if not _is_number(v) or not lo <= v <= hi:
            return f"a finite number from {lo:g} to {hi:g}"
        return None

    return check


def _int_between(lo: int, hi: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            return f"an integer >= {lo} and <= {hi}"
        return None

    return check


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in choices else "one of " + ", ".join(repr(c) for c in choices)

    return check


def _grid(v: Any) -> str | None:
    allowed = f"three even integers >= {MIN_GRID} and <= {MAX_GRID}, e.g. [32, 32, 32]"
    if not isinstance(v, (list, tuple)) or len(v) != 3:
        return allowed
    for n in v:
        if isinstance(n, bool) or not isinstance(n, int) or not MIN_GRID <= n <= MAX_GRID or n % 2:
            return allowed
    return None


def _optional(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def optional(v: Any) -> str | None:
        return None if v is None else check(v)

    return optional


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _as_float(v: Any) -> Any:
    return float(v) if _is_number(v) else v


def _as_grid(v: Any) -> Any:
    return tuple(int(n) for n in v) if isinstance(v, (list, tuple)) else v


def _same(v: Any) -> Any:
    return v


@dataclass(frozen=True)
class Param:
    """One declared solver parameter.

    ``identity`` says whether the value is part of a run's identity (``run_id``): physics
    and output choices are; execution choices that do not change the physics (FFT backend,
    thread count) are recorded as provenance instead.
    """

    name: str
    default: Any
    unit: str
    doc: str
    check: Callable[[Any], str | None]
    coerce: Callable[[Any], Any] = _same
    identity: bool = True
    deprecated_names: tuple[str, ...] = ()  # older names still accepted, with a FutureWarning


_DECLARED = [
    Param(
        "Re",
        100.0,
        "1",
        "Reynolds number; the kinematic viscosity is nu = 1/Re",
        _positive_float(1e30),
        _as_float,
    ),
    Param(
        "dt",
        0.01,
        "time units",
        "time step; T_final must be a whole number of steps",
        _positive_float(1e6),
        _as_float,
    ),
    Param(
        "T_final", 1.0, "time units", "end time of the run (start is t = 0)", _positive_float(1e9), _as_float
    ),
    Param(
        "grid",
        (32, 32, 32),
        "points",
        "grid points (nx, ny, nz) on the periodic box [0, 2pi)^3",
        _grid,
        _as_grid,
        deprecated_names=("grid_size",),  # package files said grid_size until ns-sweep 0.3
    ),
    Param(
        "initial_condition",
        "taylor_green",
        "-",
        "initial velocity field: " + ", ".join(INITIAL_CONDITIONS),
        _one_of(INITIAL_CONDITIONS),
    ),
    Param(
        "abc_A",
        1.0,
        "velocity",
        "ABC flow coefficient A (initial_condition='abc')",
        _float_between(-1e6, 1e6),
        _as_float,
    ),
    Param(
        "abc_B",
        1.0,
        "velocity",
        "ABC flow coefficient B (initial_condition='abc')",
        _float_between(-1e6, 1e6),
        _as_float,
    ),
    Param(
        "abc_C",
        1.0,
        "velocity",
        "ABC flow coefficient C (initial_condition='abc')",
        _float_between(-1e6, 1e6),
        _as_float,
    ),
    Param(
        "abc_k",
        1,
        "1/length",
        "ABC flow wavenumber (initial_condition='abc')",
        _int_between(1, MAX_GRID // 2),
    ),
    Param(
        "random_seed",
        0,
        "-",
        "seed of the random initial field (initial_condition='random')",
        _int_between(0, MAX_SEED),
    ),
    Param(
        "random_k_peak",
        4.0,
        "1/length",
        "peak wavenumber of the random field's spectrum E(k) ~ k^4 exp(-2 (k/k_peak)^2)",
        _positive_float(1e6),
        _as_float,
    ),
    Param(
        "random_energy",
        0.5,
        "velocity^2",
        "mean kinetic energy of the random initial field",
        _positive_float(1e12),
        _as_float,
    ),
    Param(
        "output_interval",
        None,
        "time units",
        "time between diagnostics; a whole number of steps; default T_final/50 rounded to whole steps",
        _optional(_positive_float(1e9)),
        lambda v: None if v is None else _as_float(v),
    ),
    Param(
        "precision", "float64", "-", "floating-point precision: " + ", ".join(PRECISIONS), _one_of(PRECISIONS)
    ),
    Param("integrator", "rk4", "-", "time integrator: " + ", ".join(INTEGRATORS), _one_of(INTEGRATORS)),
    Param(
        "cfl_limit",
        1.0,
        "1",
        "the run stops as diverged when the CFL number dt (max|u|/dx + max|v|/dy + max|w|/dz) "
        "exceeds this (1e300 disables the check)",
        _positive_float(1e300),
        _as_float,
    ),
    Param("keep_fields", False, "-", "store the final velocity field on (x, y, z)", _bool),
    Param(
        "fft_backend",
        "auto",
        "-",
        "FFT library: " + ", ".join(FFT_BACKENDS) + " ('auto' picks the fastest installed)",
        _one_of(FFT_BACKENDS),
        identity=False,
    ),
    Param(
        "fft_threads",
        None,
        "threads",
        "threads of one run (FFTs and array kernels; results do not depend on it); "
        "default: $NS_SOLVER_THREADS, else the usable cores of this machine",
        _optional(_int_between(1, 4096)),
        identity=False,
    ),
]

PARAMS: Mapping[str, Param] = MappingProxyType({p.name: p for p in _DECLARED})
# an older name -> the parameter's name (accepted for one release, with a FutureWarning)
DEPRECATED_NAMES: Mapping[str, str] = MappingProxyType(
    {old: p.name for p in _DECLARED for old in p.deprecated_names}
)


def deprecation_message(old: str, where: str = "") -> str:
    """The one line that says a parameter name is deprecated and what to write instead."""
    return (
        f'{where}{old} is deprecated: write "{DEPRECATED_NAMES[old]}" instead (same value); '
        f"{old} is accepted until the next release"
    )


def renamed(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """``raw`` with deprecated names replaced (a FutureWarning says so); unchanged when it has
    none. A name given under both its names is left for the check to refuse."""
    if not any(k in DEPRECATED_NAMES for k in raw):
        return raw
    out = dict(raw)
    for old, new in DEPRECATED_NAMES.items():
        if old in out and new not in out:
            warnings.warn(deprecation_message(old), FutureWarning, stacklevel=3)
            out[new] = out.pop(old)
    return out


def _cross_checks(v: Mapping[str, Any]) -> list[ParameterError]:
    """Checks that involve more than one parameter (run only when each one is valid)."""
    out: list[ParameterError] = []
    dt, T = v["dt"], v["T_final"]
    if dt > T:
        out.append(ParameterError("dt", dt, f"a time step <= T_final ({T})"))
        return out
    if T / dt > MAX_STEPS:
        out.append(
            ParameterError(
                "dt", dt, f"at most {MAX_STEPS:.0e} steps to T_final={T} (dt >= {T / MAX_STEPS:g})"
            )
        )
        return out
    n = round(T / dt)
    if abs(n * dt - T) > 1e-9 * T:
        out.append(ParameterError("T_final", T, f"a whole number of steps of dt={dt} (e.g. {n * dt:.12g})"))
    oi = v["output_interval"]
    if oi is not None:
        m = round(oi / dt)
        if m < 1 or abs(m * dt - oi) > 1e-9 * oi or oi > T * (1 + 1e-12):
            out.append(
                ParameterError(
                    "output_interval", oi, f"a whole number of steps of dt={dt}, at most T_final={T}"
                )
            )
    return out


def _default_values() -> dict[str, Any]:
    """The declared defaults, checked and coerced once (a bad default is a programming error)."""
    values = {}
    for name, p in PARAMS.items():
        msg = p.check(p.default)
        if msg is not None:  # pragma: no cover - guards the declarations above
            raise AssertionError(f"default of {name} is invalid: {msg}")
        values[name] = p.coerce(p.default)
    return values


_DEFAULTS = _default_values()
_ORDER = {name: i for i, name in enumerate(PARAMS)}


# Verdicts of single values, memoised: the 10,000 parameter sets of a parameter study hold
# few distinct values per parameter, so validating one set becomes a few dictionary lookups.
_MEMO_LIMIT = 1 << 16
_VERDICTS: dict[tuple[Any, ...], tuple[str | None, Any]] = {}


def _memo_key(name: str, v: Any) -> tuple[Any, ...] | None:
    """A key that tells apart every value a check could treat differently; None: don't memoise.

    Types are part of the key (1, 1.0 and True are equal in Python), and so are the element
    types of a list; zero floats are not memoised (-0.0 == 0.0, but they coerce differently).
    """
    cls = v.__class__
    if cls is list or cls is tuple:
        if not all(x.__class__ is int for x in v):
            return None
        return (name, cls, *v)
    if (cls is float and v == 0.0) or not (
        cls is int or cls is float or cls is str or cls is bool or v is None
    ):
        return None
    return (name, cls, v)


def _verdict(name: str, v: Any) -> tuple[str | None, Any]:
    """(problem or None, coerced value) of one value of parameter ``name``."""
    key = _memo_key(name, v)
    if key is not None:
        hit = _VERDICTS.get(key)
        if hit is not None:
            return hit
    p = PARAMS[name]
    msg = p.check(v)
    out = (msg, v if msg is not None else p.coerce(v))
    if key is not None and len(_VERDICTS) < _MEMO_LIMIT:
        _VERDICTS[key] = out
    return out


def _validated(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[ParameterError]]:
    """(complete coerced values, problems) of a raw mapping; only the given keys are checked.

    Defaults were checked once at import and single values are memoised: a caller may
    validate 10,000 parameter sets at once.
    """
    problems: list[ParameterError] = []
    values = dict(_DEFAULTS)
    for key, v in raw.items():
        if key not in PARAMS:
            problems.append(ParameterError(key, v, "a known parameter: " + ", ".join(PARAMS)))
            continue
        msg, coerced = _verdict(key, v)
        if msg is not None:
            problems.append(ParameterError(key, v, msg))
        else:
            values[key] = coerced
    if problems:  # report in a stable order: unknown keys, then declaration order
        problems.sort(key=lambda e: _ORDER.get(e.field, -1))
    else:
        problems.extend(_cross_checks(values))
    return values, problems


def parameter_problems(raw: Mapping[str, Any]) -> list[ParameterError]:
    """Every problem with a raw parameter mapping (unknown keys, types, ranges), in order."""
    return _validated(raw)[1]


_IDENTITY = tuple(sorted(name for name, p in PARAMS.items() if p.identity))
_FRAGMENTS: dict[tuple[Any, ...], str] = {}


_COMPACT = json.JSONEncoder(
    separators=(",", ":")
)  # one encoder: json.dumps(..., separators=) builds one per call


def _fragment(name: str, v: Any) -> str:
    """``"name":value`` as compact JSON of a coerced value (memoised by ``canonical_json``)."""
    # a finite float is what json writes for it: float.__repr__ (the common, unmemoisable
    # case: a varied Re takes a new value in every parameter set)
    text = float.__repr__(v) if v.__class__ is float and math.isfinite(v) else _COMPACT.encode(v)
    return f'"{name}":{text}'


class SolverParams:
    """A validated, immutable, complete set of solver parameters (defaults filled in).

    Read values as attributes (``p.Re``) or items (``p["Re"]``).
    """

    __slots__ = ("_values",)

    def __init__(self, raw: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        values, problems = _validated(renamed({**(raw or {}), **kwargs}))
        if problems:
            raise problems[0]
        object.__setattr__(self, "_values", MappingProxyType(values))

    @classmethod
    def coerce(cls, params: SolverParams | Mapping[str, Any]) -> SolverParams:
        """Return ``params`` as SolverParams, validating a plain mapping."""
        return params if isinstance(params, SolverParams) else cls(params)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("SolverParams is immutable; use .replace(...)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SolverParams) and dict(self._values) == dict(other._values)

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self._values.items())))

    def __repr__(self) -> str:
        changed = {k: v for k, v in self._values.items() if v != PARAMS[k].default}
        return f"SolverParams({changed})"

    def replace(self, **changes: Any) -> SolverParams:
        """A copy with some values changed (validated again)."""
        return SolverParams({**self._values, **changes})

    def as_dict(self) -> dict[str, Any]:
        """All values, JSON-friendly (the grid as a list)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self._values.items()}

    def canonical(self) -> dict[str, Any]:
        """The values that define a run's identity, JSON-friendly, defaults filled in."""
        return {k: v for k, v in self.as_dict().items() if PARAMS[k].identity}

    def canonical_json(self) -> str:
        """``canonical()`` as JSON text: sorted keys, no spaces (what ``run_id`` hashes).

        Equal to ``json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))``,
        built from memoised ``"key":value`` fragments (about 6x faster: planning hashes
        10,000 of these for a parameter study).
        """
        values, memo, parts = self._values, _FRAGMENTS, []
        for k in _IDENTITY:
            v = values[k]
            # coerced values are hashable; the type is in the key (1 == 1.0 == True), and
            # zero floats are never stored (-0.0 == 0.0 but prints differently)
            key = (k, v.__class__, v)
            frag = memo.get(key)
            if frag is None:
                frag = _fragment(k, v)
                if len(memo) < _MEMO_LIMIT and not (v.__class__ is float and v == 0.0):
                    memo[key] = frag
            parts.append(frag)
        return "{" + ",".join(parts) + "}"

    @property
    def nu(self) -> float:
        """Kinematic viscosity 1/Re."""
        return 1.0 / self._values["Re"]

    @property
    def n_steps(self) -> int:
        """Number of time steps to reach T_final."""
        return int(round(self._values["T_final"] / self._values["dt"]))

    @property
    def steps_per_output(self) -> int:
        """Steps between two diagnostic outputs."""
        oi = self._values["output_interval"]
        if oi is None:
            return max(1, self.n_steps // 50)
        return int(round(oi / self._values["dt"]))


THREADS_ENV = "NS_SOLVER_THREADS"  # threads of one run when fft_threads is not given


def usable_cores() -> int:
    """Cores this process may use (its CPU affinity mask, not the machine's total)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Threads of one run when ``fft_threads`` is not given: ``$NS_SOLVER_THREADS`` if set (a
    process that shares the machine with others, e.g. one of several worker processes, is told
    its share), else every usable core."""
    given = os.environ.get(THREADS_ENV, "").strip()
    if given:
        try:
            return max(1, int(given))
        except ValueError:
            pass  # a malformed value: fall back to the cores, as if unset
    return usable_cores()
