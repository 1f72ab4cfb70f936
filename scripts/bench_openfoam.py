"""Benchmark of the openfoam solver through the sweep engine (issue 15), printed as figures.

    python scripts/bench_openfoam.py                        # 24 cavity cases, 16 x 16 cells, 100 steps
    python scripts/bench_openfoam.py --cases 8 --repeat 1   # quicker

The same N tiny cavity cases (Re = 100, 101, ...; --n-cells, --steps of dt = 0.005 s) two ways,
on 2 parallel slots each, interleaved --repeat times (the best of each is reported):

1. a plain shell loop: case directories prepared beforehand (the template's files with their
   fields filled in, nu set with foamDictionary: not timed), then ``blockMesh && icoFoam`` per
   case, 2 at a time (``xargs -P 2``) - what a user would script without ns-sweep;
2. the engine: ``run_sweep`` of N package files on a LocalCluster of 2 worker processes (started
   and warmed once, outside the timing): the packages are read and checked, each run is a Dask
   task that copies the case into a scratch directory, fills it in, sets nu (one foamDictionary
   call), runs blockMesh and icoFoam in their own process group, parses the log and the outputs,
   and its result is committed to a zarr store.

It prints the cost per case of each, and the engine's overhead per run: (engine - shell) x
slots / cases, the extra wall time one run costs its slot.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEP = 0.005  # s: Courant max ~0.5 on 16 x 16 cells at Re = 100


def write_packages(directory: Path, n: int, n_cells: int, steps: int) -> Path:
    """N package files of the bundled cavity differing in Re (so N distinct runs)."""
    from sweep.spec import SUMMARY_FILE, package_document

    directory.mkdir(parents=True)
    ids = []
    for i in range(n):
        pid = f"c{i:04d}"
        ids.append(pid)
        params = {"Re": 100.0 + i, "n_cells": n_cells, "T_final": round(steps * STEP, 10), "dt": STEP}
        doc = package_document(pid, "MEDIUM", params, solver="openfoam", case="cavity")
        (directory / f"package_{i:04d}.json").write_text(json.dumps(doc))
    (directory / SUMMARY_FILE).write_text(json.dumps({"HIGH": [], "MEDIUM": ids, "LOW": []}))
    return directory


def prepare_cases(root: Path, packages: list) -> list[Path]:
    """The case directories of the shell loop: what the engine does before blockMesh, untimed."""
    from sweep.solvers.expressions import format_value, render_fields
    from sweep.solvers.openfoam import openfoam_env

    env = openfoam_env()
    dirs = []
    for p in packages:
        case, values = p.solver_object, p.params.as_dict()
        scope = {**case.constants, **values}
        rendered = {
            rel: render_fields(case.tree.files[rel].decode(), fields, scope).encode()
            for rel, fields in case.templated.items()
        }
        target = root / p.package_id
        case.tree.write(target, rendered)
        for entry in case.entries:
            value = format_value(entry.value.evaluate(scope))
            argv = ["foamDictionary", "-entry", entry.entry, "-set", value, entry.file]
            subprocess.run(argv, cwd=target, env={**env, "PWD": str(target)}, check=True, capture_output=True)
        dirs.append(target)
    return dirs


def shell_loop(dirs: list[Path], slots: int) -> float:
    """Seconds for ``blockMesh && icoFoam`` in every directory, ``slots`` at a time."""
    from sweep.solvers.openfoam import openfoam_env

    for d in dirs:  # each timed pass starts from a clean case: no mesh, logs or results
        for stale in d.iterdir():
            if stale.name in ("postProcessing", "polyMesh") or _is_time(stale.name):
                shutil.rmtree(stale)
            elif stale.name.startswith("log."):
                stale.unlink()
        shutil.rmtree(d / "constant" / "polyMesh", ignore_errors=True)
    script = 'cd "$1" && blockMesh > log.blockMesh 2>&1 && icoFoam > log.icoFoam 2>&1'
    t0 = time.perf_counter()
    subprocess.run(
        ["xargs", "-P", str(slots), "-I{}", "sh", "-c", script, "sh", "{}"],
        input="\n".join(map(str, dirs)),
        text=True,
        env=openfoam_env(),
        check=True,
    )
    return time.perf_counter() - t0


def _is_time(name: str) -> bool:
    try:
        return float(name) > 0
    except ValueError:
        return False


def engine(client, packages: Path, store: Path) -> float:
    """Seconds of ``run_sweep`` over the packages into a new store (cluster up and warm)."""
    from sweep.engine import run_sweep

    t0 = time.perf_counter()
    res = run_sweep(
        packages, store, client=client, progress_bar=False, out=io.StringIO(), log_dir=store.parent
    )
    wall = time.perf_counter() - t0
    assert res.exit_code == 0 and res.counts["done"] == len(res.status), res.counts
    return wall


def main(argv: list[str] | None = None) -> int:
    """Run both ways, interleaved, and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=24, help="cavity cases (default 24)")
    ap.add_argument("--n-cells", type=int, default=16, help="cells per side (default 16)")
    ap.add_argument("--steps", type=int, default=100, help="time steps of dt = 0.005 s (default 100)")
    ap.add_argument("--slots", type=int, default=2, help="parallel runs: xargs -P and worker processes")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved passes of each (default 3)")
    ap.add_argument("--dir", default=None, help="working directory (default: the system temp dir)")
    args = ap.parse_args(argv)
    if shutil.which("icoFoam") is None:
        print("OpenFOAM is not installed (no icoFoam on PATH): apt-get install openfoam", file=sys.stderr)
        return 2

    from sweep.engine import SweepOptions, run_sweep
    from sweep.engine.cluster import connect
    from sweep.spec import load_packages

    tmp = Path(tempfile.mkdtemp(prefix="bench_openfoam_", dir=args.dir))
    try:
        packages = write_packages(tmp / "packages", args.cases, args.n_cells, args.steps)
        dirs = prepare_cases(tmp / "shell", load_packages(packages, check_memory=False))
        t0 = time.perf_counter()
        handle = connect(SweepOptions(mode="parallel", max_parallel=args.slots))
        print(f"cluster: {handle.description}; started in {time.perf_counter() - t0:.2f} s (once per sweep)")
        try:
            warm = write_packages(tmp / "warm", 2 * args.slots, args.n_cells, 2)
            run_sweep(warm, tmp / "warm.zarr", client=handle.client, progress_bar=False, out=io.StringIO())
            shell_s, engine_s = [], []
            for i in range(args.repeat):
                shell_s.append(shell_loop(dirs, args.slots))
                engine_s.append(engine(handle.client, packages, tmp / f"pass{i}" / "store.zarr"))
        finally:
            handle.close()
        shell, eng = min(shell_s), min(engine_s)
        n = args.cases
        size = f"{args.n_cells} x {args.n_cells} cells, {args.steps} steps"
        print(
            f"\n{n} cavity cases ({size}), {args.slots} at a time, best of {args.repeat} interleaved passes:"
        )
        print(f"  shell loop (blockMesh && icoFoam)  {shell:7.2f} s   {shell / n * 1e3:8.1f} ms per case")
        print(f"  engine (sweep run, store commits)  {eng:7.2f} s   {eng / n * 1e3:8.1f} ms per package")
        print(f"  engine / shell loop                {eng / shell:7.3f}")
        print(
            f"  engine overhead per run            {(eng - shell) * args.slots / n * 1e3:8.1f} ms   "
            "(extra wall time of one run in its slot)"
        )
        passes = lambda times: ", ".join(f"{t:.2f}" for t in times)  # noqa: E731
        print(f"  every pass: shell loop {passes(shell_s)} s; engine {passes(engine_s)} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
