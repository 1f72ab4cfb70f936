"""Numerical operators of the pseudo-spectral scheme, as in-place kernels on slabs.

Each kernel works on a slab of x-rows, writing into preallocated arrays (``out=``), so
the temporaries of one slab stay in cache and a slab can run on any thread: every value is
computed by the same elementwise operations whatever the slab partition or thread count,
which keeps results bit-identical across thread counts.

Spectral arrays are handled through real "pair" views (complex (..., M) viewed as float
(..., 2M)), so multiplying by a real wavenumber costs one real multiply per number and
no complex casting. Wavenumber arrays along z are therefore stored doubled (k0, k0, k1,
k1, ...). Spectral coefficients are normalised: u_hat = rfftn(u) / N, so the inverse
transform needs no 1/N pass.

Scheme (rotational form, as in spectralDNS): with the compact (dealiased) velocity u_hat,

    omega_hat = i k x u_hat;  u, omega = irfft(u_hat), irfft(omega_hat)
    N_hat = dealias(rfft(u x omega)) / N
    rhs = N_hat - k (k . N_hat) / |k|^2 - nu |k|^2 u_hat          (projection removes pressure)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .grid import Block, Grid

__all__ = [
    "SpectralCoefficients",
    "StageKernel",
    "SpectralKernels",
    "spectral_coefficients",
    "nu_k2",
    "pair",
    "make_cross_kernel",
    "make_speed_kernel",
    "make_gather_kernel",
    "make_spectral_kernels",
    "scatter_compact",
    "scatter_padded",
    "gather_compact",
    "divergence_hat",
    "curl_hat",
]


def pair(a: np.ndarray) -> np.ndarray:
    """Real view of a complex array: (..., M) complex -> (..., 2M) float (no copy)."""
    return a.view(a.real.dtype)


def _doubled(a: np.ndarray) -> np.ndarray:
    """Repeat each value along the last axis: matches a pair view."""
    return np.repeat(a, 2, axis=-1)


@dataclass(frozen=True)
class SpectralCoefficients:
    """Real coefficient arrays of the compact pair-view shape (Mx, My, 2Mz).

    Stored in full rather than broadcast: numpy multiplies same-shape arrays about twice
    as fast as ones with stride-0 axes, and these arrays are small (compact layout).
    """

    kx: np.ndarray
    ky: np.ndarray
    kz: np.ndarray
    inv_k2: np.ndarray  # 1/|k|^2, 0 at k = 0
    nu_k2: np.ndarray  # nu |k|^2


class StageKernel(Protocol):
    """``stage(ca, cb, first=False)`` of a spectral slab (``make_spectral_kernels``)."""

    def __call__(self, ca: float, cb: float | None, first: bool = False) -> None: ...


# (stage, prepare, rhs) of a spectral slab: what every kernel set's make_spectral_kernels returns
SpectralKernels = tuple[StageKernel, Callable[[], None], Callable[[np.ndarray], None]]


def nu_k2(grid: Grid, nu: float) -> np.ndarray:
    """nu |k|^2 at the grid's precision, in pair-view layout (computed in float64)."""
    return _doubled(nu * grid.k_squared()).astype(grid.dtype)


def spectral_coefficients(grid: Grid, nu: float, full_k: bool = True) -> SpectralCoefficients:
    """Wavenumber arrays of ``grid`` at its precision, in pair-view layout.

    ``full_k=False`` gives kx, ky, kz as read-only broadcast views (no memory; same values)
    for kernels that index them per axis (the numba set): 3 x 0.3 N reals less.
    """
    dt = grid.dtype
    k2 = grid.k_squared()
    with np.errstate(divide="ignore"):
        inv = np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
    shape = (*inv.shape[:2], 2 * inv.shape[2])

    def k_array(k: np.ndarray) -> np.ndarray:
        k = k.astype(np.float64)
        doubled = (_doubled(k) if k.shape[-1] > 1 else k).astype(dt)  # only kz varies along z
        view = np.broadcast_to(doubled, shape)
        return np.ascontiguousarray(view) if full_k else view

    return SpectralCoefficients(
        kx=k_array(grid.kx[:, None, None]),
        ky=k_array(grid.ky[None, :, None]),
        kz=k_array(grid.kz[None, None, :]),
        inv_k2=_doubled(inv).astype(dt),
        nu_k2=nu_k2(grid, nu),
    )


# ---------------------------------------------------------------- slab kernels
#
# Each ``make_*`` function slices its slab's views once and returns a closure of plain
# ufunc calls with ``out`` given positionally: the per-step Python overhead is one call per
# elementwise operation, nothing else.

