"""The slab kernels of ``solver.operators``, fused into compiled numba loops.

Each kernel is one pass over memory per slab instead of several numpy calls with
temporaries. They compute the SAME floating-point operations in the SAME order as the numpy
kernels (no fastmath: no FMA contraction, no reassociation), so both kernel sets give
identical bits (tests/test_solver_physics.py checks it). Scalars, constants included, are
passed at the arrays' precision, as numpy casts a Python float to a float32 array's dtype
(NEP 50); a float64 literal in a loop would make numba compute float32 products in float64.

Kernels are ``nogil`` and run per slab on the stepper's own ``SlabPool`` threads, never
with ``parallel=True``: numba's workqueue threading layer aborts when two threads launch
parallel kernels at once (e.g. a process running two solves on two threads), and the fixed slab
partition keeps the bits independent of the thread count. ``cache=True`` stores the
compiled code next to this file (or in NUMBA_CACHE_DIR / the user cache when that is
read-only), so a new process loads it instead of compiling.

Factories have the signatures of the ``make_*`` functions in ``solver.operators`` (gather,
spectral) and ``solver.packing`` (slab load/store); the cross product and the speed work on
the stepper's packed slab (u + i v, w + i omega_x, omega_y + i omega_z) directly, where the
numpy set runs ``operators.make_cross_kernel`` on strided views of it. The stage kernel
reads the forward transforms from the x-padded spectra itself (the gather fused in: its
factory takes the gather's ``scale``; ``KernelSet.gather_in_stage``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict

import numpy as np
from numba import njit

from .grid import Block
from .operators import SpectralCoefficients, SpectralKernels, pair

__all__ = [
    "make_gather_kernel",
    "make_spectral_kernels",
    "make_load_pack_kernel",
    "make_store_unpack_kernel",
    "make_packed_cross_kernel",
    "make_packed_speed_kernel",
    "warm_up",
]


class _JitOptions(TypedDict):
    """Options of every ``njit`` here (typed, so that ``njit(**_JIT)`` matches numba's overloads)."""

    nogil: bool
    cache: bool


_JIT: _JitOptions = {"nogil": True, "cache": True}  # no fastmath: bits must equal the numpy kernels'


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


# The spectral kernels see each compact x-row as one flat run of My x 2Mz reals (u, u0, acc,
# 1/k^2, nu k^2 and P's rows are C-contiguous per x-row), with ky and kz spread out along it
# (kyf, kzf): long inner loops that LLVM vectorises with few scalar remainders (rows of 2Mz
# alone left most of a 64^3 float32 stage in scalar remainder code: measured 2.2x faster).


@njit(inline="always", **_JIT)
def _curl_row(U, P, x, fx, kxx, kyf, kzf, zero, one):  # pragma: no cover  (compiled)
    """P[3:6, fx] <- omega = i k x u of U[:, x] (flat pair rows).

    t = ua ka - ub kb as in operators.make_spectral_kernels, then t * 1j by numpy's complex
    product: (tr 0 - ti 1, tr 1 + ti 0), with 0 and 1 at the arrays' precision (a float64
    literal would make numba compute a float32 run's products in float64)."""
    for p in range(kyf.shape[0] // 2):
        q = 2 * p
        kyy = kyf[q]
        kzz = kzf[q]
        tr = U[2, x, q] * kyy - U[1, x, q] * kzz
        ti = U[2, x, q + 1] * kyy - U[1, x, q + 1] * kzz
        P[3, fx, q] = tr * zero - ti * one
        P[3, fx, q + 1] = tr * one + ti * zero
        tr = U[0, x, q] * kzz - U[2, x, q] * kxx
        ti = U[0, x, q + 1] * kzz - U[2, x, q + 1] * kxx
        P[4, fx, q] = tr * zero - ti * one
        P[4, fx, q + 1] = tr * one + ti * zero
        tr = U[1, x, q] * kxx - U[0, x, q] * kyy
        ti = U[1, x, q + 1] * kxx - U[0, x, q + 1] * kyy
        P[5, fx, q] = tr * zero - ti * one
        P[5, fx, q + 1] = tr * one + ti * zero


@njit(inline="always", **_JIT)
def _project(r0, r1, r2, u0, u1, u2, kxx, kyy, kzz, ik, nk):  # pragma: no cover  (compiled)
    """(r0, r1, r2) minus its k-parallel part minus nu k^2 u, in the numpy kernel's order."""
    t = ((r0 * kxx + r1 * kyy) + r2 * kzz) * ik
    return (r0 - t * kxx) - u0 * nk, (r1 - t * kyy) - u1 * nk, (r2 - t * kzz) - u2 * nk


@njit(**_JIT)
def _prepare(U, P, x0, x1, fx0, kx, kyf, kzf, zero, one):  # pragma: no cover  (compiled)
    """P[0:3] <- u, P[3:6] <- omega = i k x u, compact rows x0:x1 -> P rows fx0:... (flat)."""
    for x in range(x0, x1):
        fx = fx0 + x - x0
        for j in range(kyf.shape[0]):
            P[0, fx, j] = U[0, x, j]
            P[1, fx, j] = U[1, x, j]
            P[2, fx, j] = U[2, x, j]
        _curl_row(U, P, x, fx, kx[x], kyf, kzf, zero, one)


@njit(**_JIT)
def _stage(P, U, U0, A, x0, x1, fx0, kx, kyf, kzf, ik2, nk2, scale, ca, cb, zero, one):  # pragma: no cover
    """One RK stage on compact rows x0:x1 (flat), reading the forward transform of u x omega
    straight from P's rows (the gather fused in: r = F / N, as ``_gather`` computes it):
    project, acc += ca r, u = u0 + cb r, and write the next stage's P rows (``_prepare``),
    one pass over the rows."""
    for x in range(x0, x1):
        fx = fx0 + x - x0
        kxx = kx[x]
        for j in range(kyf.shape[0]):
            r0, r1, r2 = _project(
                P[0, fx, j] * scale,
                P[1, fx, j] * scale,
                P[2, fx, j] * scale,
                U[0, x, j],
                U[1, x, j],
                U[2, x, j],
                kxx,
                kyf[j],
                kzf[j],
                ik2[x, j],
                nk2[x, j],
            )
            A[0, x, j] += r0 * ca
            A[1, x, j] += r1 * ca
            A[2, x, j] += r2 * ca
            P[0, fx, j] = U[0, x, j] = U0[0, x, j] + r0 * cb
            P[1, fx, j] = U[1, x, j] = U0[1, x, j] + r1 * cb
            P[2, fx, j] = U[2, x, j] = U0[2, x, j] + r2 * cb
        _curl_row(U, P, x, fx, kxx, kyf, kzf, zero, one)


@njit(**_JIT)
def _stage_first(  # pragma: no cover  (compiled)
    P, U, U0, A, x0, x1, fx0, kx, kyf, kzf, ik2, nk2, scale, ca, cb, zero, one
):
    """The first stage, where u0 = acc = u (the numpy set's registers all hold u): reads u
    alone, writes acc = u + ca r, u0 = u and u = u + cb r (see ``_stage``)."""
    for x in range(x0, x1):
        fx = fx0 + x - x0
        kxx = kx[x]
        for j in range(kyf.shape[0]):
            v0, v1, v2 = U[0, x, j], U[1, x, j], U[2, x, j]
            r0, r1, r2 = _project(
                P[0, fx, j] * scale,
                P[1, fx, j] * scale,
                P[2, fx, j] * scale,
                v0,
                v1,
                v2,
                kxx,
                kyf[j],
                kzf[j],
                ik2[x, j],
                nk2[x, j],
            )
            A[0, x, j] = v0 + r0 * ca
            A[1, x, j] = v1 + r1 * ca
            A[2, x, j] = v2 + r2 * ca
            U0[0, x, j], U0[1, x, j], U0[2, x, j] = v0, v1, v2
            P[0, fx, j] = U[0, x, j] = v0 + r0 * cb
            P[1, fx, j] = U[1, x, j] = v1 + r1 * cb
            P[2, fx, j] = U[2, x, j] = v2 + r2 * cb
        _curl_row(U, P, x, fx, kxx, kyf, kzf, zero, one)


@njit(**_JIT)
def _stage_last(P, U, A, x0, x1, fx0, kx, kyf, kzf, ik2, nk2, scale, ca, zero, one):  # pragma: no cover
    """The last stage: u = acc + ca r (see ``_stage``). acc and u0 are left as they are:
    the next step's first stage (``_stage_first``) reads u alone, where the numpy set
    also sets acc = u0 = u."""
    for x in range(x0, x1):
        fx = fx0 + x - x0
        kxx = kx[x]
        for j in range(kyf.shape[0]):
            r0, r1, r2 = _project(
                P[0, fx, j] * scale,
                P[1, fx, j] * scale,
                P[2, fx, j] * scale,
                U[0, x, j],
                U[1, x, j],
                U[2, x, j],
                kxx,
                kyf[j],
                kzf[j],
                ik2[x, j],
                nk2[x, j],
            )
            P[0, fx, j] = U[0, x, j] = A[0, x, j] + r0 * ca
            P[1, fx, j] = U[1, x, j] = A[1, x, j] + r1 * ca
            P[2, fx, j] = U[2, x, j] = A[2, x, j] + r2 * ca
        _curl_row(U, P, x, fx, kxx, kyf, kzf, zero, one)


@njit(**_JIT)
def _rhs(R, U, x0, x1, kx, kyf, kzf, ik2, nk2):  # pragma: no cover  (compiled)
    """R <- projected R minus nu k^2 u, compact rows x0:x1 (flat; for the tests)."""
    for x in range(x0, x1):
        for j in range(kyf.shape[0]):
            R[0, x, j], R[1, x, j], R[2, x, j] = _project(
                R[0, x, j],
                R[1, x, j],
                R[2, x, j],
                U[0, x, j],
                U[1, x, j],
                U[2, x, j],
                kx[x],
                kyf[j],
                kzf[j],
                ik2[x, j],
                nk2[x, j],
            )


@njit(**_JIT)
def _load_pack(P, Z, ja, jb, npairs, x0, ymap, mz, g0, g1):  # pragma: no cover  (compiled)
    """Z[p] <- packed (y-padded, z-full) spectra of A = P[ja + 2p] and B = P[jb + 2p] (pairs;
    jb < 0: B = 0), rows x0:x0+b of P (physical x after the x pass):

    Z(ky, k) = A + i B for k < mz, Z(ky, n-k) = conj A + i conj B for 0 < k < mz, zero in
    the rows ky not kept (the contiguous rows g0:g1, zeroed in one fill per x-row: the y
    pass in place filled them); the kz band mz <= k <= n-mz is zero from the start and only
    ever rewritten with zeros (the z pass reads Z out of place). The stepper transforms the
    columns k < mz backward along y and the columns n-k forward (conj of a backward
    transform is the forward transform of the conj), so that the z transform gives a + i b.
    """
    n = Z.shape[3] // 2
    for p in range(npairs):
        a = ja + 2 * p
        c = jb + 2 * p
        for x in range(Z.shape[1]):
            fx = x0 + x
            Z[p, x].reshape(-1)[g0 * 2 * n : g1 * 2 * n] = 0.0
            for y in range(Z.shape[2]):
                cy = ymap[y]
                if cy < 0:
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
                _, _, b0r, b0i = _split(
                    Z[1, x, y, 2 * k], Z[1, x, y, 2 * k + 1], Z[1, x, ym, 2 * m], Z[1, x, ym, 2 * m + 1]
                )
                a1r, a1i, b1r, b1i = _split(
                    Z[2, x, y, 2 * k], Z[2, x, y, 2 * k + 1], Z[2, x, ym, 2 * m], Z[2, x, ym, 2 * m + 1]
                )
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
    # maxima kept at the arrays' precision (a float64 0.0 would convert every float32 value;
    # the maximum is one of the values, exact either way)
    mu = mv = mw = q0.dtype.type(0)
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
    m = q0.dtype.type(0)
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


def make_gather_kernel(
    F: np.ndarray, R: np.ndarray, xs: slice, xf: slice, yblocks: tuple[Block, ...], scale: float
) -> Callable[[int], None]:
    """Kernel: R[i, xs] <- the kept modes of the forward transform F (rows ``xf``) / N."""
    Fp, Rp, ymap = pair(F), pair(R), _ymap(yblocks)
    s = Rp.dtype.type(scale)
    x0, x1, fx0 = xs.start, xs.stop, xf.start
    return lambda i: _gather(Fp, Rp, i, x0, x1, fx0, ymap, s)


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
    t: np.ndarray | None,
    s: np.ndarray | None,
    scale: float,
) -> SpectralKernels:
    """(stage, prepare, rhs) of compact rows ``xs``; see ``operators.make_spectral_kernels``.

    Unlike the numpy set, ``stage`` reads the forward transform of u x omega straight from
    P's rows ``xf`` and scales it by ``scale`` (1/N) itself: the gather is fused in (one pass
    less over the spectra; ``KernelSet.gather_in_stage``). ``rhs`` still reads ``Rf``, which
    the caller fills with the gather kernels first.
    """

    def flat(a: np.ndarray) -> np.ndarray:  # (..., My, 2Mz) -> (..., My 2Mz), no copy
        f = a.reshape(*a.shape[:-2], -1)
        if not np.shares_memory(f, a):  # pragma: no cover
            raise ValueError("spectral kernels need C-contiguous work arrays")
        return f

    Pf, Rff, uff, u0ff, accff = flat(pair(P)), flat(Rf), flat(uf), flat(u0f), flat(accf)
    ik2, nk2 = flat(co.inv_k2), flat(co.nu_k2)  # nu k^2 is rewritten in place (set_nu)
    x0, x1, fx0 = xs.start, xs.stop, xf.start
    my, m2 = uf.shape[2], uf.shape[3]
    kx = co.kx[:, 0, 0].copy()
    kyf = np.repeat(co.ky[0, :, 0], m2)  # ky, kz of each number of a flat row
    kzf = np.tile(co.kz[0, 0, :], my)
    real = uf.dtype.type
    # scalars at the arrays' precision: numba would compute float32 products with a float64
    # scalar in float64 (numpy casts a Python float to the array's dtype, NEP 50)
    sc, zero, one = real(scale), real(0.0), real(1.0)

    def prepare() -> None:
        _prepare(uff, Pf, x0, x1, fx0, kx, kyf, kzf, zero, one)

    def stage(ca: float, cb: float | None, first: bool = False) -> None:
        if cb is None:  # at a first stage acc = u: the sum starts from u
            _stage_last(
                Pf, uff, uff if first else accff, x0, x1, fx0, kx, kyf, kzf, ik2, nk2, sc, real(ca), zero, one
            )
        elif first:
            _stage_first(
                Pf, uff, u0ff, accff, x0, x1, fx0, kx, kyf, kzf, ik2, nk2, sc, real(ca), real(cb), zero, one
            )
        else:
            _stage(
                Pf, uff, u0ff, accff, x0, x1, fx0, kx, kyf, kzf, ik2, nk2, sc, real(ca), real(cb), zero, one
            )

    def rhs(out_pairs: np.ndarray) -> None:
        _rhs(Rff, uff, x0, x1, kx, kyf, kzf, ik2, nk2)
        out_pairs[:, xs] = Rf[:, xs]

    return stage, prepare, rhs


def make_load_pack_kernel(
    P: np.ndarray, Z: np.ndarray, yblocks: tuple[Block, ...], mz: int
) -> Callable[[int, int, int, int], None]:
    """Kernel ``load(ja, jb, npairs, x0)``: Z[p] <- packed spectra of P[ja + 2p] + i P[jb + 2p]
    (jb < 0: no imaginary part), rows x0:x0+b; see ``_load_pack`` and ``solver.stepper``."""
    ymap = np.full(Z.shape[2], -1, np.intp)
    for b in yblocks:
        ymap[b.f0 : b.f1] = np.arange(b.c0, b.c1)
    gap = np.flatnonzero(ymap < 0)  # rows not kept: one contiguous run (grid.Block layout)
    g0, g1 = (int(gap[0]), int(gap[-1]) + 1) if gap.size else (0, 0)
    if g1 - g0 != gap.size:  # pragma: no cover
        raise ValueError("the rows of ky not kept must be contiguous")
    Pp, Zp = pair(P), pair(Z)
    return lambda ja, jb, npairs, x0: _load_pack(Pp, Zp, ja, jb, npairs, x0, ymap, mz, g0, g1)


def make_store_unpack_kernel(
    Z: np.ndarray, P: np.ndarray, yblocks: tuple[Block, ...], mz: int
) -> Callable[[int], None]:
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
        k2, six, flat3 = np.zeros(2, dt), np.zeros((6, 1, 2), dt), np.zeros((3, 1, 2), dt)
        flat6 = np.zeros((1, 2), dt)
        _prepare(flat3, six, 0, 1, 0, one, k2, k2, dt(0), dt(1))
        _stage(
            six, flat3, flat3, flat3, 0, 1, 0, one, k2, k2, flat6, flat6, dt(1), dt(1), dt(1), dt(0), dt(1)
        )
        _stage_first(
            six, flat3, flat3, flat3, 0, 1, 0, one, k2, k2, flat6, flat6, dt(1), dt(1), dt(1), dt(0), dt(1)
        )
        _stage_last(six, flat3, flat3, 0, 1, 0, one, k2, k2, flat6, flat6, dt(1), dt(1), dt(0), dt(1))
        _rhs(flat3, flat3, 0, 1, one, k2, k2, flat6, flat6)
        z4 = np.zeros((3, 1, 1, 8), dt)  # 3 packed lines of n = 4
        p6 = np.zeros((6, 1, 1, 4), dt)
        _load_pack(p6, z4, 0, 1, 3, 0, ymap, 2, 0, 0)
        _load_pack(p6, z4, 3, -1, 1, 0, ymap, 2, 0, 0)
        _store_unpack(z4, p6, 0, ymap, 2)
        _cross_packed(*a[:3])
        _cross_packed_stats(*a[:3])
        _speed2_packed(*a[:2])
