"""Benchmark of large sweeps (issue 17): every command on N tiny packages, printed as a table.

    python scripts/bench_scale.py --packages 100000     # the whole sweep: about 10 minutes on 2 cores
    python scripts/bench_scale.py --packages 1000000 --plan-only --run-seconds 60
    python scripts/bench_scale.py --packages 1000000 --prefilled 500
    python scripts/bench_scale.py --packages 2000       # a quick look (the CI smoke test is smaller)

N one-step 8^3 packages (Re x random_seed, random initial field) are written by `sweep new`
from a grid file, then each command runs as a child process of its own, as a user would run
it, on 2 workers: `sweep new`, `validate`, `explain`, `run`, `run` again with nothing left,
`logs PACKAGE_ID`, `status`, `status --packages`, `report`, `--help`, and `open_results` in Python. For
each: wall time and the child's peak RSS (its resource usage: the largest of the driver and of
the processes it waited for, its local Dask workers; the kernel folds theirs in). For the
sweep: the cost per package over the whole sweep and in its first and
last tenth (from the commit times in the store: growth shows as a last tenth slower than the
first), the store's size per run, the log files written.

``--prefilled K`` (for 1,000,000 packages: a sweep resuming against a full store): after
`sweep new` and `validate`, ``scripts/bulk_store.py`` fills the store with the runs of all but
the last K packages (~9 minutes at 1M), then `sweep run` resumes with K runs left and again with
nothing left, each with its peak RSS and the driver's own (sampled every 0.2 s).

``--plan-only`` (for 1,000,000 packages, whose whole sweep would take hours): `sweep new`,
`validate`, `explain`, `run --dry-run` (the plan against the store), then the real `run`
stopped (SIGTERM, as a batch system's time limit) after ``--run-seconds``: the whole planning and submission
path over the full backlog (every package loaded, planned and queued in the driver; the
window of tasks going to the workers; the runs finished by then committed), with its peak RSS
(its workers' included), the driver's own peak (sampled every 0.2 s until the stop) and the
packages committed in that time. A longer ``--run-seconds`` shows whether the driver's memory
grows with the runs committed (it should not: the store's writer keeps only its unflushed
rows, merges are capped by ``sweep.store.merge-max-rows``, freed memory goes back to the
system: see the note of issue 17).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = [sys.executable, "-m", "sweep.cli"]


CPU: dict[str, float] = {}  # the last child's CPU seconds (see child)
OWN: dict[str, float] = {}  # the last stopped child's own peak RSS in MiB, its workers' left out


def own_rss(pid: int) -> float:
    """A process's resident memory now, in MiB (0: gone, or not Linux)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def child(
    args: list[str], *, cwd: Path, env: dict[str, str], stop_after: float | None = None
) -> tuple[float, float, str]:
    """Run a child process; (wall seconds, peak RSS in MiB of it or of a process it waited for,
    e.g. its Dask workers, and its stdout). Fails on exit != 0, except 143 (or -15) when stopped
    by ``stop_after`` seconds (SIGTERM, as a batch system's time limit; not SIGINT: a background
    job started by a shell ignores it, and so do its children). ``CPU["last"]``: its CPU seconds
    (user + system, with those of the processes it started and waited for: its Dask workers), a
    measure that a loaded machine does not inflate as much as wall time."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        status, usage = 0, None
        if stop_after is not None:  # (wait4 without blocking: poll() would reap it, and its usage)
            OWN["peak"] = 0.0  # sampled every 0.2 s: the driver alone, without its workers
            while time.perf_counter() - t0 < stop_after:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                OWN["peak"] = max(OWN["peak"], own_rss(proc.pid))
                time.sleep(0.2)
            else:
                os.kill(proc.pid, signal.SIGTERM)
                usage = None
        if usage is None:
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource usage
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        CPU["last"] = usage.ru_utime + usage.ru_stime
        out.seek(0)
        err.seek(0)
        # stopped: 143 from its handler, or -15 when the signal came before the handler was set
        # or after it was undone (a small sweep that finished just then)
        stopped = stop_after is not None and proc.returncode in (143, -signal.SIGTERM)
        if proc.returncode != 0 and not stopped:
            raise SystemExit(f"{' '.join(args[2:5])} ... exited {proc.returncode}:\n{err.read()[-3000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def grid_file(path: Path, n: int) -> None:
    """A grid of n packages: Re x random_seed, one 8^3 step each."""
    n_re = min(n, 1000)
    n_seed = math.ceil(n / n_re)
    res = [100.0 + i for i in range(n_re)]
    path.write_text(
        '[[grids]]\npriority = "HIGH"\n[grids.parameters]\n'
        f"Re = {json.dumps(res)}\nrandom_seed = {json.dumps(list(range(n_seed)))}\n"
        'dt = 0.01\nT_final = 0.01\ngrid = [8, 8, 8]\ninitial_condition = "random"\n'
    )


def tree(path: Path) -> tuple[int, int]:
    """(entries, bytes) under path."""
    n = size = 0
    for root, dirs, files in os.walk(path):
        n += len(dirs) + len(files)
        size += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return n, size


def store_figures(store: Path, env: dict[str, str]) -> dict[str, object]:
    """The commit times and the runs' own seconds of a store, read in a child process (read
    here, the records would stay in this process, and every later child's peak RSS would
    count them: a forked child starts with its parent's pages)."""
    code = (
        "import json, sys; sys.path.insert(0, {here!r}); import bench_scale as b; "
        "print(json.dumps({{'times': b.commit_times({store!r}), 'solver': b.solver_seconds({store!r})}}))"
    ).format(here=str(Path(__file__).resolve().parent), store=str(store))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


