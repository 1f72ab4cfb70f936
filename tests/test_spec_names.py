"""One name for each parameter everywhere (issue 16, item 13): ``grid`` in package files, grid
files, ``simulate()``, stored records and ``open_results``; ``grid_size`` still accepted for a
release with a deprecation message. Run ids do not change."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from conftest import run_cli, write_packages

from solver.params import SolverParams
from sweep.spec import load_packages, run_id_of

# computed by the code before the rename (commit 12448b1): existing stores keep their runs
BEFORE = {
    "6bfd577b3cf376e1": {"Re": 400, "dt": 0.005, "T_final": 0.5, "grid": [16, 16, 16]},
    "a87a30fd312dd32b": {"Re": 1600, "dt": 0.01, "T_final": 2.0, "grid": [32, 32, 32]},
}


def test_names_run_ids_unchanged_by_the_rename() -> None:
    for rid, params in BEFORE.items():
        assert run_id_of(params) == rid


def test_names_package_files_write_grid_and_grid_size_is_deprecated(tmp_path: Path) -> None:
    new = {"Re": 400, "dt": 0.005, "T_final": 0.5, "grid": [16, 16, 16]}
    old = {"Re": 400, "dt": 0.005, "T_final": 0.5, "grid_size": [16, 16, 16]}
    d_new = write_packages(tmp_path / "new", [{"package_id": "a", "priority": "HIGH", "parameters": new}])
    d_old = write_packages(tmp_path / "old", [{"package_id": "a", "priority": "HIGH", "parameters": old}])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name: no warning at all
        (p_new,) = load_packages(d_new, check_memory=False)
    with pytest.warns(FutureWarning, match=r"package_0000\.json.*parameters\.grid_size.*deprecated.*grid"):
        (p_old,) = load_packages(d_old, check_memory=False)
    assert p_new.run_id == p_old.run_id == "6bfd577b3cf376e1"
    with pytest.warns(FutureWarning, match=r"grid_size.*deprecated"):  # a cached verdict says it again
        load_packages(d_old, check_memory=False)
    r = run_cli("validate", str(d_old))
    assert r.returncode == 0, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("sweep validate: warning:") and "grid_size" in line and '"grid"' in line, line
    both = {**new, "grid_size": [16, 16, 16]}
    d_both = write_packages(tmp_path / "both", [{"package_id": "a", "priority": "HIGH", "parameters": both}])
    r = run_cli("validate", str(d_both))
    assert r.returncode == 2 and "parameters.grid_size" in r.stderr and "not both" in r.stderr, r.stderr


def test_names_simulate_takes_grid_and_warns_for_grid_size() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SolverParams(grid=[8, 8, 8]).grid == (8, 8, 8)
    with pytest.warns(FutureWarning, match=r"grid_size.*deprecated.*grid"):
        p = SolverParams({"grid_size": [8, 8, 8]})
    assert p.grid == (8, 8, 8) and "grid_size" not in p.as_dict()


def test_names_sweep_new_and_grid_files_write_grid(tmp_path: Path) -> None:
    r = run_cli("new", str(tmp_path / "a"), "--Re", "100", "--dt", "0.01", "--T-final", "0.02", "--grid", "8")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "a" / "package_0001.json").read_text())
    assert doc["parameters"]["grid"] == [8, 8, 8] and "grid_size" not in doc["parameters"]
    grid = tmp_path / "g.toml"
    grid.write_text("[parameters]\nRe = [100, 400]\ndt = 0.01\nT_final = 0.02\ngrid_size = [8, 8, 8]\n")
    r = run_cli("new", str(tmp_path / "b"), "--from", str(grid))
    assert r.returncode == 0, r.stderr
    assert "grid_size" in r.stderr and "deprecated" in r.stderr
    doc = json.loads((tmp_path / "b" / "package_0001.json").read_text())
    assert doc["parameters"]["grid"] == [8, 8, 8] and "grid_size" not in doc["parameters"]
