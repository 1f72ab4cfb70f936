"""A straightforward numpy implementation of the same scheme, for checks and benchmarks.

Whole-array temporaries, ``np.cross``, fresh arrays in every stage, numpy.fft on the full
real-FFT layout with a multiplicative 2/3-rule mask. It is the baseline the fast stepper
is measured against (scripts/bench_solver.py) and an independent check of its right-hand
side (tests/test_solver_physics.py). Coefficients here are unnormalised (numpy's default:
u_hat = rfftn(u)); the fast stepper's are u_hat / N on the compact layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grid import kept_max

__all__ = ["ReferenceSetup", "reference_setup", "reference_rhs", "reference_step"]


@dataclass(frozen=True)
class ReferenceSetup:
    shape: tuple[int, int, int]
    nu: float
    K: np.ndarray  # (3, nx, ny, nz//2+1) wavenumbers
    K2: np.ndarray
    K_over_K2: np.ndarray
    dealias: np.ndarray


def reference_setup(shape: tuple[int, int, int], nu: float) -> ReferenceSetup:
    """Wavenumber arrays of the full real-FFT layout and the 2/3-rule mask."""
    nx, ny, nz = shape
    kx = np.fft.fftfreq(nx, 1.0 / nx)
    ky = np.fft.fftfreq(ny, 1.0 / ny)
    kz = np.fft.rfftfreq(nz, 1.0 / nz)
    K = np.array(np.meshgrid(kx, ky, kz, indexing="ij"))
    K2 = np.sum(K * K, 0)
    K_over_K2 = K / np.where(K2 == 0, 1, K2)
    dealias = (np.abs(K[0]) <= kept_max(nx)) & (np.abs(K[1]) <= kept_max(ny)) & (np.abs(K[2]) <= kept_max(nz))
    return ReferenceSetup((nx, ny, nz), nu, K, K2, K_over_K2, dealias)


def reference_rhs(u_hat: np.ndarray, ref: ReferenceSetup) -> np.ndarray:
    """du_hat/dt: dealiased, projected u x omega minus nu k^2 u_hat (new arrays throughout)."""
    axes = (1, 2, 3)
    curl_hat = 1j * np.cross(ref.K, u_hat, axis=0)
    u = np.fft.irfftn(u_hat, s=ref.shape, axes=axes)
    curl = np.fft.irfftn(curl_hat, s=ref.shape, axes=axes)
    nl_hat = np.fft.rfftn(np.cross(u, curl, axis=0), axes=axes) * ref.dealias
    P = np.sum(nl_hat * ref.K_over_K2, 0)
    return nl_hat - P * ref.K - ref.nu * ref.K2 * u_hat


def reference_step(u_hat: np.ndarray, dt: float, ref: ReferenceSetup) -> np.ndarray:
    """One classic RK4 step, a new array for every stage."""
    k1 = reference_rhs(u_hat, ref)
    k2 = reference_rhs(u_hat + 0.5 * dt * k1, ref)
    k3 = reference_rhs(u_hat + 0.5 * dt * k2, ref)
    k4 = reference_rhs(u_hat + dt * k3, ref)
    return u_hat + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
