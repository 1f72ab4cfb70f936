"""Physics of the solver against exact solutions, conserved quantities and published values."""

from __future__ import annotations

import os

import numpy as np
import pytest

from solver import ParameterError, simulate
from solver.diagnostics import energy, energy_spectrum
from solver.initial import initial_velocity
from solver.kernels import installed_kernel_sets, resolve_kernels
from solver.operators import scatter_compact
from solver.parallel import SlabPool
from solver.params import SolverParams
from solver.reference import reference_rhs, reference_setup, reference_step
from solver.stepper import Stepper
from solver.workspace import clear_workspace_cache


def _stepper(threads: int = 1, kernels: str = "auto", **kw) -> Stepper:
    return Stepper(SolverParams(**kw), "auto", threads, kernels)


def _full(u_hat: np.ndarray, st: Stepper) -> np.ndarray:
    """Compact normalised spectrum -> numpy-normalised full real-FFT layout (complex128)."""
    out = np.zeros((3, *st.grid.spectral_shape), np.complex128)
    for i in range(3):
        scatter_compact(out[i], u_hat[i].astype(np.complex128), st.grid)
    return out * st.grid.n_points


def test_simulate_taylor_green_matches_spectraldns_regression_value():
    # spectralDNS's published regression value for this exact case and algorithm
    ds = simulate({"Re": 1600, "dt": 0.01, "T_final": 0.1, "grid": [64, 64, 64], "output_interval": 0.1})
    assert ds.time.values.tolist() == pytest.approx([0.0, 0.1], abs=1e-15)
    assert abs(ds.energy.values[-1] - 0.124953117517) < 1e-10
    assert ds.dissipation.values[0] == pytest.approx(2 / 1600 * 3 / 8, rel=1e-13)
    assert ds.energy.values[0] == pytest.approx(0.125, rel=1e-14)


@pytest.mark.parametrize("k", [1, 2])
def test_simulate_abc_energy_decays_exactly(k):
    ds = simulate(
        {
            "initial_condition": "abc",
            "abc_A": 1.0,
            "abc_B": 0.7,
            "abc_C": 0.4,
            "abc_k": k,
            "Re": 50,
            "dt": 0.01,
            "T_final": 1.0,
            "grid": [16, 16, 16],
            "output_interval": 0.1,
        }
    )
    nu = 1 / 50
    exact = ds.energy.values[0] * np.exp(-2 * nu * k * k * ds.time.values)
    assert ds.energy.values[0] == pytest.approx(0.5 * (1 + 0.49 + 0.16), rel=1e-14)
    np.testing.assert_allclose(ds.energy.values, exact, rtol=1e-10, atol=0)


def test_simulate_taylor_green_2d_energy_decays_exactly():
    ds = simulate(
        {
            "initial_condition": "taylor_green_2d",
            "Re": 20,
            "dt": 0.01,
            "T_final": 1.0,
            "grid": [16, 16, 4],
            "output_interval": 0.1,
        }
    )
    exact = 0.25 * np.exp(-4 / 20 * ds.time.values)
    np.testing.assert_allclose(ds.energy.values, exact, rtol=1e-10, atol=0)


def test_simulate_velocity_stays_divergence_free():
    ds = simulate(
        {
            "initial_condition": "random",
            "Re": 200,
            "dt": 0.01,
            "T_final": 0.3,
            "grid": [16, 16, 16],
            "output_interval": 0.05,
        }
    )
    assert ds.max_velocity.values.min() > 0.5  # a non-trivial field
    assert ds.max_divergence.values.max() < 1e-12


def test_stepper_nonlinear_term_conserves_energy():
    st = _stepper(initial_condition="random", grid=[16, 12, 8], Re=100)
    try:
        u = initial_velocity(st.params, st.grid)
        nonlinear = st.rhs(u) + st.params.nu * st.grid.k_squared() * u
        w = st.grid.z_weights()
        power = np.sum((np.conj(u) * nonlinear).real.sum(axis=(0, 1, 2)) * w)
        scale = np.sum((np.abs(u) * np.abs(nonlinear)).sum(axis=(0, 1, 2)) * w)
        assert scale > 1e-2  # the nonlinear term is not trivially zero
        assert abs(power) < 1e-14 * scale
    finally:
        st.close()


def test_stepper_rhs_matches_reference_implementation():
    st = _stepper(threads=2, initial_condition="random", grid=[16, 12, 10], Re=30)
    try:
        u = initial_velocity(st.params, st.grid)
        fast = _full(st.rhs(u), st)
        ref = reference_rhs(_full(u, st), reference_setup(st.grid.shape, st.params.nu))
        assert np.abs(ref).max() > 1.0
        np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    finally:
        st.close()