CALIBRATE = """
import time
from solver.params import SolverParams
from sweep.engine.worker import WorkItem, run_package
items = [
    WorkItem(f"c{i}", f"c{i}", "HIGH", SolverParams({"Re": 100.0 + i, "dt": 0.01, "T_final": 0.01,
             "grid": [8, 8, 8], "initial_condition": "random", "random_seed": i}).as_dict(), 600.0)
    for i in range(600)
]
for it in items[:100]:
    run_package(it)
t0 = time.process_time()
for it in items[100:]:
    run_package(it)
print((time.process_time() - t0) / 500)
"""


def run_alone_cpu(env: dict[str, str]) -> float:
    """CPU seconds of one tiny package run by ``run_package`` in a plain process (no Dask, no
    store, no driver): what a package costs without the engine."""
    out = subprocess.run(
        [sys.executable, "-c", CALIBRATE], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[-1])


def commit_times(store: Path) -> list[float]:
    """The commit times of the store's runs, sorted (epoch seconds)."""
    from datetime import datetime

    from sweep.store import Store

    with Store.open(store) as st:
        return sorted(
            datetime.fromisoformat(r.committed).timestamp() for r in st.records().values() if r.committed
        )


def solver_seconds(store: Path) -> float:
    """The runs' own wall times, summed (the solver's share of a sweep's work)."""
    from sweep.store import Store

    with Store.open(store) as st:
        return sum(float(r.wall_time or 0.0) for r in st.records().values())


