"""The time stepper: preallocated work arrays, FFT plans and one fused RK step.

Memory layout (N = nx ny nz real points, all preallocated once, nothing allocated per step):

* U[3], W[3]: physical velocity and vorticity (W then holds u x omega), 6 N reals;
* C: the one input of the 6 inverse transforms (only its kept modes are ever written), F:
  the output of the forward transforms, each N/2 complex (plus FFTW's own scratch);
* u, u0, acc, R: compact (dealiased) spectral state of the RK scheme and the right-hand
  side, about 4 x 0.3 x 3N/2 complex.

One RK stage is: 6 x (write one component of u_hat or omega_hat = i k x u_hat into C,
inverse FFT); one physical slab pass (u x omega; at stage 0 also the CFL and NaN check);
3 x (forward FFT, gather its kept modes into R); one spectral slab pass that projects,
adds viscosity and updates the RK registers.
"""

from __future__ import annotations

import math

import numpy as np

from . import operators as op
from .diagnostics import energy, enstrophy
from .errors import DivergedError
from .fft import get_backend
from .grid import Grid, make_grid
from .integrators import get_integrator
from .parallel import SlabPool
from .params import SolverParams

__all__ = ["Stepper", "effective_threads", "PHYS_SLAB_ELEMS", "SPEC_SLAB_ELEMS", "MIN_POINTS_PER_THREAD"]

# Slab sizes (elements per array per slab): small enough for the temporaries to stay in
# cache, large enough to keep the per-call overhead small. They depend on the grid only.
PHYS_SLAB_ELEMS = 1 << 15
SPEC_SLAB_ELEMS = 1 << 13


# Below this many points per thread, waking helper threads costs more than it saves.
MIN_POINTS_PER_THREAD = 1 << 15


