"""simulate(): the Dataset, hooks (deadline, progress, checkpoint/resume), errors, determinism."""

from __future__ import annotations

import importlib
import json
import re
import time

import numpy as np
import pytest
import xarray as xr

import solver
from solver import DivergedError, ParameterError, SolverTimeout, State, memory_estimate, simulate
from solver.diagnostics import DIAGNOSTICS
from solver.fft import BACKENDS, installed_backends

SMALL = {
    "initial_condition": "random",
    "Re": 100,
    "dt": 0.01,
    "T_final": 0.2,
    "grid": [16, 16, 8],
    "output_interval": 0.04,
}


def _assert_same_bits(a: xr.Dataset, b: xr.Dataset) -> None:
    xr.testing.assert_identical(a, b)
    for name in a.variables:
        assert np.array_equal(a[name].values, b[name].values), name


def test_solver_exports_documented_names():
    for name in (
        "simulate",
        "State",
        "memory_estimate",
        "SOLVER_VERSION",
        "SolverParams",
        "DivergedError",
        "SolverTimeout",
        "ParameterError",
    ):
        assert name in solver.__all__ and hasattr(solver, name)


def test_simulate_dataset_layout_units_and_attrs():
    ds = simulate({**SMALL, "keep_fields": True})
    np.testing.assert_allclose(ds.time.values, [0, 0.04, 0.08, 0.12, 0.16, 0.2], atol=1e-15)
    for name in DIAGNOSTICS:
        assert ds[name].dims == ("time",)
        assert ds[name].attrs["units"] and ds[name].attrs["long_name"]
    assert ds.energy_spectrum.dims == ("k",)
    for name in "uvw":
        assert ds[name].dims == ("x", "y", "z") and ds[name].shape == (16, 16, 8)
    assert ds.x.values[1] == pytest.approx(2 * np.pi / 16)
    assert json.loads(ds.attrs["params"])["grid"] == [16, 16, 8]
    assert ds.attrs["solver_version"] == solver.SOLVER_VERSION
    assert ds.attrs["fft_backend"] == installed_backends()[0]
    assert ds.attrs["fft_threads"] >= 1
    json.dumps(ds.attrs)  # zarr needs JSON-serialisable attributes
    for v in ds.variables.values():
        json.dumps(v.attrs)


def test_simulate_output_interval_not_dividing_t_final_ends_at_t_final():
    ds = simulate({**SMALL, "T_final": 0.05, "output_interval": 0.02})
    np.testing.assert_allclose(ds.time.values, [0, 0.02, 0.04, 0.05], atol=1e-15)


def test_simulate_final_fields_only_when_asked():
    ds = simulate(SMALL)
    assert "u" not in ds and "x" not in ds.coords


def test_simulate_same_params_same_bits():
    _assert_same_bits(simulate(SMALL), simulate(SMALL))


@pytest.mark.parametrize("backend", installed_backends())
def test_simulate_thread_count_does_not_change_bits(backend):
    # large enough for every thread to get work (small grids run on one thread)
    p = {
        **SMALL,
        "grid": [64, 64, 32],
        "T_final": 0.03,
        "output_interval": 0.01,
        "fft_backend": backend,
        "keep_fields": True,
    }
    runs = [simulate({**p, "fft_threads": t}) for t in (1, 2, 3)]
    assert [ds.attrs["fft_threads"] for ds in runs] == [1, 2, 3]
    for ds in runs[1:]:
        for name in ("energy", "u", "v", "w", "energy_spectrum"):
            assert np.array_equal(runs[0][name].values, ds[name].values), (backend, name)


def test_simulate_backends_agree_to_round_off():
    runs = {b: simulate({**SMALL, "fft_backend": b}) for b in installed_backends()}
    ref = runs["numpy"]
    for b, ds in runs.items():
        assert ds.attrs["fft_backend"] == b
        # the library's version, and for pyFFTW the FFTW build that decides the bits
        version = importlib.import_module(BACKENDS[b].module).__version__
        assert ds.attrs["fft_library_version"].startswith(version)
        if b == "pyfftw":
            assert re.fullmatch(r"\S+ \(fftw-3\.\S+(, fftw-3\.\S+)?\)", ds.attrs["fft_library_version"])
        np.testing.assert_allclose(ds.energy.values, ref.energy.values, rtol=1e-13)


