"""Time integrators: a registry of low-storage explicit Runge-Kutta schemes.

Every scheme has the form used by spectralDNS's RK4 (one stored accumulator):

    acc = u0 = u
    for stage s:  r = rhs(u);  acc += a[s] dt r;  u = u0 + b[s] dt r  (not after the last)
    u = u0 = acc

so the fused stage kernel (``operators.rk_update_slab``) serves all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ParameterError
from .params import INTEGRATORS

__all__ = ["Integrator", "INTEGRATOR_REGISTRY", "get_integrator"]


@dataclass(frozen=True)
class Integrator:
    """Stage weights ``a`` (into the accumulator) and ``b`` (to the next stage's input)."""

    name: str
    a: tuple[float, ...]
    b: tuple[float, ...]  # one fewer than a

    @property
    def stages(self) -> int:
        return len(self.a)

    def coefficients(self, dt: float) -> list[tuple[float, float | None]]:
        """(a_s dt, b_s dt or None at the last stage) for each stage, as Python floats."""
        return [
            (float(a * dt), float(self.b[s] * dt) if s < len(self.b) else None) for s, a in enumerate(self.a)
        ]


INTEGRATOR_REGISTRY: dict[str, Integrator] = {
    "rk4": Integrator("rk4", a=(1 / 6, 1 / 3, 1 / 3, 1 / 6), b=(0.5, 0.5, 1.0)),
}

if set(INTEGRATOR_REGISTRY) != set(INTEGRATORS):
    raise ImportError("solver.integrators registry disagrees with params.INTEGRATORS")


def get_integrator(name: str) -> Integrator:
    """The integrator called ``name``; the error lists the valid names."""
    try:
        return INTEGRATOR_REGISTRY[name]
    except KeyError:
        raise ParameterError(
            "integrator", name, "one of " + ", ".join(repr(k) for k in INTEGRATOR_REGISTRY)
        ) from None
