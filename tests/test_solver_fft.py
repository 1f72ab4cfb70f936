"""FFT backends: same transforms as numpy, and bits independent of the thread count."""

from __future__ import annotations

import numpy as np
import pytest

from solver import ParameterError
from solver.fft import AUTO_ORDER, BACKENDS, get_backend, installed_backends, resolve_backend
from solver.grid import kept_max

SHAPES = [(4, 4, 4), (6, 8, 10), (16, 16, 8), (24, 24, 24), (32, 32, 32), (48, 20, 12)]


def _plans(backend: str, shape, dtype, threads: int):
    b = get_backend(backend)
    cdt = np.result_type(dtype, np.complex64)
    real = b.empty(shape, np.dtype(dtype))
    back = b.empty(shape, np.dtype(dtype))
    spec2 = b.empty(_padded(np.zeros((*shape[:2], shape[2] // 2 + 1)), shape).shape, cdt)
    plans = b.plans(shape, np.dtype(dtype), _mz(shape), threads)
    spec = plans.forward_output()
    return real, spec, spec2, back, plans.forward(real, spec), plans.inverse(spec2, back)


def _mz(shape) -> int:
    return kept_max(shape[2]) + 1


def _kept(shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks of the modes the 2/3 rule keeps along x, y and z (full real-FFT layout)."""
    kx, ky = (np.abs(np.fft.fftfreq(n, 1.0 / n)) <= kept_max(n) for n in shape[:2])
    return kx, ky, np.arange(shape[2] // 2 + 1) < _mz(shape)


def _dealiased(spec: np.ndarray, shape) -> np.ndarray:
    """Zero outside the kept box: what the transforms' contract allows as inverse input."""
    kx, ky, kz = _kept(shape)
    return spec * (kx[:, None, None] & ky[None, :, None] & kz[None, None, :])


def _padded(spec: np.ndarray, shape) -> np.ndarray:
    """The inverse transforms' input layout: all kx rows (zero outside the box), kept ky, kz."""
    _, ky, kz = _kept(shape)
    return _dealiased(spec, shape)[:, ky][:, :, kz]


def _forward_part(spec: np.ndarray, shape) -> np.ndarray:
    """The part of a forward transform's output the contract defines: ky kept, kz < mz."""
    _, ky, kz = _kept(shape)
    return spec[:, ky][:, :, kz]


@pytest.mark.parametrize("backend", installed_backends())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fft_backend_matches_numpy(backend, dtype):
    shape = (12, 10, 8)
    x = np.random.default_rng(3).standard_normal(shape)
    real, spec, spec2, back, fwd, inv = _plans(backend, shape, dtype, 2)
    real[...] = x
    fwd()
    want = np.fft.rfftn(x)
    tol = 1e-12 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(_forward_part(spec, shape), _forward_part(want, shape),
                               atol=tol * np.abs(want).max())
    want = _dealiased(want, shape)
    spec2[...] = _padded(want, shape) / x.size
    kept = spec2.copy()
    inv()  # unnormalised inverse of normalised coefficients gives the (dealiased) field back
    np.testing.assert_allclose(back, np.fft.irfftn(want, s=shape, axes=(0, 1, 2)), atol=tol * 10)
    assert np.array_equal(spec2, kept)  # the inverse preserves its input


def test_fft_pyfftw_multidimensional_c2r_would_destroy_zero_modes():
    # why the pyfftw backend splits its inverse: FFTW's 3-D c2r uses the input as scratch
    pyfftw = pytest.importorskip("pyfftw")
    c = pyfftw.empty_aligned((24, 24, 13), np.complex128)
    r = pyfftw.empty_aligned((24, 24, 24), np.float64)
    plan = pyfftw.FFTW(c, r, axes=(0, 1, 2), direction="FFTW_BACKWARD",
                       flags=("FFTW_ESTIMATE", "FFTW_DESTROY_INPUT"))
    c[...] = 0
    c[:8, :8, :8] = 1 + 1j
    plan.execute()
    assert np.count_nonzero(c[:, :, 8:]) > 0


@pytest.mark.parametrize("backend", installed_backends())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fft_thread_count_does_not_change_bits(backend, dtype):
    for shape in SHAPES:
        x = np.random.default_rng(1).standard_normal(shape)
        results = []
        for threads in (1, 2, 4):
            real, spec, spec2, back, fwd, inv = _plans(backend, shape, dtype, threads)
            real[...] = x
            fwd()
            spec2[...] = _padded(spec, shape)
            inv()
            results.append((_forward_part(spec, shape).copy(), back.copy()))
        for s, r in results[1:]:
            assert np.array_equal(s, results[0][0]) and np.array_equal(r, results[0][1]), shape


def test_fft_auto_resolves_to_fastest_installed():
    assert resolve_backend("auto") == installed_backends()[0]
    assert installed_backends() == [b for b in AUTO_ORDER if b in installed_backends()]
    assert set(BACKENDS) == set(AUTO_ORDER)


def test_fft_unknown_backend_lists_valid_ones():
    with pytest.raises(ParameterError, match="fft_backend: bad value 'fftpack'.*'pyfftw', 'scipy', 'numpy'"):
        resolve_backend("fftpack")
