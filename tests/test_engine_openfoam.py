"""The openfoam and command solvers through the whole engine: `sweep run` in a subprocess on a
real LocalCluster, a real `dask scheduler`/`dask worker` pair and a real one-process cluster,
with Debian's OpenFOAM (no mocks): the cavity against Ghia et al. (1982), resume, bit-identical
re-runs in every mode, failure classes, process groups killed at the timeout, a lost worker's
run resumed from its last time directory, and a mixed store (spectral and command runs).

OpenFOAM tests skip with a reason when icoFoam is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import textwrap
import threading
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import TINY, PackageLog, run_cli, write_packages
from faults import (
    RemoteCluster,
    assert_results_equal,
    records,
    started_on,
    tree_digest,
    wait_for,
    worker_pids,
)

import sweep
from sweep.solvers.openfoam import CASES_DIR, GHIA_Y, ghia_u
from sweep.solvers.process import SCRATCH_ENV

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        shutil.which("icoFoam") is None or shutil.which("blockMesh") is None,
        reason="OpenFOAM is not installed (no icoFoam/blockMesh on PATH): apt-get install openfoam; "
        ".ci/run installs it where apt is available",
    ),
]

EXAMPLE_COMMAND = Path(__file__).resolve().parent.parent / "examples" / "command"
# Ghia's Re = 100 column on 32 x 32 cells to a steady state: 800 steps, about 1 s (see
# test_solvers_openfoam.test_cavity_re100_u_centerline_matches_ghia for the tolerance)
GHIA_RUN = {"Re": 100.0, "n_cells": 32, "T_final": 2.0, "dt": 0.0025}
SMALL_RUN = {"Re": 400.0, "n_cells": 16, "T_final": 0.5, "dt": 0.005}


def _cavity(pid: str, params: dict, case: str = "cavity", priority: str = "HIGH") -> dict:
    return {"package_id": pid, "priority": priority, "solver": "openfoam", "case": case, "parameters": params}


def _live_programs(root: Path) -> list[str]:
    """Live processes started by runs whose scratch directory is under ``root``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(SCRATCH_ENV, "").startswith(str(root)) and proc.status() != "zombie":
                found.append(proc.name())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _said(text: str) -> set[str]:
    """Which of a package log's milestones it holds."""
    return {m for m in ("checkpoint at step", " started on ") if m in text}


def _store_files(store: Path) -> dict[str, str]:
    return {k: v for k, v in tree_digest(store).items() if k != "lock.json"}


