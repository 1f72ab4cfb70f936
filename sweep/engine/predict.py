"""Runtime prediction: how long a pending run will take, from the runs that finished.

The unit is seconds per grid-point-step, by solver, grid and precision: a run's time is its rate
times its grid points times its steps. A rate measured on the run's own (solver, grid,
precision) is used as it is; a grid not measured yet takes the first-guess model scaled by what
the measured grids of the same solver and precision showed (the model's shape, per-step
overhead plus N log N for the FFTs, carries between grids; the machine's speed comes from the
measurements); before any run finished, the first guess alone. Three uses: which worker a run
should start on (``sweep.engine.walltime.declines``), how many workers the sweep wants
(``sweep.engine.scaling``), and the ETA of ``sweep status``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RunSize", "run_size", "RuntimePredictor", "FIRST_GUESS", "observed_compute", "recent_records"]

# solver -> (seconds of overhead per step, seconds per N log2 N per step) of one thread, float64
# (the spectral solver on this project's 2-core reference machine: an 8^3 step takes 1.8 ms,
# a 64^3 one ~45 ms on one thread; scripts/bench_solver.py). float32 runs FFTs ~1.5x faster.
FIRST_GUESS: dict[str, tuple[float, float]] = {"spectral": (1.7e-3, 1.0e-8)}
_GENERIC_GUESS = (1.0e-3, 1.0e-7)  # a solver without a guess of its own: slower rather than faster
_PRECISION_FACTOR = {"float64": 1.0, "float32": 0.65}
MEMORY = 50  # finished runs per run size a predictor keeps: the recent past (a machine's load changes)
# the parameters a run's size depends on (run_size), besides its solver
SIZE_PARAMS = ("grid", "grid_size", "n_cells", "precision")


@dataclass(frozen=True)
class RunSize:
    """What a run's cost scales with."""

    solver: str
    grid: tuple[int, ...]
    precision: str
    points: int  # grid points (1 when the solver has no grid)
    steps: int  # time steps (1 when unknown)

    @property
    def key(self) -> tuple[str, tuple[int, ...], str]:
        """(solver, grid, precision): rates are measured per key."""
        return (self.solver, self.grid, self.precision)

    @property
    def label(self) -> str:
        """The key as text (``spectral|8x8x8|float64``): how workers look up a published rate."""
        return f"{self.solver}|{'x'.join(map(str, self.grid))}|{self.precision}"

    @property
    def point_steps(self) -> float:
        """Grid points times steps."""
        return float(self.points) * float(self.steps)


def _canonical(params: Any) -> Mapping[str, Any]:
    if hasattr(params, "canonical"):
        return dict(params.canonical())
    return dict(params or {})


def run_size(params: Any) -> RunSize:
    """The size of a run from its parameters (a ``SolverParams`` or its canonical dict, as
    records keep it)."""
    if type(params).__name__ == "SolverParams":  # its attributes: no canonical dict (15 us) per run
        grid = tuple(int(g) for g in params.grid)
        points = max(1, math.prod(grid))
        return RunSize("spectral", grid, str(params.precision), points, max(1, params.n_steps))
    p = _canonical(params)
    solver = str(getattr(params, "solver_name", None) or p.get("solver") or "spectral")
    grid_value = p.get("grid") or p.get("grid_size") or ()
    try:
        grid = tuple(int(g) for g in grid_value)
    except (TypeError, ValueError):
        grid = ()
    if not grid and isinstance(p.get("n_cells"), (int, float)):
        grid = (int(p["n_cells"]),)
    points = math.prod(grid) if grid else 1
    steps = getattr(params, "n_steps", None)
    if steps is None:
        try:
            steps = int(round(float(p["T_final"]) / float(p["dt"])))
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            steps = 1
    return RunSize(solver, grid, str(p.get("precision") or "float64"), max(1, points), max(1, int(steps)))


def _model_step(size: RunSize) -> float:
    """First-guess seconds of one step."""
    a, b = FIRST_GUESS.get(size.solver, _GENERIC_GUESS)
    n = float(size.points)
    return a + b * n * math.log2(max(n, 2.0)) * _PRECISION_FACTOR.get(size.precision, 1.0)


def _model_rate(key: tuple[str, tuple[int, ...], str]) -> float:
    """First-guess seconds per grid-point-step of a (solver, grid, precision)."""
    solver, grid, precision = key
    points = math.prod(grid) if grid else 1
    return _model_step(RunSize(solver, grid, precision, points, 1)) / points


def params_of_record(record: Any) -> dict[str, Any]:
    """A record's parameters with its solver's name (records keep it beside them)."""
    params = dict(getattr(record, "params", None) or {})
    solver = getattr(record, "solver", None)
    if solver and "solver" not in params:
        params["solver"] = solver
    return params


def observed_compute(record: Any) -> tuple[float, int] | None:
    """(seconds computing, steps computed) of a done run's record: the sum over its attempts
    when the engine recorded them (``provenance["segments"]``), else its wall time over the
    steps it ran after its resume; None when unknown."""
    prov = getattr(record, "provenance", None) or {}
    segments = prov.get("segments") if isinstance(prov, Mapping) else None
    if segments:
        try:
            seconds = sum(float(s.get("seconds") or 0.0) for s in segments)
            steps = sum(int(s.get("to_step", 0)) - int(s.get("from_step", 0)) for s in segments)
        except (TypeError, ValueError, AttributeError):
            seconds, steps = 0.0, 0
        if seconds > 0 and steps > 0:
            return seconds, steps
    wall = getattr(record, "wall_time", None)
    if wall is None or not math.isfinite(float(wall)) or float(wall) <= 0:
        return None
    size = run_size(params_of_record(record))
    start = getattr(record, "resumed_from_step", None) or 0
    return float(wall), max(1, size.steps - int(start))