def test_stepper_step_matches_reference_step():
    st = _stepper(initial_condition="random", grid=[12, 12, 12], Re=30, dt=0.01)
    try:
        u = initial_velocity(st.params, st.grid)
        st.load(u)
        st.step(0)
        ref = reference_step(_full(u, st), 0.01, reference_setup(st.grid.shape, st.params.nu))
        np.testing.assert_allclose(_full(st.u, st), ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    finally:
        st.close()


def test_simulate_dissipation_equals_minus_energy_rate():
    dt = 0.005
    ds = simulate(
        {
            "initial_condition": "random",
            "Re": 50,
            "dt": dt,
            "T_final": 0.2,
            "grid": [16, 16, 16],
            "output_interval": dt,
        }
    )
    e, d = ds.energy.values, ds.dissipation.values
    # 4th-order central difference of E(t)
    dedt = (e[:-4] - 8 * e[1:-3] + 8 * e[3:-1] - e[4:]) / (12 * dt)
    np.testing.assert_allclose(-dedt, d[2:-2], rtol=1e-7)
    assert np.all(np.diff(e) < 0)


def test_simulate_float32_agrees_with_float64():
    base = {
        "Re": 400,
        "dt": 0.01,
        "T_final": 0.5,
        "grid": [24, 24, 24],
        "output_interval": 0.1,
        "keep_fields": True,
    }
    d64 = simulate(base)
    d32 = simulate({**base, "precision": "float32"})
    assert d32.u.dtype == np.float32 and d64.u.dtype == np.float64
    for name in ("energy", "enstrophy", "max_velocity"):
        np.testing.assert_allclose(d32[name].values, d64[name].values, rtol=2e-6)
    np.testing.assert_allclose(d32.u.values, d64.u.values, atol=2e-6)
    assert not np.array_equal(d32.energy.values, d64.energy.values)  # really ran in float32


def test_energy_spectrum_sums_to_energy():
    ds = simulate(
        {"initial_condition": "random", "Re": 100, "dt": 0.01, "T_final": 0.05, "grid": [16, 16, 16]}
    )
    assert ds.energy_spectrum.sum().item() == pytest.approx(ds.energy.values[-1], rel=1e-13)
    assert ds.energy_spectrum.values[0] < 1e-25  # no mean flow


def test_initial_random_is_seeded_divergence_free_and_scaled():
    p = SolverParams(initial_condition="random", grid=[16, 16, 16], random_energy=0.3, random_k_peak=3.0)
    from solver.grid import make_grid

    g = make_grid(p.grid)
    a, b = initial_velocity(p, g), initial_velocity(p, g)
    c = initial_velocity(p.replace(random_seed=1), g)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert energy(a, g) == pytest.approx(0.3, rel=1e-12)
    spec = energy_spectrum(a, g)
    assert 2 <= int(np.argmax(spec)) <= 4


# ------------------------------------------------------------------ kernel sets, workspace cache


def _run_steps(kernels: str, threads: int, precision: str, grid, steps: int = 3):
    """(u_hat bytes, diagnostics of step 0, rhs bytes) after ``steps`` steps with a kernel set."""
    p = SolverParams(initial_condition="random", grid=grid, Re=200, dt=0.01, precision=precision)
    st = Stepper(p, "auto", threads, kernels)
    try:
        assert st.kernels.name == kernels
        u0 = initial_velocity(p, st.grid)
        rhs = st.rhs(u0).tobytes()
        st.load(u0)
        diag = st.step(0, record=True)
        for n in range(1, steps):
            st.step(n)
        final = st.observe(steps)
        return st.u.tobytes(), diag, final, rhs, st.threads
    finally:
        st.close()


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("kernels", installed_kernel_sets())
def test_stepper_kernel_sets_give_identical_bits(kernels, precision):
    # 48x40x36 has enough points for 2 threads; non-cubic to catch index mix-ups
    grid = [48, 40, 36]
    want = _run_steps("numpy", 1, precision, grid)
    for threads in (1, 2):
        got = _run_steps(kernels, threads, precision, grid)
        assert got[4] == threads
        assert got[0] == want[0], (kernels, threads)  # the state, byte for byte
        assert got[1] == want[1] and got[2] == want[2]  # diagnostics incl. CFL and max |u|
        assert got[3] == want[3]  # the right-hand side


def test_stepper_holds_no_whole_physical_field():
    # the memory design: spectra (x-padded, compact) and per-thread slabs of a few x-rows only
    st = _stepper(threads=2, grid=[64, 48, 40], Re=100)
    try:
        ws, shape = st._ws, st.grid.shape
        arrays = [ws.P, ws.u, ws.u0, ws.acc, ws.R] + [a for sb in ws.slab_bufs for a in (sb.Zi, sb.Z)]
        assert len(ws.slab_bufs) == 2
        for a in arrays:
            assert a[0].size < np.prod(shape) and a.shape[-3:] != shape  # per component
        for sb in ws.slab_bufs:
            assert sb.Z.shape[1] * 4 <= shape[0]  # slabs of at most a quarter of the x-rows
    finally:
        st.close()


def test_kernels_auto_and_unknown_name():
    assert resolve_kernels("auto", 8**3) == "numpy"  # tiny runs never pay numba's start-up
    assert resolve_kernels("auto", 64**3) == installed_kernel_sets()[0]
    assert resolve_kernels("numpy", 64**3) == "numpy"
    with pytest.raises(ParameterError, match="kernels: bad value 'cuda'.*'numba', 'numpy'"):
        resolve_kernels("cuda", 64**3)


def test_kernels_warm_up_gives_tiny_grids_the_fastest_set():
    import subprocess
    import sys

    code = (
        "from solver.kernels import resolve_kernels as r, warm_up_kernels as w\n"
        "before = r('auto', 8 ** 3); name = w(); print(before, name, r('auto', 8 ** 3))"
    )
    env = {k: v for k, v in os.environ.items() if k != "SOLVER_KERNELS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    fastest = installed_kernel_sets()[0]
    assert out.stdout.split() == ["numpy", fastest, fastest]  # a fresh process, then warmed up
    # a process told to use the numpy kernels (memory-tight nodes) does not load numba
    code += "\nimport sys; print('numba' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**env, "SOLVER_KERNELS": "numpy"},
    )
    assert out.stdout.split() == ["numpy", "numpy", "numpy", "False"]


def test_stepper_workspace_cache_reuses_only_idle_workspaces():
    clear_workspace_cache()
    a = _stepper(grid=[8, 8, 8], Re=100)
    b = _stepper(grid=[8, 8, 8], Re=50)  # alive at the same time: its own arrays
    assert a.u is not b.u and a.P is not b.P
    u_a = a.u
    a.close()
    c = _stepper(grid=[8, 8, 8], Re=50)
    try:
        assert c.u is u_a  # a's workspace, handed back on close
        assert np.array_equal(c.co.nu_k2, b.co.nu_k2)  # nu k^2 rewritten for the new Re
    finally:
        b.close()
        c.close()
    big = _stepper(grid=[40, 40, 40], Re=100)  # above CACHE_MAX_POINTS: never cached
    u_big = big.u
    big.close()
    again = _stepper(grid=[40, 40, 40], Re=100)
    try:
        assert again.u is not u_big
    finally:
        again.close()


def test_closed_stepper_refuses_to_step():
    # its workspace went back to the cache, where another stepper may take it
    st = _stepper(grid=[8, 8, 8])
    st.close()
    st.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        st.step(0)


def test_simulate_with_cached_workspace_gives_same_bits():
    clear_workspace_cache()
    base = {
        "initial_condition": "random",
        "dt": 0.01,
        "T_final": 0.05,
        "grid": [12, 12, 8],
        "keep_fields": True,
    }
    fresh = simulate({**base, "Re": 100})
    simulate({**base, "Re": 30})  # leaves a workspace with another nu and state in the cache
    reused = simulate({**base, "Re": 100})
    assert np.array_equal(fresh.energy.values, reused.energy.values)
    assert fresh.u.values.tobytes() == reused.u.values.tobytes()


def test_slab_pool_dynamic_and_static_maps_keep_order_and_raise():
    with SlabPool(3) as pool:
        items = list(range(23))
        for dynamic in (False, True):
            assert pool.map(lambda w, i: i * i, items, dynamic) == [i * i for i in items]
            workers = pool.map(lambda w, i: w, items, dynamic)
            assert set(workers) <= {0, 1, 2}

        def boom(w, i):
            if i == 7:
                raise KeyError("slab 7")
            return i

        for dynamic in (False, True):
            with pytest.raises(KeyError, match="slab 7"):
                pool.map(boom, items, dynamic)
            assert pool.map(lambda w, i: i, items, dynamic) == items  # still usable


def test_simulate_concurrent_solves_in_threads_give_same_bits():
    # a Dask worker with 2 threads runs two solves at once: kernels and pools must not mix
    import threading

    runs = [
        {
            "initial_condition": "random",
            "Re": re,
            "dt": 0.01,
            "T_final": 0.03,
            "grid": [32, 32, 32],
            "keep_fields": True,
            "fft_threads": 2,
        }
        for re in (100, 300)
    ]
    alone = [simulate(p).u.values.tobytes() for p in runs]
    together: list = [None, None]
    threads = [
        threading.Thread(target=lambda i=i: together.__setitem__(i, simulate(runs[i]))) for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [ds.u.values.tobytes() for ds in together] == alone
    assert alone[0] != alone[1]