def test_simulate_resume_from_any_checkpoint_is_bit_identical():
    states: list[State] = []
    full = simulate(SMALL, checkpoint=states.append, checkpoint_every_steps=3)
    assert [s.step for s in states] == [3, 6, 9, 12, 15, 18]
    for state in (states[0], states[2], states[5]):  # mid-interval and just before the end
        stored = State.from_arrays(state.to_arrays())  # through plain arrays, as the store does
        _assert_same_bits(full, simulate(SMALL, resume=stored))


def test_simulate_resume_from_checkpoint_on_output_step():
    states: list[State] = []
    full = simulate(SMALL, checkpoint=states.append, checkpoint_every_steps=4)
    assert states[0].step == 4 and len(states[0].diagnostics["energy"]) == 1
    _assert_same_bits(full, simulate(SMALL, resume=State.from_arrays(states[0].to_arrays())))


def test_state_to_arrays_round_trip_is_lossless():
    states: list[State] = []
    simulate({**SMALL, "precision": "float32"}, checkpoint=states.append, checkpoint_every_steps=5)
    s = states[0]
    arrays = s.to_arrays()
    assert all(isinstance(a, np.ndarray) and a.ndim >= 1 and a.dtype.kind in "fiu" for a in arrays.values())
    assert arrays["diag_step"].dtype == np.int64 and arrays["diag_step"].tolist() == [0, 4]
    back = State.from_arrays(arrays)
    assert back.step == s.step and back.time == s.time and back.params_json == s.params_json
    assert back.u_hat.dtype == np.complex64 and np.array_equal(back.u_hat, s.u_hat)
    assert set(back.diagnostics) == set(s.diagnostics)
    for k in s.diagnostics:
        assert np.array_equal(back.diagnostics[k], s.diagnostics[k])


def test_simulate_checkpoint_every_seconds():
    states: list[State] = []
    simulate(SMALL, checkpoint=states.append, checkpoint_every_seconds=1e-9)
    assert [s.step for s in states] == list(range(1, 20))


def test_simulate_resume_with_other_params_is_refused():
    states: list[State] = []
    simulate(SMALL, checkpoint=states.append, checkpoint_every_steps=10)
    with pytest.raises(ParameterError, match="resume.*same parameters"):
        simulate({**SMALL, "Re": 101.0}, resume=states[0])


def test_simulate_progress_called_every_step():
    calls = []
    simulate(SMALL, progress=lambda step, n, t: calls.append((step, n, t)))
    assert [c[0] for c in calls] == list(range(1, 21))
    assert calls[-1][1] == 20 and calls[-1][2] == pytest.approx(0.2)


def test_simulate_deadline_passed_raises_timeout():
    with pytest.raises(SolverTimeout, match="deadline passed at step 0") as e:
        simulate(SMALL, deadline=time.time() - 1)
    assert e.value.step == 0 and e.value.time == 0.0


def test_simulate_deadline_during_run_names_step():
    deadline = time.time() + 2.0

    def slow(step, n, t):
        if step == 3:  # the deadline passes during step 3's callback
            time.sleep(max(0.0, deadline - time.time()) + 0.01)

    with pytest.raises(SolverTimeout) as e:
        simulate(SMALL, deadline=deadline, progress=slow)
    assert e.value.step == 3 and e.value.time == pytest.approx(0.03)


def test_simulate_large_dt_fails_on_cfl():
    with pytest.raises(DivergedError, match=r"step 0 .*CFL number above cfl_limit") as e:
        simulate({"Re": 100, "dt": 0.5, "T_final": 5.0, "grid": [32, 32, 32]})
    assert e.value.step == 0 and e.value.cfl > 1.0


def test_simulate_unstable_run_is_diverged_with_step_and_time():
    # explicit viscous term far beyond RK4's stability limit; CFL check disabled
    with pytest.raises(DivergedError, match="NaN or inf") as e:
        simulate(
            {
                "initial_condition": "random",
                "Re": 1,
                "dt": 0.1,
                "T_final": 50.0,
                "grid": [16, 16, 16],
                "cfl_limit": 1e300,
            }
        )
    assert e.value.step > 1
    assert e.value.time == pytest.approx(e.value.step * 0.1)


