"""Benchmark of the sweep engine (issue 4), printed as figures.

    python scripts/bench_engine.py                 # 1,000 tiny packages + 2 s packages
    python scripts/bench_engine.py --tiny 200 --long 4 --long-seconds 1   # quicker

1. Throughput: N tiny packages (one 8^3 step each) on a LocalCluster of 2 worker processes,
   through ``run_sweep`` (package files read and checked, plan, one Dask task per package,
   every result committed durably to a zarr store). Prints the wall-clock cost per package,
   the time of a commit and the CPU time per package (driver process and workers), and the
   files the store holds per run; once with packed runs (the default: small runs are log
   records, then batch groups) and once with a zarr group per run (``--layout``).
   Beside it, measured in the same run: the replaced system's cost, a fresh process per
   package (``python -c "import numpy"``, run two at a time as with 2 parallel slots).
2. Efficiency: M packages of about S seconds each on the same 2 workers; prints the sweep's
   wall time over the ideal time (the sum of the runs' own wall times divided by 2).
The cluster start (a few seconds, once per sweep) is reported separately.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_sweep(directory: Path, n: int, params: dict) -> Path:
    """A package directory of ``n`` packages differing only in Re (so n distinct runs)."""
    from sweep.spec import SUMMARY_FILE, package_document

    directory.mkdir(parents=True)
    ids = []
    for i in range(n):
        pid = f"b{i:05d}"
        ids.append(pid)
        doc = package_document(pid, "MEDIUM", {**params, "Re": 100.0 + i})
        (directory / f"package_{i:05d}.json").write_text(json.dumps(doc))
    (directory / SUMMARY_FILE).write_text(json.dumps({"HIGH": [], "MEDIUM": ids, "LOW": []}))
    return directory


def file_system_speed(directory: Path, n: int = 500) -> tuple[float, float]:
    """Microseconds per mkdir and per small file creation in ``directory``."""
    import os
    import shutil

    probe = directory / "fs-probe"
    probe.mkdir()
    t0 = time.perf_counter()
    for i in range(n):
        os.mkdir(probe / f"d{i}")
    t1 = time.perf_counter()
    for i in range(n):
        (probe / f"d{i}" / "f").write_bytes(b"x" * 100)
    t2 = time.perf_counter()
    shutil.rmtree(probe)
    return (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6


def bench_processes(n: int, slots: int = 2) -> float:
    """Seconds per package when each package is a new `python -c "import numpy"` process."""
    cmd = [sys.executable, "-c", "import numpy"]
    subprocess.run(cmd, check=True)  # warm the page cache
    t0 = time.perf_counter()
    with ThreadPoolExecutor(slots) as pool:
        list(pool.map(lambda _: subprocess.run(cmd, check=True), range(n)))
    return (time.perf_counter() - t0) / n


def _cpu_seconds(client) -> tuple[float, float]:
    """CPU seconds used so far by this process (driver, and the LocalCluster's scheduler) and
    by the worker processes."""
    import psutil

    def used() -> float:
        t = psutil.Process().cpu_times()
        return t.user + t.system

    return used(), sum(client.run(used).values())


def _tree_size(root: Path) -> tuple[int, int]:
    """(directories, files) under ``root``."""
    dirs = files = 0
    for p in root.rglob("*"):
        dirs, files = (dirs + 1, files) if p.is_dir() else (dirs, files + 1)
    return dirs, files


def bench_tiny(client, packages: Path, where: Path, label: str, args: argparse.Namespace) -> float:
    """One sweep of the tiny packages into a new store; prints its figures, returns s/package."""
    from sweep.engine import run_sweep
    from sweep.store import Store

    # the time the store's writer thread spends in Store.commit_run (the benchmark's own timer)
    commit_seconds = [0.0]
    plain_commit = Store.commit_run

    def timed_commit(self, *a, **kw):
        t = time.perf_counter()
        try:
            return plain_commit(self, *a, **kw)
        finally:
            commit_seconds[0] += time.perf_counter() - t

    cpu0 = _cpu_seconds(client)
    t0 = time.perf_counter()
    Store.commit_run = timed_commit
    try:
        res = run_sweep(
            packages,
            where / "tiny.zarr",
            client=client,
            progress_bar=False,
            out=io.StringIO(),
            log_dir=where / "logs",
        )
    finally:
        Store.commit_run = plain_commit
    wall = time.perf_counter() - t0
    driver_cpu, workers_cpu = (b - a for a, b in zip(cpu0, _cpu_seconds(client), strict=True))
    assert res.exit_code == 0 and res.counts["done"] == args.tiny, res.counts
    n_dirs, n_files = _tree_size(where / "tiny.zarr")
    with Store.open(str(where / "tiny.zarr"), mode="r") as st:
        recs = st.records()
        solver_s = sum(r.wall_time or 0 for r in recs.values())
    assert len(recs) == args.tiny
    per_pkg = wall / args.tiny
    print(
        f"\n{args.tiny} tiny packages (8^3, 1 step), {args.workers} workers, durable commit included; "
        f"{label}: the store holds {n_dirs} directories and {n_files} files "
        f"({(n_dirs + n_files) / args.tiny:.2f} per run)"
    )
    print(f"  sweep wall time            {wall:8.2f} s")
    print(f"  cost per package           {per_pkg * 1e3:8.2f} ms   (goal <= 10 ms)")
    print(
        f"  store commit per package   {commit_seconds[0] / args.tiny * 1e3:8.2f} ms   "
        "(Store.commit_run in the driver's store thread, the single writer; overlapped)"
    )
    print(
        f"  solver time per package    {solver_s / args.tiny * 1e3:8.2f} ms   (inside the workers, "
        "overlapped)"
    )
    print(
        f"  CPU per package            {(driver_cpu + workers_cpu) / args.tiny * 1e3:8.2f} ms   "
        f"(driver process {driver_cpu / args.tiny * 1e3:.2f} ms with the scheduler, workers "
        f"{workers_cpu / args.tiny * 1e3:.2f} ms; on {args.workers} cores the wall time is at "
        f"least half the total)"
    )
    return per_pkg


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks and print their figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", type=int, default=1000, help="tiny packages (default 1000)")
    ap.add_argument(
        "--processes",
        type=int,
        default=40,
        help="process launches timed for the process-per-package figure (default 40)",
    )
    ap.add_argument("--long", type=int, default=8, help="packages of --long-seconds each (default 8)")
    ap.add_argument("--long-seconds", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--layout",
        choices=("both", "packed", "groups"),
        default="both",
        help="store layout(s) of the tiny-package sweep: packed runs (the default "
        "sweep.store.pack-bytes), a group per run (pack-bytes 0), or both in turn "
        "(default both)",
    )
    ap.add_argument(
        "--dir",
        default=None,
        help="directory for the stores and packages (default: the system temp dir); "
        "its file system's speed is printed, commits are mostly file creations",
    )
    args = ap.parse_args(argv)

    import dask.config
    from distributed import Client

    from sweep.engine import SweepOptions, run_sweep
    from sweep.engine.cluster import connect
    from sweep.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="bench_engine_", dir=args.dir))
    mkdir_us, create_us = file_system_speed(tmp)
    print(
        f"store directory: {tmp} (file system: mkdir {mkdir_us:.0f} us, file create+write {create_us:.0f} us)"
    )
    t0 = time.perf_counter()
    handle = connect(SweepOptions(mode="parallel", max_parallel=args.workers))
    client: Client = handle.client
    print(f"cluster: {handle.description}; started in {time.perf_counter() - t0:.2f} s (once per sweep)")
    try:
        # -- warm-up: imports and FFT plans in each worker (a one-off per worker process)
        warm = write_sweep(tmp / "warm", 2 * args.workers, {"grid": [8, 8, 8], "dt": 0.01, "T_final": 0.01})
        run_sweep(
            warm,
            tmp / "warm.zarr",
            client=client,
            progress_bar=False,
            out=io.StringIO(),
            log_dir=tmp / "logs-warm",
        )

        # -- 1. throughput on tiny packages: packed runs (the default), then a group per run
        tiny = write_sweep(tmp / "tiny", args.tiny, {"grid": [8, 8, 8], "dt": 0.01, "T_final": 0.01})
        layouts = [
            (key, label, pack)
            for key, label, pack in (
                ("packed", "packed runs (the default)", {}),
                ("groups", "a group per run (sweep.store.pack-bytes 0)", {"sweep.store.pack-bytes": 0}),
            )
            if args.layout in (key, "both")
        ]
        costs = {}
        for key, label, config in layouts:
            with dask.config.set(config):
                costs[key] = bench_tiny(client, tiny, tmp / f"tiny-{key}", label, args)
        proc = bench_processes(args.processes, slots=args.workers)
        print(
            f"\n  a process per package      {proc * 1e3:8.2f} ms   (python -c 'import numpy', "
            f"{args.workers} at a time, {args.processes} launches)"
        )
        for key, cost in costs.items():
            print(f"  engine speed-up ({key}) {proc / cost:8.1f} x")

        # -- 2. efficiency on ~2 s packages (--long 0 skips it)
        if args.long < 1:
            return 0
        from sweep.engine.worker import WorkItem, run_package

        probe = {"grid": [32, 32, 32], "dt": 0.001, "T_final": 0.02, "Re": 100.0}
        item = WorkItem(
            "probe", "probe", "LOW", {"grid": [32, 32, 32], "dt": 0.001, "T_final": 0.02}, timeout=600
        )
        per_step = float("inf")
        for addr in client.scheduler_info(n_workers=-1)["workers"]:  # warm every worker's plans
            for _ in range(2):
                out = client.submit(run_package, item, pure=False, workers=[addr]).result()
            per_step = min(per_step, out.provenance["wall_time"] / 20)
        steps = max(1, round(args.long_seconds / per_step))
        probe["T_final"] = round(steps * probe["dt"], 10)
        long = write_sweep(tmp / "long", args.long, probe)
        t0 = time.perf_counter()
        res = run_sweep(
            long,
            tmp / "long.zarr",
            client=client,
            progress_bar=False,
            out=io.StringIO(),
            log_dir=tmp / "logs-long",
        )
        wall = time.perf_counter() - t0
        assert res.exit_code == 0
        with Store.open(str(tmp / "long.zarr"), mode="r") as st:
            runs = [r.wall_time for r in st.records().values()]
        ideal = sum(runs) / args.workers
        print(
            f"\n{args.long} packages of ~{args.long_seconds:g} s (32^3, {steps} steps), "
            f"{args.workers} workers:"
        )
        print(f"  mean run time              {sum(runs) / len(runs):8.2f} s")
        print(f"  ideal (sum / workers)      {ideal:8.2f} s")
        print(f"  sweep wall time            {wall:8.2f} s")
        print(f"  ratio to ideal             {wall / ideal:8.3f}     (goal <= 1.05)")
    finally:
        handle.close()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
