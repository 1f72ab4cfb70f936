"""The `sweep` command as a new user meets it (issue 16): bad paths and broken pipes are one
line or silence, never a traceback; the conventions of other command-line tools hold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_sweep


def test_cli_run_store_path_that_is_a_file_is_one_line_exit_2(tmp_path: Path, packages_dir, sweep_cli):
    pdir = packages_dir(tiny_sweep(1))
    afile = tmp_path / "results" / "afile.zarr"
    afile.parent.mkdir()
    afile.write_text("not a store\n")
    for command in (["run", str(pdir)], ["explain", str(pdir)], ["status"]):
        extra = ["--mode", "sequential"] if command[0] == "run" else []
        r = sweep_cli(*command, "--store", str(afile), *extra)
        assert r.returncode == 2, (command, r.stderr)
        assert "Traceback" not in r.stderr, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and str(afile) in lines[0], (command, r.stderr)
    assert afile.read_text() == "not a store\n"  # untouched


def _piped_into_closed_reader(*args: str) -> subprocess.CompletedProcess:
    """Run ``sweep ARGS`` with its stdout a pipe whose reader is gone, as in ``| head -0``."""
    read, write = os.pipe()
    os.close(read)  # the reader leaves before the first line: every write fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "sweep.cli", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=240,
        )
    finally:
        os.close(write)
    return proc


@pytest.mark.parametrize("command", ["explain", "status", "validate", "help"])
def test_cli_piped_into_head_stops_quietly(tmp_path: Path, packages_dir, sweep_cli, command):
    pdir = packages_dir(tiny_sweep(3))
    store = tmp_path / "s.zarr"
    assert sweep_cli("run", str(pdir), "--store", str(store), "--mode", "sequential").returncode == 0
    args = {
        "explain": ["explain", str(pdir), "--store", str(store)],
        "status": ["status", "--store", str(store), "--packages", str(pdir)],
        "validate": ["validate", str(pdir)],
        "help": ["--help"],
    }[command]
    r = _piped_into_closed_reader(*args)
    assert "Traceback" not in r.stderr and "BrokenPipeError" not in r.stderr, r.stderr
    assert r.stderr == "", r.stderr
    assert r.returncode in (0, 141), r.returncode  # 141 = 128 + SIGPIPE, as a shell reports it
