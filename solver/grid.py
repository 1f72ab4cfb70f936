"""The periodic grid, its wavenumbers and the dealiased ("compact") spectral layout.

The box is [0, 2pi)^3 with (nx, ny, nz) points, so wavenumbers are integers. The 2/3 rule
keeps the modes with |k_i| < n_i/3 in every direction; all other modes are zero at all
times. The solver therefore stores only the kept modes, in a compact array of shape
(Mx, My, Mz) = (2Kx+1, 2Ky+1, Kz+1) with K_i the largest integer below n_i/3, ordered like an
FFT of that size ([0..K, -K..-1] along x and y, [0..Kz] along the real-FFT axis z). That
cuts every spectral operation to about (2/3)^3 of the full real-FFT array.

The full real-FFT array (nx, ny, nz//2+1) and the compact one are linked by 2 x-blocks times
2 y-blocks of plain slices (``Blocks``), so gather and scatter are slice copies.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import DTypeLike

__all__ = ["Grid", "Block", "kept_max", "make_grid"]


def kept_max(n: int) -> int:
    """Largest |k| kept by the 2/3 rule on n points: the largest integer k < n/3."""
    return (n - 1) // 3


@dataclass(frozen=True)
class Block:
    """A run of compact indices [c0, c1) that sits at full indices [f0, f0 + c1 - c0)."""

    c0: int
    c1: int
    f0: int

    @property
    def f1(self) -> int:
        return self.f0 + self.c1 - self.c0


def _blocks(n: int, k: int) -> tuple[Block, ...]:
    """Non-negative then negative kept wavenumbers of one FFT axis."""
    pos = Block(0, k + 1, 0)
    if k == 0:
        return (pos,)
    return (pos, Block(k + 1, 2 * k + 1, n - k))


def _coords(n: int) -> np.ndarray:
    """x_j = 2 pi j / n, j = 0 .. n-1 (float64)."""
    return 2 * math.pi * np.arange(n) / n


def _int_wavenumbers(n: int) -> np.ndarray:
    return np.fft.fftfreq(n, 1.0 / n).round().astype(np.int64)


@dataclass(frozen=True)
class Grid:
    """Grid geometry and the precomputed wavenumber arrays of the compact layout."""

    shape: tuple[int, int, int]
    dtype: np.dtype  # real dtype of the run
    K: tuple[int, int, int]  # kept |k| maximum per direction
    xblocks: tuple[Block, ...]
    yblocks: tuple[Block, ...]
    kx: np.ndarray = field(repr=False)  # compact integer wavenumbers, 1-D
    ky: np.ndarray = field(repr=False)
    kz: np.ndarray = field(repr=False)

    @property
    def n_points(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2]

    @property
    def spectral_shape(self) -> tuple[int, int, int]:
        """Shape of the full real-FFT array."""
        nx, ny, nz = self.shape
        return (nx, ny, nz // 2 + 1)

    @property
    def compact_shape(self) -> tuple[int, int, int]:
        return (len(self.kx), len(self.ky), len(self.kz))

    @property
    def complex_dtype(self) -> np.dtype:
        return np.result_type(self.dtype, np.complex64)

    @property
    def dx(self) -> tuple[float, float, float]:
        nx, ny, nz = self.shape
        return (2 * math.pi / nx, 2 * math.pi / ny, 2 * math.pi / nz)

    def coords(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Physical coordinates x_i = 2 pi j / n_i (float64)."""
        nx, ny, nz = self.shape
        return (_coords(nx), _coords(ny), _coords(nz))

    def k_squared(self) -> np.ndarray:
        """|k|^2 on the compact layout (float64)."""
        kx, ky, kz = (k.astype(np.float64) for k in (self.kx, self.ky, self.kz))
        return kx[:, None, None] ** 2 + ky[None, :, None] ** 2 + kz[None, None, :] ** 2

    def z_weights(self) -> np.ndarray:
        """Multiplicity of each compact kz in a full-space sum (real FFT stores half)."""
        w = np.full(len(self.kz), 2.0)
        w[0] = 1.0  # kz = 0; the Nyquist kz = nz/2 is never kept
        return w

    def full_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Full real-FFT indices of the compact modes along each axis."""
        nx, ny, _ = self.shape
        return (self.kx % nx, self.ky % ny, self.kz.copy())


def make_grid(shape: tuple[int, int, int], dtype: DTypeLike = "float64") -> Grid:
    """The grid for ``shape`` points at real ``dtype`` (one shared, read-only Grid per
    shape and dtype in a process: many tiny runs would otherwise rebuild it each run)."""
    return _make_grid(tuple(int(n) for n in shape), np.dtype(dtype).str)


@functools.lru_cache(maxsize=16)
def _make_grid(shape: tuple[int, ...], dtype: str) -> Grid:
    nx, ny, nz = shape
    K = (kept_max(nx), kept_max(ny), kept_max(nz))
    kx_full, ky_full = _int_wavenumbers(nx), _int_wavenumbers(ny)
    kx = np.concatenate([kx_full[b.f0 : b.f1] for b in _blocks(nx, K[0])])
    ky = np.concatenate([ky_full[b.f0 : b.f1] for b in _blocks(ny, K[1])])
    kz = np.arange(K[2] + 1, dtype=np.int64)
    for a in (kx, ky, kz):
        a.flags.writeable = False  # shared by every run of this grid
    return Grid((nx, ny, nz), np.dtype(dtype), K, _blocks(nx, K[0]), _blocks(ny, K[1]), kx, ky, kz)