def effective_threads(grid: Grid, threads: int) -> int:
    """Threads actually used for ``grid`` (results do not depend on it; speed does)."""
    return max(1, min(int(threads), grid.n_points // MIN_POINTS_PER_THREAD))


def _chunks(start: int, stop: int, size: int) -> list[slice]:
    return [slice(a, min(a + size, stop)) for a in range(start, stop, size)]


class Stepper:
    """Holds one run's work arrays and advances the compact spectral velocity in time."""

    def __init__(self, params: SolverParams, backend: str, threads: int) -> None:
        self.params = params
        self.grid: Grid = make_grid(params.grid, params.precision)
        g = self.grid
        self.backend = get_backend(backend)
        self.threads = effective_threads(self.grid, threads)
        self.pool = SlabPool(self.threads)
        rdt, cdt = g.dtype, g.complex_dtype
        empty = self.backend.empty
        self.U = [empty(g.shape, rdt) for _ in range(3)]
        self.W = [empty(g.shape, rdt) for _ in range(3)]
        # input of the inverse transforms: only its kept modes are ever written (the inverse
        # transforms preserve their input), so the 2/3 rule's zeros are set once here
        self.C = empty(g.spectral_shape, cdt)
        self.C[...] = 0
        self.F = empty(g.spectral_shape, cdt)  # output of the forward transforms
        phys = self.U + self.W
        self.plans = self.backend.plans(g.shape, rdt, g.compact_shape[2], self.threads)
        self._inverse = [self.plans.inverse(self.C, phys[j]) for j in range(6)]
        self._forward = [self.plans.forward(self.W[i], self.F) for i in range(3)]

        cs = (3, *g.compact_shape)
        self.u, self.u0, self.acc, self.R = (np.zeros(cs, cdt) for _ in range(4))
        self.uf, self.u0f, self.accf, self.Rf = (op.pair(a) for a in (self.u, self.u0, self.acc, self.R))
        self.co = op.spectral_coefficients(g, params.nu)
        self.scale = 1.0 / g.n_points
        self.inv_dx = tuple(1.0 / d for d in g.dx)
        self.dt = params.dt
        self.cfl_limit = params.cfl_limit
        self.stages = get_integrator(params.integrator).coefficients(params.dt)

        nx, ny, nz = g.shape
        mx, my, mz = g.compact_shape
        bp = max(1, PHYS_SLAB_ELEMS // (ny * nz))
        bs = max(1, SPEC_SLAB_ELEMS // (my * mz))
        phys_slabs = _chunks(0, nx, bp)
        spec_slabs = [(xs, slice(b.f0 + xs.start - b.c0, b.f0 + xs.stop - b.c0))
                      for b in g.xblocks for xs in _chunks(b.c0, b.c1, bs)]
        # slabs are dealt to workers in contiguous runs; each worker owns its scratch arrays
        workers = self.pool.threads
        owner = self.pool.owner

        ptmp = [np.empty((4, bp, ny, nz), rdt) for _ in range(workers)]
        t = [np.empty((bs, my, 2 * mz), rdt) for _ in range(workers)]
        s = [np.empty((bs, my, 2 * mz), rdt) for _ in range(workers)]
        self._cross_k = [op.make_cross_kernel(self.U, self.W, rows, ptmp[owner(i, len(phys_slabs))])
                         for i, rows in enumerate(phys_slabs)]
        self._speed_k = [op.make_speed_kernel(self.U, rows, ptmp[owner(i, len(phys_slabs))])
                         for i, rows in enumerate(phys_slabs)]
        spec = []
        for i, (xs, xf) in enumerate(spec_slabs):
            w = owner(i, len(spec_slabs))
            spec.append(op.make_spectral_kernels(self.C, self.Rf, self.uf, self.u0f, self.accf, xs, xf,
                                                 g.yblocks, self.co, t[w], s[w]))
        self._stage_k = [k[0] for k in spec]
        self._load_k = [k[1] for k in spec]
        self._rhs_k = [k[2] for k in spec]
        self._gather_k = [op.make_gather_kernel(self.F, self.R, xs, xf, g.yblocks, self.scale)
                          for xs, xf in spec_slabs]

    # ------------------------------------------------------------------ state

    def load(self, u_hat: np.ndarray) -> None:
        """Set the state (compact u_hat)."""
        self.u[...] = u_hat
        self.u0[...] = u_hat
        self.acc[...] = u_hat

    def _inverse_transforms(self, components: range = range(6)) -> None:
        """U, W <- physical u and omega of the state (``components`` 0-2: u, 3-5: omega)."""
        for j in components:
            self.pool.map(lambda w, k: k(j), self._load_k)
            self._inverse[j]()

    def close(self) -> None:
        """Stop the helper threads."""
        self.pool.close()

    # ------------------------------------------------------------------ kernels

    def _cross(self, stats: bool = False) -> float:
        """u x omega into W; with ``stats`` return the CFL number of the velocity in U."""
        res = self.pool.map(lambda w, k: k(stats), self._cross_k)
        if not stats:
            return 0.0
        m = np.max(np.array(res), axis=0)  # NaN propagates
        return float(self.dt * sum(mi * inv for mi, inv in zip(m, self.inv_dx)))

    def _max_speed(self) -> float:
        """max |u| of the physical velocity in U."""
        return float(np.sqrt(np.max(self.pool.map(lambda w, k: k(), self._speed_k))))

    def _forward_transforms(self) -> None:
        """R <- kept modes of rfft(W) / N, one component at a time through F."""
        for i, fwd in enumerate(self._forward):
            fwd()
            self.pool.map(lambda w, k: k(i), self._gather_k)

    def _spectral_stage(self, ca: float, cb: float | None) -> None:
        self.pool.map(lambda w, k: k(ca, cb), self._stage_k)

    def _max_divergence(self) -> float:
        """max |div u| of the state, through C and W[0] (call when both are free)."""
        op.scatter_compact(self.C, op.divergence_hat(self.u, self.grid), self.grid)
        self._inverse[3]()  # C -> W[0]
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
        self.pool.map(lambda w, k: k(outf), self._rhs_k)
        return out