BAD = [
    ({"Re": 0}, "Re", "number > 0"),
    ({"Re": -5.0}, "Re", "number > 0"),
    ({"dt": 0}, "dt", "number > 0"),
    ({"dt": 2.0, "T_final": 1.0}, "dt", "time step <= T_final"),
    ({"T_final": 0.105, "dt": 0.01}, "T_final", "whole number of steps"),
    ({"grid": [16, 15, 16]}, "grid", "even integers >= 4"),
    ({"grid": [2, 2, 2]}, "grid", "even integers >= 4"),
    ({"grid": [16, 16]}, "grid", "three even integers"),
    ({"initial_condition": "vortex"}, "initial_condition", "'taylor_green', 'taylor_green_2d', 'abc'"),
    ({"fft_backend": "mkl"}, "fft_backend", "'auto', 'pyfftw', 'scipy', 'numpy'"),
    ({"fft_threads": 0}, "fft_threads", "integer >= 1"),
    ({"precision": "float16"}, "precision", "'float64', 'float32'"),
    ({"output_interval": 0.015, "dt": 0.01}, "output_interval", "whole number of steps"),
    ({"colour": "red"}, "colour", "a known parameter: Re, dt"),
    ({"grid": [4096, 4096, 4096]}, "grid", "available memory"),
    ({"initial_condition": "abc", "abc_k": 3, "grid": [8, 8, 8]}, "abc_k", "below min\\(grid\\)/3"),
]


@pytest.mark.parametrize("raw, field, allowed", BAD, ids=[b[1] + "-" + str(i) for i, b in enumerate(BAD)])
def test_simulate_bad_parameter_clear_error(raw, field, allowed):
    with pytest.raises(ParameterError, match=f"^{field}: bad value .*allowed: .*{allowed}") as e:
        simulate(raw)
    assert e.value.field == field


def test_simulate_bad_checkpoint_interval():
    with pytest.raises(ParameterError, match="checkpoint_every_steps"):
        simulate(SMALL, checkpoint=lambda s: None, checkpoint_every_steps=0)


def test_memory_estimate_scales_with_grid_and_precision():
    small = memory_estimate({"grid": [32, 32, 32]})
    big = memory_estimate({"grid": [128, 128, 128]})
    single = memory_estimate({"grid": [128, 128, 128], "precision": "float32"})
    assert isinstance(big, int) and small < single < big
    # arrays of the 128^3 float64 stepper (x-padded spectra, compact state, diagnostics'
    # temporaries: ~190 MiB) and, where installed, numba's baseline (~115 MiB)
    assert 180 * 2**20 < big - memory_estimate({"grid": [4, 4, 4]}) < 350 * 2**20


def test_run_simulation_result_is_simulate_dataset_and_pickles_losslessly():
    import pickle

    from solver.simulate import run_simulation

    params = {**SMALL, "keep_fields": True, "initial_condition": "random"}
    result = run_simulation(params)
    assert result.to_dataset().identical(simulate(params))
    back = pickle.loads(pickle.dumps(result, protocol=5))
    for (n, d, v, a), (n2, d2, v2, a2) in zip(result.variables(), back.variables(), strict=True):
        assert (n, d, a) == (n2, d2, a2)
        assert v2.dtype == v.dtype and v2.shape == v.shape and v2.tobytes() == v.tobytes(), n
        assert v2.flags.writeable
    assert back.attrs == result.attrs and back.dims == ("time", "k", "x", "y", "z")


@pytest.mark.parametrize("ic", ["taylor_green", "abc", "random"])
def test_initial_velocity_cached_per_process_same_bits_fresh_array(ic):
    from solver import SolverParams
    from solver.grid import make_grid
    from solver.initial import INITIAL_REGISTRY, initial_velocity

    p = SolverParams({**SMALL, "initial_condition": ic, "abc_k": 2})
    grid = make_grid(p.grid, p.precision)
    first, again = initial_velocity(p, grid), initial_velocity(p, grid)
    assert first is not again and first.tobytes() == again.tobytes()
    fresh = np.ascontiguousarray(INITIAL_REGISTRY[ic](p, grid), dtype=grid.complex_dtype)
    assert first.tobytes() == fresh.tobytes()
    first[...] = 0  # the caller owns its array: the cached field is untouched
    assert initial_velocity(p, grid).tobytes() == fresh.tobytes()
    if ic == "random":  # a parameter of the field is part of its cache key
        other = initial_velocity(p.replace(random_seed=p.random_seed + 1), grid)
        assert other.tobytes() != fresh.tobytes()


def test_memory_key_groups_runs_of_equal_memory_need():
    from solver import SolverParams
    from solver.memory import memory_key

    base = SolverParams(SMALL)
    same = [base.replace(Re=3000.0), base.replace(random_seed=7, cfl_limit=0.5)]
    other = [
        base.replace(grid=[16, 16, 16]),
        base.replace(precision="float32"),
        base.replace(keep_fields=True),
    ]
    for p in same:
        assert memory_key(p) == memory_key(base) and memory_estimate(p) == memory_estimate(base)
    for p in other:
        assert memory_key(p) != memory_key(base)