class RuntimePredictor:
    """Rates measured from finished runs; predictions for any run (``predict``)."""

    def __init__(self) -> None:
        # (seconds, grid-point-steps) of the finished runs, per (solver, grid, precision)
        self._seen: dict[tuple[str, tuple[int, ...], str], list[tuple[float, float]]] = {}
        # the latest rate a run under way reported, per key: used until one of that key finishes
        self._provisional: dict[tuple[str, tuple[int, ...], str], float] = {}
        # rate_of's answers until the next observation (it is asked for every package)
        self._rates: dict[RunSize, tuple[float, str]] = {}

    @classmethod
    def from_records(cls, records: Iterable[Any]) -> RuntimePredictor:
        """A predictor that learned from the done runs among ``records`` (``RunRecord``s)."""
        out = cls()
        for r in records:
            if getattr(r, "status", None) != "done":
                continue
            seen = observed_compute(r)
            if seen is not None:
                out.observe(params_of_record(r), seen[0], seen[1])
        return out

    @classmethod
    def from_store(cls, st: Any) -> RuntimePredictor:
        """A predictor that learned from a store's runs: the last ``MEMORY`` done runs of each
        run size (it would forget older ones), read alone (``Store.last_done_records``), not
        every record: a store of 100,000 runs answers in milliseconds, not seconds."""
        return cls.from_records(recent_records(st))

    def observe(self, params: Any, seconds: float, steps: int | None = None) -> None:
        """Learn from a run that computed ``steps`` steps (default: all) in ``seconds``
        (``params``: its parameters, or its ``RunSize``)."""
        size = params if isinstance(params, RunSize) else run_size(params)
        n = size.steps if steps is None else max(1, int(steps))
        if seconds > 0 and math.isfinite(seconds):
            seen = self._seen.setdefault(size.key, [])
            seen.append((float(seconds), float(size.points) * n))
            del seen[:-MEMORY]
            self._rates.clear()

    def observe_progress(self, size: RunSize, seconds: float, steps: int) -> None:
        """Learn from a run under way: ``steps`` steps in ``seconds`` since its attempt began."""
        if seconds > 0 and steps > 0 and math.isfinite(seconds):
            self._provisional[size.key] = seconds / (size.points * steps)
            self._rates.clear()

    def rate(self, params: Any) -> tuple[float, str]:
        """(seconds per grid-point-step, how it was found) for a run."""
        return self.rate_of(run_size(params))

    def rate_of(self, size: RunSize) -> tuple[float, str]:
        """``rate`` of a run's size."""
        known = self._rates.get(size)
        if known is None:
            known = self._rates[size] = self._rate_of(size)
        return known

    def _rate_of(self, size: RunSize) -> tuple[float, str]:
        own = self._measured(size.key)
        if own is not None:
            return own, "measured"
        if size.key in self._provisional:
            return self._provisional[size.key], "measured on runs under way"
        model = _model_rate(size.key)
        measured = {k: r for k in self._seen if (r := self._measured(k)) is not None} | {
            k: v for k, v in self._provisional.items() if k not in self._seen
        }
        ratios = [
            rate / _model_rate(key)
            for key, rate in measured.items()
            if key[0] == size.solver and key[2] == size.precision
        ]
        if ratios:
            return model * statistics.median(ratios), "scaled from other grids"
        return model, "first guess"

    def predict(self, params: Any, steps_left: int | None = None) -> float:
        """Seconds the run needs for ``steps_left`` steps (default: all of them)."""
        return self.seconds(run_size(params), steps_left)

    def seconds(self, size: RunSize, steps_left: int | None = None) -> float:
        """``predict`` for a run's size."""
        steps = size.steps if steps_left is None else max(0, int(steps_left))
        return self.rate_of(size)[0] * size.points * steps

    def published(self) -> dict[str, float]:
        """The measured rates by key label (what the driver publishes for its workers)."""
        out = {}
        for key in set(self._seen) | set(self._provisional):
            solver, grid, precision = key
            size = RunSize(solver, grid, precision, math.prod(grid) if grid else 1, 1)
            out[size.label] = self.rate_of(size)[0]
        return out

    def _measured(self, key: tuple[str, tuple[int, ...], str]) -> float | None:
        """Seconds per grid-point-step of the finished runs of ``key`` (all their seconds over
        all their point-steps), None without any."""
        seen = self._seen.get(key)
        if not seen:
            return None
        return sum(s for s, _ in seen) / sum(n for _, n in seen)

    @property
    def measured(self) -> int:
        """Number of finished runs learned from."""
        return sum(len(v) for v in self._seen.values())


def recent_records(st: Any) -> list[Any]:
    """The records a ``RuntimePredictor`` learns from, in store order: the last ``MEMORY`` done
    runs of each run size, so the provenance of only these is read."""
    return st.last_done_records(MEMORY, SIZE_PARAMS)
