"""Validation data: u along the vertical centreline of the lid-driven cavity.

Ghia, U., Ghia, K. N. & Shin, C. T. (1982). High-Re solutions for incompressible flow using
the Navier-Stokes equations and a multigrid method. Journal of Computational Physics 48(3),
387-411, doi:10.1016/0021-9991(82)90058-4. Table I: u/U on the line x = L/2 through the
geometric centre, computed on a 129 x 129 uniform grid; the points are grid lines j = 1..129,
y/L = (j - 1) / 128 (the table prints y/L to four digits).

Transcribed by hand for ns-sweep. The Re = 100 column is the one in the project's notes; the
Re = 400 and 1000 columns were checked against two independent public transcriptions:
CliMA/Oceananigans.jl, validation/lid_driven_cavity/plot_lid_driven_cavity.py (Re = 100, 400,
1000) and benzwick/StreamVorti, lisp/compare-ghia.lisp (Re = 100, 400, 1000); Re = 100 and
1000 also against barbagroup/cuIBM, validation-data/cavity-GGS82.txt. All agree digit for digit
except one entry: Re = 400 at j = 95 (y/L = 0.7344) is 0.16256 in Oceananigans.jl (and in the
other public listings seen) and 0.16257 in StreamVorti; 0.16256 is used here.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

__all__ = ["GHIA_CITATION", "GHIA_J", "GHIA_Y", "GHIA_U", "ghia_u"]

GHIA_CITATION = (
    "Ghia, U., Ghia, K. N. & Shin, C. T. (1982). High-Re solutions for incompressible flow using "
    "the Navier-Stokes equations and a multigrid method. J. Comput. Phys. 48(3), 387-411, Table I."
)

# grid line index j of Table I (1-based, bottom wall j = 1, lid j = 129)
GHIA_J = np.array([1, 8, 9, 10, 14, 23, 37, 59, 65, 80, 95, 110, 123, 124, 125, 126, 129])
# y/L of each point, exactly (the table prints 0.0547, 0.0625, ... 0.9766)
GHIA_Y = (GHIA_J - 1) / 128.0

# u/U at GHIA_Y, bottom wall to lid
_U = {
    100: (
        0.00000,
        -0.03717,
        -0.04192,
        -0.04775,
        -0.06434,
        -0.10150,
        -0.15662,
        -0.21090,
        -0.20581,
        -0.13641,
        0.00332,
        0.23151,
        0.68717,
        0.73722,
        0.78871,
        0.84123,
        1.00000,
    ),
    400: (
        0.00000,
        -0.08186,
        -0.09266,
        -0.10338,
        -0.14612,
        -0.24299,
        -0.32726,
        -0.17119,
        -0.11477,
        0.02135,
        0.16256,
        0.29093,
        0.55892,
        0.61756,
        0.68439,
        0.75837,
        1.00000,
    ),
    1000: (
        0.00000,
        -0.18109,
        -0.20196,
        -0.22220,
        -0.29730,
        -0.38289,
        -0.27805,
        -0.10648,
        -0.06080,
        0.05702,
        0.18719,
        0.33304,
        0.46604,
        0.51117,
        0.57492,
        0.65928,
        1.00000,
    ),
}
GHIA_U = MappingProxyType({re: np.array(u) for re, u in _U.items()})


def ghia_u(Re: float) -> np.ndarray:
    """Table I's u/U column for ``Re`` (100, 400 or 1000), on GHIA_Y."""
    key = int(Re) if float(Re).is_integer() else -1
    if key not in GHIA_U:
        raise KeyError(f"Re={Re!r}: Ghia et al. Table I here has Re = {', '.join(map(str, GHIA_U))}")
    return GHIA_U[key].copy()
