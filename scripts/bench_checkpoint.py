"""Benchmark of checkpointing (issue 6): what it adds to a run's wall time, printed as figures.

    python scripts/bench_checkpoint.py                    # 32^3 grid, 300 steps, 5 repeats
    python scripts/bench_checkpoint.py --grid 48 --steps 300 --repeats 5

One run (one package) is swept through ``run_sweep`` on a one-worker LocalCluster into a
fresh zarr store, the same run three ways, interleaved ``--repeats`` times (best of them):

- ``none``: no checkpoints at all;
- ``default``: the configured default interval (``sweep.checkpoint.every-seconds``);
- ``forced``: a checkpoint every ``--every`` steps, to measure what one checkpoint costs
  (state copy and encoding on the worker, the trip through the scheduler, the driver's
  atomic save in the store).

Printed: the wall-time ratio default/none (the goal: at most 1.02), the per-checkpoint cost,
and the overhead the default interval implies for runs longer than it (cost / interval):
a run shorter than the interval takes no checkpoint, so its measured ratio is noise around 1.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_package(directory: Path, grid: int, steps: int) -> Path:
    """One package: a random field on grid^3 for ``steps`` steps of dt = 0.002."""
    from sweep.spec import SUMMARY_FILE, package_document

    directory.mkdir(parents=True)
    params = {
        "Re": 400.0,
        "dt": 0.002,
        "T_final": round(0.002 * steps, 10),
        "grid": [grid, grid, grid],
        "initial_condition": "random",
    }
    (directory / "package_0000.json").write_text(json.dumps(package_document("bench", "HIGH", params)))
    (directory / SUMMARY_FILE).write_text(json.dumps({"HIGH": ["bench"], "MEDIUM": [], "LOW": []}))
    return directory


def one_sweep(packages: Path, store: Path, client, **checkpointing) -> tuple[float, float, int]:
    """(sweep wall seconds, the run's own wall seconds, checkpoints saved in the store)."""
    import dask.config

    from sweep.engine import run_sweep
    from sweep.store import Store

    with dask.config.set(checkpointing.pop("config", {})):
        t0 = time.perf_counter()
        res = run_sweep(
            packages,
            store,
            client=client,
            progress_bar=False,
            out=io.StringIO(),
            log_dir=store.parent / f"{store.name}-logs",
            **checkpointing,
        )
        wall = time.perf_counter() - t0
    assert res.exit_code == 0, res
    with Store.open(str(store)) as st:
        (rec,) = st.records().values()
    return wall, float(rec.wall_time), int(rec.provenance.get("checkpoints_sent", 0))


def main(argv: list[str] | None = None) -> int:
    """Run the three variants interleaved and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", type=int, default=32, help="points per side (default 32)")
    ap.add_argument("--steps", type=int, default=300, help="time steps of the run (default 300)")
    ap.add_argument("--every", type=int, default=2, help="forced: steps between checkpoints (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="repeats of each variant (default 5)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))

    import dask.config
    from distributed import Client, LocalCluster

    from sweep import config

    default_every = config.get("checkpoint.every-seconds")
    variants = {
        "none": {"config": {"sweep.checkpoint.every-seconds": None, "sweep.checkpoint.every-steps": None}},
        "default": {},
        "forced": {"checkpoint_every_steps": args.every},
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        packages = write_package(Path(tmp) / "packages", args.grid, args.steps)
        one_sweep(
            packages,
            Path(tmp) / "warm.zarr",
            client,
            **dict(variants["none"], config=dict(variants["none"]["config"])),
        )  # warm-up: imports, FFT plans
        walls: dict[str, list[float]] = {k: [] for k in variants}
        runs: dict[str, list[float]] = {k: [] for k in variants}
        counts: dict[str, int] = {}
        for i in range(args.repeats):
            for name, kw in variants.items():
                kw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in kw.items()}
                wall, run, n = one_sweep(packages, Path(tmp) / f"{name}-{i}.zarr", client, **kw)
                walls[name].append(wall)
                runs[name].append(run)
                counts[name] = n

    # the fastest of the repeats: other processes on a shared machine only ever add time
    # (as timeit does); the medians are printed too
    best = {k: min(v) for k, v in walls.items()}
    run_best = {k: min(v) for k, v in runs.items()}
    medians = {k: statistics.median(v) for k, v in walls.items()}
    n_forced = max(counts["forced"], 1)
    per_ckpt = (best["forced"] - best["none"]) / n_forced  # may come out < 0 when below the noise
    print(
        f"checkpoint benchmark: 1 run of {args.grid}^3 points x {args.steps} steps on a 1-worker "
        f"LocalCluster, best of {args.repeats} interleaved repeats (median in brackets)"
    )
    print(
        f"  none     : sweep {best['none']:.3f} s ({medians['none']:.3f}), run {run_best['none']:.3f} s, "
        "0 checkpoints"
    )
    print(
        f"  default  : sweep {best['default']:.3f} s ({medians['default']:.3f}), "
        f"run {run_best['default']:.3f} s, "
        f"{counts['default']} checkpoint(s) (every {default_every} s)"
    )
    print(
        f"  forced   : sweep {best['forced']:.3f} s ({medians['forced']:.3f}), "
        f"run {run_best['forced']:.3f} s, "
        f"{counts['forced']} checkpoints (every {args.every} steps)"
    )
    print(
        f"overhead ratio, default/none (sweep wall time): {best['default'] / best['none']:.4f} (goal <= 1.02)"
    )
    print(
        f"per-checkpoint cost: {per_ckpt * 1000:.1f} ms of sweep wall time "
        f"({(run_best['forced'] - run_best['none']) / n_forced * 1000:.1f} ms inside the run)"
    )
    if default_every:
        per_ckpt = max(per_ckpt, 0.0)
        print(
            f"implied overhead at the default interval for runs longer than it: "
            f"{per_ckpt / float(default_every) * 100:.3f} % (one checkpoint per {default_every} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
