"""Published reference curves to overlay on a sweep's results (read-only, no network).

The Taylor-Green vortex at Re = 1600 has a reference everyone compares against: the 512^3
pseudo-spectral DNS of the 1st/2nd International Workshop on High-Order CFD Methods (case C3.5,
Hillewaert 2012/2013; file ``spectral_Re1600_512.gdiag``: columns time, kinetic energy,
dissipation rate -dE/dt, in the units of our solver: box [0, 2 pi)^3, V0 = L = 1, nu = 1/Re).

ns-sweep reads such a file when it is given (``sweep report --reference FILE``) or when one
is placed in this package's ``reference_data/`` directory under its published name (see the
README there: the file is not redistributed with ns-sweep). A reference says which runs it
belongs to: the initial condition and Reynolds number in ``REFERENCES``, or in the file's
``# ns-sweep:`` header line for another file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["Reference", "REFERENCES", "REFERENCE_DIR", "read_gdiag", "packaged_references", "load_references"]

REFERENCE_DIR = Path(__file__).with_name("reference_data")


@dataclass(frozen=True)
class Reference:
    """One reference curve set: ``time``, ``energy`` and ``dissipation`` (-dE/dt) arrays, for
    runs of ``initial_condition`` at ``Re``; ``label`` names it in legends and captions."""

    label: str
    initial_condition: str
    Re: float
    time: np.ndarray
    energy: np.ndarray
    dissipation: np.ndarray
    source: str

    def matches(self, initial_condition: str, Re: float) -> bool:
        """Whether a run of these parameters is the case this reference describes."""
        return initial_condition == self.initial_condition and math.isclose(Re, self.Re, rel_tol=1e-9)


# the published files ns-sweep knows by name: what they describe
REFERENCES: dict[str, tuple[str, str, float, str]] = {
    "spectral_Re1600_512.gdiag": (
        "512³ spectral DNS (HiOCFD workshop C3.5)",
        "taylor_green",
        1600.0,
        "1st/2nd International Workshop on High-Order CFD Methods, case C3.5 (Taylor-Green vortex, "
        "Re=1600): 512^3 pseudo-spectral DNS, file spectral_Re1600_512.gdiag",
    ),
}

_HEADER = "# ns-sweep:"  # e.g. "# ns-sweep: label=our 16^3 run; initial_condition=taylor_green; Re=1600"


def read_gdiag(path: str | os.PathLike[str]) -> Reference:
    """A reference from a ``.gdiag`` file: whitespace-separated columns time, kinetic energy,
    dissipation rate (more columns are ignored); ``#`` and ``%`` lines are comments. What it
    describes comes from ``REFERENCES`` (by file name) or its ``# ns-sweep:`` header line
    (``label=...; initial_condition=...; Re=...``). A file that is not such is a one-line
    ConfigError naming it."""
    path = Path(path)
    known = REFERENCES.get(path.name)
    meta: dict[str, str] = {}
    rows: list[list[float]] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}; allowed: a readable .gdiag file") from None
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if s.startswith(_HEADER):
            for part in s[len(_HEADER) :].split(";"):
                key, _, value = part.partition("=")
                if key.strip():
                    meta[key.strip()] = value.strip()
            continue
        if not s or s[0] in "#%":
            continue
        try:
            values = [float(x) for x in s.split()[:3]]
        except ValueError:
            raise ConfigError(
                f"{path}: line {n}: bad value {s[:40]!r}; allowed: numbers: time, kinetic energy, "
                "dissipation rate"
            ) from None
        if len(values) < 3:
            raise ConfigError(
                f"{path}: line {n}: bad value {s[:40]!r}; allowed: at least 3 columns: time, kinetic "
                "energy, dissipation rate"
            )
        rows.append(values)
    if len(rows) < 2:
        raise ConfigError(
            f"{path}: bad value {len(rows)} data line(s); allowed: a curve of at least 2 points"
        )
    if known is None and not {"initial_condition", "Re"} <= set(meta):
        raise ConfigError(
            f"{path}: (header): missing; allowed: a known file name ({', '.join(REFERENCES)}) or a line "
            f"'{_HEADER} label=...; initial_condition=taylor_green; Re=1600'"
        )
    label, ic, re, source = known if known is not None else (path.stem, "", math.nan, str(path))
    try:
        re = float(meta.get("Re", re))
    except ValueError:
        raise ConfigError(f"{path}: (header) Re: bad value {meta['Re']!r}; allowed: a number") from None
    a = np.array(rows, dtype=float)
    return Reference(
        label=meta.get("label", label),
        initial_condition=meta.get("initial_condition", ic),
        Re=re,
        time=a[:, 0],
        energy=a[:, 1],
        dissipation=a[:, 2],
        source=meta.get("source", source),
    )


def packaged_references() -> list[Reference]:
    """The reference files placed in ``reference_data/`` under a name ``REFERENCES`` knows."""
    return [read_gdiag(REFERENCE_DIR / name) for name in REFERENCES if (REFERENCE_DIR / name).is_file()]


def load_references(paths: list[str] | None = None) -> list[Reference]:
    """The references given (``--reference FILE``, repeatable), else the packaged ones."""
    if paths:
        return [read_gdiag(p) for p in paths]
    return packaged_references()
