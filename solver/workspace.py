"""A stepper's workspace: the work arrays, FFT plans and kernels of one (grid, precision,
backend, threads, kernel set), and the per-process cache of small grids' workspaces.

Memory (N = nx ny nz real points; the work arrays are allocated once and a step allocates
none, though the scipy backend's passes return new arrays that are copied into place; no
array of the whole physical grid exists):

* P (6, nx, My, Mz) complex: the x-padded spectra of u and omega = i k x u (rows of kx
  outside the 2/3 box zero before each inverse x pass), about 6 x 0.44 x N/2 complex;
  the x passes run in place, and the forward transforms of u x omega come back into P[0:3];
* u, u0, acc, R: compact (dealiased) spectral state of the RK scheme and the right-hand
  side, about 4 x 0.3 x 3N/2 complex;
* per worker thread, two slabs Zi, Z (3, b, ny, nz) complex of b x-rows (``_SlabBuffers``).

Slabs and column chunks are fixed by the grid and the kernel set, never by the thread count.
Closed steppers of small grids return their workspace to a per-process cache (at most
``CACHE_MAX_ENTRIES``, each of at most ``CACHE_MAX_POINTS`` points), so a process that runs
many tiny cases plans its FFTs and binds its kernels once, not once per run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from . import operators as op
from . import packing
from .fft import get_backend
from .grid import Block, Grid
from .kernels import KernelSet
from .parallel import slab_owner

__all__ = [
    "Workspace",
    "effective_threads",
    "slab_rows",
    "x_chunk_cols",
    "acquire_workspace",
    "release_workspace",
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
    (``acquire_workspace`` / ``release_workspace``). The only parameter-dependent array, nu k^2, is rewritten
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


def acquire_workspace(grid: Grid, backend: str, threads: int, kernels: KernelSet) -> Workspace:
    """An idle cached workspace for these settings, or a new one."""
    key = _workspace_key(grid, get_backend(backend).name, threads, kernels.name)
    with _idle_lock:
        for i in range(len(_idle) - 1, -1, -1):
            if _idle[i].key == key:
                return _idle.pop(i)
    return Workspace(grid, backend, threads, kernels)


def release_workspace(ws: Workspace) -> None:
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
