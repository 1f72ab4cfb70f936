"""The errors of external-program solvers (``openfoam``, ``command``), and one-line config errors.

They subclass ``solver.errors``' classes, so the engine's worker side classifies them as it does
the spectral solver's (``sweep.engine.worker.EXCEPTION_CLASSES``): ``ExternalSolverError`` is
``error``, ``ProgramDiverged`` is ``diverged``, ``ProgramTimeout`` is ``timeout``. Each message is
one line: the program and its own last meaningful words.

A bad manifest or template is a ``sweep.errors.ConfigError`` of one line in the format of
``sweep.spec``: ``file: field: bad value V; allowed: A`` (``config_line``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from typing import Any

from solver.errors import DivergedError, SolverError, SolverTimeout
from sweep.errors import ConfigError

__all__ = [
    "ExternalSolverError",
    "ProgramDiverged",
    "ProgramTimeout",
    "KeptScratch",
    "show",
    "config_line",
    "check_keys",
]


class KeptScratch:
    """Mixin: a failed run's kept scratch directory, named at the end of the message."""

    scratch: str | None = None

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} [scratch kept at {self.scratch}]" if self.scratch else text


class ExternalSolverError(KeptScratch, SolverError):
    """An external program failed (non-zero exit, fatal error, missing output): failure class
    ``error``. The message is one line: the program and its own last meaningful words."""


class ProgramDiverged(KeptScratch, DivergedError):
    """An external program's run blew up (floating-point exception, NaN): class ``diverged``."""

    def __init__(self, program: str, step: int, time: float, cfl: float, reason: str) -> None:
        super().__init__(step, time, cfl, reason)
        self.program = program
        where = f" at step {step} (t={time:.6g})" if step >= 0 else ""
        courant = f" (Courant max {cfl:.3g})" if math.isfinite(cfl) else ""
        self.args = (f"{program} diverged{where}: {reason}{courant}; reduce dt or raise the resolution",)


class ProgramTimeout(KeptScratch, SolverTimeout):
    """The deadline passed while an external program ran: class ``timeout``. Its whole process
    group was killed."""

    def __init__(self, program: str, step: int, time: float, deadline: float) -> None:
        super().__init__(step, time, deadline)
        self.program = program
        where = f" at step {step} (t={time:.6g})" if step >= 0 else ""
        self.args = (f"deadline passed while {program} ran{where}; its process group was killed",)


# ----------------------------------------------------------------------------------------------
# One-line configuration errors (the format of sweep.spec: file, field, value, allowed)


def show(value: Any) -> str:
    """A value as it appears in an error message (JSON where possible)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def config_line(file: str, fieldname: str, value: Any, allowed: str) -> str:
    """``file: field: bad value V; allowed: A`` (one line)."""
    return f"{file}: {fieldname}: bad value {show(value)}; allowed: {allowed}"


def check_keys(
    mapping: Any, allowed: Collection[str], file: str, where: str, required: Collection[str] = ()
) -> Mapping[str, Any]:
    """``mapping`` if it is a mapping with only ``allowed`` keys and every ``required`` one;
    else a one-line ConfigError naming the file and the key."""
    if not isinstance(mapping, Mapping):
        raise ConfigError(
            config_line(file, where or "(file)", mapping, "a mapping with keys " + ", ".join(allowed))
        )
    for key in mapping:
        if key not in allowed:
            raise ConfigError(
                config_line(file, f"{where}.{key}".lstrip("."), key, "one of " + ", ".join(allowed))
            )
    for key in required:
        if key not in mapping:
            name = f"{where}.{key}" if where else key
            raise ConfigError(f"{file}: {name}: missing; required: " + ", ".join(required))
    return mapping