_mul, _add, _sub, _copy = np.multiply, np.add, np.subtract, np.copyto


def _max_abs(a: np.ndarray) -> float:
    """max |a| from max and min (no temporary); NaN if ``a`` holds NaN."""
    hi, lo = float(a.max()), float(a.min())
    return math.nan if (hi != hi or lo != lo) else max(hi, -lo)


def make_cross_kernel(
    U: list[np.ndarray], W: list[np.ndarray], rows: slice, tmp: np.ndarray
) -> Callable[[bool], tuple[float, float, float] | None]:
    """Kernel: W[rows] <- U[rows] x W[rows] (u x omega); scratch ``tmp`` (4, >=m, ny, nz).

    Called with ``stats=True`` it first returns (max|u|, max|v|, max|w|) of the slab
    (NaN when the slab holds NaN), read while the slab is in cache.
    """
    u, v, w = (a[rows] for a in U)
    ox, oy, oz = (a[rows] for a in W)
    m = u.shape[0]
    t0, t1, t2, s = tmp[0, :m], tmp[1, :m], tmp[2, :m], tmp[3, :m]

    def run(stats: bool) -> tuple[float, float, float] | None:
        out: tuple[float, float, float] | None = None
        if stats:
            out = (_max_abs(u), _max_abs(v), _max_abs(w))
        _mul(w, ox, t1)  # y: w ox - u oz
        _mul(u, oz, s)
        _sub(t1, s, t1)
        _mul(u, oy, t2)  # z: u oy - v ox
        _mul(v, ox, s)
        _sub(t2, s, t2)
        _mul(v, oz, t0)  # x: v oz - w oy, straight into ox (no longer needed)
        _mul(w, oy, s)
        _sub(t0, s, ox)
        _copy(oy, t1)
        _copy(oz, t2)
        return out

    return run


def make_speed_kernel(U: list[np.ndarray], rows: slice, tmp: np.ndarray) -> Callable[[], float]:
    """Kernel: max |u|^2 over the slab (NaN when the slab holds NaN)."""
    u, v, w = (a[rows] for a in U)
    m = u.shape[0]
    s, t = tmp[0, :m], tmp[1, :m]

    def run() -> float:
        _mul(u, u, s)
        _mul(v, v, t)
        s.__iadd__(t)
        _mul(w, w, t)
        s.__iadd__(t)
        return float(s.max())

    return run


def make_gather_kernel(
    F: np.ndarray, R: np.ndarray, xs: slice, xf: slice, yblocks: tuple[Block, ...], scale: float
) -> Callable[[int], None]:
    """Kernel: R[i, xs] <- the kept modes of the forward transform F (rows ``xf``) / N.

    Works on pair views: one real multiply per number (re * s, im * s).
    """
    m2 = 2 * R.shape[-1]
    Fp, Rp = pair(F), pair(R)
    blocks = [[(Fp[xf, b.f0 : b.f1, :m2], Rp[i, xs, b.c0 : b.c1]) for b in yblocks] for i in range(3)]

    def run(i: int) -> None:
        for src, dst in blocks[i]:
            _mul(src, scale, dst)

    return run


