"""Typed errors raised by the solver, one class per kind of failure (a caller maps each to a run status)."""

from __future__ import annotations

__all__ = ["SolverError", "ParameterError", "DivergedError", "SolverTimeout", "SolverStopped"]


class SolverError(Exception):
    """Base class of every error the solver raises on purpose."""


class ParameterError(SolverError, ValueError):
    """A solver parameter is missing, unknown, of the wrong type or out of range.

    ``field`` names the parameter, ``value`` the bad value and ``allowed`` says what is
    accepted, so a caller can print one precise line.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        shown = repr(value)
        if len(shown) > 80:  # a 400-digit number is named, not printed in full
            shown = shown[:77] + "..."
        super().__init__(f"{field}: bad value {shown}; allowed: {allowed}")


class DivergedError(SolverError, FloatingPointError):
    """The run blew up: NaN/inf in the state or a CFL number above the stability limit."""

    def __init__(self, step: int, time: float, cfl: float, reason: str) -> None:
        self.step = step
        self.time = time
        self.cfl = cfl
        self.reason = reason
        super().__init__(
            f"diverged at step {step} (t={time:.6g}): {reason} (CFL={cfl:.3g}); "
            "reduce dt or raise the resolution"
        )


class SolverTimeout(SolverError, TimeoutError):
    """The wall-clock deadline passed; the run stopped cleanly between two steps."""

    def __init__(self, step: int, time: float, deadline: float) -> None:
        self.step = step
        self.time = time
        self.deadline = deadline
        super().__init__(f"deadline passed at step {step} (t={time:.6g})")


class SolverStopped(SolverError):
    """The caller asked the run to stop (its ``stop()`` callback said so between two steps):
    ``state`` is the run after ``step`` steps, a checkpoint to resume from (bit-identically)."""

    def __init__(self, step: int, time: float, state: object) -> None:
        self.step = step
        self.time = time
        self.state = state
        super().__init__(f"stopped on request at step {step} (t={time:.6g})")
