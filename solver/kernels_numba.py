"""The slab kernels of ``solver.operators``, fused into compiled numba loops.

Each kernel is one pass over memory per slab instead of several numpy calls with
temporaries. They compute the SAME floating-point operations in the SAME order as the numpy
kernels (no fastmath: no FMA contraction, no reassociation), so both kernel sets give
identical bits (tests/test_solver_physics.py checks it). Scalars are passed at the arrays'
precision, as numpy casts a Python float to a float32 array's dtype.

Kernels are ``nogil`` and run per slab on the stepper's own ``SlabPool`` threads, never
with ``parallel=True``: numba's workqueue threading layer aborts when two threads launch
parallel kernels at once (e.g. a Dask worker running two solves), and the fixed slab
partition keeps the bits independent of the thread count. ``cache=True`` stores the
compiled code next to this file (or in NUMBA_CACHE_DIR / the user cache when that is
read-only), so a new process loads it instead of compiling.

Factories have the signatures of the ``make_*`` functions in ``solver.operators``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

from .grid import Block
from .operators import SpectralCoefficients, pair

__all__ = ["make_cross_kernel", "make_speed_kernel", "make_gather_kernel", "make_spectral_kernels",
           "warm_up"]

_JIT = dict(nogil=True, cache=True)  # no fastmath: bits must equal the numpy kernels'


# ---------------------------------------------------------------- compiled loops


@njit(**_JIT)
def _cross(u, v, w, ox, oy, oz):  # pragma: no cover  (compiled)
    for i in range(u.shape[0]):
        a, b, c = u[i], v[i], w[i]
        x, y, z = ox[i], oy[i], oz[i]
        ox[i] = b * z - c * y
        oy[i] = c * x - a * z
        oz[i] = a * y - b * x


@njit(inline="always", **_JIT)
def _amax(m, x):  # pragma: no cover  (compiled)
    """max(m, |x|), NaN once any x was NaN (like numpy's max)."""
    a = abs(x)
    if a > m or a != a:
        return a
    return m


@njit(**_JIT)
def _cross_stats(u, v, w, ox, oy, oz):  # pragma: no cover  (compiled)
    mu = mv = mw = 0.0
    for i in range(u.shape[0]):
        a, b, c = u[i], v[i], w[i]
        mu, mv, mw = _amax(mu, a), _amax(mv, b), _amax(mw, c)
        x, y, z = ox[i], oy[i], oz[i]
        ox[i] = b * z - c * y
        oy[i] = c * x - a * z
        oz[i] = a * y - b * x
    return float(mu), float(mv), float(mw)


@njit(**_JIT)
def _speed2(u, v, w):  # pragma: no cover  (compiled)
    m = 0.0
    for i in range(u.shape[0]):
        s = (u[i] * u[i] + v[i] * v[i]) + w[i] * w[i]
        if s > m or s != s:
            m = s
    return float(m)


@njit(**_JIT)
def _gather(F, R, i, x0, x1, fx0, ymap, scale):  # pragma: no cover  (compiled)
    m2 = R.shape[3]
    for x in range(x0, x1):
        fx = fx0 + x - x0
        for y in range(R.shape[2]):
            fy = ymap[y]
            for q in range(m2):
                R[i, x, y, q] = F[fx, fy, q] * scale


@njit(inline="always", **_JIT)
def _prepare_rows(U, P, x0, x1, fx0, kx, ky, kz2):  # pragma: no cover  (compiled)
    """P[0:3] <- u, P[3:6] <- omega = i k x u, rows x0:x1 -> fx0:... (pair views)."""
    mz = U.shape[3] // 2
    for x in range(x0, x1):
        fx = fx0 + x - x0
        kxx = kx[x]
        for y in range(U.shape[2]):
            kyy = ky[y]
            for p in range(mz):
                for q in range(2 * p, 2 * p + 2):
                    P[0, fx, y, q] = U[0, x, y, q]
                    P[1, fx, y, q] = U[1, x, y, q]
                    P[2, fx, y, q] = U[2, x, y, q]
                q = 2 * p
                kzz = kz2[q]
                # t = ua ka - ub kb as in operators.make_spectral_kernels, then t * 1j by
                # numpy's complex product: (tr 0 - ti 1, tr 1 + ti 0)
                tr = U[2, x, y, q] * kyy - U[1, x, y, q] * kzz
                ti = U[2, x, y, q + 1] * kyy - U[1, x, y, q + 1] * kzz
                P[3, fx, y, q] = tr * 0.0 - ti * 1.0
                P[3, fx, y, q + 1] = tr * 1.0 + ti * 0.0
                tr = U[0, x, y, q] * kzz - U[2, x, y, q] * kxx
                ti = U[0, x, y, q + 1] * kzz - U[2, x, y, q + 1] * kxx
                P[4, fx, y, q] = tr * 0.0 - ti * 1.0
                P[4, fx, y, q + 1] = tr * 1.0 + ti * 0.0
                tr = U[1, x, y, q] * kxx - U[0, x, y, q] * kyy
                ti = U[1, x, y, q + 1] * kxx - U[0, x, y, q + 1] * kyy
                P[5, fx, y, q] = tr * 0.0 - ti * 1.0
                P[5, fx, y, q + 1] = tr * 1.0 + ti * 0.0


@njit(inline="always", **_JIT)
def _project(R, U, x, y, q, kxx, kyy, kzz, ik2, nk2):  # pragma: no cover  (compiled)
    """(r0, r1, r2): R minus its k-parallel part minus nu k^2 u, in the numpy kernel's order."""
    r0, r1, r2 = R[0, x, y, q], R[1, x, y, q], R[2, x, y, q]
    t = ((r0 * kxx + r1 * kyy) + r2 * kzz) * ik2[x, y, q]
    nk = nk2[x, y, q]
    return ((r0 - t * kxx) - U[0, x, y, q] * nk,
            (r1 - t * kyy) - U[1, x, y, q] * nk,
            (r2 - t * kzz) - U[2, x, y, q] * nk)


@njit(**_JIT)
def _prepare(U, P, x0, x1, fx0, kx, ky, kz2):  # pragma: no cover  (compiled)
    _prepare_rows(U, P, x0, x1, fx0, kx, ky, kz2)


@njit(**_JIT)
def _stage(R, U, U0, A, P, x0, x1, fx0, kx, ky, kz2, ik2, nk2, ca, cb):  # pragma: no cover
    for x in range(x0, x1):
        for y in range(U.shape[2]):
            for q in range(U.shape[3]):
                r0, r1, r2 = _project(R, U, x, y, q, kx[x], ky[y], kz2[q], ik2, nk2)
                A[0, x, y, q] += r0 * ca
                A[1, x, y, q] += r1 * ca
                A[2, x, y, q] += r2 * ca
                U[0, x, y, q] = U0[0, x, y, q] + r0 * cb
                U[1, x, y, q] = U0[1, x, y, q] + r1 * cb
                U[2, x, y, q] = U0[2, x, y, q] + r2 * cb
    _prepare_rows(U, P, x0, x1, fx0, kx, ky, kz2)


@njit(**_JIT)
def _stage_last(R, U, U0, A, P, x0, x1, fx0, kx, ky, kz2, ik2, nk2, ca):  # pragma: no cover
    for x in range(x0, x1):
        for y in range(U.shape[2]):
            for q in range(U.shape[3]):
                r0, r1, r2 = _project(R, U, x, y, q, kx[x], ky[y], kz2[q], ik2, nk2)
                a0 = A[0, x, y, q] + r0 * ca
                a1 = A[1, x, y, q] + r1 * ca
                a2 = A[2, x, y, q] + r2 * ca
                A[0, x, y, q] = U[0, x, y, q] = U0[0, x, y, q] = a0
                A[1, x, y, q] = U[1, x, y, q] = U0[1, x, y, q] = a1
                A[2, x, y, q] = U[2, x, y, q] = U0[2, x, y, q] = a2
    _prepare_rows(U, P, x0, x1, fx0, kx, ky, kz2)


@njit(**_JIT)
def _rhs(R, U, x0, x1, kx, ky, kz2, ik2, nk2):  # pragma: no cover  (compiled)
    for x in range(x0, x1):
        for y in range(U.shape[2]):
            for q in range(U.shape[3]):
                R[0, x, y, q], R[1, x, y, q], R[2, x, y, q] = _project(
                    R, U, x, y, q, kx[x], ky[y], kz2[q], ik2, nk2)


# ---------------------------------------------------------------- factories


def _ymap(yblocks: tuple[Block, ...]) -> np.ndarray:
    """Full-array y index of every compact y index."""
    return np.concatenate([np.arange(b.f0, b.f1) for b in yblocks]).astype(np.intp)


def _flat(a: np.ndarray, rows: slice) -> np.ndarray:
    """Rows of a C-contiguous array as a flat view (the kernels write through it)."""
    flat = a[rows].reshape(-1)
    if not np.shares_memory(flat, a):  # pragma: no cover  (a copy would lose the writes)
        raise ValueError("slab kernels need C-contiguous work arrays")
    return flat


def make_cross_kernel(U: list[np.ndarray], W: list[np.ndarray], rows: slice,
                      tmp: np.ndarray | None) -> Callable[[bool], tuple[float, float, float] | None]:
    """Kernel: W[rows] <- U[rows] x W[rows]; with ``stats=True`` returns (max|u|, max|v|, max|w|)."""
    args = tuple(_flat(a, rows) for a in (*U, *W))

    def run(stats: bool) -> tuple[float, float, float] | None:
        if stats:
            return _cross_stats(*args)
        _cross(*args)
        return None
    return run


def make_speed_kernel(U: list[np.ndarray], rows: slice, tmp: np.ndarray | None) -> Callable[[], float]:
    """Kernel: max |u|^2 over the slab (NaN when the slab holds NaN)."""
    args = tuple(_flat(a, rows) for a in U)
    return lambda: _speed2(*args)


def make_gather_kernel(F: np.ndarray, R: np.ndarray, xs: slice, xf: slice,
                       yblocks: tuple[Block, ...], scale: float) -> Callable[[int], None]:
    """Kernel: R[i, xs] <- the kept modes of the forward transform F (rows ``xf``) / N."""
    Fp, Rp, ymap = pair(F), pair(R), _ymap(yblocks)
    s = Rp.dtype.type(scale)
    x0, x1, fx0 = xs.start, xs.stop, xf.start
    return lambda i: _gather(Fp, Rp, i, x0, x1, fx0, ymap, s)


def make_spectral_kernels(P: np.ndarray, Rf: np.ndarray, uf: np.ndarray, u0f: np.ndarray,
                          accf: np.ndarray, xs: slice, xf: slice, yblocks: tuple[Block, ...],
                          co: SpectralCoefficients, t: np.ndarray | None,
                          s: np.ndarray | None) -> tuple[Callable[[float, float | None], None],
                                                         Callable[[], None],
                                                         Callable[[np.ndarray], None]]:
    """(stage, prepare, rhs) of compact rows ``xs``; see ``operators.make_spectral_kernels``."""
    Pp = pair(P)
    x0, x1, fx0 = xs.start, xs.stop, xf.start
    kx, ky, kz2 = co.kx[:, 0, 0].copy(), co.ky[0, :, 0].copy(), co.kz[0, 0, :].copy()
    ik2, nk2 = co.inv_k2, co.nu_k2
    real = uf.dtype.type

    def prepare() -> None:
        _prepare(uf, Pp, x0, x1, fx0, kx, ky, kz2)

    def stage(ca: float, cb: float | None) -> None:
        if cb is None:
            _stage_last(Rf, uf, u0f, accf, Pp, x0, x1, fx0, kx, ky, kz2, ik2, nk2, real(ca))
        else:
            _stage(Rf, uf, u0f, accf, Pp, x0, x1, fx0, kx, ky, kz2, ik2, nk2, real(ca), real(cb))

    def rhs(out_pairs: np.ndarray) -> None:
        _rhs(Rf, uf, x0, x1, kx, ky, kz2, ik2, nk2)
        out_pairs[:, xs] = Rf[:, xs]

    return stage, prepare, rhs


def warm_up() -> None:
    """Compile (or load from the cache) every kernel for float64 and float32."""
    for dt in (np.float64, np.float32):
        a = [np.zeros(4, dt) for _ in range(6)]
        _cross(*a)
        _cross_stats(*a)
        _speed2(*a[:3])
        four, three, one = np.zeros((3, 1, 1, 2), dt), np.zeros((1, 1, 2), dt), np.zeros(1, dt)
        ymap = np.zeros(1, np.intp)
        _gather(three, four, 0, 0, 1, 0, ymap, dt(1))
        k2, six = np.zeros(2, dt), np.zeros((6, 1, 1, 2), dt)
        _prepare(four, six, 0, 1, 0, one, one, k2)
        _stage(four, four, four, four, six, 0, 1, 0, one, one, k2, three, three, dt(1), dt(1))
        _stage_last(four, four, four, four, six, 0, 1, 0, one, one, k2, three, three, dt(1))
        _rhs(four, four, 0, 1, one, one, k2, three, three)
