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

Factories have the signatures of the ``make_*`` functions in ``solver.operators`` (gather,
spectral) and ``solver.packing`` (slab load/store); the cross product and the speed work on
the stepper's packed slab (u + i v, w + i omega_x, omega_y + i omega_z) directly, where the
numpy set runs ``operators.make_cross_kernel`` on strided views of it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

from .grid import Block
from .operators import SpectralCoefficients, pair

__all__ = ["make_gather_kernel", "make_spectral_kernels", "make_load_pack_kernel",
           "make_store_unpack_kernel", "make_packed_cross_kernel", "make_packed_speed_kernel", "warm_up"]

_JIT = dict(nogil=True, cache=True)  # no fastmath: bits must equal the numpy kernels'


# ---------------------------------------------------------------- compiled loops


@njit(inline="always", **_JIT)
def _amax(m, x):  # pragma: no cover  (compiled)
    """max(m, |x|), NaN once any x was NaN (like numpy's max)."""
    a = abs(x)
    if a > m or a != a:
        return a
    return m


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


@njit(**_JIT)
def _load_pack(P, Z, ja, jb, npairs, x0, ymap, mz):  # pragma: no cover  (compiled)
    """Z[p] <- packed (y-padded, z-full) spectra of A = P[ja + 2p] and B = P[jb + 2p] (pairs;
    jb < 0: B = 0), rows x0:x0+b of P (physical x after the x pass):

    Z(ky, k) = A + i B for k < mz, Z(ky, n-k) = conj A + i conj B for 0 < k < mz, zero in
    the rows ky not kept; the kz band mz <= k <= n-mz is zero from the start and never
    written (the z pass reads Z out of place). The stepper transforms the columns k < mz
    backward along y and the columns n-k forward (conj of a backward transform is the
    forward transform of the conj), so that the z transform gives a + i b.
    """
    n = Z.shape[3] // 2
    for p in range(npairs):
        a = ja + 2 * p
        c = jb + 2 * p
        for x in range(Z.shape[1]):
            fx = x0 + x
            for y in range(Z.shape[2]):
                cy = ymap[y]
                if cy < 0:
                    for q in range(2 * mz):
                        Z[p, x, y, q] = 0.0
                    for q in range(2 * (n - mz + 1), 2 * n):
                        Z[p, x, y, q] = 0.0
                    continue
                if c >= 0:
                    for k in range(mz):
                        ar, ai = P[a, fx, cy, 2 * k], P[a, fx, cy, 2 * k + 1]
                        br, bi = P[c, fx, cy, 2 * k], P[c, fx, cy, 2 * k + 1]
                        Z[p, x, y, 2 * k] = ar - bi
                        Z[p, x, y, 2 * k + 1] = ai + br
                        if k > 0:
                            Z[p, x, y, 2 * (n - k)] = ar + bi
                            Z[p, x, y, 2 * (n - k) + 1] = br - ai
                else:  # b = 0 (the divergence diagnostic)
                    for k in range(mz):
                        ar, ai = P[a, fx, cy, 2 * k], P[a, fx, cy, 2 * k + 1]
                        Z[p, x, y, 2 * k] = ar
                        Z[p, x, y, 2 * k + 1] = ai
                        if k > 0:
                            Z[p, x, y, 2 * (n - k)] = ar
                            Z[p, x, y, 2 * (n - k) + 1] = -ai


@njit(inline="always", **_JIT)
def _split(zr, zi, wr, wi):  # pragma: no cover  (compiled)
    """(A, B) from Z = zr + i zi at (ky, k) and W = wr + i wi at (-ky, -k) of the (y, z) FFT
    of a + i b: A = (Z + conj W) / 2, B = (Z - conj W) / 2i."""
    return (zr + wr) * 0.5, (zi - wi) * 0.5, (zi + wi) * 0.5, (wr - zr) * 0.5


@njit(**_JIT)
def _store_unpack(Z, P, x0, yfull, mz):  # pragma: no cover  (compiled)
    """P[0:3, x0:x0+b] <- kept (ky, kz < mz) modes of u x omega from its packed transforms
    Z[1] = FFT(w + i (u x omega)_x), Z[2] = FFT((u x omega)_y + i (u x omega)_z), whose
    columns n-k the stepper transformed backward along y: they hold the values at (-ky, -k)
    in row ky."""
    n = Z.shape[3] // 2
    for x in range(Z.shape[1]):
        fx = x0 + x
        for c in range(yfull.shape[0]):
            y = yfull[c]
            for k in range(mz):
                m = n - k if k > 0 else 0
                ym = y if k > 0 else yfull[(yfull.shape[0] - c) % yfull.shape[0]]
                _, _, b0r, b0i = _split(Z[1, x, y, 2 * k], Z[1, x, y, 2 * k + 1],
                                        Z[1, x, ym, 2 * m], Z[1, x, ym, 2 * m + 1])
                a1r, a1i, b1r, b1i = _split(Z[2, x, y, 2 * k], Z[2, x, y, 2 * k + 1],
                                            Z[2, x, ym, 2 * m], Z[2, x, ym, 2 * m + 1])
                P[0, fx, c, 2 * k], P[0, fx, c, 2 * k + 1] = b0r, b0i
                P[1, fx, c, 2 * k], P[1, fx, c, 2 * k + 1] = a1r, a1i
                P[2, fx, c, 2 * k], P[2, fx, c, 2 * k + 1] = b1r, b1i


