#!/usr/bin/env python
"""Benchmark the spec + store hot paths on a 10,000-package sweep (prints the figures).

    python scripts/bench_store.py            # 10,000 packages, 9,000 done (about 1-2 minutes)
    python scripts/bench_store.py --n 2000   # smaller, for a quick look

Targets (issue 3): planning 10,000 packages with 9,000 done <= 0.5 s end to end (package
files read and checked, store read, decisions); open_results over 10,000 runs <= 3 s;
committing one small run (time series only) <= 10 ms. Everything is built in a temporary
directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import xarray as xr

import sweep
from solver import SolverParams
from sweep import config
from sweep.engine.plan import explain_packages
from sweep.spec import load_packages, run_id_of
from sweep.store import Store


def series_only(p: SolverParams, seed: int) -> xr.Dataset:
    """A result with the solver's time series only (51 outputs by default)."""
    n = p.n_steps // p.steps_per_output + 1
    t = np.arange(n) * p.steps_per_output * p.dt
    rng = np.random.default_rng(seed)
    e = 0.125 * np.exp(-t / p.Re)
    return xr.Dataset(
        {
            name: ("time", e * (1 + rng.random(n) * 1e-3))
            for name in ("energy", "enstrophy", "dissipation", "max_velocity", "cfl", "max_divergence")
        },
        coords={"time": t},
    )


