"""Benchmark of adaptive sweeps (issue 19), printed as figures.

    python scripts/bench_adapt.py                 # the Taylor-Green stability limit, 30 adaptive runs
    python scripts/bench_adapt.py --runs 12 --uniform-max 200    # quicker

1. Runs needed for an accuracy: Taylor-Green at Re = 1600 on 16^3, RK4, 40 steps, objective
   ``diverged`` over dt in [0.1, 3.0] (log scale): the number of runs after which the bracket
   [largest stable dt, smallest diverged dt] is narrower than 1% and 0.1% of the limit, for
   ``sweep adapt`` (Learner1D, 2 points a round, in the order the runs were asked) and for a
   uniform dt grid (grids of growing size, each run by the solver itself).
2. Engine overhead per point: the wall time per adaptive point (ask, package file, run_sweep
   round, store read, tell) against a plain ``run_sweep`` of the same packages as one grid,
   on the same 2-worker LocalCluster, beside the solver time per run.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "adapt" / "tg-dt-limit.toml"  # the README's
LO, HI = 0.1, 3.0


def diverges(dt: float) -> bool:
    """The solver's own verdict on one dt (the spec's run, computed in this process)."""
    from solver import SolverParams
    from solver.errors import DivergedError
    from solver.simulate import run_simulation

    p = SolverParams(
        {
            "Re": 1600.0,
            "dt": dt,
            "T_final": 40 * dt,
            "grid": (16, 16, 16),
            "initial_condition": "taylor_green",
            "cfl_limit": 1e6,
            "output_interval": 40 * dt,
        }
    )
    try:
        run_simulation(p)
    except DivergedError:
        return True
    return False


def bracket(points: list[tuple[float, bool]]) -> float | None:
    """Relative width of [largest stable dt below the smallest diverged one, that one]."""
    unstable = [dt for dt, d in points if d]
    if not unstable:
        return None
    first = min(unstable)
    stable = [dt for dt, d in points if not d and dt < first]
    return (first - max(stable)) / first if stable else None


def runs_for(order: list[tuple[float, bool]], tol: float) -> int | None:
    """The number of runs (in the order asked) after which the bracket is narrower than tol."""
    for k in range(2, len(order) + 1):
        width = bracket(order[:k])
        if width is not None and width <= tol:
            return k
    return None


def uniform_runs_for(tol: float, limit: int) -> int | None:
    """The smallest uniform dt grid (measured, doubling then refining) whose bracket < tol."""
    cache: dict[float, bool] = {}

    def width(n: int) -> float | None:
        grid = [LO + (HI - LO) * i / (n - 1) for i in range(n)]
        for dt in grid:
            if dt not in cache:
                cache[dt] = diverges(dt)
        return bracket([(dt, cache[dt]) for dt in grid])

    n = 4
    while n <= limit:
        w = width(n)
        if w is not None and w <= tol:
            lo = n // 2
            while lo + 1 < n:  # the smallest n in (n/2, n] that is narrow enough
                mid = (lo + n) // 2
                wm = width(mid)
                lo, n = (lo, mid) if wm is not None and wm <= tol else (mid, n)
            return n
        n *= 2
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30, help="adaptive runs (default 30)")
    ap.add_argument("--uniform-max", type=int, default=4096, help="largest uniform grid tried (default 4096)")
    args = ap.parse_args(argv)

    from sweep.adapt import adapt
    from sweep.engine import SweepOptions, run_sweep
    from sweep.engine.cluster import connect
    from sweep.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="bench_adapt_"))
    handle = connect(SweepOptions(mode="parallel", max_parallel=2))
    try:
        (tmp / "tg.toml").write_text(EXAMPLE.read_text().replace("runs = 15", f"runs = {args.runs}"))
        t0 = time.perf_counter()
        res = adapt(
            tmp / "tg.toml", tmp / "adapt.zarr", client=handle.client, out=io.StringIO(), log_dir=tmp / "logs"
        )
        adapt_wall = time.perf_counter() - t0
        order = [(10 ** p.x[0], p.value == 1.0) for p in sorted(res.points, key=lambda p: p.round)]
        print(
            f"1. runs to bracket the stability limit of dt (Taylor-Green Re 1600, 16^3, RK4, 40 steps), "
            f"{args.runs} adaptive runs:"
        )
        for tol in (0.01, 0.001):
            a = runs_for(order, tol)
            u = uniform_runs_for(tol, args.uniform_max)
            ratio = f"{u / a:.1f}x fewer" if a and u else "n/a"
            print(
                f"  to {tol:.1%}: adaptive {a if a else f'> {args.runs}'} runs, uniform grid "
                f"{u if u else f'> {args.uniform_max}'} runs ({ratio})"
            )

        # 2. the same packages as one plain sweep
        with Store.open(tmp / "adapt.zarr") as st:
            solver_s = sum(r.wall_time or 0 for r in st.records().values())
        plain = tmp / "plain"
        shutil.copytree(tmp / "tg-dt-limit", plain)
        t0 = time.perf_counter()
        run_sweep(
            plain,
            tmp / "plain.zarr",
            client=handle.client,
            out=io.StringIO(),
            progress_bar=False,
            log_dir=tmp / "logs-plain",
        )
        plain_wall = time.perf_counter() - t0
        n = len(res.points)
        print(f"2. engine cost per point ({n} points, 2 workers):")
        print(f"  adaptive (ask, package, round of run_sweep, tell) {adapt_wall / n * 1e3:8.1f} ms")
        print(f"  plain run_sweep of the same packages              {plain_wall / n * 1e3:8.1f} ms")
        print(f"  solver time per run (inside the workers)          {solver_s / n * 1e3:8.1f} ms")
        overhead = (adapt_wall - plain_wall) / n * 1e3
        label = "  adaptive overhead per point                      "
        print(f"{label} {overhead:8.1f} ms ({len(res.rounds)} rounds)")
    finally:
        handle.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
