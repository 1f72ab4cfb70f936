"""FFT backends: 1-D passes equal numpy's, with bits independent of thread count and slab cut."""

from __future__ import annotations

import numpy as np
import pytest

from solver import ParameterError
from solver.fft import AUTO_ORDER, BACKENDS, KINDS, get_backend, installed_backends, resolve_backend

SHAPES = [(4, 4, 4), (6, 8, 10), (16, 16, 8), (24, 24, 24), (32, 32, 32), (48, 20, 12)]


def _data(kind: str, shape, axis: int, dtype, seed: int = 3) -> np.ndarray:
    """Input of a pass: real for r2c, else complex (c2r: the n//2+1 half spectrum)."""
    rng = np.random.default_rng(seed)
    cdt = np.result_type(dtype, np.complex64)
    if kind == "r2c":
        return rng.standard_normal(shape).astype(dtype)
    if kind == "c2r":
        shape = tuple(n // 2 + 1 if a == axis else n for a, n in enumerate(shape))
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(cdt)


def _expected(kind: str, x: np.ndarray, n: int, axis: int) -> np.ndarray:
    """numpy's transform of the same kind, unnormalised (in float64)."""
    x = x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)
    return {
        "forward": lambda: np.fft.fft(x, axis=axis),
        "backward": lambda: np.fft.ifft(x, axis=axis, norm="forward"),
        "r2c": lambda: np.fft.rfft(x, axis=axis),
        "c2r": lambda: np.fft.irfft(x, n=n, axis=axis, norm="forward"),
    }[kind]()


def _run_pass(
    backend: str, kind: str, x: np.ndarray, n: int, axis: int, threads: int, in_place: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(output, input afterwards) of one pass on backend-allocated arrays."""
    b = get_backend(backend)
    real = np.dtype(x.real.dtype)
    src = b.empty(x.shape, x.dtype)
    src[...] = x
    if in_place:
        dst = src
    else:
        shape = (
            tuple(n if a == axis else m for a, m in enumerate(x.shape))
            if kind == "c2r"
            else tuple(m // 2 + 1 if a == axis else m for a, m in enumerate(x.shape))
            if kind == "r2c"
            else x.shape
        )
        dst = b.empty(shape, real if kind == "c2r" else np.result_type(real, np.complex64))
    plans = b.plans((4, 4, 4), real, threads)
    plans.transform(src, dst, axis, kind, threads)()
    return dst, src


@pytest.mark.parametrize("backend", installed_backends())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", KINDS)
def test_fft_pass_matches_numpy(backend, dtype, kind):
    shape, tol = (6, 12, 10), (1e-12 if dtype == "float64" else 1e-4)
    for axis in range(3):
        n = shape[axis]
        x = _data(kind, shape, axis, dtype)
        want = _expected(kind, x, n, axis)
        got, src = _run_pass(backend, kind, x, n, axis, 2)
        np.testing.assert_allclose(got, want, atol=tol * np.abs(want).max() * 10)
        if kind == "c2r":
            assert np.array_equal(src, x)  # the solver relies on c2r preserving its input
        if kind in ("forward", "backward"):
            got, _ = _run_pass(backend, kind, x, n, axis, 2, in_place=True)
            np.testing.assert_allclose(got, want, atol=tol * np.abs(want).max() * 10)


def test_fft_pyfftw_multidimensional_c2r_would_destroy_zero_modes():
    # why the pyfftw backend splits its inverse: FFTW's 3-D c2r uses the input as scratch
    pyfftw = pytest.importorskip("pyfftw")
    c = pyfftw.empty_aligned((24, 24, 13), np.complex128)
    r = pyfftw.empty_aligned((24, 24, 24), np.float64)
    plan = pyfftw.FFTW(
        c, r, axes=(0, 1, 2), direction="FFTW_BACKWARD", flags=("FFTW_ESTIMATE", "FFTW_DESTROY_INPUT")
    )
    c[...] = 0
    c[:8, :8, :8] = 1 + 1j
    plan.execute()
    assert np.count_nonzero(c[:, :, 8:]) > 0


@pytest.mark.parametrize("backend", installed_backends())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fft_thread_count_does_not_change_bits(backend, dtype):
    for shape in SHAPES:
        for kind in KINDS:
            for axis in range(3):
                x = _data(kind, shape, axis, dtype, seed=1)
                results = [_run_pass(backend, kind, x, shape[axis], axis, t)[0] for t in (1, 2, 4)]
                for r in results[1:]:
                    assert np.array_equal(r, results[0]), (shape, kind, axis)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fft_pass_bits_do_not_depend_on_slab_cut(dtype):
    # the stepper transforms slabs of x-rows in their own (aligned) buffers: each slab's
    # lines must come out bit-identical to the same lines transformed in one whole array
    backend = installed_backends()[0]
    shape = (12, 20, 24)
    for kind in KINDS:
        for axis in (1, 2):
            x = _data(kind, shape, axis, dtype, seed=2)
            whole, _ = _run_pass(backend, kind, x, shape[axis], axis, 1)
            for rows in (1, 2, 3):
                for a in range(0, shape[0], rows):
                    part, _ = _run_pass(backend, kind, x[a : a + rows], shape[axis], axis, 1)
                    assert np.array_equal(part, whole[a : a + rows]), (kind, axis, rows, a)


def test_fft_auto_resolves_to_fastest_installed():
    assert resolve_backend("auto") == installed_backends()[0]
    assert installed_backends() == [b for b in AUTO_ORDER if b in installed_backends()]
    assert set(BACKENDS) == set(AUTO_ORDER)


def test_fft_unknown_backend_lists_valid_ones():
    with pytest.raises(ParameterError, match="fft_backend: bad value 'fftpack'.*'pyfftw', 'scipy', 'numpy'"):
        resolve_backend("fftpack")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fft_pass_bits_do_not_depend_on_zero_columns_added(dtype):
    # the stepper's y passes in float32 run over one zero kz plane more when the kept block
    # has an odd width (FFTW then vectorises the pass): the kept lines must keep their bits
    b = get_backend(installed_backends()[0])
    real = np.dtype(dtype)
    for n, width in ((32, 11), (128, 43)):
        x = _data("forward", (2, 1, n, width), 2, dtype, seed=4)
        out = {}
        for cols in (width, width + 1):
            a = b.empty((2, 1, n, n), x.dtype)
            a[...] = 0
            a[..., :width] = x
            for kind in ("backward", "forward"):
                a[..., :width] = x
                b.plans((n, n, n), real, 1).transform(a[..., :cols], a[..., :cols], 2, kind, 1)()
                out[cols, kind] = a[..., :width].copy()
        for kind in ("backward", "forward"):
            assert np.array_equal(out[width, kind], out[width + 1, kind]), (n, kind)
