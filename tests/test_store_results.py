"""open_results, the grid view, the DataFrame export, per-run data, stale detection and explain."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import run_cli, write_packages
from store_data import provenance, result_like

import sweep
from solver import State
from sweep.engine.plan import explain_packages
from sweep.errors import ConfigError
from sweep.spec import load_packages, run_id_of
from sweep.store import Store

RES = (100.0, 400.0, 1600.0)
DTS = (0.01, 0.005)


def _params(re: float, dt: float, T: float = 0.1, n: int = 8) -> dict:
    return {"Re": re, "dt": dt, "T_final": T, "grid": [n, n, n]}


@pytest.fixture
def factorial_store(tmp_path: Path) -> Path:
    """A store with a 3 x 2 factorial over Re and dt, plus one failed run."""
    url = tmp_path / "r.zarr"
    with Store.open(url, mode="a") as st:
        for i, (re, dt) in enumerate(itertools.product(RES, DTS)):
            p = _params(re, dt)
            st.commit_run(
                run_id_of(p),
                result_like(p),
                provenance(
                    p, f"re{re:g}-dt{dt:g}", priority="HIGH" if dt == 0.01 else "LOW", wall_time=float(i)
                ),
            )
    return url


def test_results_open_has_contract_dims_coords_and_vars(factorial_store: Path) -> None:
    ds = sweep.open_results(factorial_store)
    assert ds.sizes["run"] == 6
    for c in ("package_id", "Re", "dt", "T_final", "nx", "ny", "nz", "priority", "status"):
        assert ds[c].dims == ("run",), c
    for v in ("energy", "dissipation", "enstrophy"):
        assert ds[v].dims == ("run", "output"), v
    assert ds.wall_time.dims == ("run",) and sorted(ds.wall_time.values) == list(range(6))
    assert set(ds["run"].values) == {run_id_of(_params(r, d)) for r, d in itertools.product(RES, DTS)}
    # each run keeps its own output times: time is a (run, output) coordinate, NaN past the end
    assert ds.time.dims == ("run", "output")
    for dt in DTS:
        row = ds.sel(Re=400.0).sel(dt=dt)
        expected = result_like(_params(400.0, dt))
        n = int(row.n_times)
        assert n == expected.sizes["time"]
        np.testing.assert_array_equal(row.time.values.ravel()[:n], expected.time.values)
        np.testing.assert_array_equal(row.energy.values.ravel()[:n], expected.energy.values)
        assert np.isnan(row.energy.values.ravel()[n:]).all() and np.isnan(row.time.values.ravel()[n:]).all()
    # the final energy spectrum, on its own coordinate k (issue 16, item 13)
    assert ds.energy_spectrum.dims == ("run", "k")
    spectrum = result_like(_params(400.0, 0.01)).energy_spectrum
    row = ds.sel(Re=400.0).sel(dt=0.01).energy_spectrum.sel(k=spectrum.k.values)
    np.testing.assert_array_equal(row.values.ravel(), spectrum.values)
    # the union of output times on demand: align_time
    aligned = sweep.align_time(ds)
    t_fine = result_like(_params(100.0, 0.005)).time.values
    t_coarse = result_like(_params(100.0, 0.01)).time.values
    assert aligned.energy.dims == ("run", "time")
    assert np.allclose(aligned.time.values, np.union1d(np.round(t_fine, 12), np.round(t_coarse, 12)))
    row = aligned.sel(Re=400.0).sel(dt=0.01)
    expected = result_like(_params(400.0, 0.01)).energy
    np.testing.assert_array_equal(
        row.energy.sel(time=np.round(expected.time.values, 12)).values, expected.values
    )


def test_results_runs_of_different_lengths_plot_as_continuous_curves(factorial_store: Path) -> None:
    """`ds.energy.plot.line(x="time", hue="run")` draws every run with all its points: a run
    with fewer or other output times than the others is one unbroken line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = sweep.open_results(factorial_store)
    lines = ds.energy.plot.line(x="time", hue="run")
    try:
        assert len(lines) == ds.sizes["run"]
        by_run = {str(r): int(n) for r, n in zip(ds.run.values, ds.n_times.values, strict=True)}
        for line, rid in zip(lines, ds.run.values, strict=True):
            y = np.asarray(line.get_ydata(), dtype=float)
            finite = np.flatnonzero(np.isfinite(y))
            assert finite.size == by_run[str(rid)], rid  # all its points
            assert finite.size and (np.diff(finite) == 1).all() and finite[0] == 0, rid  # no gap
        assert {by_run[str(r)] for r in ds.run.values} == {11, 21}  # two lengths (dt 0.01 and 0.005)
    finally:
        plt.close("all")


