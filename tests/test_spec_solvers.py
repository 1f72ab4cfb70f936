"""Package files naming a solver (``"solver"``, ``"case"``): one-line errors for bad input
through the real CLI (exit 2, nothing written), the validation cache against edits of a case,
and `sweep new` for the OpenFOAM cavity (options from the case's declared parameters)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from conftest import TINY, run_cli, write_packages

from sweep.solvers.openfoam import CASES_DIR
from sweep.spec import check_directory

CAVITY = {"n_cells": 16, "T_final": 0.5, "dt": 0.005}


def _cavity_copy(root: Path, name: str = "mycase") -> Path:
    return Path(shutil.copytree(CASES_DIR / "cavity", root / name))


def test_spec_solver_bad_input_is_one_line_each_exit_2_nothing_written(tmp_path: Path) -> None:
    broken = _cavity_copy(tmp_path / "p", "broken")
    mesh = broken / "system" / "blockMeshDict"
    mesh.write_text(mesh.read_text().replace("(${n_cells} ${n_cells} 1)", "(${n_cells} ${n_cellz} 1)"))
    d = write_packages(
        tmp_path / "p",
        [
            {
                "package_id": "good",
                "priority": "HIGH",
                "solver": "openfoam",
                "case": "cavity",
                "parameters": CAVITY,
            },
            {"package_id": "fluent", "priority": "HIGH", "solver": "fluent", "parameters": CAVITY},
            {
                "package_id": "typo",
                "priority": "HIGH",
                "solver": "openfoam",
                "case": "cavity",
                "parameters": {**CAVITY, "Reynolds": 400},
            },
            {
                "package_id": "nocase",
                "priority": "HIGH",
                "solver": "openfoam",
                "case": "cavty",
                "parameters": {},
            },
            # two packages of one broken case: the case's problem is one line, naming its file
            {
                "package_id": "b1",
                "priority": "LOW",
                "solver": "openfoam",
                "case": "./broken",
                "parameters": {},
            },
            {
                "package_id": "b2",
                "priority": "LOW",
                "solver": "openfoam",
                "case": "./broken",
                "parameters": {},
            },
            {"package_id": "spec", "priority": "LOW", "case": "cavity", "parameters": TINY},
        ],
    )
    store = tmp_path / "s.zarr"
    expected = [
        'package_0001.json: solver: bad value "fluent"; allowed: one of spectral, openfoam, command '
        "(other packages register solvers under the entry point group ns_sweep.solvers)",
        "package_0002.json: parameters.Reynolds: bad value 400; allowed: a known parameter: Re, n_cells, "
        "T_final, dt, write_interval, keep_failed, keep_fields",
        'package_0003.json: case: bad value "cavty"; allowed: a bundled case (cavity) or a case '
        "directory with sweep-case.yaml (a relative path starts at the package directory)",
        f'{broken.resolve()}/system/blockMeshDict: ${{n_cellz}}: bad value "n_cellz"; allowed: a parameter '
        "or constant: L, Re, T_final, U, dt, keep_failed, keep_fields, n_cells, write_interval",
        'package_0006.json: case: bad value "cavity"; allowed: no case: the spectral solver takes its '
        'parameters only (a case belongs to "solver": "openfoam" or "command")',
    ]
    for command in (
        ("validate", str(d)),
        ("run", str(d), "--store", str(store)),
        ("explain", str(d), "--store", str(store)),
    ):
        proc = run_cli(*command)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = [ln.removeprefix(f"sweep {command[0]}: error: ") for ln in proc.stderr.splitlines()]
        lines = [ln for ln in lines if ln.startswith(("package_", str(broken.resolve())))]
        assert lines == expected, (command, proc.stderr)
    assert not store.exists() and not (tmp_path / "logs").exists()  # nothing was written


def test_spec_validation_cache_follows_the_case_content(tmp_path: Path) -> None:
    case = _cavity_copy(tmp_path / "p")
    d = write_packages(
        tmp_path / "p",
        [
            {
                "package_id": "a",
                "priority": "HIGH",
                "solver": "openfoam",
                "case": "mycase",
                "parameters": CAVITY,
            }
        ],
    )
    first, problems = check_directory(d, check_memory=False)
    assert problems == [] and first[0].solver == "openfoam" and first[0].case == "mycase"
    again, _ = check_directory(d, check_memory=False)  # the cached verdict, same case
    assert (
        again[0].run_id == first[0].run_id and again[0].params.template_hash == first[0].params.template_hash
    )
    # the package file's bytes are unchanged, its case is not: a new run id, from a new check
    solution = case / "system" / "fvSolution"
    solution.write_text(solution.read_text().replace("1e-06", "1e-07"))
    edited, problems = check_directory(d, check_memory=False)
    assert problems == [] and edited[0].run_id != first[0].run_id
    # a parameter the case no longer declares: the cached verdict of the same file is not reused
    manifest = case / "sweep-case.yaml"
    manifest.write_text(
        manifest.read_text().replace("  n_cells:\n", "  n_cell:\n").replace("${n_cells}", "${n_cell}")
    )
    (case / "system" / "blockMeshDict").write_text(
        (case / "system" / "blockMeshDict").read_text().replace("${n_cells}", "${n_cell}")
    )
    _, problems = check_directory(d, check_memory=False)
    assert problems == [
        "package_0000.json: parameters.n_cells: bad value 16; allowed: a known parameter: Re, n_cell, "
        "T_final, dt, write_interval, keep_failed, keep_fields"
    ]


def test_spec_new_openfoam_cavity_writes_checked_packages(tmp_path: Path) -> None:
    out = tmp_path / "sweeps" / "cavity"
    proc = run_cli(
        "new", str(out), "--solver", "openfoam", "--case", "cavity",
        "--Re", "100", "400", "1000", "--n-cells", "64", "--T-final", "3", "--dt", "0.001",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads(p.read_text()) for p in sorted(out.glob("package_*.json"))]
    assert [d["package_id"] for d in docs] == ["Re100", "Re400", "Re1000"]
    assert all(d["solver"] == "openfoam" and d["case"] == "cavity" for d in docs)
    assert docs[2]["parameters"] == {"Re": 1000, "n_cells": 64, "T_final": 3, "dt": 0.001}
    packages, problems = check_directory(out, check_memory=False)
    assert problems == [] and len({p.run_id for p in packages}) == 3
    # a case directory given relative to here is written relative to the package directory
    _cavity_copy(tmp_path)
    proc = run_cli(
        "new", str(out), "--force", "--solver", "openfoam", "--case", "./mycase",
        "--Re", "100", "--n-cells", "16", "24", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads(p.read_text()) for p in sorted(out.glob("package_*.json"))]
    assert [d["case"] for d in docs] == ["../../mycase"] * 2 and [d["package_id"] for d in docs] == [
        "n_cells16",
        "n_cells24",
    ]
    # bad input: one line, exit 2, nothing written
    for args, line in (
        (("--solver", "openfoam", "--case", "cavity", "--Re", "-1"), "options: parameters.Re: bad value -1"),
        (
            ("--solver", "openfoam", "--case", "nope", "--Re", "1"),
            '--case: bad value "nope"; allowed: a bundled',
        ),
        (
            ("--solver", "fluent", "--Re", "1"),
            '--solver: bad value "fluent"; allowed: one of spectral, openfoam',
        ),
    ):
        proc = run_cli("new", str(tmp_path / "never"), *args)
        assert proc.returncode == 2 and line in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "never").exists()


def test_spec_new_help_lists_the_chosen_solvers_parameters_quickly() -> None:
    t0 = time.perf_counter()
    proc = run_cli("new", "--solver", "openfoam", "--case", "cavity", "--help")
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0
    for option in ("--Re", "--n-cells", "--T-final", "--dt", "--write-interval", "--keep-fields"):
        assert f"  {option} V [V ...]" in proc.stdout, option
    assert "--grid-size" not in proc.stdout
    assert "parameter values of solver openfoam, case cavity" in proc.stdout
    spectral = run_cli("new", "--help").stdout
    assert "--grid V [V ...], --grid-size V [V ...]" in spectral and "--n-cells V" not in spectral
    assert elapsed < 5.0  # a Python start and a case read: no Dask, no xarray, no OpenFOAM run
