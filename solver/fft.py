"""FFT backends: a registry of real-to-complex 3-D transforms bound to preallocated arrays.

Every backend offers the same two operations on fixed arrays, planned once per run, for a
spectrum whose modes with kz >= mz are zero (the 2/3 rule; ``mz`` = kept kz count):

* ``forward(src, dst)``: ``dst[:, :, :mz] = rfftn(src)[:, :, :mz]``, unnormalised (the
  solver scales it). ``src`` may be overwritten; ``dst[:, :, mz:]`` is undefined.
* ``inverse(src, dst)``: ``dst = irfftn(src)`` *without* the 1/N factor (the solver keeps
  its coefficients normalised by 1/N, so the inverse needs no extra pass). ``src`` is NOT
  modified, so the solver writes only the kept modes and never re-zeroes the others.

pyFFTW splits each 3-D transform into a 2-D c2c transform over (x, y) of the mz kept kz
planes and a 1-D real transform along z: FFTW's multi-dimensional c2r always destroys its
input (and uses the zero modes as scratch), the split one preserves it, and skips the
(x, y) transforms of the 1/3 of kz planes the 2/3 rule zeroes.

What the bits depend on (see also ``solver.simulate``):

* ``pyfftw``: plans are made with ``FFTW_ESTIMATE`` only (never ``FFTW_MEASURE``, whose
  algorithm choice depends on timings), on SIMD-aligned arrays, so the same grid, precision,
  FFTW build and CPU instruction set give the same algorithm and the same bits. FFTW's
  threads split independent loops; we measured identical bits for 1, 2, 3 and 4 threads on
  14 grid shapes from 4^3 to 160x40x20 in both precisions (tests/test_solver_fft.py keeps
  checking it). Wisdom imported by the host process from ``FFTW_MEASURE`` planning could
  change the plans: do not import FFTW wisdom in processes that run the solver.
* ``scipy``: ``workers=`` hands whole independent 1-D transforms to threads; each 1-D
  transform is computed identically, so the bits do not depend on the thread count.
* ``numpy``: single-threaded; deterministic.

Different backends give results that agree to round-off, not bit for bit; the backend
actually used is recorded in the result's attributes. ``auto`` resolves by a fixed
preference order (pyfftw, scipy, numpy: the fastest first), never by timing, so one
machine always resolves it the same way.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import ParameterError
from .params import FFT_BACKENDS

__all__ = ["Plans", "FFTBackend", "BACKENDS", "AUTO_ORDER", "installed_backends", "resolve_backend", "get_backend"]

Transform = Callable[[], None]


class Plans:
    """Transforms of one grid: ``forward(src, dst)`` and ``inverse(src, dst)`` bind arrays."""

    def __init__(self, shape: tuple[int, int, int], dtype: np.dtype, mz: int, threads: int) -> None:
        self.shape, self.dtype, self.mz, self.threads = tuple(shape), np.dtype(dtype), mz, threads

    def forward(self, src: np.ndarray, dst: np.ndarray) -> Transform:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, src: np.ndarray, dst: np.ndarray) -> Transform:  # pragma: no cover
        raise NotImplementedError


class NumpyPlans(Plans):
    """numpy.fft: single-threaded, never modifies its input."""

    def forward(self, src: np.ndarray, dst: np.ndarray) -> Transform:
        def run() -> None:
            np.fft.rfftn(src, axes=(0, 1, 2), out=dst)
        return run

    def inverse(self, src: np.ndarray, dst: np.ndarray) -> Transform:
        shape = self.shape

        def run() -> None:
            np.fft.irfftn(src, s=shape, axes=(0, 1, 2), norm="forward", out=dst)
        return run


class ScipyPlans(Plans):
    """scipy.fft with ``workers`` threads (input preserved: overwrite_x=False)."""

    def forward(self, src: np.ndarray, dst: np.ndarray) -> Transform:
        import scipy.fft as sf
        threads = self.threads

        def run() -> None:
            dst[...] = sf.rfftn(src, axes=(0, 1, 2), workers=threads)
        return run

    def inverse(self, src: np.ndarray, dst: np.ndarray) -> Transform:
        import scipy.fft as sf
        shape, threads = self.shape, self.threads

        def run() -> None:
            dst[...] = sf.irfftn(src, s=shape, axes=(0, 1, 2), norm="forward", workers=threads)
        return run


class PyfftwPlans(Plans):
    """FFTW through pyFFTW, split into (x, y) and z passes (see the module docstring)."""

    _ESTIMATE = ("FFTW_ESTIMATE",)  # never MEASURE: it plans by timing
    _DESTROY = ("FFTW_ESTIMATE", "FFTW_DESTROY_INPUT")

    def __init__(self, shape: tuple[int, int, int], dtype: np.dtype, mz: int, threads: int) -> None:
        super().__init__(shape, dtype, mz, threads)
        import pyfftw
        self._fftw = pyfftw.FFTW
        nx, ny, nz = self.shape
        # scratch of the inverse: its modes kz >= mz stay zero (nothing writes them)
        self.scratch = _pyfftw_empty((nx, ny, nz // 2 + 1), np.result_type(self.dtype, np.complex64))
        self.scratch[...] = 0

    def _plan(self, a: np.ndarray, b: np.ndarray, axes: tuple[int, ...], direction: str,
              flags: tuple[str, ...]) -> Transform:
        # pyFFTW adds FFTW_PRESERVE_INPUT unless FFTW_DESTROY_INPUT is given
        return self._fftw(a, b, axes=axes, direction=direction, flags=flags,
                          threads=self.threads).execute  # execute(): no normalisation

    def forward(self, src: np.ndarray, dst: np.ndarray) -> Transform:
        mz = self.mz
        z = self._plan(src, dst, (2,), "FFTW_FORWARD", self._DESTROY)
        xy = self._plan(dst[:, :, :mz], dst[:, :, :mz], (0, 1), "FFTW_FORWARD", self._DESTROY)

        def run() -> None:
            z()
            xy()
        return run

    def inverse(self, src: np.ndarray, dst: np.ndarray) -> Transform:
        mz, g = self.mz, self.scratch
        xy = self._plan(src[:, :, :mz], g[:, :, :mz], (0, 1), "FFTW_BACKWARD", self._ESTIMATE)
        z = self._plan(g, dst, (2,), "FFTW_BACKWARD", self._ESTIMATE)

        def run() -> None:
            xy()
            z()
        return run


@dataclass(frozen=True)
class FFTBackend:
    """One FFT library: how to allocate arrays for it and how to plan transforms on them."""

    name: str
    module: str  # import name, to test whether it is installed
    empty: Callable[[tuple[int, ...], np.dtype], np.ndarray]
    plans: type[Plans]

    def version(self) -> str:
        """Version string of the underlying library (recorded as provenance)."""
        mod = importlib.import_module(self.module)
        return str(getattr(mod, "__version__", "unknown"))


def _numpy_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.empty(shape, dtype=dtype)


def _pyfftw_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    import pyfftw
    return pyfftw.empty_aligned(shape, dtype=dtype)


BACKENDS: dict[str, FFTBackend] = {
    "pyfftw": FFTBackend("pyfftw", "pyfftw", _pyfftw_empty, PyfftwPlans),
    "scipy": FFTBackend("scipy", "scipy", _numpy_empty, ScipyPlans),
    "numpy": FFTBackend("numpy", "numpy", _numpy_empty, NumpyPlans),
}
AUTO_ORDER = ("pyfftw", "scipy", "numpy")  # fastest first (scripts/bench_solver.py measures it)

if set(BACKENDS) | {"auto"} != set(FFT_BACKENDS):  # params.py lists the keys for validation
    raise ImportError(f"solver.fft backends {sorted(BACKENDS)} disagree with params.FFT_BACKENDS")


def installed_backends() -> list[str]:
    """Backends whose library can be imported here, fastest first."""
    return [n for n in AUTO_ORDER if importlib.util.find_spec(BACKENDS[n].module) is not None]


def resolve_backend(name: str) -> str:
    """The concrete backend for ``name`` ('auto' -> the fastest installed one)."""
    if name == "auto":
        return installed_backends()[0]
    if name not in BACKENDS:
        raise ParameterError("fft_backend", name, "one of " + ", ".join(repr(b) for b in FFT_BACKENDS))
    if name not in installed_backends():
        raise ParameterError(
            "fft_backend", name,
            f"an installed backend: {', '.join(installed_backends())} or 'auto' "
            f"(install {BACKENDS[name].module!r}, e.g. pip install 'ns-sweep[fast]')")
    return name


def get_backend(name: str) -> FFTBackend:
    """The backend object for ``name`` (resolving 'auto')."""
    return BACKENDS[resolve_backend(name)]