def test_results_select_by_parameters(factorial_store: Path) -> None:
    ds = sweep.open_results(factorial_store)
    sub = ds.sel(Re=400.0)
    assert sub.sizes["run"] == 2 and set(sub.dt.values) == set(DTS)
    assert (sub.Re.values == 400.0).all() if "run" in sub.Re.dims else float(sub.Re) == 400.0
    assert ds.sel(priority="HIGH").sizes["run"] == 3
    assert ds.sel(nx=8).sizes["run"] == 6
    one = ds.sel(package_id="re1600-dt0.005")
    assert float(one.Re) == 1600.0 and float(one.dt) == 0.005
    # several values of a repeated parameter: isin (a non-unique index cannot reindex)
    assert ds.where(ds.Re.isin([100.0, 1600.0]), drop=True).sizes["run"] == 4


def test_results_full_factorial_becomes_a_grid(factorial_store: Path) -> None:
    grid = sweep.to_grid(sweep.open_results(factorial_store))
    assert grid.energy.dims == ("Re", "dt", "output") and grid.time.dims == ("Re", "dt", "output")
    assert grid.sizes["Re"] == 3 and grid.sizes["dt"] == 2
    cell = grid.sel(Re=1600.0, dt=0.005)
    assert list(grid.sel(Re=[100.0, 1600.0]).Re.values) == [100.0, 1600.0]  # lists and ranges work here
    assert list(grid.sel(Re=slice(100.0, 400.0)).Re.values) == [100.0, 400.0]
    assert cell.run_id.item() == run_id_of(_params(1600.0, 0.005))
    expected = result_like(_params(1600.0, 0.005)).energy.values
    np.testing.assert_array_equal(cell.energy.values[: expected.size], expected)


def test_results_grid_with_a_missing_combination(factorial_store: Path) -> None:
    ds = sweep.open_results(factorial_store)
    holey = ds.isel(run=[i for i in range(6) if not (ds.Re.values[i] == 400.0 and ds.dt.values[i] == 0.01)])
    with pytest.raises(ConfigError, match=r"full factorial of 6 combinations of Re, dt \(1 missing"):
        sweep.to_grid(holey)
    grid = sweep.to_grid(holey, allow_missing=True)
    assert np.isnan(grid.energy.sel(Re=400.0, dt=0.01).values).all()
    assert not np.isnan(grid.energy.sel(Re=400.0, dt=0.005).values[0])


def test_results_frame_and_export(factorial_store: Path, tmp_path: Path) -> None:
    df = sweep.results_frame(factorial_store)
    assert df.index.name == "run_id" and len(df) == 6
    assert {
        "package_ids",
        "priority",
        "status",
        "Re",
        "dt",
        "T_final",
        "nx",
        "ny",
        "nz",
        "wall_time",
        "solver_version",
        "final_energy",
    } <= set(df.columns)
    rid = run_id_of(_params(400.0, 0.005))
    assert df.loc[rid, "package_ids"] == "re400-dt0.005" and df.loc[rid, "dt"] == 0.005
    assert df.loc[rid, "final_energy"] == result_like(_params(400.0, 0.005)).energy.values[-1]
    sweep.export_index(factorial_store, tmp_path / "index.csv")
    back = pd.read_csv(tmp_path / "index.csv", index_col="run_id")
    assert set(back.index) == set(df.index) and back.loc[rid, "Re"] == 400.0
    sweep.export_index(factorial_store, tmp_path / "index.parquet")
    pq = pd.read_parquet(tmp_path / "index.parquet")
    assert pq.loc[rid, "priority"] == "LOW" and len(pq) == 6
    with pytest.raises(ConfigError, match=r"bad value '.xlsx'; allowed: one of .csv, .parquet"):
        sweep.export_index(factorial_store, tmp_path / "index.xlsx")


