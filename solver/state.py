"""The full state of a run at a step boundary, for checkpoint and restart.

A State holds everything needed to continue bit-identically: the step number, the compact
spectral velocity (the RK registers are all equal to it between steps) and the diagnostics
recorded so far. ``to_arrays`` / ``from_arrays`` convert it losslessly to plain numeric
numpy arrays (no complex dtype, no strings, no 0-d arrays), so any array store can keep it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .diagnostics import DIAGNOSTICS
from .version import SOLVER_VERSION

__all__ = ["State"]

_COMPLEX_OF: dict[np.dtype, type[np.complexfloating]] = {
    np.dtype(np.float64): np.complex128,
    np.dtype(np.float32): np.complex64,
}


@dataclass
class State:
    """Run state after ``step`` steps (``time`` = step * dt).

    ``diagnostics`` maps "step" and each name of ``solver.diagnostics.DIAGNOSTICS`` to a
    1-D float64/int64 array of the outputs recorded so far; ``params_json`` is the JSON of the
    run's identity parameters (a resume with other parameters is refused).
    """

    step: int
    time: float
    u_hat: np.ndarray
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)
    params_json: str = "{}"

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain real numpy arrays (lossless; complex velocity stored as (re, im) pairs)."""
        u = np.ascontiguousarray(self.u_hat)
        out = {
            "step": np.array([self.step], dtype=np.int64),
            "time": np.array([self.time], dtype=np.float64),
            "u_hat": u.view(u.real.dtype).copy(),
            "params_json": np.frombuffer(self.params_json.encode("utf-8"), dtype=np.uint8).copy(),
        }
        for name, values in self.diagnostics.items():
            out["diag_" + name] = np.array(values).copy()
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> State:
        """Inverse of ``to_arrays`` (accepts anything array-like, e.g. zarr arrays)."""
        pairs = np.ascontiguousarray(np.asarray(arrays["u_hat"]))
        u_hat = pairs.view(_COMPLEX_OF[pairs.dtype])
        diag = {k[5:]: np.asarray(v).copy() for k, v in arrays.items() if k.startswith("diag_")}
        return cls(
            step=int(np.asarray(arrays["step"]).reshape(-1)[0]),
            time=float(np.asarray(arrays["time"]).reshape(-1)[0]),
            u_hat=u_hat.copy(),
            diagnostics=diag,
            params_json=State.key_of_arrays(arrays),
        )

    @staticmethod
    def empty_diagnostics() -> dict[str, np.ndarray]:
        """Diagnostic arrays with no outputs yet."""
        d = {"step": np.zeros(0, np.int64)}
        d.update({name: np.zeros(0, np.float64) for name in DIAGNOSTICS})
        return d

    @staticmethod
    def params_key(canonical: dict[str, Any]) -> str:
        """The JSON text that identifies a run's parameters and the solver version.

        A state resumes only a run with this key: a checkpoint of another solver version
        would end with other bits than an uninterrupted run of this one.
        """
        return json.dumps({**canonical, "solver_version": SOLVER_VERSION}, sort_keys=True)

    @staticmethod
    def key_of_arrays(arrays: Mapping[str, Any]) -> str:
        """``params_json`` of a state saved with ``to_arrays`` (without decoding the rest)."""
        return np.asarray(arrays["params_json"], dtype=np.uint8).tobytes().decode("utf-8")
