"""Run one simulation: the time loop with its hooks (deadline, progress, checkpoint, resume).

Reproducibility: a result's bits depend on the parameters (``SolverParams.canonical()``),
the FFT backend actually used and its library version (``fft_backend``,
``fft_library_version`` attributes), numpy's version and the CPU instruction set (SIMD
kernels). They do NOT depend on the thread count (``fft_threads``): FFTW plans are made
with FFTW_ESTIMATE on aligned arrays and run single-threaded on our own thread pool, which
splits the grid into slabs and column chunks fixed by the grid, never by the thread count
(identical bits tested: whole runs on 1-3 threads, single passes on 1, 2 and 4); the
elementwise kernels run on the same fixed
partition. Nor do they depend on checkpointing: a
run resumed from any checkpointed State ends bit-identical to the uninterrupted run.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .diagnostics import DIAGNOSTICS, energy_spectrum
from .errors import ParameterError, SolverStopped, SolverTimeout
from .fft import get_backend, resolve_backend
from .grid import make_grid
from .initial import initial_velocity
from .memory import available_memory, memory_estimate
from .output import RunResult, build_result
from .params import SolverParams, default_threads
from .state import State
from .stepper import Stepper
from .version import SOLVER_VERSION

if TYPE_CHECKING:  # xarray is imported when a Dataset is built: callers of run_simulation need not
    import xarray as xr

__all__ = ["simulate", "run_simulation", "output_steps"]

Progress = Callable[[int, int, float], Any]
Checkpoint = Callable[[State], Any]
Stop = Callable[[], bool]
Diagnostics = dict[str, list[float]]  # "step" and each name of DIAGNOSTICS -> values so far


def output_steps(p: SolverParams) -> list[int]:
    """Steps at which diagnostics are recorded: 0, every steps_per_output, and the last."""
    n = p.n_steps
    return sorted(set(range(0, n + 1, p.steps_per_output)) | {n})


_MEMORY_TTL = 1.0  # seconds a reading of the available memory is used (a read costs ~0.3 ms)
_memory_seen: list[Any] = [-_MEMORY_TTL, None]  # (monotonic time, bytes)


def _available_memory() -> int | None:
    now = _time.monotonic()
    if now - _memory_seen[0] >= _MEMORY_TTL:
        _memory_seen[:] = [now, available_memory()]
    return _memory_seen[1]


def _check_memory(p: SolverParams) -> None:
    need, avail = memory_estimate(p), _available_memory()
    if avail is not None and need > avail:
        raise ParameterError(
            "grid",
            list(p.grid),
            f"a grid whose run fits in the available memory ({avail / 2**20:.0f} MiB; this one "
            f"needs about {need / 2**20:.0f} MiB): use fewer points or precision='float32'",
        )


def _check_hooks(every_steps: Any, every_seconds: Any) -> None:
    if every_steps is not None and (
        isinstance(every_steps, bool) or not isinstance(every_steps, int) or every_steps < 1
    ):
        raise ParameterError("checkpoint_every_steps", every_steps, "an integer >= 1 or None")
    if every_seconds is not None and (
        isinstance(every_seconds, bool)
        or not isinstance(every_seconds, (int, float))
        or not every_seconds > 0
    ):
        raise ParameterError("checkpoint_every_seconds", every_seconds, "a number > 0 or None")


def _start(
    p: SolverParams, stepper: Stepper, resume: State | None, u_init: np.ndarray | None
) -> tuple[int, Diagnostics]:
    """Load the initial (``u_init``) or the resumed state; return the first step and the
    diagnostics so far."""
    key = State.params_key(p.canonical())
    if resume is None:
        if u_init is None:
            raise ValueError("an initial velocity is needed when not resuming")
        stepper.load(u_init)
        return 0, {k: list(v) for k, v in State.empty_diagnostics().items()}
    if resume.params_json != key:
        raise ParameterError(
            "resume", f"State(step={resume.step})", "a State captured from a run with the same parameters"
        )
    want = (3, *stepper.grid.compact_shape)
    if resume.u_hat.shape != want or resume.u_hat.dtype != stepper.u.dtype:
        raise ParameterError(
            "resume",
            f"u_hat {resume.u_hat.shape} {resume.u_hat.dtype}",
            f"a velocity of shape {want} and dtype {stepper.u.dtype}",
        )
    if not 0 <= resume.step <= p.n_steps:
        raise ParameterError("resume", resume.step, f"a step between 0 and {p.n_steps}")
    stepper.load(resume.u_hat)
    diag = {k: list(v) for k, v in State.empty_diagnostics().items()}
    for k, v in resume.diagnostics.items():
        diag[k] = list(v)
    return resume.step, diag


def simulate(
    params: SolverParams | Mapping[str, Any],
    *,
    deadline: float | None = None,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
    checkpoint_every_steps: int | None = None,
    checkpoint_every_seconds: float | None = None,
    resume: State | None = None,
    stop: Stop | None = None,
    checkpoint_now: Callable[[], bool] | None = None,
) -> xr.Dataset:
    """Integrate the Navier-Stokes equations for ``params``; return the diagnostics Dataset.

    ``deadline`` (a ``time.time()`` value) is checked before every step (SolverTimeout);
    ``progress(step, n_steps, t)`` is called after every step; ``checkpoint(state)`` every
    ``checkpoint_every_steps`` steps and/or ``checkpoint_every_seconds`` wall seconds;
    ``resume`` continues from such a State; ``stop()``, asked before every step, ends the run
    early with SolverStopped carrying the State so far (a forced checkpoint: resumed from it,
    the run ends bit-identical); ``checkpoint_now()``, called after every step when
    ``checkpoint`` is given, takes a checkpoint at once when it returns True (the caller is
    being stopped). Raises ParameterError for bad parameters
    (including a grid too large for the available memory) and DivergedError (NaN/inf or
    CFL above ``cfl_limit``) naming the step, time and CFL number.
    """
    return run_simulation(
        params,
        deadline=deadline,
        progress=progress,
        checkpoint=checkpoint,
        checkpoint_every_steps=checkpoint_every_steps,
        checkpoint_every_seconds=checkpoint_every_seconds,
        resume=resume,
        stop=stop,
        checkpoint_now=checkpoint_now,
    ).to_dataset()


def run_simulation(
    params: SolverParams | Mapping[str, Any],
    *,
    deadline: float | None = None,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
    checkpoint_every_steps: int | None = None,
    checkpoint_every_seconds: float | None = None,
    resume: State | None = None,
    stop: Stop | None = None,
    checkpoint_now: Callable[[], bool] | None = None,
) -> RunResult:
    """``simulate`` returning the result as plain arrays (``RunResult``), for callers that
    store or send it without needing a Dataset (e.g. to another process): same arguments, errors
    and bits; ``.to_dataset()`` gives ``simulate``'s Dataset.
    """
    p = SolverParams.coerce(params)
    _check_hooks(checkpoint_every_steps, checkpoint_every_seconds)
    backend = resolve_backend(p.fft_backend)
    threads = p.fft_threads or default_threads()
    _check_memory(p)
    n_steps, dt = p.n_steps, p.dt
    record_at = set(output_steps(p))
    # the initial field's float64 temporaries are freed before the stepper allocates
    u_init = initial_velocity(p, make_grid(p.grid, p.precision)) if resume is None else None
    stepper = Stepper(p, backend, threads)
    try:
        first, diag = _start(p, stepper, resume, u_init)
        del u_init
        key = State.params_key(p.canonical())
        last_ckpt = _time.monotonic()

        def record(step: int, values: dict[str, float]) -> None:
            diag["step"].append(step)
            for name in DIAGNOSTICS:
                diag[name].append(values[name])

        def state_at(done: int) -> State:
            # what a resume needs, copied: the stepper goes on (or is closed) after this
            return State(
                done,
                done * dt,
                stepper.u.copy(),
                {k: np.array(v, dtype=np.int64 if k == "step" else np.float64) for k, v in diag.items()},
                key,
            )

        for n in range(first, n_steps):
            if deadline is not None and _time.time() > deadline:
                raise SolverTimeout(n, n * dt, deadline)
            if stop is not None and stop():
                raise SolverStopped(n, n * dt, state_at(n))
            with np.errstate(over="ignore", invalid="ignore"):  # divergence is checked, not warned
                values = stepper.step(n, record=n in record_at)
            if values is not None:
                record(n, values)
            done = n + 1
            if progress is not None:
                progress(done, n_steps, done * dt)
            if checkpoint is not None and done < n_steps:
                now = _time.monotonic()
                asked = checkpoint_now is not None and checkpoint_now()  # first: it consumes a request
                due = (
                    asked
                    or (checkpoint_every_steps is not None and done % checkpoint_every_steps == 0)
                    or (checkpoint_every_seconds is not None and now - last_ckpt >= checkpoint_every_seconds)
                )
                if due:
                    checkpoint(state_at(done))
                    last_ckpt = now
        with np.errstate(over="ignore", invalid="ignore"):
            record(n_steps, stepper.observe(n_steps))
        fields = stepper.velocity() if p.keep_fields else None
        spectrum = energy_spectrum(stepper.u, stepper.grid)
        provenance = {
            "solver_version": SOLVER_VERSION,
            "fft_backend": backend,
            "fft_threads": int(stepper.threads),
            "fft_library_version": get_backend(backend).version(),
            "numpy_version": np.__version__,
            "n_steps": int(n_steps),
            "bits_depend_on": "params, solver_version, fft_backend, fft_library_version, "
            "numpy_version, CPU instruction set (not fft_threads)",
        }
        return build_result(p, stepper.grid, diag, spectrum, fields, provenance)
    finally:
        stepper.close()
