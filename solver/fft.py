"""FFT backends: a registry of 1-D transform passes bound to preallocated arrays.

The solver does its 3-D real transforms as 1-D passes (``solver.stepper``): along x in
place on the x-padded spectra, and along y and z on slabs of x-rows, so every pass skips
the 2/3 rule's zero columns and planes and a slab's passes run while it is in cache. Every
backend offers one operation, ``plans.transform(src, dst, axis, kind, threads)``: a
callable that transforms every line of ``src`` along ``axis`` into ``dst``, unnormalised
(the solver keeps its coefficients normalised by 1/N, so the inverse needs no extra pass).
``kind`` is 'forward' or 'backward' (complex; ``dst`` may be ``src``), 'r2c' (``src`` may
be destroyed) or 'c2r' (``src`` preserved: the solver writes only the kept modes and never
re-zeroes the others; FFTW's multi-dimensional c2r cannot preserve its input, a 1-D one can).

What the bits depend on (see also ``solver.simulate``):

* ``pyfftw``: plans are made with ``FFTW_ESTIMATE`` only (never ``FFTW_MEASURE``, whose
  algorithm choice depends on timings), on SIMD-aligned arrays, so the same grid, precision,
  FFTW build and CPU instruction set give the same algorithm and the same bits. The solver
  plans every pass single-threaded and runs the passes of its column chunks and slabs (a
  partition fixed by the grid) on its own thread pool. tests/test_solver_fft.py checks
  that the bits of every kind of pass do not depend on the thread count or on how the other
  axes are cut (and tests/test_solver_run.py whole runs). Wisdom imported by the host process
  from ``FFTW_MEASURE`` planning could change the plans: do not import FFTW wisdom in
  processes that run the solver.
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
from typing import Any

import numpy as np

from .errors import ParameterError
from .params import FFT_BACKENDS

__all__ = [
    "Plans",
    "KINDS",
    "FFTBackend",
    "BACKENDS",
    "AUTO_ORDER",
    "installed_backends",
    "resolve_backend",
    "get_backend",
]

Transform = Callable[[], None]


KINDS = ("forward", "backward", "r2c", "c2r")


class Plans:
    """Plans of one grid's 1-D passes (``transform``), each bound to its arrays."""

    def __init__(self, shape: tuple[int, int, int], dtype: np.dtype, threads: int) -> None:
        self.shape, self.dtype, self.threads = tuple(shape), np.dtype(dtype), threads
        self.complex_dtype = np.result_type(self.dtype, np.complex64)

    def transform(self, src: np.ndarray, dst: np.ndarray, axis: int, kind: str, threads: int) -> Transform:
        """One 1-D pass along ``axis`` of every line of ``src`` into ``dst``, unnormalised.

        ``kind`` (one of ``KINDS``): 'forward' / 'backward' (complex, ``dst`` may be
        ``src``: in place; out of place ``src`` is preserved), 'r2c' (real ``src``, ``dst``
        of length n//2+1 along ``axis``;
        ``src`` may be destroyed), 'c2r' (the inverse of 'r2c', ``src`` preserved). Each
        line is transformed by the same algorithm whatever the other axes hold, so the
        results do not depend on how the solver cuts its arrays into slabs.
        """
        raise NotImplementedError  # pragma: no cover


# kind -> (numpy.fft function, its keyword arguments)
_NUMPY_KINDS: dict[str, tuple[Callable[..., np.ndarray], dict[str, Any]]] = {
    "forward": (np.fft.fft, {}),
    "backward": (np.fft.ifft, {"norm": "forward"}),
    "r2c": (np.fft.rfft, {}),
    "c2r": (np.fft.irfft, {"norm": "forward"}),
}


class NumpyPlans(Plans):
    """numpy.fft: single-threaded, writes into ``dst`` (``out=``)."""

    def transform(self, src: np.ndarray, dst: np.ndarray, axis: int, kind: str, threads: int) -> Transform:
        fn, kw = _NUMPY_KINDS[kind]
        if kind == "c2r":
            kw = {**kw, "n": dst.shape[axis]}

        def run() -> None:
            fn(src, axis=axis, out=dst, **kw)

        return run


