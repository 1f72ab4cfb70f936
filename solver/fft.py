"""FFT backends: a registry of real-to-complex 3-D transforms bound to preallocated arrays.

Every backend offers the same two operations on fixed arrays, planned once per run, for a
spectrum that obeys the 2/3 rule: modes outside the kept box (|kx| <= Kx, |ky| <= Ky,
kz < mz, see ``solver.grid``) are zero.

* ``forward(src, dst)``: ``dst[:, ky kept, :mz] = rfftn(src)[:, ky kept, :mz]``, unnormalised
  (the solver scales it). ``src`` may be overwritten; the rest of ``dst`` is undefined.
  ``plans.forward_output()`` gives the ``dst`` to use (a backend may share it with its own
  scratch).
* ``inverse(src, dst)``: ``dst = irfftn(full)`` *without* the 1/N factor (the solver keeps
  its coefficients normalised by 1/N, so the inverse needs no extra pass), where ``src``
  holds the kept box "x-padded": shape (nx, My, Mz), every kx row at its FFT position,
  the rows of kx outside the box zero, ky and kz compact (``solver.grid``). ``src`` is
  NOT modified, so the solver writes only the kept rows and never re-zeroes the others.

pyFFTW splits each 3-D transform into 1-D passes that skip the zero columns and planes
(``PyfftwPlans``); FFTW's multi-dimensional c2r always destroys its input (it uses the
zero modes as scratch), the split one preserves it.

What the bits depend on (see also ``solver.simulate``):

* ``pyfftw``: plans are made with ``FFTW_ESTIMATE`` only (never ``FFTW_MEASURE``, whose
  algorithm choice depends on timings), on SIMD-aligned arrays, so the same grid, precision,
  FFTW build and CPU instruction set give the same algorithm and the same bits. FFTW's
  threads split independent loops; identical bits measured for 1, 2, 3 and 4 threads on
  grids up to 128^3 and 160x40x20 in both precisions; tests/test_solver_fft.py keeps
  checking 6 shapes from 4^3 to 48x20x12 (and tests/test_solver_run.py whole runs). Wisdom imported by the host process from ``FFTW_MEASURE`` planning could
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

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import ParameterError
from .grid import kept_max
from .params import FFT_BACKENDS

__all__ = ["Plans", "FFTBackend", "BACKENDS", "AUTO_ORDER", "installed_backends", "resolve_backend", "get_backend"]

Transform = Callable[[], None]


class Plans:
    """Transforms of one grid: ``forward(src, dst)`` and ``inverse(src, dst)`` bind arrays."""

    def __init__(self, shape: tuple[int, int, int], dtype: np.dtype, mz: int, threads: int) -> None:
        self.shape, self.dtype, self.mz, self.threads = tuple(shape), np.dtype(dtype), mz, threads
        ny, ky = self.shape[1], kept_max(self.shape[1])
        # (compact y slice, full y slice) of the kept ky >= 0 and ky < 0
        self.yblocks = [(slice(0, ky + 1), slice(0, ky + 1))]
        if ky > 0:
            self.yblocks.append((slice(ky + 1, 2 * ky + 1), slice(ny - ky, ny)))
        self.complex_dtype = np.result_type(self.dtype, np.complex64)

    def _full_input(self) -> Callable[[np.ndarray], np.ndarray]:
        """For whole-array libraries: copy an x-padded input into a zeroed full spectrum
        (one such array per Plans, shared by its inverse transforms)."""
        nx, ny, nz = self.shape
        if getattr(self, "_full", None) is None:
            self._full = np.zeros((nx, ny, nz // 2 + 1), self.complex_dtype)
        full, mz, blocks = self._full, self.mz, self.yblocks

        def fill(src: np.ndarray) -> np.ndarray:
            for c, f in blocks:
                full[:, f, :mz] = src[:, c]
            return full
        return fill

    def forward(self, src: np.ndarray, dst: np.ndarray) -> Transform:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, src: np.ndarray, dst: np.ndarray) -> Transform:  # pragma: no cover
        raise NotImplementedError

    def forward_output(self) -> np.ndarray:
        """A spectral array to pass as ``dst`` of ``forward`` (the backend may share it)."""
        nx, ny, nz = self.shape
        return np.empty((nx, ny, nz // 2 + 1), self.complex_dtype)


class NumpyPlans(Plans):
    """numpy.fft: single-threaded, never modifies its input."""

    def forward(self, src: np.ndarray, dst: np.ndarray) -> Transform:
        def run() -> None:
            np.fft.rfftn(src, axes=(0, 1, 2), out=dst)
        return run

    def inverse(self, src: np.ndarray, dst: np.ndarray) -> Transform:
        shape, fill = self.shape, self._full_input()

        def run() -> None:
            np.fft.irfftn(fill(src), s=shape, axes=(0, 1, 2), norm="forward", out=dst)
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
        shape, threads, fill = self.shape, self.threads, self._full_input()

        def run() -> None:
            dst[...] = sf.irfftn(fill(src), s=shape, axes=(0, 1, 2), norm="forward", workers=threads)
        return run


class PyfftwPlans(Plans):
    """FFTW through pyFFTW, split into 1-D passes that skip the 2/3 rule's zeros.

    One scratch array G (the spectral shape) serves both directions:

    * inverse of an x-padded src (preserved): x pass over the kept (ky, kz) columns only,
      src -> G (out of place, FFTW_PRESERVE_INPUT); y pass over the kept kz
      planes, in place in G, whose rows ky not kept are zeroed first (the previous y pass
      filled them); z pass (c2r), G -> dst, preserving G, so G's planes kz >= mz stay zero;
    * forward of src: z pass (r2c), src -> G; y pass over the kept kz planes in place; x
      pass over the kept (ky, kz) columns only, in place. ``forward_output()`` is G: the
      caller gathers the kept modes before the next inverse, which then re-zeroes G's
      planes kz >= mz once (once per RK stage, not per transform).

    Skipping zero columns saves about 1/9 of the work, and 1-D passes scale with threads
    where FFTW_ESTIMATE's 2-D (x, y) plan did not (measured, 36 transforms on 2 threads:
    64^3 41 -> 26 ms; 128^3 390 -> 325 ms); the in-place y pass plus the zeroing of its
    zero rows costs less than an out-of-place one (64^3, 1 thread: 0.27 vs 0.38 ms).
    """

    _ESTIMATE = ("FFTW_ESTIMATE",)  # never MEASURE: it plans by timing
    _DESTROY = ("FFTW_ESTIMATE", "FFTW_DESTROY_INPUT")

    def __init__(self, shape: tuple[int, int, int], dtype: np.dtype, mz: int, threads: int) -> None:
        super().__init__(shape, dtype, mz, threads)
        import pyfftw
        self._fftw = pyfftw.FFTW
        nx, ny, nz = self.shape
        ky = kept_max(ny)
        self._ykept = [f for _, f in self.yblocks]
        self.G = _pyfftw_empty((nx, ny, nz // 2 + 1), self.complex_dtype)
        self.G[...] = 0
        self._g_rows = self.G[:, ky + 1:ny - ky, :mz]  # rows ky not kept, kept planes
        self._g_planes = self.G[:, :, mz:]  # planes kz >= mz
        self._planes_dirty = False  # True after a forward transform wrote into G

    def forward_output(self) -> np.ndarray:
        return self.G

    def _plan(self, a: np.ndarray, b: np.ndarray, axes: tuple[int, ...], direction: str,
              flags: tuple[str, ...]) -> Transform:
        # pyFFTW adds FFTW_PRESERVE_INPUT unless FFTW_DESTROY_INPUT is given
        return self._fftw(a, b, axes=axes, direction=direction, flags=flags,
                          threads=self.threads).execute  # execute(): no normalisation

    def forward(self, src: np.ndarray, dst: np.ndarray) -> Transform:
        mz, fw = self.mz, "FFTW_FORWARD"
        passes = [self._plan(src, dst, (2,), fw, self._DESTROY),
                  self._plan(dst[:, :, :mz], dst[:, :, :mz], (1,), fw, self._DESTROY)]
        passes += [self._plan(dst[:, y, :mz], dst[:, y, :mz], (0,), fw, self._DESTROY)
                   for y in self._ykept]
        into_g = dst is self.G

        def run() -> None:
            for p in passes:
                p()
            if into_g:
                self._planes_dirty = True
        return run

    def inverse(self, src: np.ndarray, dst: np.ndarray) -> Transform:
        mz, g, bw = self.mz, self.G, "FFTW_BACKWARD"
        x_passes = [self._plan(src[:, c], g[:, f, :mz], (0,), bw, self._ESTIMATE)
                    for c, f in self.yblocks]
        y_pass = self._plan(g[:, :, :mz], g[:, :, :mz], (1,), bw, self._DESTROY)
        z_pass = self._plan(g, dst, (2,), bw, self._ESTIMATE)
        rows, planes = self._g_rows, self._g_planes

        def run() -> None:
            if self._planes_dirty:
                planes.fill(0)
                self._planes_dirty = False
            rows.fill(0)
            for p in x_passes:
                p()
            y_pass()
            z_pass()
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


@functools.cache
def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None  # (installing mid-process needs a restart)


def installed_backends() -> list[str]:
    """Backends whose library can be imported here, fastest first."""
    return [n for n in AUTO_ORDER if _installed(BACKENDS[n].module)]


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
