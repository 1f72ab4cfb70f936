"""The solver registry: built-in names, one-line errors, run identity (the spectral solver's run
ids unchanged; other solvers' ids hash their name and template), and a third-party solver
registered through the entry point group ``ns_sweep.solvers`` by a real (tiny) installed
distribution, run end to end by `sweep run` in a subprocess."""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from pathlib import Path

import pytest
from conftest import run_cli, write_packages

from solver import SolverParams
from sweep.solvers import FieldError, RunParams, load_solver, solver_names
from sweep.solvers.openfoam import CASES_DIR
from sweep.spec import check_directory, run_id_of

EXAMPLE_COMMAND = Path(__file__).resolve().parent.parent / "examples" / "command"


def test_registry_lists_builtin_solvers_and_refuses_other_names() -> None:
    assert solver_names()[:3] == ["spectral", "openfoam", "command"]
    with pytest.raises(FieldError) as info:
        load_solver("fluent")
    assert str(info.value) == (
        'solver: bad value "fluent"; allowed: one of spectral, openfoam, command (other packages '
        "register solvers under the entry point group ns_sweep.solvers)"
    )
    with pytest.raises(FieldError, match=r'^case: bad value "cavity"; allowed: no case'):
        load_solver("spectral", "cavity")
    with pytest.raises(FieldError, match=r"^case: missing; allowed: a bundled case \(cavity\)"):
        load_solver("openfoam")
    with pytest.raises(FieldError, match=r"^case: bad value \"nope\"; allowed: a command directory"):
        load_solver("command", "nope", EXAMPLE_COMMAND.parent)
    assert load_solver("command", "command", EXAMPLE_COMMAND.parent).solver_name == "command"


# run ids of the spectral solver as the code before the solver registry computed them (stores
# written then must stay valid: the same packages must map onto the same runs)
FROZEN_RUN_IDS = {
    "1c35a540394e3705": {"Re": 100.0, "dt": 0.01, "T_final": 0.04, "grid": [8, 8, 8]},
    "a4f81ff5034cdf54": {
        "Re": 400,
        "dt": 0.005,
        "T_final": 0.5,
        "grid": [16, 16, 16],
        "initial_condition": "abc",
        "abc_k": 2,
        "keep_fields": True,
        "fft_threads": 2,
    },
}


def test_registry_spectral_run_ids_are_unchanged_with_or_without_solver_key(tmp_path: Path) -> None:
    packages = []
    for i, params in enumerate(FROZEN_RUN_IDS.values()):
        packages.append({"package_id": f"implicit{i}", "priority": "HIGH", "parameters": params})
        packages.append(
            {"package_id": f"explicit{i}", "priority": "LOW", "parameters": params, "solver": "spectral"}
        )
    d = write_packages(tmp_path / "p", packages)
    assert json.loads((d / "package_0001.json").read_text())["solver"] == "spectral"
    for _ in range(2):  # a fresh check, then the validation cache's verdicts
        found, problems = check_directory(d, check_memory=False)
        assert problems == []
        ids = {p.package_id: p.run_id for p in found}
        assert ids == {
            **{f"implicit{i}": rid for i, rid in enumerate(FROZEN_RUN_IDS)},
            **{f"explicit{i}": rid for i, rid in enumerate(FROZEN_RUN_IDS)},
        }
        assert all(p.solver == "spectral" and isinstance(p.params, SolverParams) for p in found)
    # and they are what the documented rule gives: the SHA-256 of the sorted compact JSON
    for rid, params in FROZEN_RUN_IDS.items():
        raw = dict(params)
        text = json.dumps(SolverParams(raw).canonical(), sort_keys=True, separators=(",", ":"))
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == rid


def test_registry_other_solvers_run_ids_hash_solver_name_and_template(tmp_path: Path) -> None:
    cavity = load_solver("openfoam", "cavity")
    values = cavity.validate({"Re": 400.0})
    run = RunParams("openfoam", cavity, values)
    assert json.loads(run.canonical_json()) == {
        "solver": "openfoam",
        "template_hash": cavity.hash,
        "params": {"Re": 400.0, "T_final": 2.0, "dt": 0.0025, "keep_fields": False, "n_cells": 32},
    }
    assert run_id_of(run) == hashlib.sha256(run.canonical_json().encode()).hexdigest()[:16]
    # execution-only values (write_interval, keep_failed) are not part of it
    assert run_id_of(RunParams("openfoam", cavity, {**values, "write_interval": 0.5})) == run_id_of(run)
    # an edited case is another template: new runs
    copy = Path(shutil.copytree(CASES_DIR / "cavity", tmp_path / "cavity"))
    assert run_id_of(RunParams("openfoam", load_solver("openfoam", str(copy)), values)) == run_id_of(run)
    solution = copy / "system" / "fvSolution"
    solution.write_text(solution.read_text().replace("1e-06", "1e-07"))
    edited = load_solver("openfoam", str(copy))
    assert edited.hash != cavity.hash
    assert run_id_of(RunParams("openfoam", edited, values)) != run_id_of(run)
    # the same values under another solver's name are another run
    command = load_solver("command", str(EXAMPLE_COMMAND))
    same = command.validate({"Re": 10.0})
    assert run_id_of(RunParams("command", command, same)) != run_id_of(RunParams("other", command, same))


