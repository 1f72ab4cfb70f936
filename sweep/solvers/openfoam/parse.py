"""Pure parsers of OpenFOAM's text outputs: solver logs, probes, raw line samples, fields.

No file access here: each function takes text (or lines) and returns numbers, so each can be
tested on a few lines and reused on any solver's output.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "LogParser",
    "LogSeries",
    "parse_log",
    "parse_probes",
    "parse_raw_set",
    "parse_internal_field",
    "fatal_message",
    "last_meaningful_lines",
    "parse_dimensions",
    "truncate_rows",
]

_TIME = re.compile(r"^Time = (\S+)\s*$")
_COURANT = re.compile(r"^Courant Number mean: (\S+) max: (\S+)")
_SOLVE = re.compile(
    r"Solving for (\w+), Initial residual = (\S+), Final residual = (\S+), No Iterations (\d+)"
)
_STEP_END = re.compile(r"^ExecutionTime = ")


def _number(text: str) -> float:
    try:
        return float(text.rstrip(","))
    except ValueError:
        return math.nan


@dataclass
class LogSeries:
    """Per-time-step series of a solver log: the time (and its directory name), the initial
    residual of each solved field's first solve in the step, and the Courant numbers."""

    time_names: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    residuals: dict[str, list[float]] = field(default_factory=dict)
    courant_mean: list[float] = field(default_factory=list)
    courant_max: list[float] = field(default_factory=list)
    completed: int = 0  # steps whose "ExecutionTime" line was seen (all their output written)

    @property
    def last_courant(self) -> float:
        """The last finite Courant max (NaN if none)."""
        return next((c for c in reversed(self.courant_max) if math.isfinite(c)), math.nan)


class LogParser:
    """Reads a solver log line by line (as it is written) into a LogSeries.

    ``feed`` returns a reason to stop the run when a residual or Courant number is NaN or
    infinite (a solver whose floating-point traps are off would otherwise run on with NaNs).
    """

    def __init__(self) -> None:
        self.series = LogSeries()
        self._solved: set[str] = set()

    def feed(self, line: str) -> str | None:
        """Take one line; a non-None result is why the run must stop."""
        s = self.series
        m = _TIME.match(line)
        if m:
            s.time_names.append(m.group(1))
            s.times.append(_number(m.group(1)))
            s.courant_mean.append(math.nan)
            s.courant_max.append(math.nan)
            for values in s.residuals.values():
                values.append(math.nan)
            self._solved.clear()
            return None
        if not s.times:
            return None
        m = _COURANT.match(line)
        if m:
            s.courant_mean[-1], s.courant_max[-1] = _number(m.group(1)), _number(m.group(2))
            if not math.isfinite(s.courant_max[-1]):
                return f"the Courant number is {m.group(2)} at t={s.time_names[-1]}"
            return None
        m = _SOLVE.search(line)
        if m:
            name, value = m.group(1), _number(m.group(2))
            if name not in self._solved:  # the first solve of the step (p is solved per corrector)
                self._solved.add(name)
                column = s.residuals.setdefault(name, [math.nan] * len(s.times))
                column[-1] = value
            final = _number(m.group(3))
            if not (math.isfinite(value) and math.isfinite(final)):
                shown = m.group(2) if not math.isfinite(value) else m.group(3)
                return f"the {name} residual is {shown.rstrip(',')} at t={s.time_names[-1]}"
            return None
        if _STEP_END.match(line):
            s.completed = len(s.times)
        return None


def parse_log(lines: Iterable[str]) -> LogSeries:
    """The LogSeries of a whole log (the lines of one or more runs of the solver, in order)."""
    parser = LogParser()
    for line in lines:
        parser.feed(line)
    return parser.series


