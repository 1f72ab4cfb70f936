"""Benchmark of the HPC queue modes (issue 14) on a real SLURM, printed as figures.

    python scripts/bench_hpc.py                                    # the full set (~6 minutes)
    python scripts/bench_hpc.py --tiny 20 --long-seconds 15 --margin 48 --policy 0   # quick

It uses the SLURM that ``SLURM_CONF`` names when it answers, else starts the one-node test SLURM
of tests/slurm.py (Debian's slurm-wlm) for its own use. Every sweep is the `sweep run` command
in a subprocess, as users run it.

1. Cost per tiny package: N tiny packages (8^3, 4 steps) with ``--mode slurm --jobs 2`` (1-core
   jobs) and with ``--mode parallel --max-parallel 2``: the run phase (first run started to last
   run done, from the runs' records) times the 2 workers over N, and the whole command's time.
2. Time from `sweep run` to the first run started, both modes (the job's queue wait and its
   worker's start are in it for slurm).
3. Lost work per walltime end: one run of ``--long-seconds`` (steps of 0.1 s: a sleep after each
   real step, NS_SWEEP_TEST_STEP_SECONDS) on 1-minute jobs, runs stopping ``--margin`` seconds
   before the walltime: the walltime ends it went through, the seconds it computed twice (its
   segments: steps done over all attempts less its steps), the hand-over (core idle from the
   drain to the run going on in the next job) and the ratio to the ideal.
4. The lifetime-vs-prediction policy on and off (``--policy``): one job at a time whose worker
   lives ~17 s; run A (11 s), then run B (14 s): with the policy the worker declines B (~6 s left,
   under 0.6 of B's time and a fresh job's) and retires, and B runs whole in the next job;
   without, B starts, is preempted and goes on in the next job.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = {"Re": 100.0, "dt": 0.01, "T_final": 0.04, "grid_size": [8, 8, 8]}
STEP = 0.1


def write_sweep(directory: Path, packages: list[dict]) -> Path:
    """A package directory (``packages``: package_id, priority, parameters)."""
    from sweep.spec import SUMMARY_FILE, package_document

    directory.mkdir(parents=True)
    summary: dict[str, list[str]] = {"HIGH": [], "MEDIUM": [], "LOW": []}
    for i, p in enumerate(packages):
        doc = package_document(p["package_id"], p["priority"], p["parameters"])
        (directory / f"package_{i:05d}.json").write_text(json.dumps(doc))
        summary[p["priority"]].append(p["package_id"])
    (directory / SUMMARY_FILE).write_text(json.dumps(summary))
    return directory


@contextlib.contextmanager
def a_slurm() -> Iterator[str]:
    """``SLURM_CONF`` of a SLURM that answers: the one given, else the test SLURM started here."""
    conf = os.environ.get("SLURM_CONF")
    if conf and shutil.which("sinfo"):
        ok = subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
        if ok:
            yield conf
            return
    sys.path.insert(0, str(ROOT / "tests"))
    from slurm import start_slurm  # tests/slurm.py: munged, slurmctld, slurmd in a temp dir

    with start_slurm() as s:
        os.environ["SLURM_CONF"] = str(s.conf)
        yield str(s.conf)


def sweep_cli(
    *args: str, env: dict[str, str] | None = None
) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run `sweep ARGS`; (time.time() at its start, its wall seconds, the process)."""
    start = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sweep.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "NS_SWEEP_CACHE_DIR": "off", **(env or {})},
        timeout=1800,
    )
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(
            f"sweep {' '.join(args[:1])} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return start, took, proc


def records(store: Path) -> list:
    from sweep.store import Store

    with Store.open(str(store)) as st:
        return list(st.records().values())


def _epoch(text: str | None) -> float:
    return datetime.fromisoformat(str(text)).timestamp() if text else float("nan")


def queue_args(logs: Path, jobs: int, walltime: str = "00:05:00", margin: float | None = None) -> list[str]:
    out = ["--mode", "slurm", "--jobs", str(jobs), "--walltime", walltime, "--job-cores", "1"]
    out += ["--job-memory", "1GiB", "--log-dir", str(logs), "--no-progress"]
    return out + (["--walltime-margin", f"{margin:g}"] if margin is not None else [])


QUEUE_ENV = {"DASK_SWEEP__JOBQUEUE__JOB_START_SECONDS": "5"}


def bench_tiny(work: Path, n: int) -> None:
    pk = write_sweep(
        work / "tiny",
        [
            {"package_id": f"t{i:05d}", "priority": "MEDIUM", "parameters": {**TINY, "Re": 100.0 + i}}
            for i in range(n)
        ],
    )
    figures = {}
    for mode, args in (
        ("slurm", queue_args(work / "logs-tiny-slurm", 2)),  # up to 2 one-core jobs
        (
            "parallel",
            [
                "--mode",
                "parallel",
                "--max-parallel",
                "2",
                "--log-dir",
                str(work / "logs-tiny-par"),
                "--no-progress",
            ],
        ),
    ):
        store = work / f"tiny-{mode}.zarr"
        start, took, _ = sweep_cli("run", str(pk), "--store", str(store), *args, env=QUEUE_ENV)
        recs = records(store)
        first = min(_epoch(r.start_time) for r in recs)
        last = max(_epoch(r.end_time) for r in recs)
        workers = len({r.provenance.get("worker") for r in recs})  # the slurm sweep lets idle jobs go
        figures[mode] = ((last - first) * workers / n, first - start, took)
        print(
            f"  {mode:8}: cost per package {figures[mode][0] * 1e3:8.2f} ms (run phase x {workers} "
            f"worker(s) / {n}); sweep run to first run started {figures[mode][1]:5.1f} s; "
            f"whole command {took:5.1f} s"
        )
    s, p = figures["slurm"], figures["parallel"]
    print(f"  slurm/parallel: cost per package {s[0] / p[0]:.2f} x, to first run {s[1] - p[1]:+.1f} s")


def bench_walltime(work: Path, seconds: float, margin: float) -> None:
    steps = int(round(seconds / STEP))
    pk = write_sweep(
        work / "long",
        [{"package_id": "long", "priority": "HIGH", "parameters": {**TINY, "T_final": steps * TINY["dt"]}}],
    )
    store, logs = work / "long.zarr", work / "logs-long"
    env = {**QUEUE_ENV, "NS_SWEEP_TEST_STEP_SECONDS": str(STEP)}
    _, took, _ = sweep_cli(
        "run", str(pk), "--store", str(store), *queue_args(logs, 1, "00:01:00", margin), env=env
    )
    (rec,) = records(store)
    segments = rec.provenance["segments"]
    ends = int(rec.provenance.get("preemptions") or 0)
    recomputed = sum(s["to_step"] - s["from_step"] for s in segments) - steps
    idle = [
        _epoch(b_start) - _epoch(a_end)
        for a_end, b_start in zip(
            [s.get("end") for s in segments[:-1]], [s.get("start") for s in segments[1:]], strict=False
        )
        if a_end and b_start
    ]
    compute = sum(float(s["seconds"]) for s in segments)
    print(
        f"  one run of {seconds:g} s on 1-minute jobs, margin {margin:g} s: {ends} walltime end(s) over "
        f"{len(rec.provenance['jobs'])} jobs; seconds recomputed per walltime end "
        f"{recomputed * STEP / max(ends, 1):g} (steps done twice: {recomputed})"
    )
    hand = f"; hand-over (core idle between attempts) {sum(idle) / len(idle):.1f} s each" if idle else ""
    print(f"  {took:.1f} s for {compute:.1f} s of compute: ratio to ideal {took / compute:.2f}{hand}")


def bench_policy(work: Path) -> None:
    pk = write_sweep(
        work / "policy",
        [
            {"package_id": "a", "priority": "HIGH", "parameters": {**TINY, "T_final": 1.1}},
            {"package_id": "b", "priority": "LOW", "parameters": {**TINY, "Re": 150.0, "T_final": 1.4}},
        ],
    )
    for fit in ("0.6", "0"):
        store, logs = work / f"policy-{fit}.zarr", work / f"logs-policy-{fit}"
        env = {
            **QUEUE_ENV,
            "NS_SWEEP_TEST_STEP_SECONDS": str(STEP),
            "DASK_SWEEP__JOBQUEUE__LIFETIME_FIT": fit,
        }
        _, took, _ = sweep_cli(
            "run", str(pk), "--store", str(store), *queue_args(logs, 1, "00:01:00", 40), env=env
        )
        recs = records(store)
        pre = sum(int(r.provenance.get("preemptions") or 0) for r in recs)
        segs = sum(len(r.provenance["segments"]) for r in recs)
        saved = (logs / "sweep.log").read_text().count("forced checkpoint at step")
        label = "on (0.6)" if fit != "0" else "off"
        print(
            f"  policy {label:8}: {took:5.1f} s; preemptions {pre}, attempts that ran {segs}, "
            f"forced checkpoints saved {saved}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print their figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", type=int, default=200, help="tiny packages (default 200; 0 skips)")
    ap.add_argument("--long-seconds", type=float, default=120.0, help="the long run's compute (0 skips)")
    ap.add_argument("--margin", type=float, default=6.0, help="--walltime-margin of the long run (seconds)")
    ap.add_argument("--policy", type=int, default=1, help="1: the policy on and off; 0: skip")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="bench-hpc-", dir=args.dir))
    try:
        with a_slurm() as conf:
            print(f"# SLURM: {conf}")
            if args.tiny:
                print(f"1-2. {args.tiny} tiny packages, 2 workers:")
                bench_tiny(work, args.tiny)
            if args.long_seconds:
                print("3. lost work per walltime end:")
                bench_walltime(work, args.long_seconds, args.margin)
            if args.policy:
                print("4. lifetime-vs-prediction policy (a worker near its end, a run it would not finish):")
                bench_policy(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
