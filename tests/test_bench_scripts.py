"""The benchmark scripts in scripts/ still run: each one as a real subprocess, at a tiny size.

The performance goals are checked by these scripts, not by timed tests, so a script that no
longer runs (an API it uses changed) would silently stop checking them. These tests assert
what does not depend on timing: the exit code, the figures each script promises to print,
and the facts behind them (the counts of runs, files and checkpoints).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def run_script(name: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run scripts/``name`` with this interpreter (``env`` added to the environment); its
    stdout (fails on a non-zero exit)."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_bench_solver_prints_every_figure_for_both_precisions(tmp_path: Path) -> None:
    out_json = tmp_path / "solver.json"
    out = run_script(
        "bench_solver.py",
        "--backends",
        "numpy",
        "--kernels",
        "numpy",
        "--sizes",
        "8",
        "16",
        "--naive-sizes",
        "16",
        "--memory-size",
        "16",
        "--repeat",
        "1",
        "--json",
        str(out_json),
        cwd=tmp_path,
    )
    figures = json.loads(out_json.read_text())
    assert figures["fft_libraries"] == {"numpy": np.__version__}
    assert f"# FFT libraries: numpy {np.__version__}" in out
    steps = {(s["size"], s["precision"]): s for s in figures["step"]}
    assert set(steps) == {(n, p) for n in (8, 16) for p in ("float64", "float32")}
    for s in steps.values():
        for key in ("ms_per_step", "fft_ms", "fft_with_packing_ms", "plain_3d_fft_ms", "cpu_ms_per_step"):
            assert math.isfinite(s[key]) and s[key] > 0, (key, s)
    assert math.isfinite(steps[(16, "float64")]["speedup_vs_naive"])
    assert math.isfinite(steps[(16, "float32")]["float64_over_float32"])
    # one line per grid splits the float32 gain into the FFT passes and the rest of the step (a
    # difference of two timings: below 0 when a loaded machine slowed one of them)
    line = r"f64/f32 at \d+\^3: FFT passes alone [\d.]+ .*the rest of the step -?[\d.]+"
    assert len(re.findall(line, out)) == 2, out
    memory = {m["precision"]: m for m in figures["memory"]}
    assert set(memory) == {"float64", "float32"}
    assert all(m["memory_estimate"] > 0 for m in memory.values())


def test_bench_fft_lines_times_both_precisions_of_the_fftw_pyfftw_uses(tmp_path: Path) -> None:
    pytest.importorskip("pyfftw")
    out = run_script("bench_fft_lines.py", "--sizes", "8", "16", "--rounds", "3", cwd=tmp_path)
    assert re.search(r"# FFTW float64: \S*libfftw3-\S+\n# FFTW float32: \S*libfftw3f-\S+", out), out
    rows = re.findall(r"^\s+(\d+)\s+(\d+ (?:contiguous|strided))\s+(\d+)\s+(\d+)\s+([\d.]+)$", out, re.M)
    assert [(n, shape) for n, shape, *_ in rows] == [
        (n, s) for n in ("8", "16") for s in ("256 contiguous", "22 strided", "44 strided")
    ]
    assert all(int(t64) > 0 and int(t32) > 0 and float(r) > 0 for *_, t64, t32, r in rows)


def test_bench_engine_compares_the_store_layouts(tmp_path: Path) -> None:
    out = run_script(
        "bench_engine.py",
        "--tiny",
        "30",
        "--processes",
        "2",
        "--long",
        "2",
        "--long-seconds",
        "0.3",
        "--workers",
        "2",
        "--layout",
        "both",
        "--dir",
        str(tmp_path),
        cwd=tmp_path,
    )
    per_run = [
        float(x)
        for x in re.findall(r"the store holds \d+ directories and \d+ files \(([\d.]+) per run\)", out)
    ]
    assert len(per_run) == 2, out
    packed, groups = per_run
    assert packed < 5 < 25 < groups  # packed runs share a few files; a group per run is ~29 files each
    assert len(re.findall(r"cost per package\s+[\d.]+ ms", out)) == 2
    assert re.search(r"ratio to ideal\s+[\d.]+", out)
    assert re.search(r"engine speed-up \(packed\)\s+[\d.]+ x", out)


def test_bench_store_plans_and_commits(tmp_path: Path) -> None:
    out = run_script("bench_store.py", "--n", "300", cwd=tmp_path)
    assert "plan 300 packages (270 done, 30 to run)" in out
    assert re.search(r"commit one small run: median [\d.]+ ms", out)
    assert re.search(r"open_results over 300 runs .*: best [\d.]+ s", out)


def test_bench_store_scale_prints_commit_costs_sizes_and_reads(tmp_path: Path) -> None:
    out = run_script(
        "bench_store.py",
        *("--scale", "300", "600", "--window", "50", "--rounds", "1", "--packages"),
        cwd=tmp_path,
        env={"DASK_SWEEP__STORE__COMPACT_EVERY": "50"},
    )
    assert "compact-every 50, merge-fan-in 4; commits timed: 50 at each end" in out
    rows = re.findall(
        r"^\s+(300|600)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)"
        r"\s+([\d.]+)\s+(\d+)\s+([\d.]+)\s+(\d+) MiB$",
        out,
        re.M,
    )
    assert [r[0] for r in rows] == ["300", "600"], out
    for r in rows:
        # index cost, bytes and files per run (a few fixed files weigh in at this size)
        assert float(r[7]) > 0 and 0 < int(r[8]) < 5000 and 0 < float(r[9]) < 3
        assert float(r[6]) > 0  # merges happened (600 runs / 50 per flush: levels 1 and 2)
    reads = re.findall(
        r"^\s+(300|600)\s+([\d.]+) s \(\s*\d+ MiB\)\s+([\d.]+) s \(\s*\d+ MiB\)\s+([\d.]+) s", out, re.M
    )
    assert [r[0] for r in reads] == ["300", "600"], out


def test_bench_checkpoint_counts_the_checkpoints_it_times(tmp_path: Path) -> None:
    out = run_script(
        "bench_checkpoint.py", "--grid", "8", "--steps", "20", "--every", "2", "--repeats", "1", cwd=tmp_path
    )
    counts = dict(re.findall(r"^\s+(none|default|forced)\s+:.*?(\d+) checkpoints?", out, re.M))
    assert counts == {"none": "0", "default": "0", "forced": "9"}, out
    assert re.search(r"overhead ratio, default/none \(sweep wall time\): [\d.]+", out)


def test_bench_adapt_prints_runs_to_accuracy_and_overhead(tmp_path: Path) -> None:
    out = run_script("bench_adapt.py", "--runs", "8", "--uniform-max", "64", cwd=tmp_path)
    assert "1. runs to bracket the stability limit" in out
    assert re.search(r"to 1\.0%: adaptive (\d+|> 8) runs, uniform grid (\d+|> 64) runs", out), out
    for label in (
        "adaptive (ask, package, round of run_sweep, tell)",
        "plain run_sweep of the same packages",
        "adaptive overhead per point",
    ):
        assert re.search(re.escape(label) + r"\s+-?\d+\.\d ms", out), (label, out)
    assert "(4 rounds)" in out  # 8 runs, 2 points a round


@pytest.mark.skipif(
    shutil.which("icoFoam") is None, reason="OpenFOAM is not installed (apt-get install openfoam)"
)
def test_bench_openfoam_prints_the_engine_and_shell_loop_figures(tmp_path: Path) -> None:
    out = run_script(
        "bench_openfoam.py",
        "--cases",
        "4",
        "--steps",
        "20",
        "--repeat",
        "1",
        "--dir",
        str(tmp_path),
        cwd=tmp_path,
    )
    shell = re.search(r"shell loop \(blockMesh && icoFoam\)\s+([\d.]+) s\s+([\d.]+) ms per case", out)
    engine = re.search(r"engine \(sweep run, store commits\)\s+([\d.]+) s\s+([\d.]+) ms per package", out)
    assert shell and engine, out
    # per case = total / 4 (the total is printed to 10 ms, so to 2.5 ms per case)
    assert abs(float(shell.group(2)) - float(shell.group(1)) * 1e3 / 4) <= 1.3
    assert float(engine.group(1)) > 0 and re.search(r"engine / shell loop\s+[\d.]+", out)
    assert re.search(r"engine overhead per run\s+-?[\d.]+ ms", out)
    assert list(tmp_path.glob("bench_openfoam_*")) == []  # its working directory is removed


@pytest.mark.cluster
def test_bench_hpc_prints_cost_start_and_lost_work_on_the_test_slurm(slurm, tmp_path: Path) -> None:
    # the test SLURM's SLURM_CONF is in the environment (the fixture): the script uses it
    out = run_script(
        "bench_hpc.py",
        "--tiny",
        "10",
        "--long-seconds",
        "10",
        "--margin",
        "49",
        "--policy",
        "0",
        cwd=tmp_path,
    )
    for mode in ("slurm", "parallel"):
        assert re.search(
            rf"{mode}\s*: cost per package\s+[\d.]+ ms .* sweep run to first run started\s+[\d.]+ s", out
        ), out
    assert re.search(r"slurm/parallel: cost per package [\d.]+ x, to first run [-+][\d.]+ s", out)
    ends = re.search(
        r"(\d+) walltime end\(s\) over (\d+) jobs; seconds recomputed per walltime end (\S+)", out
    )
    assert ends and int(ends.group(1)) >= 1 and float(ends.group(3)) == 0, out
    assert re.search(r"ratio to ideal [\d.]+; hand-over \(core idle between attempts\) [\d.]+ s each", out)
    assert slurm.squeue() == [] or slurm.wait_queue_empty(timeout=20) >= 0


def test_bench_scale_prints_every_command_and_the_plan_only_path(tmp_path: Path) -> None:
    out = run_script("bench_scale.py", "--packages", "40", "--dir", str(tmp_path), cwd=tmp_path)
    for what in (
        "sweep new",
        "sweep validate (cache cold)",
        "sweep validate (cache warm)",
        "sweep explain",
        "sweep run ",
        "sweep run (nothing left)",
        "sweep logs PACKAGE_ID",
        "sweep status --packages",
        "sweep report",
        "open_results",
        "  of it: import xarray",
        "  of it: the open_results call",
        "sweep --help",
    ):
        assert re.search(rf"^  {re.escape(what)}.* s +\d+ MiB  cpu +[\d.]+ s", out, re.M), (what, out)
    assert "40 files" in out and "first tenth" in out and "last tenth" in out
    assert re.search(r"logs \d+ files", out)
    assert re.search(r"sweep logs PACKAGE_ID .* ([3-9]|\d\d) lines", out), out
    plan = run_script(
        "bench_scale.py",
        "--packages",
        "40",
        "--plan-only",
        "--run-seconds",
        "5",
        "--dir",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert re.search(r"^  sweep run --dry-run .* MiB", plan, re.M), plan
    assert re.search(r"^  sweep run, stopped after 5 s .* \d+ committed", plan, re.M), plan
    full = run_script(
        "bench_scale.py", "--packages", "40", "--prefilled", "5", "--dir", str(tmp_path), cwd=tmp_path
    )
    assert re.search(r"^  bulk_store.py \(the store filled\) .* 35 runs", full, re.M), full
    for what, left in (("resume: 5 left", 5), ("nothing left", 0)):
        planned = rf"{left} to run, {40 - left} skipped; the driver alone: peak \d+ MiB"
        assert re.search(rf"^  sweep run \({what}\) .* MiB .* {planned}", full, re.M), full
