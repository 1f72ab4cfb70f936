"""The time stepper: preallocated work arrays, FFT plans and one fused RK step.

Memory (N = nx ny nz real points; the work arrays are allocated once and a step allocates
none, though the scipy backend's passes return new arrays that are copied into place; no
array of the whole physical grid exists):

* P (6, nx, My, Mz) complex: the x-padded spectra of u and omega = i k x u (rows of kx
  outside the 2/3 box zero before each inverse x pass), about 6 x 0.44 x N/2 complex;
  the x passes run in place, and the forward transforms of u x omega come back into P[0:3];
* u, u0, acc, R: compact (dealiased) spectral state of the RK scheme and the right-hand
  side, about 4 x 0.3 x 3N/2 complex;
* per worker thread, two slabs Zi, Z (3, b, ny, nz) complex of b x-rows (``_SlabBuffers``).

One RK stage is: the inverse x passes of P (chunks of ky columns, on the slab pool); per
slab of x-rows, on the pool: load P's rows into Zi packed in pairs (u + i v, w + i omega_x,
omega_y + i omega_z; two real z transforms for the price of one complex one), inverse y
and z passes, u x omega (at stage 0 also the CFL and NaN check), forward z and y passes,
unpack the 3 kept spectra into P[0:3]'s rows; forward x passes of P[0:3]; gather the kept
kx rows into R; one spectral pass that projects, adds viscosity, updates the RK registers
and writes the next stage's P (kept rows). The numba set fuses the gather into that pass
(it reads P[0:3]'s kept rows, scaled by 1/N, and overwrites them with the new u). Slabs
and column chunks are fixed by the grid and the kernel set, never by the thread count, and
every line is transformed and every value computed by the same operations whichever thread
runs it and however the rows are cut: results depend on neither.

Everything that depends only on (grid, precision, backend, threads, kernel set) lives in a
``Workspace``; closed steppers of small grids return theirs to a per-process cache (at most
``CACHE_MAX_ENTRIES``, each of at most ``CACHE_MAX_POINTS`` points), so a process that runs
many tiny cases plans its FFTs and binds its kernels once, not once per run.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from . import operators as op
from . import packing
from .diagnostics import energy, enstrophy
from .errors import DivergedError
from .fft import get_backend
from .grid import Block, Grid, make_grid
from .integrators import get_integrator
from .kernels import KernelSet, default_kernels, get_kernels
from .parallel import SlabPool, slab_owner
from .params import SolverParams

__all__ = [
    "Stepper",
    "Workspace",
    "effective_threads",
    "slab_rows",
    "x_chunk_cols",
    "clear_workspace_cache",
    "MIN_POINTS_PER_THREAD",
    "CACHE_MAX_POINTS",
    "CACHE_MAX_ENTRIES",
]


# Below this many points per thread, waking helper threads costs more than it saves.
MIN_POINTS_PER_THREAD = 1 << 15


def effective_threads(grid: Grid, threads: int) -> int:
    """Threads actually used for ``grid`` (results do not depend on it; speed does)."""
    return max(1, min(int(threads), grid.n_points // MIN_POINTS_PER_THREAD))


def _chunks(start: int, stop: int, size: int) -> list[slice]:
    return [slice(a, min(a + size, stop)) for a in range(start, stop, size)]


def slab_rows(nx: int, ny: int, nz: int, elems: int) -> int:
    """Rows per physical slab: the largest divisor of nx with at most ``elems`` points per
    row block (every slab the same height, so one set of FFT plans serves all slabs)."""
    target = max(1, elems // (ny * nz))
    return max(d for d in range(1, nx + 1) if nx % d == 0 and (d <= target or d == 1))


# bytes per component of an x-pass chunk (8192 complex numbers in float64, 16384 in float32:
# the same data per hand-over to the pool whatever the precision)
X_CHUNK_BYTES = 1 << 17


def x_chunk_cols(nx: int, my: int, mz: int, elems: int) -> int:
    """ky columns per x-pass chunk: about ``elems`` points per component, a multiple of 4
    (so chunk offsets keep the 32-byte alignment of P for any mz)."""
    return max(4, elems // (nx * mz) // 4 * 4)


class _SlabBuffers:
    """One worker's buffers and plans for the physical-space part of a stage, on a slab of
    ``b`` x-rows.

    Real z transforms are done two lines at a time as one complex FFT of a + i b (FFTW's
    complex codelets use SIMD, its r2c/c2r ones do not: measured 1.7x faster in float64 and
    2.5x in float32 for the same lines here). Zi (3, b, ny, nz) holds the packed spectra of
    the pairs (u, v), (w, omega_x), (omega_y, omega_z), written straight from P by ``load``
    (kz < mz: A + i B; kz = nz - k: conj A + i conj B, whose y transform is run forward:
    the conjugate of a backward transform); y passes over the two kept kz blocks in place,
    then the z pass out of place into Z gives the physical pairs (Zi's zero kz band is never
    written); the cross kernel leaves u x omega in (Z[1].imag, Z[2]); forward z and y passes
    in place (the conjugate block backward), and ``store`` unpacks the 3 kept spectra into
    P[0:3] (P's x axis is physical at that point).
    """

    def __init__(self, ws: Workspace, b: int, kf: ModuleType, scratch: bool) -> None:
        g, pl = ws.grid, ws.plans
        nx, ny, nz = g.shape
        _, my, mz = g.compact_shape
        rdt, cdt = g.dtype, g.complex_dtype
        # Zi: packed spectra (zero kz band, y passes in place); Z: physical pairs, then the
        # forward transforms in place
        Zi = self.Zi = ws.backend.empty((3, b, ny, nz), cdt)
        Zi[...] = 0
        Z = self.Z = ws.backend.empty((3, b, ny, nz), cdt)
        # y passes over the kept kz blocks [0, mz) and [nz-mz+1, nz); the second starts at a
        # multiple of 4 (a few zero planes more) so its lines stay 32-byte aligned: FFTW's
        # SIMD codelets then apply in float32 too. In float32 the first block also spans an
        # even number of planes (one zero plane more when mz is odd): FFTW vectorises a
        # float32 pass over pairs of lines, and an odd count made it fall back to scalar
        # code for the whole block (measured at 128^3: 1.4-1.6x slower y passes). The bits
        # of every line are the same either way (tests/test_solver_fft.py).
        hi = max(mz, (nz - mz + 1) // 4 * 4)
        lanes = max(1, 16 // np.dtype(cdt).itemsize)  # complex numbers per 16-byte vector
        blocks = [slice(0, min(hi, -(-mz // lanes) * lanes))] + ([slice(hi, nz)] if mz > 1 else [])

        def ypasses(a: np.ndarray, kinds: tuple[str, str]) -> list[Callable[[], None]]:
            # the conjugate half (kz > nz/2) is transformed the other way (see ``load``)
            # strict=False: with mz == 1 there is no conjugate block, and its kind goes unused
            return [
                pl.transform(a[..., k], a[..., k], a.ndim - 2, kind, 1)
                for k, kind in zip(blocks, kinds, strict=False)
            ]

        self.y_inv, self.y_inv1 = (
            ypasses(Zi, ("backward", "forward")),
            ypasses(Zi[0], ("backward", "forward")),
        )
        self.y_fwd = ypasses(Z[1:], ("forward", "backward"))
        self.z_inv = pl.transform(Zi, Z, 3, "backward", 1)  # out of place: Zi preserved
        self.z_fwd = pl.transform(Z[1:], Z[1:], 3, "forward", 1)
        self.z_inv1 = pl.transform(Zi[0], Z[0], 2, "backward", 1)  # the divergence diagnostic
        # load/store are exact or the same operations in both kernel sets: same bits
        self.load: Callable[[int, int, int, int], None] = getattr(
            kf, "make_load_pack_kernel", packing.make_load_pack_kernel
        )(ws.P, Zi, g.yblocks, mz)
        self.store: Callable[[int], None] = getattr(
            kf, "make_store_unpack_kernel", packing.make_store_unpack_kernel
        )(Z, ws.P, g.yblocks, mz)
        self.cross: Callable[[bool], tuple[float, float, float] | None]
        self.speed: Callable[[], float]
        if hasattr(kf, "make_packed_cross_kernel"):
            self.cross = kf.make_packed_cross_kernel(Z)
            self.speed = kf.make_packed_speed_kernel(Z)
        else:  # the generic kernels on strided views of the packed lines
            tmp = np.empty((4, b, ny, nz), rdt) if scratch else None
            u = [Z[0].real, Z[0].imag, Z[1].real]
            self.cross = kf.make_cross_kernel(u, [Z[1].imag, Z[2].real, Z[2].imag], slice(0, b), tmp)
            self.speed = kf.make_speed_kernel(u, slice(0, b), tmp)

    def inverse(self, x0: int, ja: int = 0, jb: int = 1, npairs: int = 3) -> None:
        """Z <- physical pairs of P[ja + 2p] + i P[jb + 2p] on rows x0:x0+b."""
        self.load(ja, jb, npairs, x0)
        for f in self.y_inv if npairs > 1 else self.y_inv1:
            f()
        (self.z_inv if npairs > 1 else self.z_inv1)()

    def forward(self, x0: int) -> None:
        """P[0:3, rows x0:x0+b] <- kept (y, z) modes of u x omega held in Z."""
        self.z_fwd()
        for f in self.y_fwd:
            f()
        self.store(x0)


class Workspace:
    """The parts of a stepper that depend only on (grid, precision, backend, threads, kernels).

    Work arrays, FFT plans, coefficient arrays and the slab kernels bound to them. Building
    one costs milliseconds (FFTW planning, ~40 kernel closures), which dominates a tiny
    one-step run, so closed steppers hand small workspaces back to a per-process cache
    (``_acquire`` / ``_release``). The only parameter-dependent array, nu k^2, is rewritten
    in place by each new stepper; everything else is overwritten before it is read.
    """

    def __init__(self, grid: Grid, backend: str, threads: int, kernels: KernelSet) -> None:
        g = self.grid = grid
        self.backend = get_backend(backend)
        self.threads = threads
        self.kernels = kernels
        self.key = _workspace_key(g, self.backend.name, threads, kernels.name)
        kf = kernels.factories()
        rdt, cdt = g.dtype, g.complex_dtype
        empty = self.backend.empty
        nx, ny, nz = g.shape
        mx, my, mz = g.compact_shape
        # x-padded spectra (rows of kx outside the 2/3 box are zeroed before each inverse x
        # pass): P[0:3] u_hat, P[3:6] omega_hat; the x passes run in place, and the forward
        # transforms of u x omega come back into P[0:3]
        P = self.P = empty((6, nx, my, mz), cdt)
        P[...] = 0
        self.plans = pl = self.backend.plans(g.shape, rdt, threads)
        # x passes on chunks of ky columns, single-threaded, run by the slab pool (FFTW's
        # own threads are OpenMP ones here, whose spinning workers starve the pool's threads
        # on a busy machine); chunk starts stay 32-byte aligned, so every chunk gets the same
        # SIMD codelets as the whole array would (bits independent of the cut)
        cols = _chunks(0, my, x_chunk_cols(nx, my, mz, X_CHUNK_BYTES // np.dtype(cdt).itemsize))
        gap = slice(g.K[0] + 1, nx - g.K[0])  # rows of kx outside the 2/3 box
        self.x_inv = [(P[:, gap, c], pl.transform(P[:, :, c], P[:, :, c], 1, "backward", 1)) for c in cols]
        self.x_fwd = [pl.transform(P[:3, :, c], P[:3, :, c], 1, "forward", 1) for c in cols]
        self.x_inv1 = [(P[3, gap, c], pl.transform(P[3, :, c], P[3, :, c], 0, "backward", 1)) for c in cols]

        cs = (3, *g.compact_shape)
        self.u, self.u0, self.acc, self.R = (np.zeros(cs, cdt) for _ in range(4))
        self.uf, self.u0f, self.accf, self.Rf = (op.pair(a) for a in (self.u, self.u0, self.acc, self.R))
        # nu k^2 is set by each stepper (set_nu); full k arrays only for kernels with scratch
        self.co = op.spectral_coefficients(g, 0.0, full_k=kernels.scratch)

        b = slab_rows(nx, ny, nz, kernels.phys_slab_elems(rdt))
        self.phys_slabs = _chunks(0, nx, b)
        workers = max(1, threads)
        self.slab_bufs = [_SlabBuffers(self, b, kf, kernels.scratch) for _ in range(workers)]

        bs = max(1, kernels.spec_slab_elems // (my * mz))
        spec_slabs = [
            (xs, slice(b_.f0 + xs.start - b_.c0, b_.f0 + xs.stop - b_.c0))
            for b_ in g.xblocks
            for xs in _chunks(b_.c0, b_.c1, bs)
        ]
        # kernels with scratch arrays: spectral slabs are dealt to workers in contiguous runs
        # (static map) and each worker owns its scratch; scratch-free kernels run on any worker
        self.dynamic = not kernels.scratch

        def owner(i: int, n: int) -> int:
            return slab_owner(workers, i, n)

        scratch = kernels.scratch
        t = [np.empty((bs, my, 2 * mz), rdt) if scratch else None for _ in range(workers)]
        s = [np.empty((bs, my, 2 * mz), rdt) if scratch else None for _ in range(workers)]
        spec: list[op.SpectralKernels] = []
        for i, (xs, xf) in enumerate(spec_slabs):
            w = owner(i, len(spec_slabs))
            fused = (1.0 / g.n_points,) if kernels.gather_in_stage else ()  # the gather's scale
            spec.append(
                kf.make_spectral_kernels(
                    self.P,
                    self.Rf,
                    self.uf,
                    self.u0f,
                    self.accf,
                    xs,
                    xf,
                    g.yblocks,
                    self.co,
                    t[w],
                    s[w],
                    *fused,
                )
            )
        self.stage_k = [k[0] for k in spec]
        self.prepare_k = [k[1] for k in spec]
        self.rhs_k = [k[2] for k in spec]
        # R[i] <- kept kx rows of the forward transform in P[i], / N (y and z already compact);
        # kernel sets with gather_in_stage read P in the stage kernel instead (R only for rhs)
        self.gather_in_stage = kernels.gather_in_stage
        ident = (Block(0, my, 0),)
        self.gather_k: list[tuple[int, Callable[[int], None]]] = [
            (i, kf.make_gather_kernel(self.P[i], self.R, xs, xf, ident, 1.0 / g.n_points))
            for i in range(3)
            for xs, xf in spec_slabs
        ]

    @property
    def nbytes(self) -> int:
        """Bytes of the work arrays (what the cache keeps alive)."""
        arrays = [self.P, self.u, self.u0, self.acc, self.R]
        arrays += [a for sb in self.slab_bufs for a in (sb.Zi, sb.Z)]
        return sum(a.nbytes for a in arrays)

    def set_nu(self, nu: float) -> None:
        """Write nu |k|^2 for viscosity ``nu`` (the same values as spectral_coefficients)."""
        self.co.nu_k2[...] = op.nu_k2(self.grid, nu)


def _workspace_key(grid: Grid, backend: str, threads: int, kernels: str) -> tuple[Any, ...]:
    return (grid.shape, grid.dtype.str, backend, threads, kernels)


# Per-process cache of idle workspaces of small grids, most recently released last. A
# workspace is handed out to one stepper at a time (taken out of the cache while in use),
# so two steppers alive at once never share arrays.
CACHE_MAX_POINTS = 1 << 15  # 32^3: construction matters only next to steps this short
CACHE_MAX_ENTRIES = 2
_idle: list[Workspace] = []
_idle_lock = threading.Lock()


def _acquire(grid: Grid, backend: str, threads: int, kernels: KernelSet) -> Workspace:
    """An idle cached workspace for these settings, or a new one."""
    key = _workspace_key(grid, get_backend(backend).name, threads, kernels.name)
    with _idle_lock:
        for i in range(len(_idle) - 1, -1, -1):
            if _idle[i].key == key:
                return _idle.pop(i)
    return Workspace(grid, backend, threads, kernels)


def _release(ws: Workspace) -> None:
    """Give a workspace back to the cache (small grids only; the oldest is dropped)."""
    if ws.grid.n_points > CACHE_MAX_POINTS:
        return
    with _idle_lock:
        _idle.append(ws)
        del _idle[:-CACHE_MAX_ENTRIES]


def clear_workspace_cache() -> None:
    """Drop every cached workspace (frees their memory)."""
    with _idle_lock:
        _idle.clear()


class Stepper:
    """Holds one run's work arrays and advances the compact spectral velocity in time.

    ``kernels`` picks the slab kernel set (``solver.kernels``; all give the same bits;
    default: ``SOLVER_KERNELS`` or 'auto').
    Call ``close()`` when done: it stops the helper threads and returns a small grid's
    workspace to the per-process cache.
    """

    def __init__(self, params: SolverParams, backend: str, threads: int, kernels: str | None = None) -> None:
        self.params = params
        kernels = default_kernels() if kernels is None else kernels
        g = make_grid(params.grid, params.precision)
        self.threads = effective_threads(g, threads)
        ws = _acquire(g, backend, self.threads, get_kernels(kernels, g.n_points))
        ws.set_nu(params.nu)
        self._ws: Workspace | None = ws  # None once closed (``_workspace``)
        self.grid: Grid = ws.grid
        self.backend, self.kernels, self.plans = ws.backend, ws.kernels, ws.plans
        self.pool = SlabPool(self.threads)
        self.P = ws.P
        self.u, self.u0, self.acc, self.R = ws.u, ws.u0, ws.acc, ws.R
        self.co = ws.co
        self._phys_slabs, self._bufs = ws.phys_slabs, ws.slab_bufs
        self._gather_k = ws.gather_k
        self._stage_k, self._prepare_k, self._rhs_k = ws.stage_k, ws.prepare_k, ws.rhs_k
        self._dynamic = ws.dynamic
        self._gather_in_stage = ws.gather_in_stage
        self.inv_dx = tuple(1.0 / d for d in g.dx)
        self.dt = params.dt
        self.cfl_limit = params.cfl_limit
        self.stages = get_integrator(params.integrator).coefficients(params.dt)

    # ------------------------------------------------------------------ state

    def load(self, u_hat: np.ndarray) -> None:
        """Set the state (compact u_hat)."""
        self.u[...] = u_hat
        self.u0[...] = u_hat
        self.acc[...] = u_hat
        self._prepare()

    def _prepare(self) -> None:
        """P <- transform inputs (u_hat, omega_hat) of the state (kept rows)."""
        self.pool.map(lambda w, k: k(), self._prepare_k, self._dynamic)

    def _workspace(self) -> Workspace:
        """The workspace; a closed stepper has given it back (to the cache, maybe another
        stepper), so using one is an error."""
        if self._ws is None:
            raise RuntimeError("this Stepper is closed")
        return self._ws

    def close(self) -> None:
        """Stop the helper threads; return the workspace to the cache (idempotent)."""
        self.pool.close()
        ws, self._ws = self._ws, None
        if ws is not None:
            _release(ws)

    # ------------------------------------------------------------------ one stage's transforms

    def _slab(self, w: int, xs: slice, mode: int) -> object:
        """The physical part of a stage on x-rows ``xs`` with worker ``w``'s buffers.

        mode 0: u x omega, its (z, y) transforms back into P[0:3, xs]; 1: same and return
        the slab's (max|u|, max|v|, max|w|); 2: same as 1 and also max |u|^2.
        """
        sb = self._bufs[w]
        sb.inverse(xs.start)
        speed = sb.speed() if mode == 2 else None
        stats = sb.cross(mode > 0)
        sb.forward(xs.start)
        return stats if mode < 2 else (stats, speed)

    def _nonlinear(self, mode: int = 0) -> list[Any]:
        """R <- dealiased rfft(u x omega) / N of the state in P; per-slab stats (``_slab``).

        Transforms: 6 inverse x passes (in place in P), per physical slab 6 (y, z) inverse
        and 3 (z, y) forward passes around the cross product, 3 forward x passes in place
        in P[0:3], then the kept kx rows are gathered into R (unless the kernel set's stage
        kernel reads them from P itself: ``_gather``).
        """
        self._x_inv()
        res = self.pool.map(lambda w, xs: self._slab(w, xs, mode), self._phys_slabs, True)
        self._x_fwd()
        if not self._gather_in_stage:
            self._gather()
        return res

    def _gather(self) -> None:
        """R <- kept kx rows of the forward transforms in P[0:3], / N."""
        self.pool.map(lambda w, ik: ik[1](ik[0]), self._gather_k, self._dynamic)

    def _x_inv(self, passes: list[tuple[np.ndarray, Callable[[], None]]] | None = None) -> None:
        """Inverse x passes, in place in P, after zeroing the rows of kx outside the 2/3 box
        (the previous passes filled them; the spectral stage writes only the kept rows)."""

        def run(w: int, zp: tuple[np.ndarray, Callable[[], None]]) -> None:
            zp[0].fill(0)
            zp[1]()

        self.pool.map(run, self._workspace().x_inv if passes is None else passes, True)

    def _x_fwd(self) -> None:
        self.pool.map(lambda w, f: f(), self._workspace().x_fwd, True)

    def fft_passes(self, packing: bool = False) -> None:
        """The transforms of one stage alone, for the benchmark: the 1-D FFT passes, and with
        ``packing`` also the slab loads and stores (y padding, packing real pairs into
        complex lines and back). Overwrites P: call ``_prepare`` before the next step."""
        if packing:
            self._x_inv()
        else:
            self.pool.map(lambda w, zp: zp[1](), self._workspace().x_inv, True)

        def slab(w: int, xs: slice) -> None:
            sb = self._bufs[w]
            if packing:
                sb.inverse(xs.start)
                sb.forward(xs.start)
                return
            for f in (*sb.y_inv, sb.z_inv, sb.z_fwd, *sb.y_fwd):
                f()

        self.pool.map(slab, self._phys_slabs, True)
        self._x_fwd()

    def _spectral_stage(self, ca: float, cb: float | None, first: bool = False) -> None:
        """One stage's spectral update; ``first``: a step's first stage (acc = u0 = u: the
        numba set reads u alone there, and leaves acc and u0 unset after the last stage, so
        the stages of a step must run in order from the first)."""
        self.pool.map(lambda w, k: k(ca, cb, first), self._stage_k, self._dynamic)

    def _cfl(self, maxima: list[Any]) -> float:
        m = np.max(np.array(maxima), axis=0)  # NaN propagates
        return float(self.dt * sum(mi * inv for mi, inv in zip(m, self.inv_dx, strict=True)))

    def _max_divergence(self) -> float:
        """max |div u| of the state, through P[3] (call between a stage's transforms and
        its spectral update, which rewrites P[3])."""
        op.scatter_padded(self.P[3], op.divergence_hat(self.u, self.grid), self.grid)
        self._x_inv(self._workspace().x_inv1)

        def slab(w: int, xs: slice) -> float:
            sb = self._bufs[w]
            sb.inverse(xs.start, 3, -1, 1)
            return op._max_abs(sb.Z[0].real)

        return float(np.max(self.pool.map(slab, self._phys_slabs, True)))

    def _check(self, step: int, cfl: float) -> None:
        if not math.isfinite(cfl):
            raise DivergedError(step, step * self.dt, cfl, "NaN or inf in the velocity")
        if cfl > self.cfl_limit:
            raise DivergedError(step, step * self.dt, cfl, f"CFL number above cfl_limit={self.cfl_limit:g}")

    def _spectral_diagnostics(self) -> dict[str, float]:
        e, z = energy(self.u, self.grid), enstrophy(self.u, self.grid)
        return {"energy": e, "enstrophy": z, "dissipation": 2.0 * self.params.nu * z}

    # ------------------------------------------------------------------ public

    def step(self, step: int, record: bool = False) -> dict[str, float] | None:
        """Advance one time step from step number ``step``.

        Checks the state at the start of the step (NaN/inf, CFL) and raises DivergedError
        naming ``step``. With ``record`` returns the diagnostics of that starting state.
        """
        diag = self._spectral_diagnostics() if record else None
        for s, (ca, cb) in enumerate(self.stages):
            if s == 0:
                res = self._nonlinear(2 if diag is not None else 1)
                if diag is not None:
                    diag["max_velocity"] = float(np.sqrt(np.max([r[1] for r in res])))
                    res = [r[0] for r in res]
                cfl = self._cfl(res)
                self._check(step, cfl)
                if diag is not None:
                    diag["cfl"] = cfl
                    diag["max_divergence"] = self._max_divergence()
            else:
                self._nonlinear()
            self._spectral_stage(ca, cb, s == 0)
        return diag

    def observe(self, step: int) -> dict[str, float]:
        """Diagnostics of the current state without stepping."""
        diag = self._spectral_diagnostics()
        res = self._nonlinear(2)
        diag["max_velocity"] = float(np.sqrt(np.max([r[1] for r in res])))
        diag["cfl"] = self._cfl([r[0] for r in res])
        diag["max_divergence"] = self._max_divergence()
        self._prepare()  # restore P
        self._check(step, diag["cfl"])
        return diag

    def velocity(self) -> np.ndarray:
        """Physical velocity (3, nx, ny, nz) of the current state (a new array)."""
        out = np.empty((3, *self.grid.shape), self.grid.dtype)
        self._x_inv()

        def slab(w: int, xs: slice) -> None:
            sb = self._bufs[w]
            sb.inverse(xs.start)
            out[0, xs], out[1, xs], out[2, xs] = sb.Z[0].real, sb.Z[0].imag, sb.Z[1].real

        self.pool.map(slab, self._phys_slabs, True)
        self._prepare()  # restore P
        return out

    def rhs(self, u_hat: np.ndarray) -> np.ndarray:
        """The right-hand side du_hat/dt at ``u_hat``, computed by the step's own kernels.

        Loads ``u_hat`` as the state. Used by the tests (energy conservation of the
        nonlinear term, comparison with the reference implementation).
        """
        self.load(u_hat)
        self._nonlinear()
        if self._gather_in_stage:
            self._gather()
        out = np.empty_like(self.u)
        outf = op.pair(out)
        self.pool.map(lambda w, k: k(outf), self._rhs_k, self._dynamic)
        self._prepare()
        return out
