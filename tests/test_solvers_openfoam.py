"""The openfoam solver on Debian's OpenFOAM v1912 (real icoFoam, no mocks): the bundled cavity
against Ghia et al. (1982), bit-identical re-runs and resumes, failure classes, process-group
kills, and one-line configuration errors.

OpenFOAM tests skip with a reason when icoFoam is not installed (``.ci/run`` installs it with
apt where it can). Meshes are small: the whole module runs in a few seconds.
"""

from __future__ import annotations

import json
import pickle
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from solver.errors import DivergedError, SolverTimeout
from sweep.errors import ConfigError
from sweep.solvers.errors import ExternalSolverError
from sweep.solvers.openfoam import (
    CASES_DIR,
    GHIA_Y,
    CaseCheckpoint,
    load_case,
    parse_log,
    run_case,
)
from sweep.solvers.openfoam.ghia import ghia_u
from sweep.solvers.openfoam.parse import fatal_message, parse_internal_field, parse_probes
from sweep.solvers.process import SCRATCH_ENV

try:  # the engine's mapping of solver exceptions to failure classes (sweep.runner until the restructure)
    from sweep.engine.worker import failure_class_of
except ImportError:
    from sweep.runner import failure_class_of

needs_openfoam = pytest.mark.skipif(
    shutil.which("icoFoam") is None or shutil.which("blockMesh") is None,
    reason="OpenFOAM is not installed (no icoFoam/blockMesh on PATH): apt-get install openfoam; "
    ".ci/run installs it where apt is available",
)

# A tiny run: 16 x 16 cells, 100 steps (about 0.2 s).
TINY = {"n_cells": 16, "T_final": 0.5, "dt": 0.005}


@pytest.fixture(scope="module")
def cavity():
    return load_case("cavity")


def copy_case(tmp_path: Path, name: str = "mycase") -> Path:
    """A user case directory: a copy of the bundled cavity."""
    return Path(shutil.copytree(CASES_DIR / "cavity", tmp_path / name))


def arrays(result: Any) -> dict[str, np.ndarray]:
    return {name: values for name, _, values, _ in result.variables()}