def commit_rates(times: list[float]) -> tuple[float, float, float]:
    """Seconds per package over the sweep, its first tenth and its last tenth (commit times)."""
    n = len(times)
    k = max(1, n // 10)
    whole = (times[-1] - times[0]) / max(1, n - 1)
    return whole, (times[k] - times[0]) / k, (times[-1] - times[-1 - k]) / k


def log_dir_of(store: Path) -> Path:
    """Where `sweep run` puts the logs of ``store`` by default."""
    from sweep.engine.sweep import default_log_dir

    return default_log_dir(str(store))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packages", type=int, default=100_000, help="packages (default 100000)")
    ap.add_argument("--dir", default=None, help="where to build it (made if missing; default: the temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the directory")
    ap.add_argument(
        "--plan-only",
        action="store_true",
        help="new, validate, explain, run --dry-run, and a run interrupted after --run-seconds",
    )
    ap.add_argument("--run-seconds", type=float, default=60.0, help="with --plan-only (default 60)")
    ap.add_argument(
        "--prefilled",
        type=int,
        metavar="K",
        help="new, validate, a store filled by scripts/bulk_store.py with the runs of all but K "
        "packages, then `run` with K left and `run` with nothing left",
    )
    args = ap.parse_args(argv)
    n = args.packages
    if args.dir is not None:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench_scale_", dir=args.dir))
    env = {**os.environ, "NS_SWEEP_CACHE_DIR": str(tmp / "cache"), "PYTHONWARNINGS": "ignore"}
    run_args = ["--max-parallel", "2", "--no-progress"]

    def row(what: str, wall: float, rss: float, note: str = "") -> None:
        cpu = CPU.get("last", 0.0)
        print(f"  {what:<34} {wall:8.2f} s  {rss:7.0f} MiB  cpu {cpu:8.2f} s  {note}", flush=True)

    try:
        grid_file(tmp / "grid.toml", n)
        pk, store, report = tmp / "pk", tmp / "st.zarr", tmp / "report"
        print(f"bench_scale: {n} packages in {tmp}", flush=True)
        w, r, _ = child([*SWEEP, "new", str(pk), "--from", str(tmp / "grid.toml")], cwd=tmp, env=env)
        n_files = sum(1 for e in os.scandir(pk) if e.name.startswith("package_"))
        summary = (pk / "priority_summary.json").stat().st_size
        row("sweep new", w, r, f"{n_files} files, summary {summary} B")
        w, r, _ = child([*SWEEP, "validate", str(pk)], cwd=tmp, env=env)
        row("sweep validate (cache cold)", w, r)
        w, r, _ = child([*SWEEP, "validate", str(pk)], cwd=tmp, env=env)
        row("sweep validate (cache warm)", w, r)
        w, r, _ = child([*SWEEP, "explain", str(pk), "--store", str(store)], cwd=tmp, env=env)
        row("sweep explain (no store yet)", w, r)
        if args.prefilled is not None:  # a sweep resuming against its store, full but for K runs
            filled = max(0, n - args.prefilled)
            bulk = [sys.executable, str(Path(__file__).resolve().parent / "bulk_store.py")]
            w, r, _ = child([*bulk, str(store), "--runs", str(filled)], cwd=tmp, env=env)
            row("bulk_store.py (the store filled)", w, r, f"{filled} runs, as a sweep stores them")
            for what in (f"sweep run (resume: {n - filled} left)", "sweep run (nothing left)"):
                cmd = [*SWEEP, "run", str(pk), "--store", str(store), *run_args]
                w, r, out = child(cmd, cwd=tmp, env=env, stop_after=math.inf)  # inf: sampled to the end
                planned = re.search(r"\d+ to run, \d+ skipped", out)
                note = planned.group(0) if planned else "(no plan line)"
                row(what, w, r, f"{note}; the driver alone: peak {OWN['peak']:.0f} MiB")
            return 0
        if args.plan_only:
            w, r, _ = child([*SWEEP, "run", str(pk), "--store", str(store), "--dry-run"], cwd=tmp, env=env)
            row("sweep run --dry-run", w, r)
            w, r, _ = child(
                [*SWEEP, "run", str(pk), "--store", str(store), *run_args],
                cwd=tmp,
                env=env,
                stop_after=args.run_seconds,
            )
            times = list(store_figures(store, env)["times"]) if store.exists() else []  # type: ignore[call-overload]
            rate = (
                f"{(times[-1] - times[0]) / max(1, len(times) - 1) * 1e3:.2f} ms/package between commits"
                if len(times) > 1
                else ""
            )
            row(
                f"sweep run, stopped after {args.run_seconds:g} s",
                w,
                r,
                f"{len(times)} committed; {rate}; the driver alone: peak {OWN['peak']:.0f} MiB "
                "(sampled until the stop)",
            )
            return 0
        w, r, _ = child([*SWEEP, "run", str(pk), "--store", str(store), *run_args], cwd=tmp, env=env)
        cpu = CPU["last"]
        figures = store_figures(store, env)
        whole, first, last = commit_rates(list(figures["times"]))  # type: ignore[call-overload]
        solver = float(figures["solver"])  # type: ignore[arg-type]
        alone = run_alone_cpu(env)
        row(
            "sweep run",
            w,
            r,
            f"{w / n * 1e3:.2f} ms/package; commits {whole * 1e3:.2f} ms/package, first "
            f"tenth {first * 1e3:.2f}, last tenth {last * 1e3:.2f}; cpu {cpu / n * 1e3:.2f} ms/package "
            f"(a run alone {alone * 1e3:.2f}: engine {(cpu / n - alone) * 1e3:.2f}); runs' own wall "
            f"time {solver / n * 1e3:.2f} ms/package",
        )
        entries, size = tree(store)
        logs = log_dir_of(store)
        log_entries, log_size = tree(logs) if logs.exists() else (0, 0)
        print(
            f"  {'store':<34} {entries} entries, {size / 2**20:.1f} MiB, {size / n:.0f} B per run; logs "
            f"{log_entries} files, {log_size / 2**20:.1f} MiB",
            flush=True,
        )
        w, r, _ = child([*SWEEP, "run", str(pk), "--store", str(store), *run_args], cwd=tmp, env=env)
        row("sweep run (nothing left)", w, r)
        main_log = logs / "sweep.log"
        if main_log.exists():
            print(f"  {'sweep.log':<34} {main_log.stat().st_size / 1024:.0f} KiB after 2 runs", flush=True)
        some = json.loads((pk / sorted(os.listdir(pk))[n // 2]).read_text())["package_id"]
        w, r, out = child([*SWEEP, "logs", some, "--store", str(store)], cwd=tmp, env=env)
        row("sweep logs PACKAGE_ID", w, r, f"{len(out.splitlines())} lines")
        w, r, _ = child([*SWEEP, "status", "--store", str(store)], cwd=tmp, env=env)
        row("sweep status", w, r)
        w, r, _ = child([*SWEEP, "status", "--store", str(store), "--packages", str(pk)], cwd=tmp, env=env)
        row("sweep status --packages", w, r)
        w, r, _ = child([*SWEEP, "report", "--store", str(store), "--out", str(report)], cwd=tmp, env=env)
        html = report / "sweep_report.html"
        row("sweep report", w, r, f"HTML {html.stat().st_size / 2**20:.1f} MiB")
        w, r, _ = child(
            [sys.executable, "-c", f"import sweep; sweep.open_results({str(store)!r})"], cwd=tmp, env=env
        )
        row("open_results (a fresh process)", w, r)
        # of which the floor: importing xarray (and pandas); open_results imports no
        # dask.array (0.4-0.5 s more: see sweep.store.results._variable)
        w, r, _ = child([sys.executable, "-c", "import xarray"], cwd=tmp, env=env)
        row("  of it: import xarray", w, r, "the floor of any process opening a Dataset")
        call = (
            "import time, numpy, xarray, sweep; xarray.Dataset({'a': ('x', numpy.zeros(1))}); "
            f"t = time.perf_counter(); sweep.open_results({str(store)!r}); print(time.perf_counter() - t)"
        )
        _, r, out = child([sys.executable, "-c", call], cwd=tmp, env=env)
        row("  of it: the open_results call", float(out.split()[-1]), r, "xarray and dask.array imported")
        w, r, _ = child([*SWEEP, "--help"], cwd=tmp, env=env)
        row("sweep --help", w, r)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
