"""Learners of an adaptive sweep: python-adaptive's, chosen by name, over the varied parameters.

Why python-adaptive: it is the ecosystem's library for exactly this (sampling a function where
it changes most, asking several points at once for parallel executors), with well-tested loss
functions and triangulations; we only map parameters onto its coordinates (log scale where
asked) and feed it from the store.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..spec.files import problem_line

__all__ = ["Axis", "LEARNERS", "LOSSES", "make_learner", "check_learner"]


@dataclass(frozen=True)
class Axis:
    """One varied parameter: its package-file name, bounds and scale (the learner works in
    log10 of the value on a log scale)."""

    name: str
    lo: float
    hi: float
    log: bool = False

    def to_learner(self, value: float) -> float:
        """The learner's coordinate of a parameter value."""
        return math.log10(value) if self.log else float(value)

    def from_learner(self, x: float) -> float:
        """The parameter value of a learner coordinate (exact at the bounds)."""
        if x == self.to_learner(self.lo):
            return self.lo
        if x == self.to_learner(self.hi):
            return self.hi
        return float(10.0**x) if self.log else float(x)

    @property
    def bounds(self) -> tuple[float, float]:
        """The bounds in the learner's coordinates."""
        return self.to_learner(self.lo), self.to_learner(self.hi)


def _learner1d(axes: Sequence[Axis], loss: Any) -> Any:
    import adaptive

    return adaptive.Learner1D(None, axes[0].bounds, loss_per_interval=loss)


def _learner2d(axes: Sequence[Axis], loss: Any) -> Any:
    import adaptive

    return adaptive.Learner2D(None, (axes[0].bounds, axes[1].bounds), loss_per_triangle=loss)


def _learnernd(axes: Sequence[Axis], loss: Any) -> Any:
    import adaptive

    return adaptive.LearnerND(None, [a.bounds for a in axes], loss_per_simplex=loss)


# learner name -> (factory(axes, loss), the numbers of varied parameters it takes)
LEARNERS: dict[str, tuple[Callable[[Sequence[Axis], Any], Any], tuple[int, ...]]] = {
    "Learner1D": (_learner1d, (1,)),
    "Learner2D": (_learner2d, (2,)),
    "LearnerND": (_learnernd, (2, 3, 4, 5, 6)),
}


def _loss_1d(name: str) -> Any:
    from adaptive.learner import learner1D

    return {
        "default": None,
        "uniform": learner1D.uniform_loss,
        "curvature": learner1D.curvature_loss_function(),
        "abs_min_log": learner1D.abs_min_log_loss,
    }[name]


def _loss_2d(name: str) -> Any:
    from adaptive.learner import learner2D

    return {
        "default": None,
        "uniform": learner2D.uniform_loss,
        "minimize_triangle_surface": learner2D.minimize_triangle_surface_loss,
    }[name]


def _loss_nd(name: str) -> Any:
    from adaptive.learner import learnerND

    return {"default": None, "uniform": learnerND.uniform_loss}[name]


# learner name -> (loss names it knows, the loss function of a name)
LOSSES: dict[str, tuple[tuple[str, ...], Callable[[str], Any]]] = {
    "Learner1D": (("default", "uniform", "curvature", "abs_min_log"), _loss_1d),
    "Learner2D": (("default", "uniform", "minimize_triangle_surface"), _loss_2d),
    "LearnerND": (("default", "uniform"), _loss_nd),
}


def check_learner(name: Any, loss: Any, n_axes: int, file: str) -> None:
    """One-line ConfigErrors for an unknown learner, a learner for another number of varied
    parameters, or a loss it does not know."""
    if name not in LEARNERS:
        raise ConfigError(problem_line(file, "learner.type", name, "one of " + ", ".join(LEARNERS)))
    _, dims = LEARNERS[name]
    if n_axes not in dims:
        fits = [n for n, (_, d) in LEARNERS.items() if n_axes in d]
        raise ConfigError(
            problem_line(
                file,
                "learner.type",
                name,
                f"a learner of {n_axes} varied parameter(s): " + (", ".join(fits) or "none"),
            )
        )
    names, _ = LOSSES[name]
    if loss not in names:
        raise ConfigError(problem_line(file, "learner.loss", loss, f"a loss of {name}: " + ", ".join(names)))


def make_learner(name: str, loss: str, axes: Sequence[Axis]) -> Any:
    """A new, empty learner (names checked by ``check_learner``)."""
    factory, _ = LEARNERS[name]
    _, loss_of = LOSSES[name]
    return factory(axes, loss_of(loss))