def scratch_processes(root: Path) -> list[psutil.Process]:
    """Live processes started by a run whose scratch directory is under ``root``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (
                proc.environ().get(SCRATCH_ENV, "").startswith(str(root))
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


# ---------------------------------------------------------------------------------------------
# Physics: Ghia et al. (1982), Table I, Re = 100


@needs_openfoam
def test_cavity_re100_u_centerline_matches_ghia(cavity, tmp_path):
    """32 x 32 cells, dt = 0.0025 s (Courant max ~0.8), T = 2 s (20 lid passages L/U): steady
    (Ux residual ~3e-7) and within 0.01 of Ghia's Re = 100 column at all 17 points.

    Tolerance: measured max deviations (cellPoint sample at Ghia's y = j/128) are 0.0214 on
    16^2, 0.0087 on 24^2, 0.0044 on 32^2, then a floor of ~0.004-0.005 on 48^2 and 64^2 (the
    two solutions' own discretisation errors). A second-order scheme predicts 0.0214 / 4 =
    0.0054 on 32^2; 0.01 leaves twice that. The same mesh at Re = 80 or 125 deviates by 0.021
    and 0.025, so a 20 % error in Re (or in nu = U L / Re) fails this test.
    """
    result = run_case(
        cavity,
        {"Re": 100.0, "n_cells": 32, "T_final": 2.0, "dt": 0.0025, "keep_fields": True},
        scratch_root=tmp_path,
    )
    y = result.coords["y"][1]
    u = result.data_vars["u_centerline"][1]
    assert result.coords["y"][0] == ("y",) and result.data_vars["u_centerline"][0] == ("y",)
    assert y.size == 129 and y[0] == 0.0 and abs(y[-1] - 1.0) < 1e-12
    at = np.searchsorted(y, GHIA_Y - 1e-9)
    np.testing.assert_allclose(y[at], GHIA_Y, atol=1e-12)  # the sample hits Ghia's grid lines
    deviation = u[at] - ghia_u(100)
    assert np.abs(deviation).max() < 0.01, np.round(deviation, 4)
    assert abs(u[0]) < 1e-12 and abs(u[-1] - 1.0) < 1e-12  # no-slip wall, lid speed
    # a steady state: the residuals fell by six orders of magnitude
    assert result.data_vars["residual_Ux"][1][-1] < 1e-5
    assert result.coords["time"][1].size == 800 and result.attrs["n_steps"] == 800
    # final fields on cells, with their centres; probes on (time, probe)
    assert result.data_vars["U_x"][1].shape == (32 * 32,)
    assert result.data_vars["cell_y"][1].max() < 0.1
    assert result.data_vars["probe_U_x"][0] == ("time", "probe")
    assert list(tmp_path.iterdir()) == []  # the scratch directory is gone
    # attributes are strings and numbers (zarr-ready): the parameters as JSON, the case hash
    for attrs in [result.attrs, *(a for _, _, _, a in result.variables())]:
        assert all(isinstance(v, (str, int, float)) for v in attrs.values()), attrs
    assert json.loads(result.attrs["params"])["Re"] == 100.0 and result.attrs["case_hash"] == cavity.hash
    assert result.to_dataset().u_centerline.dims == ("y",)


# ---------------------------------------------------------------------------------------------
# Determinism and resume


@needs_openfoam
def test_cavity_same_parameters_give_bit_identical_arrays(cavity):
    first, second = run_case(cavity, TINY), run_case(cavity, TINY)
    a, b = arrays(first), arrays(second)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name], equal_nan=True), name
    assert first.attrs["params"] == second.attrs["params"] and first.attrs["case_hash"] == cavity.hash


@needs_openfoam
def test_cavity_resumed_from_checkpoint_is_bit_identical(cavity):
    params = {**TINY, "T_final": 1.0, "write_interval": 0.1}
    saved: list[CaseCheckpoint] = []
    full = run_case(cavity, params, checkpoint=saved.append)
    assert [c.time_name for c in saved] == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"]
    # what the engine relays and the store keeps: plain arrays (with the run's key), and back
    relayed = cavity.checkpoint_to_arrays(saved[4], cavity.validate(params))
    assert {"step", "params_json", "header", "data"} <= set(relayed) and relayed["step"].tolist() == [100]
    ckpt = cavity.checkpoint_from_arrays({k: np.asarray(v) for k, v in relayed.items()})
    assert ckpt == saved[4] and pickle.loads(pickle.dumps(ckpt)) == ckpt
    assert ckpt.step == 100 and "0.5/U" in ckpt.files and "log.icoFoam" in ckpt.files
    resumed = run_case(cavity, params, resume=ckpt)
    assert resumed.attrs["resumed_from_time"] == "0.5"
    a, b = arrays(full), arrays(resumed)
    for name in a:
        assert np.array_equal(a[name], b[name], equal_nan=True), name
    assert not np.isnan(b["probe_p"]).any()  # no gap in the probes at the restart time


# ---------------------------------------------------------------------------------------------
# Failures: diverged, error, timeout


@needs_openfoam
def test_cavity_too_large_dt_is_classified_diverged(cavity):
    # Re = 10^4 on 16^2 with dt = 0.2 s: Courant ~30 after one step; OpenFOAM traps the NaN
    with pytest.raises(
        DivergedError, match=r"icoFoam diverged at step \d+ \(t=[\d.]+\): floating-point"
    ) as info:
        run_case(cavity, {"Re": 1e4, "n_cells": 16, "dt": 0.2, "T_final": 2.0})
    assert failure_class_of(info.value) == "diverged"
    assert "\n" not in str(info.value)
    # with OpenFOAM's floating-point traps off it would run on with NaNs (and exit 0): the log
    # watcher stops it at the first NaN residual
    with pytest.raises(DivergedError, match=r"icoFoam diverged at step \d+ .*: the U[xy] residual is nan"):
        run_case(cavity, {"Re": 1e4, "n_cells": 16, "dt": 0.2, "T_final": 20.0}, env={"FOAM_SIGFPE": "false"})


@needs_openfoam
def test_broken_template_is_error_with_openfoam_message(tmp_path):
    case_dir = copy_case(tmp_path)
    schemes = case_dir / "system" / "fvSchemes"
    schemes.write_text(schemes.read_text().replace("div(phi,U)      Gauss linear;", ""))
    broken = load_case(case_dir)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(ExternalSolverError) as info:
        run_case(broken, TINY, scratch_root=scratch)
    message = str(info.value)
    assert message.startswith(
        "icoFoam failed (exit code 1): FOAM FATAL IO ERROR: Entry 'div(phi,U)' not found"
    )
    assert "\n" not in message and str(scratch) not in message  # one line, paths relative to the case
    assert failure_class_of(info.value) == "error"
    assert list(scratch.iterdir()) == []
    # asked to keep it: the scratch directory stays, and the message says where
    with pytest.raises(ExternalSolverError, match=r"\[scratch kept at .+:.+\]") as info:
        run_case(broken, {**TINY, "keep_failed": True}, scratch_root=scratch)
    (kept,) = scratch.iterdir()
    assert (kept / "log.icoFoam").is_file() and str(kept) in str(info.value)


@needs_openfoam
def test_timeout_kills_the_openfoam_process_group(cavity, tmp_path):
    seen: dict[psutil.Process, str] = {}

    def progress(step: int, n_steps: int, t: float) -> None:
        if step == 20:  # icoFoam is running: record it (and anything else the run started)
            seen.update((p, p.name()) for p in scratch_processes(tmp_path))

    t0 = time.time()
    with pytest.raises(SolverTimeout, match=r"deadline passed while icoFoam ran at step \d+") as info:
        run_case(
            cavity,
            {"n_cells": 64, "T_final": 10.0, "dt": 0.001},
            deadline=time.time() + 2.0,
            scratch_root=tmp_path,
            progress=progress,
        )
    assert time.time() - t0 < 6.0
    assert failure_class_of(info.value) == "timeout"
    assert list(seen.values()) == ["icoFoam"]
    assert scratch_processes(tmp_path) == []
    assert not any(p.is_running() for p in seen)


# ---------------------------------------------------------------------------------------------
# Bad input: one line, naming the file, the field, the value and what is allowed


def test_missing_case_directory_is_one_line_config_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(
        ConfigError, match=r"nope: \(case\): bad value .*; allowed: a bundled case \(cavity\)"
    ) as info:
        load_case(missing)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"sweep-case.yaml: \(file\): .*allowed: a case manifest"):
        load_case(Path(shutil.copytree(CASES_DIR / "cavity" / "system", tmp_path / "system")))


def test_template_field_without_value_is_one_line_config_error(tmp_path):
    case_dir = copy_case(tmp_path)
    mesh = case_dir / "system" / "blockMeshDict"
    mesh.write_text(mesh.read_text().replace("(${n_cells} ${n_cells} 1)", "(${n_cells} ${n_cellz} 1)"))
    with pytest.raises(ConfigError) as info:
        load_case(case_dir)
    assert str(info.value) == (
        f'{case_dir.resolve()}/system/blockMeshDict: ${{n_cellz}}: bad value "n_cellz"; allowed: a parameter '
        "or constant: L, Re, T_final, U, dt, keep_failed, keep_fields, n_cells, write_interval"
    )


def test_unknown_and_bad_parameters_are_one_line_config_errors(cavity):
    with pytest.raises(ConfigError) as info:
        cavity.validate({"Reynolds": 100}, source="packages/package_0001.json")
    assert str(info.value) == (
        "packages/package_0001.json: parameters.Reynolds: bad value 100; allowed: a known parameter: "
        "Re, n_cells, T_final, dt, write_interval, keep_failed, keep_fields"
    )
    with pytest.raises(ConfigError, match=r"parameters.n_cells: bad value 3.5; allowed: an integer >= 2$"):
        cavity.validate({"n_cells": 3.5}, source="p.json")
    with pytest.raises(
        ConfigError, match=r"parameters.T_final: bad value 1.001; allowed: a whole number of steps"
    ):
        cavity.validate({"T_final": 1.001, "dt": 0.01}, source="p.json")
    assert [e.field for e in cavity.parameter_problems({"Re": -1, "bogus": 1})] == ["bogus", "Re"]


def test_misspelt_entry_and_unknown_name_in_expression_are_refused(tmp_path):
    case_dir = copy_case(tmp_path)
    manifest = case_dir / "sweep-case.yaml"
    original = manifest.read_text()
    manifest.write_text(
        original.replace("constant/transportProperties/nu:", "constant/transportProperties/nuu:")
    )
    with pytest.raises(
        ConfigError,
        match=r"entries.constant/transportProperties/nuu: bad value \"nuu\"; "
        r"allowed: an entry that exists in constant/transportProperties",
    ):
        load_case(case_dir)
    manifest.write_text(original.replace("U * L / Re", "U * L / Reynolds"))
    with pytest.raises(ConfigError, match=r'entries.constant/transportProperties/nu: bad value "Reynolds"'):
        load_case(case_dir)


# ---------------------------------------------------------------------------------------------
# Identity: the case's content hash


def test_case_hash_follows_content_not_location(cavity, tmp_path):
    copy = load_case(copy_case(tmp_path))
    assert copy.hash == cavity.hash and len(cavity.hash) == 64
    assert copy.canonical_json(copy.validate({})) == cavity.canonical_json(cavity.validate({}))
    (tmp_path / "mycase" / "system" / "fvSolution").write_text(
        (CASES_DIR / "cavity" / "system" / "fvSolution").read_text().replace("1e-06", "1e-07")
    )
    assert load_case(tmp_path / "mycase").hash != cavity.hash
    # execution-only parameters are not part of the identity
    base = cavity.identity(cavity.validate({}))
    assert cavity.identity(cavity.validate({"keep_failed": True, "write_interval": 0.5})) == base
    assert cavity.identity(cavity.validate({"Re": 400.0})) != base


def test_case_pickles_as_its_files(cavity):
    data = pickle.dumps(cavity)
    assert len(data) < 2 * cavity.tree.size  # the files, not the parsed manifest
    again = pickle.loads(data)
    assert again.hash == cavity.hash and list(again.params) == list(cavity.params)


# ---------------------------------------------------------------------------------------------
# Parsers (pure functions)


def test_log_parser_takes_first_solve_per_step_and_stops_on_nan():
    log = """Time = 0.005

Courant Number mean: 0 max: 0
smoothSolver:  Solving for Ux, Initial residual = 1, Final residual = 8e-07, No Iterations 5
DICPCG:  Solving for p, Initial residual = 1, Final residual = 0.02, No Iterations 23
DICPCG:  Solving for p, Initial residual = 0.2, Final residual = 5e-07, No Iterations 34
ExecutionTime = 0 s  ClockTime = 0 s

Time = 0.01

Courant Number mean: 0.03 max: 0.23
smoothSolver:  Solving for Ux, Initial residual = 0.25, Final residual = 4e-06, No Iterations 4
""".splitlines()
    series = parse_log(log)
    assert series.times == [0.005, 0.01] and series.completed == 1
    assert series.residuals["p"][0] == 1.0 and np.isnan(series.residuals["p"][1])
    assert series.courant_max == [0.0, 0.23]
    from sweep.solvers.openfoam.parse import LogParser

    parser = LogParser()
    for line in log:
        assert parser.feed(line) is None
    assert (
        parser.feed(
            "smoothSolver:  Solving for Uy, Initial residual = nan, Final residual = nan, No Iterations 1000"
        )
        == "the Uy residual is nan at t=0.01"
    )


def test_fatal_message_and_field_parsers():
    log = "\n--> FOAM FATAL ERROR: \nface 0 in patch 0 does not have neighbour cell\n\n    From function x\n"
    assert fatal_message(log) == "FOAM FATAL ERROR: face 0 in patch 0 does not have neighbour cell"
    assert fatal_message("End\n") is None
    field = "internalField   nonuniform List<vector> \n2\n(\n(1 2 3)\n(4 5 6)\n)\n;\nboundaryField\n{\n}\n"
    assert parse_internal_field(field).tolist() == [[1, 2, 3], [4, 5, 6]]
    assert parse_internal_field("internalField   uniform 0;\n", n_cells=3).shape == (3, 1)
    probes = "# Probe 0 (0.05 0.05 0.005)\n#  Probe 0\n#  Time\n0.005  (1 2 0)\n0.01  (3 4 0)\n"
    locations, times, values = parse_probes(probes)
    assert locations.tolist() == [[0.05, 0.05, 0.005]] and times.tolist() == [0.005, 0.01]
    assert values.shape == (2, 1, 3) and values[1, 0, 1] == 4
