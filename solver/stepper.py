"""The time stepper: preallocated work arrays, FFT plans and one fused RK step.

Memory layout (N = nx ny nz real points, all preallocated once, nothing allocated per step):

* U[3], W[3]: physical velocity and vorticity (W then holds u x omega), 6 N reals;
* P: the inputs of the 6 inverse transforms, (u_hat, omega_hat = i k x u_hat) x-padded
  (nx x My x Mz each: rows of kx outside the 2/3 box stay zero, see ``solver.fft``), about
  6 x 0.44 x N/2 complex; F: the output of the forward transforms, N/2 complex (the pyfftw
  backend shares it with its scratch);
* u, u0, acc, R: compact (dealiased) spectral state of the RK scheme and the right-hand
  side, about 4 x 0.3 x 3N/2 complex.

One RK stage is: 6 inverse FFTs of P into U, W; one physical slab pass (u x omega; at
stage 0 also the CFL and NaN check); 3 x (forward FFT, gather its kept modes into R); one
spectral slab pass that projects, adds viscosity, updates the RK registers and writes the
next stage's P (so P is always the transform input of the current u).

Everything that depends only on (grid, precision, backend, threads, kernel set) lives in a
``Workspace``; closed steppers of small grids return theirs to a per-process cache (at most
``CACHE_MAX_ENTRIES``, each of at most ``CACHE_MAX_POINTS`` points), so a sweep of tiny runs
plans its FFTs and binds its kernels once per worker process, not once per run.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from . import operators as op
from .diagnostics import energy, enstrophy
from .errors import DivergedError
from .fft import get_backend
from .grid import Grid, make_grid
from .integrators import get_integrator
from .kernels import KernelSet, default_kernels, get_kernels
from .parallel import SlabPool, slab_owner
from .params import SolverParams

__all__ = ["Stepper", "Workspace", "effective_threads", "clear_workspace_cache", "MIN_POINTS_PER_THREAD",
           "CACHE_MAX_POINTS", "CACHE_MAX_ENTRIES"]


# Below this many points per thread, waking helper threads costs more than it saves.
MIN_POINTS_PER_THREAD = 1 << 15


def effective_threads(grid: Grid, threads: int) -> int:
    """Threads actually used for ``grid`` (results do not depend on it; speed does)."""
    return max(1, min(int(threads), grid.n_points // MIN_POINTS_PER_THREAD))


def _chunks(start: int, stop: int, size: int) -> list[slice]:
    return [slice(a, min(a + size, stop)) for a in range(start, stop, size)]


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
        self.U = [empty(g.shape, rdt) for _ in range(3)]
        self.W = [empty(g.shape, rdt) for _ in range(3)]
        # inputs of the inverse transforms: only rows of kept kx are ever written (the
        # inverse transforms preserve their input), so the 2/3 rule's zeros are set once here
        mx, my, mz = g.compact_shape
        self.P = empty((6, g.shape[0], my, mz), cdt)
        self.P[...] = 0
        phys = self.U + self.W
        self.plans = self.backend.plans(g.shape, rdt, mz, threads)
        self.F = self.plans.forward_output()  # output of the forward transforms
        self.inverse = [self.plans.inverse(self.P[j], phys[j]) for j in range(6)]
        self.forward = [self.plans.forward(self.W[i], self.F) for i in range(3)]

        cs = (3, *g.compact_shape)
        self.u, self.u0, self.acc, self.R = (np.zeros(cs, cdt) for _ in range(4))
        self.uf, self.u0f, self.accf, self.Rf = (op.pair(a) for a in (self.u, self.u0, self.acc, self.R))
        # nu k^2 is set by each stepper (set_nu); full k arrays only for kernels with scratch
        self.co = op.spectral_coefficients(g, 0.0, full_k=kernels.scratch)

        nx, ny, nz = g.shape
        # slab sizes (elements per array per slab) depend on the grid and kernel set only
        bp = max(1, kernels.phys_slab_elems // (ny * nz))
        bs = max(1, kernels.spec_slab_elems // (my * mz))
        phys_slabs = _chunks(0, nx, bp)
        spec_slabs = [(xs, slice(b.f0 + xs.start - b.c0, b.f0 + xs.stop - b.c0))
                      for b in g.xblocks for xs in _chunks(b.c0, b.c1, bs)]
        # kernels with scratch arrays: slabs are dealt to workers in contiguous runs (static
        # map) and each worker owns its scratch; scratch-free kernels run on any worker
        self.dynamic = not kernels.scratch
        workers = max(1, threads)

        def owner(i: int, n: int) -> int:
            return slab_owner(workers, i, n)

        scratch = kernels.scratch
        ptmp = [np.empty((4, bp, ny, nz), rdt) if scratch else None for _ in range(workers)]
        t = [np.empty((bs, my, 2 * mz), rdt) if scratch else None for _ in range(workers)]
        s = [np.empty((bs, my, 2 * mz), rdt) if scratch else None for _ in range(workers)]
        self.cross_k = [kf.make_cross_kernel(self.U, self.W, rows, ptmp[owner(i, len(phys_slabs))])
                        for i, rows in enumerate(phys_slabs)]
        self.speed_k = [kf.make_speed_kernel(self.U, rows, ptmp[owner(i, len(phys_slabs))])
                        for i, rows in enumerate(phys_slabs)]
        spec = []
        for i, (xs, xf) in enumerate(spec_slabs):
            w = owner(i, len(spec_slabs))
            spec.append(kf.make_spectral_kernels(self.P, self.Rf, self.uf, self.u0f, self.accf, xs, xf,
                                                 g.yblocks, self.co, t[w], s[w]))
        self.stage_k = [k[0] for k in spec]
        self.prepare_k = [k[1] for k in spec]
        self.rhs_k = [k[2] for k in spec]
        self.gather_k = [kf.make_gather_kernel(self.F, self.R, xs, xf, g.yblocks, 1.0 / g.n_points)
                         for xs, xf in spec_slabs]

    @property
    def nbytes(self) -> int:
        """Bytes of the work arrays (what the cache keeps alive)."""
        arrays = [*self.U, *self.W, self.P, self.F, self.u, self.u0, self.acc, self.R]
        return sum(a.nbytes for a in arrays)

    def set_nu(self, nu: float) -> None:
        """Write nu |k|^2 for viscosity ``nu`` (the same values as spectral_coefficients)."""
        self.co.nu_k2[...] = op.nu_k2(self.grid, nu)


def _workspace_key(grid: Grid, backend: str, threads: int, kernels: str) -> tuple:
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
        ws = self._ws = _acquire(g, backend, self.threads, get_kernels(kernels, g.n_points))
        ws.set_nu(params.nu)
        self.grid: Grid = ws.grid
        self.backend, self.kernels, self.plans = ws.backend, ws.kernels, ws.plans
        self.pool = SlabPool(self.threads)
        self.U, self.W, self.P, self.F = ws.U, ws.W, ws.P, ws.F
        self.u, self.u0, self.acc, self.R = ws.u, ws.u0, ws.acc, ws.R
        self.co = ws.co
        self._inverse, self._forward = ws.inverse, ws.forward
        self._cross_k, self._speed_k, self._gather_k = ws.cross_k, ws.speed_k, ws.gather_k
        self._stage_k, self._prepare_k, self._rhs_k = ws.stage_k, ws.prepare_k, ws.rhs_k
        self._dynamic = ws.dynamic
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
        """P <- transform inputs (u_hat, omega_hat) of the state."""
        self.pool.map(lambda w, k: k(), self._prepare_k, self._dynamic)

    def _inverse_transforms(self, components: range = range(6)) -> None:
        """U, W <- physical u and omega of the state (``components`` 0-2: u, 3-5: omega)."""
        for j in components:
            self._inverse[j]()

    def close(self) -> None:
        """Stop the helper threads; return the workspace to the cache (idempotent)."""
        self.pool.close()
        ws, self._ws = self._ws, None
        if ws is not None:
            _release(ws)

    # ------------------------------------------------------------------ kernels

    def _cross(self, stats: bool = False) -> float:
        """u x omega into W; with ``stats`` return the CFL number of the velocity in U."""
        res = self.pool.map(lambda w, k: k(stats), self._cross_k, self._dynamic)
        if not stats:
            return 0.0
        m = np.max(np.array(res), axis=0)  # NaN propagates
        return float(self.dt * sum(mi * inv for mi, inv in zip(m, self.inv_dx)))

    def _max_speed(self) -> float:
        """max |u| of the physical velocity in U."""
        return float(np.sqrt(np.max(self.pool.map(lambda w, k: k(), self._speed_k, self._dynamic))))

    def _forward_transforms(self) -> None:
        """R <- kept modes of rfft(W) / N, one component at a time through F."""
        for i, fwd in enumerate(self._forward):
            fwd()
            self.pool.map(lambda w, k: k(i), self._gather_k, self._dynamic)

    def _spectral_stage(self, ca: float, cb: float | None) -> None:
        self.pool.map(lambda w, k: k(ca, cb), self._stage_k, self._dynamic)

    def _max_divergence(self) -> float:
        """max |div u| of the state, through P[3] and W[0] (call when both are free).

        Overwrites P[3] (omega_x): the next spectral stage (or ``_prepare``) rewrites it.
        """
        op.scatter_padded(self.P[3], op.divergence_hat(self.u, self.grid), self.grid)
        self._inverse[3]()  # P[3] -> W[0]
        return float(np.max(np.abs(self.W[0])))

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
            self._inverse_transforms()
            if s == 0:
                if diag is not None:
                    diag["max_velocity"] = self._max_speed()
                cfl = self._cross(stats=True)
                self._check(step, cfl)
                if diag is not None:
                    diag["cfl"] = cfl
            else:
                self._cross()
            self._forward_transforms()
            if s == 0 and diag is not None:
                diag["max_divergence"] = self._max_divergence()
            self._spectral_stage(ca, cb)
        return diag

    def observe(self, step: int) -> dict[str, float]:
        """Diagnostics of the current state without stepping."""
        diag = self._spectral_diagnostics()
        self._inverse_transforms()
        diag["max_velocity"] = self._max_speed()
        diag["cfl"] = self._cross(stats=True)
        diag["max_divergence"] = self._max_divergence()
        self._prepare()  # restore P[3]
        self._check(step, diag["cfl"])
        return diag

    def velocity(self) -> np.ndarray:
        """Physical velocity (3, nx, ny, nz) of the current state (a new array)."""
        self._inverse_transforms(range(3))
        return np.stack(self.U)

    def rhs(self, u_hat: np.ndarray) -> np.ndarray:
        """The right-hand side du_hat/dt at ``u_hat``, computed by the step's own kernels.

        Loads ``u_hat`` as the state. Used by the tests (energy conservation of the
        nonlinear term, comparison with the reference implementation).
        """
        self.load(u_hat)
        self._inverse_transforms()
        self._cross()
        self._forward_transforms()
        out = np.empty_like(self.u)
        outf = op.pair(out)
        self.pool.map(lambda w, k: k(outf), self._rhs_k, self._dynamic)
        return out
