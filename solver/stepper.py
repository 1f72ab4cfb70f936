"""The time stepper: one fused RK step over a ``Workspace`` (``solver.workspace``: the work
arrays and FFT plans, and why no array of the whole physical grid exists).

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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import operators as op
from .diagnostics import energy, enstrophy
from .errors import DivergedError
from .grid import Grid, make_grid
from .integrators import get_integrator
from .kernels import default_kernels, get_kernels
from .parallel import SlabPool
from .params import SolverParams
from .workspace import Workspace, acquire_workspace, effective_threads, release_workspace

__all__ = ["Stepper"]


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
        ws = acquire_workspace(g, backend, self.threads, get_kernels(kernels, g.n_points))
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
            release_workspace(ws)

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