def make_spectral_kernels(
    P: np.ndarray,
    Rf: np.ndarray,
    uf: np.ndarray,
    u0f: np.ndarray,
    accf: np.ndarray,
    xs: slice,
    xf: slice,
    yblocks: tuple[Block, ...],
    co: SpectralCoefficients,
    t: np.ndarray,
    s: np.ndarray,
) -> SpectralKernels:
    """Kernels of compact rows ``xs`` (full rows ``xf``): (stage, prepare, rhs).

    ``Rf`` (pair view) holds the kept modes of rfft(u x omega) / N (``make_gather_kernel``);
    ``P`` (6, nx, My, Mz) holds the x-padded inputs of the 6 inverse transforms (u_hat and
    omega_hat = i k x u_hat, see ``solver.fft``); its rows kx not kept stay zero.

    * ``stage(ca, cb, first=False)``: project R, subtract nu k^2 u, update the RK registers
      (acc += ca r; u = u0 + cb r, or u = u0 = acc when cb is None), then ``prepare``.
      ``first`` marks a step's first stage: other kernel sets may then read u alone (acc =
      u0 = u) and leave acc and u0 unset after a last stage.
    * ``prepare()``: write (u_hat, omega_hat) of the state into P's rows ``xf``.
    * ``rhs(out_pairs)``: project, subtract nu k^2 u, copy to ``out_pairs[:, xs]``; for tests.
    """
    m = xs.stop - xs.start
    cdt = P.dtype
    ri = [Rf[i, xs] for i in range(3)]
    t, s = t[:m], s[:m]
    tc = t.view(cdt)
    kx, ky, kz = co.kx[xs], co.ky[xs], co.kz[xs]
    k = (kx, ky, kz)
    inv_k2, nu_k2 = co.inv_k2[xs], co.nu_k2[xs]
    ui = [uf[i, xs] for i in range(3)]
    u0i = [u0f[i, xs] for i in range(3)]
    acci = [accf[i, xs] for i in range(3)]
    pu = [pair(P[j, xf]) for j in range(3)]
    pw = [P[j, xf] for j in range(3, 6)]
    curl_terms = [(ky, ui[2], kz, ui[1]), (kz, ui[0], kx, ui[2]), (kx, ui[1], ky, ui[0])]

    def prepare() -> None:
        for i in range(3):
            _copy(pu[i], ui[i])
        for (ka, ua, kb, ub), dst in zip(curl_terms, pw, strict=True):  # omega_j = i (k x u)_j
            _mul(ua, ka, t)
            _mul(ub, kb, s)
            t.__isub__(s)
            _mul(tc, 1j, dst)

    def rhs_core() -> None:
        _mul(ri[0], kx, t)
        _mul(ri[1], ky, s)
        t.__iadd__(s)
        _mul(ri[2], kz, s)
        t.__iadd__(s)
        t.__imul__(inv_k2)  # t = (k . N) / |k|^2
        for i in range(3):
            _mul(t, k[i], s)
            ri[i].__isub__(s)
            _mul(ui[i], nu_k2, s)
            ri[i].__isub__(s)

    def stage(ca: float, cb: float | None, first: bool = False) -> None:
        # ``first`` (the step's first stage, acc = u0 = u) lets a kernel set read u alone
        # and leave acc and u0 stale after the last stage; this one keeps all registers
        rhs_core()
        for i in range(3):
            _mul(ri[i], ca, s)
            acci[i].__iadd__(s)
            if cb is None:
                _copy(ui[i], acci[i])
                _copy(u0i[i], acci[i])
            else:
                _mul(ri[i], cb, s)
                _add(u0i[i], s, ui[i])
        prepare()

    def rhs(out_pairs: np.ndarray) -> None:
        rhs_core()
        for i in range(3):
            _copy(out_pairs[i, xs], ri[i])

    return stage, prepare, rhs


# ---------------------------------------------------------------- whole-array helpers


def scatter_compact(dst: np.ndarray, src: np.ndarray, grid: Grid) -> None:
    """dst (full real-FFT array) <- compact ``src``, zero elsewhere."""
    dst[...] = 0
    mz = src.shape[-1]
    for bx in grid.xblocks:
        for by in grid.yblocks:
            dst[bx.f0 : bx.f1, by.f0 : by.f1, :mz] = src[bx.c0 : bx.c1, by.c0 : by.c1]


def scatter_padded(dst: np.ndarray, src: np.ndarray, grid: Grid) -> None:
    """dst (x-padded: nx rows, compact y and z) <- compact ``src``, zero in the other rows."""
    dst[...] = 0
    for bx in grid.xblocks:
        dst[bx.f0 : bx.f1] = src[bx.c0 : bx.c1]


def gather_compact(src: np.ndarray, grid: Grid) -> np.ndarray:
    """The kept (compact) modes of a full real-FFT array, as a new array."""
    ix, iy, iz = grid.full_index()
    return src[np.ix_(ix, iy, iz)]


def curl_hat(u_hat: np.ndarray, grid: Grid) -> np.ndarray:
    """omega_hat = i k x u_hat on the compact layout (new array)."""
    kx, ky, kz = (k.astype(np.float64) for k in (grid.kx, grid.ky, grid.kz))
    kx, ky, kz = kx[:, None, None], ky[None, :, None], kz[None, None, :]
    u, v, w = u_hat
    return 1j * np.stack([ky * w - kz * v, kz * u - kx * w, kx * v - ky * u])


def divergence_hat(u_hat: np.ndarray, grid: Grid) -> np.ndarray:
    """i k . u_hat on the compact layout (new array)."""
    kx, ky, kz = (k.astype(np.float64) for k in (grid.kx, grid.ky, grid.kz))
    return 1j * (kx[:, None, None] * u_hat[0] + ky[None, :, None] * u_hat[1] + kz[None, None, :] * u_hat[2])
