"""The command solver with real subprocesses: the example in examples/command end to end, a
program that fails, one that writes no output, one that outlives its deadline (with a child),
template inputs and NetCDF outputs, and one-line configuration errors."""

from __future__ import annotations

import json
import pickle
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from solver.errors import DivergedError, SolverTimeout
from sweep.errors import ConfigError
from sweep.solvers.command import COMMAND_MANIFEST, load_command, run_command
from sweep.solvers.errors import ExternalSolverError
from sweep.solvers.process import SCRATCH_ENV

try:  # the engine's mapping of solver exceptions to failure classes (sweep.runner until the restructure)
    from sweep.engine.worker import failure_class_of
except ImportError:
    from sweep.runner import failure_class_of

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "command"


def make_command(tmp_path: Path, program: str, manifest: dict, name: str = "prog") -> Path:
    """A command directory: ``prog.py`` (run by this Python) and its manifest."""
    directory = tmp_path / name
    directory.mkdir()
    (directory / "prog.py").write_text(textwrap.dedent(program))
    manifest = {
        "command": [sys.executable, "prog.py"],
        "outputs": [{"file": "result.csv"}],
        "params": {"x": {"default": 1.0, "type": "float", "unit": "1", "doc": "a number"}},
        **manifest,
    }
    (directory / COMMAND_MANIFEST).write_text(json.dumps(manifest))  # JSON is YAML
    return directory


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


def test_command_example_end_to_end(tmp_path):
    spec = load_command(EXAMPLE)
    result = spec.run({"Re": 10.0, "dt": 0.01, "T_final": 1.0}, scratch_root=tmp_path)
    ds = result.to_dataset()
    assert list(ds.dims) == ["time"] and ds.sizes["time"] == 101
    assert ds.time.values[0] == 0.0 and ds.time.values[-1] == 1.0
    # explicit Euler + central differences on 32 points: within 0.1 % of the exact decay
    np.testing.assert_allclose(ds.energy.values, ds.energy_exact.values, rtol=1e-3)
    assert ds.energy.values[-1] < ds.energy.values[0]
    assert json.loads(ds.attrs["params"]) == {
        "Re": 10.0,
        "T_final": 1.0,
        "dt": 0.01,
        "keep_failed": False,
        "n": 32,
    }
    assert ds.attrs["template_hash"] == spec.hash and ds.attrs["solver"] == "command"
    assert list(tmp_path.iterdir()) == []  # the scratch directory is gone
    # the spec travels with a task as its files
    assert pickle.loads(pickle.dumps(spec)).hash == spec.hash


def test_command_example_blow_up_is_diverged():
    with pytest.raises(
        DivergedError, match=r"^decay.py diverged: exit code 3: diverged at t=\S+: energy"
    ) as info:
        run_command(load_command(EXAMPLE), {"dt": 0.5, "T_final": 50.0})
    assert failure_class_of(info.value) == "diverged"


def test_command_nonzero_exit_reports_last_stderr_line(tmp_path):
    directory = make_command(
        tmp_path,
        """
        import sys
        print("reading input", file=sys.stderr)
        print("boom: x must be < 1\\n", file=sys.stderr)
        sys.exit(2)
    """,
        {},
    )
    with pytest.raises(ExternalSolverError) as info:
        run_command(load_command(directory), {"x": 3.0})
    assert str(info.value) == "prog.py failed (exit code 2): boom: x must be < 1"
    assert failure_class_of(info.value) == "error"


def test_command_without_its_output_file_is_an_error_naming_it(tmp_path):
    directory = make_command(tmp_path, "print('done, but wrote nothing')\n", {})
    with pytest.raises(
        ExternalSolverError,
        match=r"^prog.py wrote no result.csv \(declared in outputs of "
        r"sweep-command.yaml\); its last words: done, but wrote nothing$",
    ):
        run_command(load_command(directory), {})