@pytest.fixture(scope="module")
def cavity_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The cavity at Re = 100 (Ghia's column) and a smaller run at Re = 400, through `sweep run`
    on a LocalCluster of 2 workers: (package directory, store)."""
    root = tmp_path_factory.mktemp("cavity")
    d = write_packages(
        root / "packages", [_cavity("ghia", GHIA_RUN), _cavity("small", SMALL_RUN, priority="LOW")]
    )
    store = root / "parallel.zarr"
    proc = run_cli("run", str(d), "--store", str(store), "--mode", "parallel", "--max-parallel", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return d, store


@pytest.mark.slow
def test_openfoam_cavity_sweep_matches_ghia_and_reruns_bit_identical(cavity_sweep, tmp_path: Path) -> None:
    d, store = cavity_sweep
    ds = sweep.open_results(store)
    assert set(ds.solver.values) == {"openfoam"}
    assert ds.attrs["parameters"] == "Re T_final dt n_cells" and "nx" not in ds.coords and "energy" not in ds
    ghia = ds.sel(package_id="ghia")
    assert ghia.u_centerline.dims == ("y",) and ghia.n_cells.item() == 32 and ghia.status.item() == "done"
    y = ds.y.values
    assert y.size == 129 and y[0] == 0.0 and y[-1] == 1.0  # y / L at Ghia's 129 grid lines
    u = ghia.u_centerline.sel(y=np.round(GHIA_Y, 12), method="nearest").values
    np.testing.assert_allclose(ds.y.sel(y=GHIA_Y, method="nearest").values, GHIA_Y, atol=1e-12)
    assert np.abs(u - ghia_u(100)).max() < 0.01  # measured 0.0044: see test_solvers_openfoam
    assert np.isfinite(ghia.residual_Ux.values).sum() == 800 and ghia.residual_Ux.values[799] < 1e-5
    assert ds.sel(package_id="small").residual_p.count().item() == 100

    # resumed: nothing to run, nothing written in the store
    before = _store_files(store)
    proc = run_cli("run", str(d), "--store", str(store))
    assert proc.returncode == 0, proc.stderr
    assert "0 to run, 2 skipped as already done" in proc.stdout
    assert _store_files(store) == before

    # the same sweep in a one-process cluster and on a remote scheduler: the same bits
    sequential = tmp_path / "sequential.zarr"
    proc = run_cli("run", str(d), "--store", str(sequential), "--mode", "sequential")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_results_equal(store, sequential)
    cluster = RemoteCluster(tmp_path)
    try:
        address = cluster.start()
        remote = tmp_path / "remote.zarr"
        proc = run_cli("run", str(d), "--store", str(remote), "--scheduler", address)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        cluster.stop()
    assert_results_equal(store, remote)


@pytest.mark.slow
def test_openfoam_status_explain_and_report_on_an_openfoam_only_store(cavity_sweep, tmp_path: Path) -> None:
    d, store = cavity_sweep
    proc = run_cli("explain", str(d), "--store", str(store))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("done: its run is in the store") == 2 and "0 would run" in proc.stdout
    proc = run_cli("status", "--store", str(store), "--packages", str(d), "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"done": 2' in proc.stdout
    proc = run_cli("report", "--store", str(store), "--packages", str(d), "--out", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "report" / "sweep_report.html").read_text()
    assert "u_centerline vs y" in html and "residual_Ux vs time" in html and "2/2 packages done" in html


@pytest.mark.slow
def test_openfoam_failures_diverged_error_timeout_leave_no_process(tmp_path: Path) -> None:
    broken = Path(shutil.copytree(CASES_DIR / "cavity", tmp_path / "packages" / "broken"))
    schemes = broken / "system" / "fvSchemes"
    schemes.write_text(schemes.read_text().replace("div(phi,U)      Gauss linear;", ""))
    d = write_packages(
        tmp_path / "packages",
        [
            # Re = 10^4 on 16^2 with dt = 0.2 s: Courant ~30 after a step; OpenFOAM traps the NaN
            _cavity("blowup", {"Re": 1e4, "n_cells": 16, "dt": 0.2, "T_final": 2.0}),
            _cavity("broken", SMALL_RUN, case="./broken"),
            # ~30 s of icoFoam: stopped by the 2 s timeout
            _cavity("slow", {"n_cells": 64, "T_final": 10.0, "dt": 0.001}),
        ],
    )
    scratch = tmp_path / "scratch"  # the workers' temporary directory: where the runs happen
    scratch.mkdir()
    store = tmp_path / "s.zarr"
    proc = run_cli(
        "run", str(d), "--store", str(store), "--max-parallel", "2", "--timeout", "2",
        env={"TMPDIR": str(scratch)},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    by_package = {r.package_ids[0]: r for r in records(store).values()}
    assert {p: (r.status, r.failure_class) for p, r in by_package.items()} == {
        "blowup": ("failed", "diverged"),
        "broken": ("failed", "error"),
        "slow": ("failed", "timeout"),
    }
    assert by_package["blowup"].error.startswith("ProgramDiverged: icoFoam diverged at step ")
    assert "floating-point exception" in by_package["blowup"].error
    assert by_package["broken"].error.startswith(  # OpenFOAM's own words, on one line
        "ExternalSolverError: icoFoam failed (exit code 1): FOAM FATAL IO ERROR: Entry 'div(phi,U)' not "
        "found in dictionary"
    )
    assert by_package["slow"].error.startswith("ProgramTimeout: deadline passed while icoFoam ran at step ")
    assert _live_programs(scratch) == []  # the timeout killed icoFoam's whole process group
    assert [p for p in scratch.iterdir() if p.name.startswith("ns-sweep-")] == []  # no run's scratch left


FAILING_PROGRAMS = {
    "exits1": 'import sys\nprint("reading input.json", flush=True)\n'
    'print("Re must be below 1e6, got 1e9", file=sys.stderr)\nsys.exit(1)\n',
    "silent": 'print("all done")\n',
}


@pytest.mark.slow
def test_command_solver_sweep_end_to_end_in_a_mixed_store(tmp_path: Path) -> None:
    """The examples/command solver through `sweep run`, beside a spectral package: a good run, a
    blow-up (exit code 3: diverged), a program that exits 1 and one that writes no output."""
    pkgs = tmp_path / "packages"
    for name, program in FAILING_PROGRAMS.items():
        copy = Path(shutil.copytree(EXAMPLE_COMMAND, pkgs / name))
        (copy / "decay.py").write_text(textwrap.dedent(program))
    example = os.path.relpath(EXAMPLE_COMMAND, pkgs)
    command = {"priority": "HIGH", "solver": "command"}
    d = write_packages(
        pkgs,
        [
            {**command, "package_id": "decay", "case": example, "parameters": {"Re": 10.0, "n": 16}},
            {**command, "package_id": "blowup", "case": example, "parameters": {"dt": 0.5, "T_final": 50.0}},
            {**command, "package_id": "exits1", "case": "./exits1", "parameters": {}},
            {**command, "package_id": "silent", "case": "./silent", "parameters": {}},
            {"package_id": "spectral", "priority": "LOW", "parameters": TINY},
        ],
    )
    store = tmp_path / "mixed.zarr"
    proc = run_cli("run", str(d), "--store", str(store), "--mode", "sequential")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    by_package = {r.package_ids[0]: r for r in records(store).values()}
    assert {p: r.failure_class or r.status for p, r in by_package.items()} == {
        "decay": "done",
        "blowup": "diverged",
        "exits1": "error",
        "silent": "error",
        "spectral": "done",
    }
    assert by_package["exits1"].error == (
        "ExternalSolverError: decay.py failed (exit code 1): Re must be below 1e6, got 1e9"
    )
    assert by_package["silent"].error == (
        "ExternalSolverError: decay.py wrote no output.csv (declared in outputs of sweep-command.yaml); "
        "its last words: all done"
    )
    assert "diverged" in by_package["blowup"].error and "exit code 3" in by_package["blowup"].error
    assert by_package["decay"].solver == "command" and by_package["spectral"].solver == "spectral"

    ds = sweep.open_results(store, status="done")
    assert sorted(ds.solver.values) == ["command", "spectral"]
    decay, spectral = ds.sel(solver="command"), ds.sel(solver="spectral")
    # the command's output: energy and energy_exact on time (explicit Euler within 1 % of exp)
    t = decay.time.values[np.isfinite(decay.energy.values)]
    assert t.size == 101 and np.isclose(t[-1], 1.0)
    e, exact = decay.energy.dropna("output").values, decay.energy_exact.dropna("output").values
    np.testing.assert_allclose(e, exact, rtol=0.01)
    np.testing.assert_allclose(exact, 0.25 * np.exp(-2 * 0.1 * t), rtol=1e-12)
    assert decay.n.item() == 16 and np.isnan(decay.nx.item()) and spectral.nx.item() == 8
    assert np.isnan(spectral.energy_exact.values).all() and spectral.energy_spectrum.count() > 0
    assert np.isnan(spectral.n.item())
    proc = run_cli("status", "--store", str(store), "--json")
    assert proc.returncode == 0 and '"runs_in_store": 5' in proc.stdout, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def client2(tmp_path_factory: pytest.TempPathFactory):
    """Two worker processes under nannies (as the engine's own clusters: a lost worker fails
    its task at once), running programs in a temporary directory of their own."""
    import dask.config
    from distributed import Client, LocalCluster

    scratch = tmp_path_factory.mktemp("worker-tmp")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            env={"TMPDIR": str(scratch)},
        )
    with cluster, Client(cluster) as client:
        yield client, scratch


@pytest.mark.slow
def test_openfoam_lost_worker_run_resumes_from_its_last_time_directory(tmp_path: Path, client2) -> None:
    client, scratch = client2
    victim = {"n_cells": 32, "T_final": 4.0, "dt": 0.0025, "write_interval": 0.25}  # 1600 steps, ~2 s
    d = write_packages(
        tmp_path / "packages", [_cavity("victim", victim), _cavity("small", SMALL_RUN, priority="LOW")]
    )
    logs = tmp_path / "logs"
    log = PackageLog(logs, "victim")
    killed: list[tuple[str, int]] = []
    failure: list[BaseException] = []

    def kill_its_worker() -> None:
        try:  # once the driver saved a checkpoint (a time directory), SIGKILL the victim's worker
            # (its first time directory may be saved before the run announces where it started)
            wait_for(
                lambda: log.exists() and {"checkpoint at step", " started on "} <= _said(log.read_text()),
                what="a checkpoint and the victim's worker",
            )
            address = started_on(log.read_text())[0]
            pid = worker_pids(client)[address]
            os.kill(pid, signal.SIGKILL)
            killed.append((address, pid))
        except BaseException as exc:  # reported by the test below
            failure.append(exc)

    from sweep.engine import run_sweep

    killer = threading.Thread(target=kill_its_worker, daemon=True)
    killer.start()
    store = tmp_path / "r.zarr"
    res = run_sweep(
        d, store, client=client, progress_bar=False, out=io.StringIO(), checkpoint_every_steps=1, log_dir=logs
    )
    killer.join(timeout=60)
    assert not failure, failure
    assert res.exit_code == 0 and res.retries >= 1 and killed
    rec = next(r for r in records(store).values() if r.package_ids == ("victim",))
    assert rec.status == "done" and rec.attempts == 2
    assert rec.resumed_from_checkpoint and rec.resumed_from_step >= 100 and rec.resumed_from_step % 100 == 0
    text = log.read_text()
    assert "retrying from its checkpoint (step" in text and "resuming from the checkpoint at step" in text
    # the killed worker's icoFoam died with it (the kernel's parent-death signal)
    wait_for(lambda: _live_programs(scratch) == [], timeout=10, what="no program of the lost worker")

    clean = tmp_path / "clean.zarr"
    res = run_sweep(d, clean, client=client, progress_bar=False, out=io.StringIO())
    assert res.exit_code == 0
    assert_results_equal(clean, store)  # bit for bit, as if nothing had happened
    wait_for(lambda: len(worker_pids(client)) == 2, timeout=60, what="the nanny to restart the worker")
