"""Diagnostics of a velocity field: pure functions of its compact spectrum.

The maxima over physical space (max_velocity, cfl, max_divergence) are taken by the
stepper while the field is in physical space (``solver.stepper``); ``DIAGNOSTICS`` lists all.

Sums over Fourier modes use Parseval's theorem with the solver's normalisation
(u_hat = rfftn(u) / N): <|u|^2> = sum over all k of |u_hat(k)|^2, where the real-FFT half
layout counts kz > 0 twice. All sums are accumulated in float64 in a fixed order.
"""

from __future__ import annotations

import numpy as np

from .grid import Grid

__all__ = ["DIAGNOSTICS", "energy", "enstrophy", "energy_spectrum", "spectrum_wavenumbers", "mode_energy"]

# name -> (units, long name): the time series recorded at every output time
DIAGNOSTICS: dict[str, tuple[str, str]] = {
    "energy": ("velocity^2", "mean kinetic energy 1/2 <|u|^2>"),
    "enstrophy": ("1/time^2", "mean enstrophy 1/2 <|omega|^2>"),
    "dissipation": ("velocity^2/time", "energy dissipation rate nu <|omega|^2> (= -dE/dt)"),
    "max_velocity": ("velocity", "maximum velocity magnitude max |u|"),
    "cfl": ("1", "CFL number dt (max|u|/dx + max|v|/dy + max|w|/dz)"),
    "max_divergence": ("1/time", "maximum divergence max |div u|"),
}


def _weighted_sum(a2: np.ndarray, grid: Grid) -> float:
    """sum over all modes of a quantity given on the compact half layout (..., Mz)."""
    return float(np.sum(a2.sum(axis=tuple(range(a2.ndim - 1))) * grid.z_weights()))


def mode_energy(u_hat: np.ndarray, grid: Grid) -> np.ndarray:
    """1/2 |u_hat|^2 per compact mode (float64), without the half-layout weight."""
    u = u_hat.astype(np.complex128)
    return 0.5 * (u.real**2 + u.imag**2).sum(axis=0)


def energy(u_hat: np.ndarray, grid: Grid) -> float:
    """Mean kinetic energy 1/2 <|u|^2>."""
    return _weighted_sum(mode_energy(u_hat, grid), grid)


def enstrophy(u_hat: np.ndarray, grid: Grid) -> float:
    """Mean enstrophy 1/2 <|omega|^2>, omega = curl u."""
    from .operators import curl_hat

    return _weighted_sum(mode_energy(curl_hat(u_hat.astype(np.complex128), grid), grid), grid)


def spectrum_wavenumbers(grid: Grid) -> np.ndarray:
    """Shell wavenumbers k = 0, 1, ..., round(max |k| kept) of the energy spectrum."""
    kmax = int(np.rint(np.sqrt(grid.k_squared().max())))
    return np.arange(kmax + 1, dtype=np.float64)


def energy_spectrum(u_hat: np.ndarray, grid: Grid) -> np.ndarray:
    """Shell-summed E(k): energy of the modes with round(|k|) = k; sums to the energy."""
    e = mode_energy(u_hat, grid) * grid.z_weights()
    shell = np.rint(np.sqrt(grid.k_squared())).astype(np.int64)
    return np.bincount(shell.ravel(), weights=e.ravel(), minlength=len(spectrum_wavenumbers(grid)))