def parse_probes(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A probes file (``postProcessing/<name>/<time>/<field>``) as (locations (n_probes, 3),
    times (n_rows,), values (n_rows, n_probes, n_components))."""
    locations, rows = [], []
    for line in text.splitlines():
        if line.startswith("#"):
            m = re.match(r"#\s*Probe\s+\d+\s*\(([^)]*)\)", line)
            if m:
                locations.append([float(v) for v in m.group(1).split()])
            continue
        if line.strip():
            rows.append(line.replace("(", " ").replace(")", " ").split())
    n = max(len(locations), 1)
    if not rows:
        return np.asarray(locations, float).reshape(-1, 3), np.empty(0), np.empty((0, n, 1))
    table = np.asarray(rows, dtype=np.float64)
    n_comp = (table.shape[1] - 1) // n
    return (
        np.asarray(locations, float).reshape(-1, 3),
        table[:, 0],
        table[:, 1 : 1 + n * n_comp].reshape(len(table), n, n_comp),
    )


def parse_raw_set(text: str) -> np.ndarray:
    """A ``raw`` set file (columns: coordinate(s), then field components) as a 2-D array."""
    rows = [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)


_INTERNAL = re.compile(r"^internalField\s+(uniform|nonuniform)\s*", re.MULTILINE)
_LIST = re.compile(r"List<(\w+)>\s*(\d+)\s*\(")
_WIDTH = {"scalar": 1, "vector": 3, "symmTensor": 6, "tensor": 9, "sphericalTensor": 1}


def parse_internal_field(text: str, n_cells: int | None = None) -> np.ndarray:
    """The ``internalField`` of an ASCII field file as (n_cells, n_components) values.

    A ``uniform`` value is repeated ``n_cells`` times (required then); binary files are refused.
    """
    m = _INTERNAL.search(text)
    if m is None:
        raise ValueError("no internalField entry")
    rest = text[m.end() :]
    if m.group(1) == "uniform":
        end = rest.index(";")
        value = np.asarray(rest[:end].replace("(", " ").replace(")", " ").split(), dtype=np.float64)
        if n_cells is None:
            raise ValueError("a uniform internalField needs the cell count")
        return np.tile(value, (n_cells, 1))
    lm = _LIST.match(rest)
    if lm is None:
        raise ValueError("internalField is not an ASCII List<type> N (...)")
    width, count = _WIDTH.get(lm.group(1), 0), int(lm.group(2))
    if width == 0:
        raise ValueError(f"unsupported field type List<{lm.group(1)}>")
    close = re.compile(r"\)\s*;").search(rest, lm.end())
    if close is None:
        raise ValueError("internalField list is not terminated")
    body = rest[lm.end() : close.start()].replace("(", " ").replace(")", " ")
    values = np.asarray(body.split(), dtype=np.float64)
    if values.size != count * width:
        raise ValueError(f"internalField has {values.size} numbers, expected {count} x {width}")
    return values.reshape(count, width)


_FATAL = re.compile(r"^--> (FOAM FATAL (?:IO )?ERROR):?\s*(.*)$")
_NOISE = re.compile(r"^(#\d+\s|FOAM exiting|FOAM aborting|From function|in file |End$|\s*$)")


def fatal_message(text: str) -> str | None:
    """OpenFOAM's own words for a fatal error, on one line: ``FOAM FATAL ERROR: <message>
    (file: <where>)``; None when the log has no FOAM FATAL block."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _FATAL.match(line.strip())
        if not m:
            continue
        words = [m.group(2).strip()] if m.group(2).strip() else []
        where = ""
        for follow in lines[i + 1 :]:
            s = follow.strip()
            if s.startswith(("From function", "FOAM exiting", "FOAM aborting")) or _FATAL.match(s):
                break
            if s.startswith("file:"):
                where = s[len("file:") :].strip()
            elif s:
                words.append(s)
        message = f"{m.group(1)}: {' '.join(words)}"
        return f"{message} (file: {where})" if where else message
    return None


def last_meaningful_lines(text: str, n: int = 3) -> str:
    """The last ``n`` lines that say something (no blanks, stack frames or sign-offs), joined
    with `` | `` on one line."""
    kept = [line.strip() for line in text.splitlines() if not _NOISE.match(line.strip())]
    return " | ".join(kept[-n:])


_DIMENSIONS = re.compile(r"^dimensions\s*\[([^\]]*)\]", re.MULTILINE)
_SI = ("kg", "m", "s", "K", "mol", "A", "cd")


def parse_dimensions(text: str) -> str:
    """A field file's ``dimensions [kg m s K mol A cd]`` as a unit string (``m s^-1``; ``1``
    for dimensionless, ``""`` when the file has none)."""
    m = _DIMENSIONS.search(text)
    if m is None:
        return ""
    parts = []
    for unit, power in zip(_SI, m.group(1).split(), strict=False):
        p = float(power)
        if p:
            parts.append(unit if p == 1 else f"{unit}^{p:g}")
    return " ".join(parts) or "1"


def truncate_rows(text: str, t_max: float) -> str:
    """A time-table file (probes and the like: ``#`` headers, then rows starting with the time)
    cut to its rows with time <= ``t_max`` and no partly written last line."""
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    kept = []
    for line in text.splitlines(keepends=True):
        head = line.split(None, 1)
        if not head or line.startswith("#") or _number(head[0]) <= t_max:
            kept.append(line)
    return "".join(kept)