def test_results_failed_runs_and_status_filter(factorial_store: Path) -> None:
    bad = _params(3200.0, 0.01)
    with Store.open(factorial_store, mode="a") as st:
        st.record_failure(run_id_of(bad), "diverged", "diverged at step 4", provenance(bad, "bad"))
    ds = sweep.open_results(factorial_store)
    assert ds.sizes["run"] == 7
    failed = ds.sel(status="failed")
    assert failed.failure_class.item() == "diverged" and "step 4" in failed.error.item()
    assert np.isnan(failed.energy.values).all()
    done = sweep.open_results(factorial_store, status="done")
    assert done.sizes["run"] == 6
    # a column a run has no value of is filled: no None reaches the Dataset
    assert set(done.failure_class.values) == {""} and set(done.error.values) == {""}
    assert done.attempts.dtype == np.int64 and (done.attempts.values == 1).all()
    assert done.wall_time.dtype == np.float64 and np.isfinite(done.wall_time.values).all()
    assert set(done.package_id.values) == {p.split(",")[0] for p in done.package_ids.values}


def test_results_open_takes_its_arrays_as_they_are_and_imports_no_dask_array(factorial_store: Path) -> None:
    """open_results gives xarray its own numpy arrays as they are (xarray's checks of data
    of unknown kind import dask.array: ~0.5 s of a fresh process that opens results): the
    Dataset is the one xarray's documented constructor makes of the same arrays."""
    bad = _params(3200.0, 0.01)
    with Store.open(factorial_store, mode="a") as st:
        st.record_failure(run_id_of(bad), "diverged", "diverged at step 4", provenance(bad, "bad"))
    code = (
        "import sys, sweep; ds = sweep.open_results(sys.argv[1]); "
        "print(ds.sizes['run'], 'dask.array' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(factorial_store)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["7", "False"]
    ds = sweep.open_results(factorial_store)
    again = xr.Dataset(
        {k: (v.dims, v.values, v.attrs) for k, v in ds.data_vars.items()},
        coords={k: (v.dims, v.values, v.attrs) for k, v in ds.coords.items()},
        attrs=ds.attrs,
    )
    for name in ds.xindexes:
        if name not in again.xindexes:
            again = again.set_xindex(name)
    xr.testing.assert_identical(ds, again)
    assert {k: v.dtype for k, v in ds.variables.items()} == {k: v.dtype for k, v in again.variables.items()}


def test_results_per_run_data_as_dataset_and_tree(factorial_store: Path) -> None:
    rid = run_id_of(_params(100.0, 0.01))
    tree = sweep.open_run_tree(factorial_store, [rid])
    assert isinstance(tree, xr.DataTree) and list(tree.children) == ["re100-dt0.01"]  # by package id
    assert tree["re100-dt0.01"].attrs["run_id"] == rid
    np.testing.assert_array_equal(
        tree["re100-dt0.01"].energy_spectrum.values, result_like(_params(100.0, 0.01)).energy_spectrum.values
    )
    assert len(sweep.open_run_tree(factorial_store).children) == 6


def test_results_empty_store(tmp_path: Path) -> None:
    Store.open(tmp_path / "e.zarr", mode="a").close()
    ds = sweep.open_results(tmp_path / "e.zarr")
    assert ds.sizes["run"] == 0 and "energy" in ds and "Re" in ds.coords
    assert sweep.results_frame(tmp_path / "e.zarr").empty


def _pkg(pid: str, re: float, prio: str = "HIGH") -> dict:
    return {
        "package_id": pid,
        "priority": prio,
        "parameters": {"Re": re, "dt": 0.01, "T_final": 0.1, "grid": [8, 8, 8]},
    }


def test_results_stale_run_after_parameter_edit(tmp_path: Path) -> None:
    d = write_packages(tmp_path / "pk", [_pkg("a", 100.0), _pkg("b", 200.0), _pkg("c", 200.0, "LOW")])
    url = tmp_path / "r.zarr"
    pkgs = load_packages(d, worker_memory=4 << 30)
    with Store.open(url, mode="a") as st:
        for p in pkgs[:2]:  # a and b ran (c shares b's run)
            st.commit_run(p.run_id, result_like(p.params), provenance(p.params, p.package_id))
    old_a = pkgs[0].run_id
    doc = json.loads((d / "package_0000.json").read_text())
    doc["parameters"]["Re"] = 150.0  # edit a after it ran
    (d / "package_0000.json").write_text(json.dumps(doc))
    pkgs = load_packages(d, worker_memory=4 << 30)
    with Store.open(url) as st:
        plan = {e.package_id: e for e in explain_packages(pkgs, st)}
        assert old_a in st.done_run_ids()  # the old result stays
    a = plan["a"]
    assert a.action == "run" and a.stale_runs == (old_a,) and a.package.run_id != old_a
    assert plan["b"].action == "skip" and plan["b"].shares_with == ("c",)
    assert plan["c"].action == "skip" and plan["c"].stale_runs == ()
    proc = run_cli("explain", str(d), "--store", str(url))
    assert proc.returncode == 0, proc.stderr
    lines = {ln.split()[1]: ln for ln in proc.stdout.splitlines()[:-1]}
    assert lines["a"].startswith("run") and f"stale: earlier result(s) {old_a}" in lines["a"]
    assert lines["b"].startswith("skip") and "done" in lines["b"] and "shares run with c" in lines["b"]
    assert "1 would run" in proc.stdout.splitlines()[-1] and "1 with stale results" in proc.stdout


def test_results_explain_resume_and_failed(tmp_path: Path) -> None:
    d = write_packages(tmp_path / "pk", [_pkg("a", 100.0), _pkg("b", 200.0)])
    pkgs = {p.package_id: p for p in load_packages(d, worker_memory=4 << 30)}
    url = tmp_path / "r.zarr"
    with Store.open(url, mode="a") as st:
        key = State.params_key(pkgs["a"].params.canonical())  # a state of this solver version
        state = State(3, 0.03, np.ones((3, 6, 6, 3), np.complex128), State.empty_diagnostics(), key)
        st.save_checkpoint(pkgs["a"].run_id, state.to_arrays(), step=3)
        st.record_failure(pkgs["b"].run_id, "timeout", "deadline passed", provenance(pkgs["b"].params, "b"))
    proc = run_cli("explain", str(d), "--store", str(url))
    assert proc.returncode == 0, proc.stderr
    lines = {ln.split()[1]: ln for ln in proc.stdout.splitlines()[:-1]}
    assert lines["a"].startswith("resume") and "step 3" in lines["a"]
    assert lines["b"].startswith("run") and "timeout" in lines["b"]


def test_results_explain_bad_packages_exit_2(tmp_path: Path) -> None:
    d = write_packages(tmp_path / "pk", [_pkg("a", -1.0)])
    proc = run_cli("explain", str(d), "--store", str(tmp_path / "r.zarr"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "package_0000.json: parameters.Re: bad value -1.0" in proc.stderr
    assert not (tmp_path / "r.zarr").exists()


def test_results_grid_couples_parameters_that_vary_together(tmp_path: Path) -> None:
    url = tmp_path / "g.zarr"
    with Store.open(url, mode="a") as st:
        for re, n in itertools.product((100.0, 400.0), (8, 12)):
            p = _params(re, 0.01, n=n)
            st.commit_run(run_id_of(p), result_like(p), provenance(p, f"re{re:g}-n{n}"))
    grid = sweep.to_grid(sweep.open_results(url))
    assert grid.energy.dims == ("Re", "nx", "output") and grid.energy.shape[:2] == (2, 2)
    assert grid.nz.sel(nx=12).values.tolist() == [12, 12]  # nz rides along with nx
    assert sweep.to_grid(sweep.open_results(url), dims=["Re", "nz"]).energy.dims == ("Re", "nz", "output")


def _profiled(n: int, shift: float) -> Any:
    """A result shaped like an OpenFOAM case's: a profile on a float coordinate (y), a series on
    time, and a field on an index-like dimension (cell), which stays out of the index."""
    from solver.output import RunResult

    y = np.linspace(0.0, 1.0, n)
    t = np.arange(1, 4) * 0.1
    return RunResult(
        {
            "u_centerline": (("y",), y**2 + shift, {"units": "1"}),
            "residual_p": (("time",), 1.0 / t + shift, {}),
            "U_x": (("cell",), np.arange(6.0) + shift, {}),
        },
        {"y": (("y",), y, {}), "time": (("time",), t, {}), "cell": (("cell",), np.arange(6), {})},
        {"solver": "openfoam"},
    )


def test_results_profiles_survive_the_log_compaction_and_a_rebuild(tmp_path: Path) -> None:
    from sweep.solvers import RunParams, load_solver

    cavity = load_solver("openfoam", "cavity")
    spectral = _params(100.0, 0.01)
    url = tmp_path / "mixed.zarr"
    runs = {}
    with Store.open(url, mode="a", pack_bytes=0) as st:  # every run its own group: the log keeps profiles
        for re, n in ((100.0, 5), (400.0, 9)):
            params = RunParams("openfoam", cavity, cavity.validate({"Re": re}))
            runs[re] = run_id_of(params)
            st.commit_run(
                runs[re], _profiled(n, re), {**provenance(spectral, f"cavity{re:g}"), "params": params}
            )
        st.commit_run(run_id_of(spectral), result_like(spectral), provenance(spectral, "spectral"))
        before = sweep.open_results(st)  # from the log
    after = sweep.open_results(url)  # from the compacted index
    with Store.open(url, mode="a") as st:
        assert st.rebuild_index() == 3
    rebuilt = sweep.open_results(url)  # from the runs' own groups
    for ds in (before, after, rebuilt):
        assert ds.u_centerline.dims == ("run", "y") and "U_x" not in ds and "cell" not in ds.dims
        np.testing.assert_array_equal(ds.y.values, np.linspace(0.0, 1.0, 9))  # the union of both samples
        coarse = ds.sel(Re=100.0).sel(solver="openfoam")
        assert np.isnan(coarse.u_centerline.values[1::2]).all()  # no value where it was not sampled
        np.testing.assert_array_equal(coarse.u_centerline.values[::2], np.linspace(0, 1, 5) ** 2 + 100.0)
        assert ds.sel(solver="spectral").u_centerline.isnull().all()
        assert ds.sel(Re=400.0).n_cells.item() == 32
        assert np.isnan(ds.sel(solver="spectral").n_cells.item()) and ds.sel(solver="spectral").nx.item() == 8
        assert np.isnan(ds.sel(Re=400.0).nx.item())
        assert "energy" in ds and np.isfinite(ds.sel(Re=400.0).residual_p.values).sum() == 3
    recs = {r.run_id: r for r in Store.open(url).records().values()}
    assert recs[runs[100.0]].solver == "openfoam" and recs[runs[100.0]].case == "cavity"
    own = {k: v for k, v in recs[runs[100.0]].params.items() if v is not None}  # a mixed store's columns
    assert own == {
        "Re": 100.0,
        "T_final": 2.0,
        "dt": 0.0025,
        "keep_fields": False,
        "n_cells": 32,
    }
    assert recs[runs[100.0]].provenance["template_hash"] == cavity.hash
    assert recs[run_id_of(spectral)].solver == "spectral"


def test_results_run_tree_by_package_id_and_groups_open_without_warnings(tmp_path: Path) -> None:
    """open_run_tree names each child by its package id (the run id is an attribute), and
    xarray.open_zarr opens a run group and a batch group as they are: no warning about
    unconsolidated metadata."""
    import warnings

    url = tmp_path / "r.zarr"
    with Store.open(url, mode="a", pack_bytes=1 << 20) as st:
        for re in (100.0, 400.0):
            p = _params(re, 0.01)
            st.commit_run(run_id_of(p), result_like(p), provenance(p, f"re{re:g}"))
        big = {**_params(1600.0, 0.01), "keep_fields": True}
        st.commit_run(run_id_of(big), result_like(big, fields=True), provenance(big, "fields"))
        st.compact()
    tree = sweep.open_run_tree(url)
    assert sorted(tree.children) == ["fields", "re100", "re400"]
    assert tree["re400"].attrs["run_id"] == run_id_of(_params(400.0, 0.01))
    groups = [*(url / "runs").glob("*/zarr.json"), *(url / "batches").glob("*/zarr.json")]
    assert any("runs" in str(g) for g in groups) and any("batches" in str(g) for g in groups)
    for g in groups:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds = xr.open_zarr(g.parent)
        assert "energy" in ds.data_vars


def test_results_identity_parameters_that_vary_become_coordinates(tmp_path: Path) -> None:
    """Re, dt, T_final, nx, ny, nz always; another identity parameter only when its value
    differs between runs (a seed, an initial condition, a list-valued one alike)."""
    url = tmp_path / "v.zarr"
    base = _params(400.0, 0.01)
    runs = [
        {**base, "random_seed": 1, "initial_condition": "random"},
        {**base, "random_seed": 2, "initial_condition": "random"},
    ]
    with Store.open(url, mode="a") as st:
        for i, p in enumerate(runs):
            st.commit_run(run_id_of(p), result_like(p), provenance(p, f"s{i}"))
    ds = sweep.open_results(url)
    assert ds.attrs["parameters"] == "Re dt T_final nx ny nz random_seed"
    assert sorted(ds.random_seed.values.tolist()) == [1, 2] and "initial_condition" not in ds.coords
    every = sweep.results_frame(url)
    assert {"initial_condition", "keep_fields", "random_seed"} <= set(every.columns)