TOY_SOLVER = '''
"""A third-party solver: exponential decay, registered through ns_sweep.solvers."""
import numpy as np

from solver.output import RunResult
from solver.params import Param
from sweep.solvers.manifest import identity_values, parameter_problems, validate_params
from sweep.solvers.protocol import FieldError


def _positive(v):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
    return None if ok else "a number > 0"


class Decay:
    params = {
        "rate": Param("rate", 1.0, "1/s", "decay rate", _positive, float),
        "T_final": Param("T_final", 1.0, "s", "end time", _positive, float),
    }
    supports_resume = False

    def validate(self, raw, source="parameters"):
        return validate_params(self.params, raw, source)

    def parameter_problems(self, raw):
        return parameter_problems(self.params, raw)

    def identity(self, values):
        return {"params": identity_values(self.params, values), "model": "decay-1"}

    def run(self, values, **options):
        t = np.linspace(0.0, values["T_final"], 11)
        amplitude = np.exp(-values["rate"] * t)
        return RunResult(
            {"amplitude": (("time",), amplitude, {"units": "1"})},
            {"time": (("time",), t, {"units": "s"})},
            {"title": "toy decay"},
        )


def load_solver(case, base):
    if case is not None:
        raise FieldError("case", case, "no case (the toy solver has none)")
    return Decay()


def not_a_solver(case, base):
    return object()
'''


@pytest.mark.slow
def test_registry_entry_point_solver_from_an_installed_distribution(tmp_path: Path) -> None:
    """A distribution on sys.path (a module and its .dist-info with entry_points.txt) adds the
    solver ``toy``: validation lists its parameters, and `sweep run` runs it on a real cluster
    (the worker processes import the plug-in too) into a store that opens."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "toy_solver.py").write_text(textwrap.dedent(TOY_SOLVER))
    info = site / "toy_solver-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-solver\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[ns_sweep.solvers]\ntoy = toy_solver:load_solver\nbroken = toy_solver:not_a_solver\n"
    )
    env = {"PYTHONPATH": str(site)}
    good = write_packages(
        tmp_path / "good",
        [
            {
                "package_id": f"rate{r}",
                "priority": "HIGH",
                "solver": "toy",
                "parameters": {"rate": r, "T_final": 2},
            }
            for r in (0.5, 2.0)
        ],
    )
    bad = write_packages(
        tmp_path / "bad", [{"package_id": "b", "priority": "HIGH", "solver": "toy", "parameters": {"rte": 1}}]
    )

    proc = run_cli("validate", str(bad), env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        "package_0000.json: parameters.rte: bad value 1; allowed: a known parameter: rate, T_final"
        in proc.stderr
    )
    (bad / "package_0000.json").write_text(
        json.dumps({"package_id": "b", "priority": "HIGH", "solver": "broken", "parameters": {}})
    )
    proc = run_cli("validate", str(bad), env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "solver: bad value 'broken': its loader returned object; allowed: an object with params" in (
        proc.stderr
    )
    # without the distribution on the path the name is unknown, and the registered ones listed
    proc = run_cli("validate", str(good))
    assert proc.returncode == 2
    assert 'solver: bad value "toy"; allowed: one of spectral, openfoam, command' in proc.stderr

    store = tmp_path / "toy.zarr"
    proc = run_cli("run", str(good), "--store", str(store), "--mode", "sequential", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import numpy as np

    import sweep

    ds = sweep.open_results(store)
    assert set(ds.solver.values) == {"toy"} and ds.attrs["parameters"] == "T_final rate"
    assert "energy" not in ds and "nx" not in ds.coords
    for rate in (0.5, 2.0):
        row = ds.isel(run=int(np.flatnonzero(ds.rate.values == rate)[0]))
        np.testing.assert_allclose(row.amplitude.values, np.exp(-rate * row.time.values), rtol=1e-15)