class ScipyPlans(Plans):
    """scipy.fft with ``workers`` threads (input preserved: overwrite_x=False)."""

    def transform(self, src: np.ndarray, dst: np.ndarray, axis: int, kind: str, threads: int) -> Transform:
        import scipy.fft as sf

        fn = {"forward": sf.fft, "backward": sf.ifft, "r2c": sf.rfft, "c2r": sf.irfft}[kind]
        kw: dict[str, Any] = {"norm": "forward"} if kind in ("backward", "c2r") else {}
        if kind == "c2r":
            kw["n"] = dst.shape[axis]

        def run() -> None:
            dst[...] = fn(src, axis=axis, workers=threads, **kw)

        return run


class PyfftwPlans(Plans):
    """FFTW through pyFFTW: one ``pyfftw.FFTW`` object per pass, planned with FFTW_ESTIMATE.

    Passes that may overwrite their input say so (FFTW_DESTROY_INPUT: in place, r2c), so
    FFTW can pick its fastest algorithm; out-of-place complex passes and c2r keep
    FFTW_PRESERVE_INPUT (pyFFTW's default), which the solver relies on.
    """

    _ESTIMATE = ("FFTW_ESTIMATE",)  # never MEASURE: it plans by timing
    _DESTROY = ("FFTW_ESTIMATE", "FFTW_DESTROY_INPUT")
    _KINDS = {
        "forward": ("FFTW_FORWARD", _DESTROY),
        "backward": ("FFTW_BACKWARD", _DESTROY),
        "r2c": ("FFTW_FORWARD", _DESTROY),
        "c2r": ("FFTW_BACKWARD", _ESTIMATE),
    }

    def transform(self, src: np.ndarray, dst: np.ndarray, axis: int, kind: str, threads: int) -> Transform:
        import pyfftw

        direction, flags = self._KINDS[kind]
        if kind in ("forward", "backward") and not np.shares_memory(src, dst):
            flags = self._ESTIMATE  # out of place: the caller keeps its input
        # execute(): no normalisation, no array checks (the arrays are bound here)
        return pyfftw.FFTW(src, dst, axes=(axis,), direction=direction, flags=flags, threads=threads).execute


@dataclass(frozen=True)
class FFTBackend:
    """One FFT library: how to allocate arrays for it and how to plan transforms on them."""

    name: str
    module: str  # import name, to test whether it is installed
    empty: Callable[[tuple[int, ...], np.dtype], np.ndarray]
    plans: type[Plans]
    # the build of the library doing the transforms, where the Python package does not say
    # it (pyFFTW's wheels and conda's pyfftw link different FFTW builds)
    build: Callable[[], str] | None = None

    def version(self) -> str:
        """Version string of the underlying library (recorded as provenance: the bits depend on
        it), with the build of the transform library where it is a separate one."""
        mod = importlib.import_module(self.module)
        version = str(getattr(mod, "__version__", "unknown"))
        return f"{version} ({self.build()})" if self.build is not None else version


def _numpy_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.empty(shape, dtype=dtype)


def _pyfftw_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    import pyfftw

    return pyfftw.empty_aligned(shape, dtype=dtype)


def _fftw_build() -> str:
    """FFTW's own version and SIMD codelets per precision, e.g. 'fftw-3.3.5-sse2-avx'."""
    import pyfftw

    builds = getattr(pyfftw, "_fftw_version_dict", {})  # pyFFTW >= 0.11
    used = sorted({builds[k] for k in ("64", "32") if k in builds})
    return ", ".join(used) or "FFTW build unknown"


BACKENDS: dict[str, FFTBackend] = {
    "pyfftw": FFTBackend("pyfftw", "pyfftw", _pyfftw_empty, PyfftwPlans, _fftw_build),
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
            "fft_backend",
            name,
            f"an installed backend: {', '.join(installed_backends())} or 'auto' "
            f"(install {BACKENDS[name].module!r}, e.g. pip install 'ns-sweep[fast]')",
        )
    return name


def get_backend(name: str) -> FFTBackend:
    """The backend object for ``name`` (resolving 'auto')."""
    return BACKENDS[resolve_backend(name)]