def write_packages(directory: str, n: int) -> list[dict]:
    """n package files over a Re x dt x T_final x grid grid, plus the summary."""
    os.makedirs(directory)
    prios = ("HIGH", "MEDIUM", "LOW")
    summary: dict[str, list[str]] = {p: [] for p in prios}
    params = []
    for i in range(n):
        raw = {
            "Re": 100.0 + i,
            "dt": (0.01, 0.005)[i % 2],
            "T_final": (0.5, 0.25)[(i // 2) % 2],
            "grid": [(16, 24)[(i // 4) % 2]] * 3,
        }
        pid = f"pkg{i:05d}"
        prio = prios[i % 3]
        with open(os.path.join(directory, f"package_{i:05d}.json"), "w") as f:
            json.dump({"package_id": pid, "priority": prio, "parameters": raw}, f, indent=1)
        summary[prio].append(pid)
        params.append(dict(raw))
    with open(os.path.join(directory, "priority_summary.json"), "w") as f:
        json.dump(summary, f)
    return params


def commit_many(store: Store, params: list[dict], ids: list[str]) -> list[float]:
    times = []
    for i, (p, pid) in enumerate(zip(params, ids, strict=True)):
        sp = SolverParams(p)
        ds = series_only(sp, i)
        prov = {"params": sp, "package_ids": [pid], "priority": "HIGH", "wall_time": 1.0}
        t0 = time.perf_counter()
        store.commit_run(run_id_of(sp), ds, prov)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="packages (default 10000); 90%% are done")
    ap.add_argument("--cli", action="store_true", help="also time `sweep explain` as a fresh process")
    args = ap.parse_args()
    n, n_done = args.n, args.n * 9 // 10
    with tempfile.TemporaryDirectory(prefix="bench_store-") as tmp:
        pkg_dir, url = os.path.join(tmp, "packages"), os.path.join(tmp, "results.zarr")
        os.environ["NS_SWEEP_CACHE_DIR"] = os.path.join(tmp, "cache")  # leave no cache behind
        params = write_packages(pkg_dir, n)
        ids = [f"pkg{i:05d}" for i in range(n)]
        print(f"fixture: {n} packages in {pkg_dir}; committing {n_done} runs ...", flush=True)
        t0 = time.perf_counter()
        with Store.open(url, mode="a") as st:
            build = commit_many(st, params[:n_done], ids[:n_done])
        print(f"  built in {time.perf_counter() - t0:.1f} s")

        # 1. planning: read + check every package file, read the store, decide
        # (the first pass checks every file; later passes find their verdicts in the
        # validation cache, keyed by file content: files are still read and hashed)
        plan_times, cpu_times, parts = [], [], []
        for _ in range(4):
            t0, c0 = time.perf_counter(), time.process_time()
            pkgs = load_packages(pkg_dir)
            t1 = time.perf_counter()
            with Store.open(url) as st:
                entries = explain_packages(pkgs, st)
            t2, c2 = time.perf_counter(), time.process_time()
            plan_times.append(t2 - t0)
            cpu_times.append(c2 - c0)
            parts.append((t1 - t0, t2 - t1))
        todo = sum(e.action != "skip" for e in entries)
        assert todo == n - n_done, todo
        warm = range(1, 4)
        best = min(warm, key=lambda i: plan_times[i])
        print(
            f"plan {n} packages ({n_done} done, {todo} to run): best {plan_times[best]:.3f} s wall, "
            f"{cpu_times[best]:.3f} s CPU (read+check files {parts[best][0]:.3f} s, store+decide "
            f"{parts[best][1]:.3f} s; median {statistics.median(plan_times[i] for i in warm):.3f} s)  "
            f"target <= 0.5 s"
        )
        print(
            f"  first pass, every file parsed and validated (cold cache, first imports included): "
            f"{plan_times[0]:.3f} s wall, {cpu_times[0]:.3f} s CPU"
        )
        cold = []
        for i in range(3):  # the same with modules imported: an empty cache each time
            os.environ["NS_SWEEP_CACHE_DIR"] = os.path.join(tmp, f"cache-cold-{i}")
            t0 = time.perf_counter()
            pkgs = load_packages(pkg_dir)
            with Store.open(url) as st:
                explain_packages(pkgs, st)
            cold.append(time.perf_counter() - t0)
        print(
            f"  every file parsed and validated (empty cache, modules imported): best {min(cold):.3f} s, "
            f"median {statistics.median(cold):.3f} s"
        )

        # 2. commits of small runs (time series only), into the store holding n_done runs
        with Store.open(url, mode="a") as st:
            t_commit = commit_many(st, params[n_done:], ids[n_done:])
            t0 = time.perf_counter()
        t_close = time.perf_counter() - t0
        ms = sorted(x * 1e3 for x in t_commit)
        print(
            f"commit one small run: median {statistics.median(ms):.2f} ms, "
            f"p95 {ms[int(0.95 * len(ms))]:.2f} ms, "
            f"max {ms[-1]:.1f} ms over {len(ms)} commits  target <= 10 ms"
        )
        bms = sorted(x * 1e3 for x in build)
        print(
            f"  (while building: median {statistics.median(bms):.2f} ms, "
            f"p95 {bms[int(0.95 * len(bms))]:.2f} ms, max {bms[-1]:.1f} ms incl. index compactions "
            f"every {config.get('store.compact-every')} commits; "
            f"final compaction at close {t_close:.2f} s)"
        )

        # 3. open_results over all n runs
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            ds = sweep.open_results(url)
            times.append(time.perf_counter() - t0)
        assert ds.sizes["run"] == n
        print(
            f"open_results over {ds.sizes['run']} runs ({ds.sizes['output']} outputs): "
            f"best {min(times):.3f} s, "
            f"median {statistics.median(times):.3f} s  target <= 3 s"
        )
        t0 = time.perf_counter()
        df = sweep.results_frame(url)
        print(f"results_frame ({len(df)} rows): {time.perf_counter() - t0:.3f} s")

        if args.cli:
            exe = os.path.join(os.path.dirname(sys.executable), "sweep")
            t0 = time.perf_counter()
            proc = subprocess.run([exe, "explain", pkg_dir, "--store", url], capture_output=True, text=True)
            print(
                f"`sweep explain` as a new process (Python start-up and imports included): "
                f"{time.perf_counter() - t0:.2f} s, exit {proc.returncode}"
            )


if __name__ == "__main__":
    main()