def test_command_timeout_kills_the_whole_process_group(tmp_path):
    directory = make_command(
        tmp_path,
        """
        import subprocess, time
        child = subprocess.Popen(["sleep", "60"])  # a grandchild of the sweep worker
        open("child.pid", "w").write(str(child.pid))
        time.sleep(60)
    """,
        {},
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    seen = []

    def watch() -> None:
        while not seen:
            seen.extend(scratch_processes(scratch))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.time()
    with pytest.raises(
        SolverTimeout, match=r"^deadline passed while prog.py ran; its process group was killed$"
    ) as info:
        run_command(load_command(directory), {}, deadline=time.time() + 1.0, scratch_root=scratch)
    assert time.time() - t0 < 4.0
    assert failure_class_of(info.value) == "timeout"
    watcher.join(timeout=1)
    assert seen  # the program ran (and was found by its scratch marker)
    assert scratch_processes(scratch) == []  # neither the program nor its sleep child survived
    assert list(scratch.iterdir()) == []


def test_command_template_input_and_netcdf_output(tmp_path):
    directory = make_command(
        tmp_path,
        """
        import numpy as np, xarray as xr
        text = open("params.txt").read()
        x, n = float(text.split()[1]), int(text.split()[3])
        k = np.arange(1, n + 1)
        xr.Dataset({"spectrum": ("k", x * k**-2.0, {"units": "m^3 s^-2"})}, coords={"k": k},
                   attrs={"code_version": "1.2"}).to_netcdf("out.nc")
    """,
        {
            "input": {"file": "params.txt", "template": "params.in"},
            "params": {"x": {"default": 1.0, "type": "float"}, "n": {"default": 4, "type": "int", "ge": 1}},
            "outputs": ["out.nc"],
        },
    )
    (directory / "params.in").write_text("x ${2 * x} n ${n}\n")
    result = run_command(load_command(directory), {"x": 1.5, "n": 3})
    assert result.coords["k"][1].tolist() == [1, 2, 3]
    assert result.data_vars["spectrum"][1].tolist() == [3.0, 0.75, 3.0 / 9]
    assert result.data_vars["spectrum"][2] == {"units": "m^3 s^-2"}
    assert result.attrs["code_version"] == "1.2"


def test_command_config_errors_are_one_line(tmp_path):
    spec = load_command(EXAMPLE)
    with pytest.raises(ConfigError) as info:
        spec.validate({"re": 10}, source="packages/package_0003.json")
    assert str(info.value) == (
        "packages/package_0003.json: parameters.re: bad value 10; allowed: a known "
        "parameter: Re, dt, T_final, n, keep_failed"
    )
    with pytest.raises(
        ConfigError, match=r"parameters.T_final: bad value 1.0; allowed: a whole number of steps of dt=0.3"
    ):
        spec.validate({"dt": 0.3}, source="p.json")
    with pytest.raises(
        ConfigError, match=r"nowhere: \(command\): bad value .*; allowed: an existing directory"
    ):
        load_command(tmp_path / "nowhere")
    directory = make_command(tmp_path, "", {"input": {"file": "in.txt", "template": "in.tmpl"}})
    (directory / "in.tmpl").write_text("x = ${x}\ny = ${y}\n")
    with pytest.raises(ConfigError) as info:
        load_command(directory)
    assert str(info.value) == (
        f'{directory.resolve()}/in.tmpl: input.template: ${{y}}: bad value "y"; allowed: a parameter or '
        "constant: keep_failed, x"
    )
    directory = make_command(tmp_path, "", {"outputs": [{"file": "result.xlsx"}]}, name="other")
    with pytest.raises(
        ConfigError, match=r"outputs\[0\].format: bad value null; allowed: one of csv, netcdf, zarr"
    ):
        load_command(directory)


def test_command_program_not_found_is_an_error(tmp_path):
    directory = make_command(tmp_path, "", {"command": ["no-such-solver-ns-sweep", "input.json"]})
    with pytest.raises(ExternalSolverError, match=r"^no-such-solver-ns-sweep: not found on PATH$"):
        run_command(load_command(directory), {})
