"""The `sweep` command as a new user meets it (issue 16): bad paths and broken pipes are one
line or silence, never a traceback; the conventions of other command-line tools hold."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PackageLog, tiny_sweep


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


@pytest.mark.parametrize("command", ["explain", "status", "validate", "help", "run", "new", "report"])
def test_cli_piped_into_head_stops_quietly(tmp_path: Path, packages_dir, sweep_cli, command):
    pdir = packages_dir(tiny_sweep(3))
    store = tmp_path / "s.zarr"
    assert sweep_cli("run", str(pdir), "--store", str(store), "--mode", "sequential").returncode == 0
    args = {
        "explain": ["explain", str(pdir), "--store", str(store)],
        "status": ["status", "--store", str(store), "--packages", str(pdir)],
        "validate": ["validate", str(pdir)],
        "help": ["--help"],
        "run": ["run", str(pdir), "--store", str(tmp_path / "other.zarr"), "--mode", "sequential"],
        "new": ["new", str(tmp_path / "new"), "--Re", "100", "200", "--dt", "0.01", "--T-final", "0.02"],
        "report": ["report", "--store", str(store), "--out", str(tmp_path / "report")],
    }[command]
    r = _piped_into_closed_reader(*args)
    assert "Traceback" not in r.stderr and "BrokenPipeError" not in r.stderr, r.stderr
    assert r.stderr == "", r.stderr
    assert r.returncode in (0, 141), r.returncode  # 141 = 128 + SIGPIPE, as a shell reports it


BIG = {"Re": 100.0, "dt": 0.01, "T_final": 0.04, "grid": [256, 256, 256]}  # needs ~1.7 GiB


def test_cli_run_worker_memory_flag_where_the_message_points(tmp_path: Path, packages_dir, sweep_cli):
    pdir = packages_dir([{"package_id": "big", "priority": "HIGH", "parameters": BIG}])
    store = tmp_path / "s.zarr"
    r = sweep_cli("run", str(pdir), "--store", str(store), "--worker-memory", "1GiB")
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()
    assert len(line) == 1 and "parameters.grid" in line[0] and "--worker-memory" in line[0], r.stderr
    assert not store.exists()
    r = sweep_cli("run", str(pdir), "--store", str(store), "--worker-memory", "2GiB", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "big" in r.stdout
    r = sweep_cli("run", str(pdir), "--store", str(store), "--worker-memory", "lots")
    assert r.returncode == 2 and "--worker-memory: bad value 'lots'" in r.stderr, r.stderr


def test_run_sweep_on_a_cluster_we_did_not_start_uses_its_workers_memory(tmp_path: Path, packages_dir):
    """The scheduler says how much memory its workers have: a run that fits in none is refused
    before the store is created, whatever this machine has."""
    from distributed import Client, LocalCluster

    import sweep

    pdir = packages_dir([{"package_id": "big", "priority": "HIGH", "parameters": BIG}])
    store = tmp_path / "s.zarr"
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, memory_limit="1GiB", dashboard_address=":0") as c,
        Client(c) as client,
    ):
        with pytest.raises(sweep.ConfigError, match=r"parameters\.grid.*largest worker has 1(\.0)? GiB"):
            sweep.run_sweep(pdir, store, client=client, worker_memory="64GiB")
    assert not store.exists()


def test_cli_new_and_validate_share_one_check(tmp_path: Path, sweep_cli):
    """`sweep new` refuses (and writes nothing) what `sweep validate` would refuse."""
    out = tmp_path / "huge"
    r = sweep_cli("new", str(out), "--Re", "100", "--dt", "0.01", "--T-final", "0.04", "--grid", "2048")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "parameters.grid" in r.stderr and "--worker-memory" in r.stderr, r.stderr
    assert not out.exists() or not any(out.iterdir())
    r = sweep_cli(
        "new", str(out), "--Re", "100", "--dt", "0.01", "--T-final", "0.04", "--grid", "2048",
        "--worker-memory", "1TiB",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sweep_cli("validate", str(out), "--worker-memory", "1TiB").returncode == 0
    r = sweep_cli("validate", str(out))
    assert r.returncode == 2 and "parameters.grid" in r.stderr, r.stderr


def test_cli_logs_belong_to_their_store_and_generated_ids_are_unique(tmp_path: Path, sweep_cli):
    """Two sweeps into two stores of one directory keep two logs; `sweep new` with one value
    per parameter names the package after its values, not `run` for every sweep."""
    common = ["--dt", "0.01", "--T-final", "0.02", "--grid", "8"]
    assert sweep_cli("new", str(tmp_path / "a"), "--Re", "100", *common).returncode == 0
    assert sweep_cli("new", str(tmp_path / "b"), "--Re", "400", *common).returncode == 0
    ids = {}
    for name in ("a", "b"):
        doc = json.loads((tmp_path / name / "package_0001.json").read_text())
        ids[name] = doc["package_id"]
    assert ids["a"] != ids["b"] and "run" not in ids.values(), ids
    assert ids["a"] == "Re100-dt0.01-T0.02-n8x8x8", ids
    results = tmp_path / "results"
    for name in ("a", "b"):
        r = sweep_cli(
            "run", str(tmp_path / name), "--store", str(results / f"{name}.zarr"), "--mode", "sequential"
        )
        assert r.returncode == 0, r.stderr
        assert f"logs in {results / f'{name}.zarr.logs'}" in r.stdout, r.stdout
    for name in ("a", "b"):
        logs = results / f"{name}.zarr.logs"
        main = (logs / "sweep.log").read_text()
        assert str(results / f"{name}.zarr") in main and main.count("exit code 0") == 1, main
        # one file of package lines per sweep; `sweep logs` finds a package's lines by its id
        (lines,) = [p for p in logs.glob("*.log") if p.name != "sweep.log"]
        assert lines.name.startswith("packages-"), lines.name
        r = sweep_cli("logs", ids[name], "--store", str(results / f"{name}.zarr"))
        assert r.returncode == 0 and r.stdout.rstrip().endswith("status: done"), r.stdout + r.stderr
        other = ids["b" if name == "a" else "a"]
        r = sweep_cli("logs", other, "--store", str(results / f"{name}.zarr"))
        assert r.returncode == 2 and other in r.stderr, r.stdout + r.stderr
    assert not (results / "logs").exists()


def test_cli_new_append_adds_packages_to_an_existing_sweep(tmp_path: Path, sweep_cli):
    d = tmp_path / "sweep"
    common = ["--dt", "0.01", "--T-final", "0.02", "--grid", "8x8x8"]
    assert sweep_cli("new", str(d), "--Re", "100", "200", *common, "--priority", "HIGH").returncode == 0
    r = sweep_cli("new", str(d), "--Re", "400", *common, "--priority", "LOW")
    assert r.returncode == 2 and "2 existing package file(s)" in r.stderr and "--append" in r.stderr, r.stderr
    r = sweep_cli("new", str(d), "--Re", "400", *common, "--priority", "low", "--append")
    assert r.returncode == 0, r.stderr
    summary = json.loads((d / "priority_summary.json").read_text())
    assert len(summary["HIGH"]) == 2 and summary["LOW"] == ["Re400-dt0.01-T0.02-n8x8x8"], summary
    r = sweep_cli("validate", str(d))
    assert r.returncode == 0 and "3 package(s)" in r.stdout, r.stdout + r.stderr
    again = sweep_cli("new", str(d), "--Re", "400", *common, "--priority", "LOW", "--append")
    assert again.returncode == 2 and "Re400-dt0.01-T0.02-n8x8x8" in again.stderr, again.stderr
    assert json.loads((d / "priority_summary.json").read_text()) == summary
    # other values of the same swept parameter: the short ids (Re100, Re200) are taken, so the
    # added packages are named by every value given
    other = ["--dt", "0.02", "--T-final", "0.04", "--grid", "8"]
    r = sweep_cli("new", str(d), "--Re", "100", "200", *other, "--append")
    assert r.returncode == 0, r.stderr
    added = json.loads((d / "priority_summary.json").read_text())["MEDIUM"]
    assert added == ["Re100-dt0.02-T0.04-n8x8x8", "Re200-dt0.02-T0.04-n8x8x8"], added
    assert sweep_cli("validate", str(d)).returncode == 0


def test_cli_new_append_interrupted_lists_every_file_it_wrote(tmp_path: Path, sweep_cli):
    """Ctrl-C while `sweep new --append` writes (as during `sweep adapt`, whose resume reads the
    directory) is held back until the summary lists every package file written: no file is
    left unlisted or cut short, and the directory validates."""
    from faults import pause_env, wait_for

    d = tmp_path / "sweep"
    common = ["--dt", "0.01", "--T-final", "0.02", "--grid", "8"]
    assert sweep_cli("new", str(d), "--Re", "100", *common).returncode == 0
    env, flag = pause_env(tmp_path, "append-before-summary", seconds=3)
    args = [sys.executable, "-m", "sweep.cli", "new", str(d), "--Re", "200", "400", *common, "--append"]
    proc = subprocess.Popen(
        args, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(flag.exists, timeout=120, what="sweep new to pause before its summary")
        proc.send_signal(signal.SIGINT)  # files written, summary not yet
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, err  # stopped by the Ctrl-C, once the writing was done
    files = sorted(p.name for p in d.glob("package_*.json"))
    listed = [i for ids in json.loads((d / "priority_summary.json").read_text()).values() for i in ids]
    assert len(files) == 3 and len(listed) == 3, (files, listed)
    r = sweep_cli("validate", str(d))
    assert r.returncode == 0 and "3 package(s)" in r.stdout, r.stdout + r.stderr


def test_cli_failures_are_named_with_class_and_reason(tmp_path: Path, packages_dir, sweep_cli):
    """The final summary and `sweep status` name each failed package, its class and why."""
    from conftest import TINY

    pkgs = tiny_sweep(3)
    pkgs[1]["parameters"] = {**TINY, "dt": 0.02, "T_final": 0.04, "cfl_limit": 0.001}
    d = packages_dir(pkgs)
    store = tmp_path / "r.zarr"
    r = sweep_cli("run", str(d), "--store", str(store), "--mode", "sequential", "--no-progress")
    assert r.returncode == 1, r.stderr
    (line,) = [ln for ln in r.stdout.splitlines() if ln.strip().startswith("p001")]
    assert "diverged" in line and "CFL" in line and "reduce dt" in line, r.stdout
    s = sweep_cli("status", "--store", str(store), "--packages", str(d))
    assert s.returncode == 0, s.stderr
    (line,) = [ln for ln in s.stdout.splitlines() if ln.strip().startswith("p001")]
    assert "diverged" in line and "CFL" in line, s.stdout
    doc = json.loads(sweep_cli("status", "--store", str(store), "--packages", str(d), "--json").stdout)
    (failure,) = doc["failures"]
    assert (
        failure["package"] == "p001" and failure["failure_class"] == "diverged" and "CFL" in failure["error"]
    )


def test_cli_version_abbreviations_and_did_you_mean(tmp_path: Path, packages_dir, sweep_cli):
    from sweep.provenance import ns_sweep_version

    r = sweep_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"sweep (ns-sweep) {ns_sweep_version()}", (
        r.stdout + r.stderr
    )
    pdir = packages_dir(tiny_sweep(1))
    store = tmp_path / "s.zarr"
    # a mistyped option is an error that names the option it resembles, never an abbreviation
    r = sweep_cli("run", str(pdir), "--store", str(store), "--re", "3")
    assert r.returncode == 2 and not store.exists(), r.stdout
    assert "unrecognized arguments: --re 3" in r.stderr and "did you mean --retries?" in r.stderr, r.stderr
    r = sweep_cli("new", str(tmp_path / "n"), "--re", "100")
    assert r.returncode == 2 and "did you mean --Re?" in r.stderr, r.stderr
    r = sweep_cli("status", "--store", str(store), "--pakages", str(pdir))
    assert r.returncode == 2 and "did you mean --packages?" in r.stderr, r.stderr


def test_cli_validate_one_file(tmp_path: Path, packages_dir, sweep_cli):
    from conftest import TINY

    pdir = packages_dir(
        [*tiny_sweep(1), {"package_id": "bad", "priority": "LOW", "parameters": {**TINY, "Re": -1}}]
    )
    r = sweep_cli("validate", str(pdir / "package_0000.json"))
    assert r.returncode == 0 and "package_0000.json" in r.stdout and "p000" in r.stdout, r.stdout + r.stderr
    r = sweep_cli("validate", str(pdir / "package_0001.json"))
    assert r.returncode == 2, r.stdout
    assert r.stderr.splitlines()[0].startswith("package_0001.json: parameters.Re: bad value -1"), r.stderr


SLOW_DISK = "Creating scratch directories is taking a surprisingly long time"


def _without_slow_disk_notice(err: str) -> list[str]:
    """stderr's lines less distributed's notice (a warning and its source line) that a worker's
    scratch directory took over 1 s to create: a loaded machine's disk at the workers' start,
    not a line about Ctrl-C."""
    lines = err.strip().splitlines()
    out, skip = [], False
    for line in lines:
        if SLOW_DISK in line:
            skip = True  # and the source line after it
            continue
        if skip and line.startswith("  "):
            skip = False
            continue
        skip = False
        out.append(line)
    return out


def _ctrl_c_after(
    args: list[str], log: PackageLog, marker: str, *, settle: float
) -> subprocess.CompletedProcess:
    """`sweep run ARGS` in a subprocess, interrupted (SIGINT, as Ctrl-C) ``settle`` seconds
    after its package log ``log`` says ``marker``."""
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (log.exists() and marker in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert log.exists() and marker in log.read_text(), f"{log} never said {marker!r}"
    time.sleep(settle)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_cli_ctrl_c_is_one_line_and_the_package_log_says_so(tmp_path: Path, packages_dir):
    """Ctrl-C during a run: our one line, no warnings of distributed before it; the package
    log records the interrupted attempt."""

    from conftest import TINY

    pdir = packages_dir(
        [
            {
                "package_id": "long",
                "priority": "HIGH",
                "parameters": {**TINY, "grid": [32, 32, 32], "T_final": 60.0},
            }
        ]
    )
    store = tmp_path / "s.zarr"
    log = PackageLog(tmp_path / "s.zarr.logs", "long")
    r = _ctrl_c_after([str(pdir), "--store", str(store), "--no-progress"], log, "started on", settle=1.0)
    out, err = r.stdout, r.stderr
    assert r.returncode == 130, out + err
    assert _without_slow_disk_notice(err) == [
        "sweep run: interrupted; finished runs are kept, run again to resume"
    ], err
    text = log.read_text()
    assert "interrupted during attempt 1" in text, text


def test_progress_no_eta_before_it_means_something_and_the_clock_starts_with_the_runs():
    """An ETA from one finished package (or counting the workers' start-up) misleads: none is
    printed before a few packages finished, and restart_clock() leaves the start-up out."""
    import io
    import time

    from sweep.engine.progress import MIN_FINISHED_FOR_ETA, SweepProgress

    out = io.StringIO()
    prog = SweepProgress(20, summary_every=1, bar=False, out=out)
    time.sleep(0.3)  # the workers' start-up
    prog.restart_clock()
    for _ in range(MIN_FINISHED_FOR_ETA):
        prog.package_finished("done")
    prog.close()
    lines = out.getvalue().splitlines()
    assert all("eta" not in ln for ln in lines[: MIN_FINISHED_FOR_ETA - 1]), lines
    assert "eta " in lines[-1], lines
    assert float(lines[-1].split("elapsed ")[1].split("s")[0]) < 0.3  # the start-up is not counted


def test_cli_run_says_what_it_does_before_the_first_package(tmp_path: Path, packages_dir, sweep_cli):
    pdir = packages_dir(tiny_sweep(2))
    r = sweep_cli("run", str(pdir), "--store", str(tmp_path / "s.zarr"), "--no-progress")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    prepare = next(i for i, ln in enumerate(lines) if ln.startswith("sweep: preparing the workers"))
    ready = next(i for i, ln in enumerate(lines) if ln.startswith("sweep: workers ready in"))
    first = next(i for i, ln in enumerate(lines) if ln.startswith("[2/2]"))
    assert prepare < ready < first, lines


def test_cli_status_during_a_sweep_says_who_holds_the_store_and_what_runs(tmp_path: Path, packages_dir):
    import re
    import time

    from conftest import TINY, run_cli

    pdir = packages_dir(
        [
            {
                "package_id": "long-run",
                "priority": "HIGH",
                "parameters": {**TINY, "grid": [32, 32, 32], "T_final": 200.0},
            },
            *tiny_sweep(4, priorities=("LOW",)),
        ]
    )
    store = tmp_path / "s.zarr"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DASK_SWEEP__STATUS_EVERY": "1",
        "DASK_SWEEP__SUMMARY_EVERY": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", "run", str(pdir), "--store", str(store), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        summaries = []
        for line in proc.stdout:
            if line.startswith("["):
                summaries.append(line)
            if len(summaries) == 4:  # the tiny ones are done; the long one runs
                break
        deadline = time.monotonic() + 30
        while True:
            r = run_cli("status", "--store", str(store), "--packages", str(pdir))
            runs = [ln for ln in r.stdout.splitlines() if "long-run" in ln]
            if (runs and re.search(r"step \d+/\d+", runs[0])) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert r.returncode == 0 and "sweep running:" in r.stdout, r.stdout
        assert runs and re.search(r"step \d+/\d+", runs[0]) and "running for" in runs[0], r.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def test_cli_progress_counts_runs_in_flight_as_running(tmp_path: Path, packages_dir, sweep_cli):
    """Tiny runs finish before they announce their start: the progress lines still count the
    packages on the workers as running, not 0."""
    import re

    pdir = packages_dir(tiny_sweep(8))
    r = sweep_cli(
        "run",
        str(pdir),
        "--store",
        str(tmp_path / "s.zarr"),
        "--no-progress",
        env={"DASK_SWEEP__SUMMARY_EVERY": "1"},
    )
    assert r.returncode == 0, r.stderr
    counts = [int(m.group(1)) for m in re.finditer(r"^\[\s*\d+/8\].*running (\d+)", r.stdout, flags=re.M)]
    assert len(counts) == 8 and counts[-1] == 0, r.stdout
    assert max(counts[:-2]) >= 1, r.stdout  # while others were in flight


def test_cli_resumed_run_wall_time_is_the_sum_of_its_segments(tmp_path: Path, packages_dir, sweep_cli):
    """Ctrl-C after a checkpoint, then the same command again: the record's wall time is both
    attempts' time, and both attempts are kept in its provenance (the first one 'interrupted')."""

    from conftest import TINY, store_records

    pdir = packages_dir(
        [
            {
                "package_id": "long",
                "priority": "HIGH",
                "parameters": {**TINY, "grid": [24, 24, 24], "T_final": 12.0},
            }
        ]
    )
    store = tmp_path / "s.zarr"
    args = [str(pdir), "--store", str(store), "--no-progress", "--checkpoint-every-steps", "100"]
    log = PackageLog(tmp_path / "s.zarr.logs", "long")
    assert _ctrl_c_after(args, log, "checkpoint at step", settle=0.5).returncode == 130
    again = sweep_cli("run", *args)
    assert again.returncode == 0, again.stderr
    (rec,) = store_records(store).values()
    segments = rec.provenance["segments"]
    assert len(segments) == 2 and segments[0]["ended"] == "interrupted" and segments[1]["ended"] == "done"
    assert segments[0]["seconds"] > 0.3 and segments[1]["from_step"] > 0
    assert rec.wall_time == pytest.approx(sum(s["seconds"] for s in segments), rel=1e-6)
    assert rec.resumed_from_checkpoint


def test_cli_new_grid_in_the_forms_package_ids_use(tmp_path: Path, sweep_cli):
    """`--grid 32` is a cube, `--grid 16x16x32` the form package ids use, `16,16,32` the list;
    anything else is one line naming the value and the forms allowed."""
    common = ["--Re", "100", "--dt", "0.01", "--T-final", "0.02"]
    r = sweep_cli("new", str(tmp_path / "g"), *common, "--grid", "32", "16x16x32", "8,8,16")
    assert r.returncode == 0, r.stderr
    grids = sorted(
        json.loads(p.read_text())["parameters"]["grid"] for p in (tmp_path / "g").glob("package_*.json")
    )
    assert grids == [[8, 8, 16], [16, 16, 32], [32, 32, 32]], grids
    r = sweep_cli("new", str(tmp_path / "bad"), *common, "--grid", "16x16")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "--grid: bad value '16x16'; allowed: N (a cube), NXxNYxNZ" in line, line
