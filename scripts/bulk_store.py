#!/usr/bin/env python
"""Fill a result store fast with realistic tiny runs (benchmarks, and the tests of stores of
100,000 runs).

    python scripts/bulk_store.py STORE --runs 100000

Each run is what `sweep run` stores for a one-step 8^3 package of the spectral solver (Re x
random_seed): the variables, dtypes and attributes of one real ``solver.run_simulation``
result (values varied per run), a record made by the store's own ``make_record`` from a
provenance shaped like the engine's (host, pid, worker, timings, segments). The store's own
flush writes them: batch groups and index segments of ``sweep.store.compact-every`` runs each,
merged by the store's own policy, exactly the files a sweep leaves. Only the per-commit log
record is skipped (that is the speed: ~0.1 ms a run instead of a commit's ~1-3 ms), so a crash
during a fill loses the runs since the last flush, as a crash of a real writer between log
and flush would not: this is a fixture builder, not a way to store results.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

from solver import SolverParams
from solver.output import RunResult
from solver.simulate import run_simulation
from sweep.spec import run_id_of
from sweep.store import Store
from sweep.store.records import make_record
from sweep.store.table import LOG_HOME
from sweep.store.variables import Variable, profiles_of, result_variables, series_of

__all__ = ["bulk_fill", "measured_fill", "run_params"]

BASE = {"dt": 0.01, "T_final": 0.01, "grid": [8, 8, 8], "initial_condition": "random"}


def run_params(i: int) -> dict[str, Any]:
    """The parameters of run ``i`` (Re x random_seed, as bench_scale's grid)."""
    return {**BASE, "Re": 100.0 + i % 1000, "random_seed": i // 1000}


def _provenance(i: int, pid: str, now: float) -> dict[str, Any]:
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1e3) % 1000:03d}+00:00"
    worker = f"tcp://127.0.0.1:{40000 + i % 2}"
    return {
        "host": "bulk",
        "pid": 20000 + i % 2,
        "worker": worker,
        "job_id": None,
        "attempt": 1,
        "start_time": start,
        "end_time": start,
        "wall_time": 0.0012 + (i % 7) * 1e-4,
        "seconds": 0.0012,
        "from_step": 0,
        "to_step": 1,
        "package_id": pid,
        "package_ids": [pid],
        "priority": "HIGH",
        "tags": {},
        "attempts": 1,
        "mode": "parallel",
        "segments": [{"attempt": 1, "worker": worker, "from_step": 0, "to_step": 1, "ended": "done"}],
        "compute_seconds": 0.0012,
    }


class _Runs:
    """Runs ``k`` as ``sweep run`` would store them: one real result's layout, values varied."""

    def __init__(self) -> None:
        self.result = run_simulation(SolverParams(run_params(0)))
        self.variables, self.attrs = result_variables(self.result)
        self.now = time.time()

    def __call__(self, k: int) -> tuple[str, SolverParams, list[Variable], dict[str, Any], dict[str, Any]]:
        """(run id, parameters, variables, dataset attributes, provenance) of run ``k``."""
        p = SolverParams(run_params(k))
        pid = f"Re{100 + k % 1000}-random_seed{k // 1000}"
        factor = 1.0 + 1e-6 * k
        own = [v._replace(values=v.values * factor) if not v.is_coord else v for v in self.variables]
        return (
            run_id_of(p),
            p,
            own,
            {**self.attrs, "params": repr(p.canonical())},
            _provenance(k, pid, self.now + k * 1e-3),
        )

    def result_of(self, k: int) -> tuple[str, RunResult, dict[str, Any]]:
        """(run id, result, provenance with its parameters) of run ``k``: what ``commit_run`` takes."""
        rid, p, _, attrs, prov = self(k)
        factor = 1.0 + 1e-6 * k
        data = {n: (d, v * factor, a) for n, (d, v, a) in self.result.data_vars.items()}
        return rid, RunResult(data, dict(self.result.coords), attrs), {**prov, "params": p}


def _bulk(st: Store, runs: _Runs, start: int, n: int) -> list[str]:
    """Add runs ``start`` .. ``start + n - 1`` through the store's own flush (no log records)."""
    index = st._index  # the store's own flush and merge, fed without log records
    index.load()
    ids = []
    for k in range(start, start + n):
        rid, p, own, attrs, prov = runs(k)
        rec = make_record(rid, "done", p.as_dict(), prov, seq=index.next_seq()).to_dict()
        assert index.table is not None  # after a flush: a new table of the rows since
        index.table.upsert(rec, series_of(own), LOG_HOME, profiles_of(own))
        index.pending[rid] = (rec, own, attrs)
        ids.append(rid)
        if len(index.pending) >= st.compact_every:
            index.compact()
    if index.pending:  # the rest: no log file to flush at close
        index.compact()
    return ids


def bulk_fill(url: str, n: int, *, start: int = 0) -> list[str]:
    """Add runs ``start`` .. ``start + n - 1`` to the store at ``url`` (created if needed);
    returns their run ids."""
    with Store.open(url, mode="a") as st:
        return _bulk(st, _Runs(), start, n)


def measured_fill(url: str, n: int, window: int) -> dict[str, Any]:
    """Fill a new store with ``n`` runs: the first and the last ``window`` through
    ``Store.commit_run`` (timed one by one: their flushes and merges included), the rest in
    bulk; returns the timings (seconds): ``start``, ``end`` (per commit), ``flush``, ``merge``
    (the index's totals over the whole fill), ``close``."""
    runs = _Runs()

    def commit(st: Store, start: int) -> list[float]:
        out = []
        for k in range(start, start + window):
            rid, result, prov = runs.result_of(k)
            t0 = time.perf_counter()
            st.commit_run(rid, result, prov)
            out.append(time.perf_counter() - t0)
        return out

    with Store.open(url, mode="a") as st:
        first = commit(st, 0)
        _bulk(st, runs, window, n - 2 * window)
        last = commit(st, n - window)
        t0 = time.perf_counter()
        st.close()
        closing = time.perf_counter() - t0
        index = st._index
    return {
        "start": first,
        "end": last,
        "flush": index.flush_seconds,
        "merge": index.merge_seconds,
        "close": closing,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", help="the store (created if needed)")
    ap.add_argument("--runs", type=int, default=100_000, help="runs to add (default 100000)")
    ap.add_argument("--start", type=int, default=0, help="number of the first run (default 0)")
    ap.add_argument(
        "--timed",
        type=int,
        default=0,
        metavar="W",
        help="a new store: the first and last W runs through Store.commit_run, timed; "
        "prints the timings as JSON (scripts/bench_store.py --scale)",
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.timed:
        print(json.dumps(measured_fill(os.fspath(args.store), args.runs, args.timed)))
        return
    bulk_fill(os.fspath(args.store), args.runs, start=args.start)
    print(f"bulk_store: {args.runs} runs in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