@njit(**_JIT)
def _cross_packed(q0, q1, q2):  # pragma: no cover  (compiled)
    """(u + i v, w + i ox, oy + i oz) -> u x omega into (ox; oy, oz), in the order of
    ``operators.make_cross_kernel``."""
    for i in range(q0.shape[0] // 2):
        a, b, c = q0[2 * i], q0[2 * i + 1], q1[2 * i]
        x, y, z = q1[2 * i + 1], q2[2 * i], q2[2 * i + 1]
        q1[2 * i + 1] = b * z - c * y
        q2[2 * i] = c * x - a * z
        q2[2 * i + 1] = a * y - b * x


@njit(**_JIT)
def _cross_packed_stats(q0, q1, q2):  # pragma: no cover  (compiled)
    mu = mv = mw = 0.0
    for i in range(q0.shape[0] // 2):
        a, b, c = q0[2 * i], q0[2 * i + 1], q1[2 * i]
        mu, mv, mw = _amax(mu, a), _amax(mv, b), _amax(mw, c)
        x, y, z = q1[2 * i + 1], q2[2 * i], q2[2 * i + 1]
        q1[2 * i + 1] = b * z - c * y
        q2[2 * i] = c * x - a * z
        q2[2 * i + 1] = a * y - b * x
    return float(mu), float(mv), float(mw)


@njit(**_JIT)
def _speed2_packed(q0, q1):  # pragma: no cover  (compiled)
    m = 0.0
    for i in range(q0.shape[0] // 2):
        u, v, w = q0[2 * i], q0[2 * i + 1], q1[2 * i]
        s = (u * u + v * v) + w * w
        if s > m or s != s:
            m = s
    return float(m)


# ---------------------------------------------------------------- factories


def _ymap(yblocks: tuple[Block, ...]) -> np.ndarray:
    """Full-array y index of every compact y index."""
    return np.concatenate([np.arange(b.f0, b.f1) for b in yblocks]).astype(np.intp)


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


def make_load_pack_kernel(P: np.ndarray, Z: np.ndarray, yblocks: tuple[Block, ...],
                          mz: int) -> Callable[[int, int, int, int], None]:
    """Kernel ``load(ja, jb, npairs, x0)``: Z[p] <- packed spectra of P[ja + 2p] + i P[jb + 2p]
    (jb < 0: no imaginary part), rows x0:x0+b; see ``_load_pack`` and ``solver.stepper``."""
    ymap = np.full(Z.shape[2], -1, np.intp)
    for b in yblocks:
        ymap[b.f0:b.f1] = np.arange(b.c0, b.c1)
    Pp, Zp = pair(P), pair(Z)
    return lambda ja, jb, npairs, x0: _load_pack(Pp, Zp, ja, jb, npairs, x0, ymap, mz)


def make_store_unpack_kernel(Z: np.ndarray, P: np.ndarray, yblocks: tuple[Block, ...],
                             mz: int) -> Callable[[int], None]:
    """Kernel ``store(x0)``: P[0:3, x0:x0+b] <- the kept modes of u x omega unpacked from Z."""
    yfull = _ymap(yblocks)
    Pp, Zp = pair(P), pair(Z)
    return lambda x0: _store_unpack(Zp, Pp, x0, yfull, mz)


def make_packed_cross_kernel(Z: np.ndarray) -> Callable[[bool], tuple[float, float, float] | None]:
    """Kernel on Z = (u + i v, w + i ox, oy + i oz): u x omega into (Z[1].imag, Z[2]); with
    ``stats`` returns (max|u|, max|v|, max|w|), as ``operators.make_cross_kernel``."""
    q = tuple(pair(Z[p]).reshape(-1) for p in range(3))
    for a in q:
        if not np.shares_memory(a, Z):  # pragma: no cover
            raise ValueError("packed kernels need C-contiguous work arrays")

    def run(stats: bool) -> tuple[float, float, float] | None:
        if stats:
            return _cross_packed_stats(*q)
        _cross_packed(*q)
        return None
    return run


def make_packed_speed_kernel(Z: np.ndarray) -> Callable[[], float]:
    """Kernel: max |u|^2 of Z = (u + i v, w + ...)."""
    q0, q1 = pair(Z[0]).reshape(-1), pair(Z[1]).reshape(-1)
    return lambda: _speed2_packed(q0, q1)


def warm_up() -> None:
    """Compile (or load from the cache) every kernel for float64 and float32."""
    for dt in (np.float64, np.float32):
        a = [np.zeros(4, dt) for _ in range(3)]
        four, three, one = np.zeros((3, 1, 1, 2), dt), np.zeros((1, 1, 2), dt), np.zeros(1, dt)
        ymap = np.zeros(1, np.intp)
        _gather(three, four, 0, 0, 1, 0, ymap, dt(1))
        k2, six = np.zeros(2, dt), np.zeros((6, 1, 1, 2), dt)
        _prepare(four, six, 0, 1, 0, one, one, k2)
        _stage(four, four, four, four, six, 0, 1, 0, one, one, k2, three, three, dt(1), dt(1))
        _stage_last(four, four, four, four, six, 0, 1, 0, one, one, k2, three, three, dt(1))
        _rhs(four, four, 0, 1, one, one, k2, three, three)
        z4 = np.zeros((3, 1, 1, 8), dt)  # 3 packed lines of n = 4
        p6 = np.zeros((6, 1, 1, 4), dt)
        _load_pack(p6, z4, 0, 1, 3, 0, ymap, 2)
        _load_pack(p6, z4, 3, -1, 1, 0, ymap, 2)
        _store_unpack(z4, p6, 0, ymap, 2)
        _cross_packed(*a[:3])
        _cross_packed_stats(*a[:3])
        _speed2_packed(*a[:2])
