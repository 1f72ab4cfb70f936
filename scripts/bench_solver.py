#!/usr/bin/env python
"""Benchmark the solver: ms per step, the step's own 36 FFTs, a naive numpy step, peak memory.

Every configuration runs in a fresh subprocess (so peak memory is per configuration):

* ms/step: ``Stepper.step`` (one classic RK4 step, no diagnostics), best of --repeat
  rounds (wall clock; "(cpu)" is the same ratio in process CPU time, all threads summed,
  which a busy machine disturbs less); the precisions of one grid run in one process, their
  rounds interleaved, so "f64/f32" compares the same moments of the machine's load;
* 36 FFT ms: the FFT work of the step's 36 real 3-D transforms (4 stages x (6 inverse + 3
  forward)), as the step does it (``Stepper.fft_passes``): the 1-D FFTW passes alone (x
  passes of the x-padded spectra; y and z passes of each slab, real lines transformed two at
  a time as one complex line), on the same plans, arrays and threads, timed in the same
  rounds, interleaved with the steps; "step/FFT" is ms/step over it;
* +pack ms: the same transforms including the slab loads and stores that feed them (copy
  with y padding, packing real pairs into complex lines and unpacking them: the data
  movement a library's multi-dimensional r2c/c2r does inside); "step/+p" is ms/step over
  it (what the step adds: u x omega, the gather, the projection and RK update);
* 3-D FFT ms: 36 plain multi-dimensional real FFTs of the whole grid (12 rfftn + 24 irfftn,
  every mode: no dealiasing shortcut) through the backend's own API (pyFFTW builders with
  FFTW_ESTIMATE, scipy.fft with workers, numpy.fft), same threads, in a process of its own
  (FFTW's OpenMP threads spin after each call and would slow the step down): the cost of
  "the step's 36 FFTs" done the textbook way; "step/3D" is ms/step over it;
* with both precisions, one line per grid splits "f64/f32" into the FFT passes alone (the
  FFT library's own single-precision gain on the step's lines: bench_fft_lines.py times a
  given FFTW build on them) and the rest of the step;
* naive ms/step: ``solver.reference.reference_step``, a straightforward numpy RK4 step
  (whole-array temporaries, np.cross, fresh arrays each stage, numpy.fft), same process
  kind, same run; "vs naive" is its time over ours (wall, and "(cpu)" in CPU time: with
  one thread, the CPU-time ratio is what an idle machine shows);
* peak memory: a full ``simulate()`` of 2 steps; ru_maxrss of that process minus ru_maxrss
  of a process that only imported numpy (printed as "RSS - numpy-only baseline");
* kernel sets (``solver.kernels``: numba, numpy; all give the same bits): --kernels picks
  which to time ("auto": what a run would use);
* start-up (--startup): per-process cost of the numba kernels (importing numba, loading
  the cached machine code on the first step) and the construction of a Stepper at 8^3
  (first in the process, and from the per-process workspace cache).

Timings on a shared machine are noisy: compare ratios measured in one run.
Example: python scripts/bench_solver.py --sizes 64 128 --precisions float64 --kernels numba numpy
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# ------------------------------------------------------------------ workers (subprocesses)


def _peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _worker_baseline(cfg: dict) -> dict:
    import numpy  # noqa: F401  (the baseline is a process that imported numpy only)

    return {"rss": _peak_rss_bytes()}


def _plain_pyfftw(a, threads: int):
    import pyfftw.builders as b

    fwd = b.rfftn(a, threads=threads, planner_effort="FFTW_ESTIMATE")
    spec = fwd().copy()
    inv = b.irfftn(spec.copy(), s=a.shape, threads=threads, planner_effort="FFTW_ESTIMATE")
    # called without arguments: no copy into the plan's input array (refilled untimed)
    return (lambda: fwd()), (lambda: inv()), inv.input_array, spec


def _plain_scipy(a, threads: int):
    import scipy.fft as f

    spec = f.rfftn(a, workers=threads)
    return (
        (lambda: f.rfftn(a, workers=threads)),
        (lambda: f.irfftn(spec, s=a.shape, workers=threads)),
        None,
        spec,
    )


def _plain_numpy(a, threads: int):
    import numpy as np

    spec = np.fft.rfftn(a)
    return (lambda: np.fft.rfftn(a)), (lambda: np.fft.irfftn(spec, s=a.shape)), None, spec


# backend -> builder of (forward, inverse, array the inverse destroys, its input)
PLAIN_3D = {"pyfftw": _plain_pyfftw, "scipy": _plain_scipy, "numpy": _plain_numpy}


def _plain_3d_seconds(backend: str, n: int, precision: str, threads: int) -> Callable[[], float]:
    """A function timing 36 textbook 3-D real FFTs of an n^3 grid (12 forward + 24 inverse)."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n, n)).astype(precision)
    fwd, inv, destroyed, spec = PLAIN_3D[backend](a, threads)

    def run() -> float:
        total = 0.0
        for i in range(36):
            if i >= 12 and destroyed is not None:
                destroyed[...] = spec  # FFTW's c2r overwrites its input: refill, untimed
            t = time.perf_counter()
            (fwd if i < 12 else inv)()
            total += time.perf_counter() - t
        return total

    return run


def _worker_step(cfg: dict) -> dict:
    """Steps and FFT passes of every precision in ``cfg['precisions']``, one stepper each,
    timed in interleaved rounds (so the f64/f32 ratio compares the same moments of a busy
    machine's load); returns {precision: figures}."""
    import numpy as np

    from solver.initial import initial_velocity
    from solver.params import SolverParams
    from solver.stepper import Stepper

    n = cfg["size"]
    steppers = {}
    try:
        for prec in cfg["precisions"]:
            p = SolverParams(
                grid=[n, n, n],
                Re=1600.0,
                dt=1e-3,
                T_final=1.0,
                precision=prec,
                fft_backend=cfg["backend"],
                fft_threads=cfg["threads"],
            )
            st = steppers[prec] = Stepper(p, cfg["backend"], cfg["threads"], cfg["kernels"])
            st.load(initial_velocity(p, st.grid))
            st.step(0)
            for _ in range(4):
                st.fft_passes()
            st._prepare()

        def ffts(st: Stepper) -> None:
            for _ in range(4):  # the FFT passes of the step's 4 stages, on its plans and slabs
                st.fft_passes()

        def xforms(st: Stepper) -> None:
            for _ in range(4):  # the same with the slab loads/stores (padding, packing)
                st.fft_passes(packing=True)

        # many short rounds, steps and FFTs interleaved, best of each: robust to other load
        keys = ("step", "fft", "xform", "step_cpu", "fft_cpu", "xform_cpu")
        best = {prec: {k: float("inf") for k in keys} for prec in steppers}
        for r in range(cfg["repeat"]):
            for prec, st in steppers.items():
                for name, fn in (
                    ("step", lambda st=st, r=r: st.step(r + 1)),
                    ("fft", lambda st=st: ffts(st)),
                    ("xform", lambda st=st: xforms(st)),
                ):
                    t, c = time.perf_counter(), time.process_time()
                    fn()
                    b = best[prec]
                    b[name] = min(b[name], time.perf_counter() - t)
                    b[name + "_cpu"] = min(b[name + "_cpu"], time.process_time() - c)
                st._prepare()  # the FFT passes overwrote the transform inputs: restore them
        out = {}
        for prec, st in steppers.items():
            assert np.isfinite(st.u).all()
            out[prec] = {
                **best[prec],
                "threads_used": st.threads,
                "backend": st.backend.name,
                "kernels": st.kernels.name,
            }
        return out
    finally:
        for st in steppers.values():
            st.close()


def _worker_plain(cfg: dict) -> dict:
    """The textbook 36 3-D FFTs, in a process of their own: FFTW's threads are OpenMP ones,
    whose spinning workers would slow down the step's own threads if they shared one."""
    plain = _plain_3d_seconds(cfg["backend"], cfg["size"], cfg["precision"], cfg["threads"])
    plain()
    return {"plain": min(plain() for _ in range(cfg["repeat"]))}


def _worker_naive(cfg: dict) -> dict:
    import numpy as np

    from solver.grid import make_grid
    from solver.initial import initial_velocity
    from solver.operators import scatter_compact
    from solver.params import SolverParams
    from solver.reference import reference_setup, reference_step

    n = cfg["size"]
    p = SolverParams(grid=[n, n, n], Re=1600.0, dt=1e-3, T_final=1.0)
    g = make_grid(p.grid)
    u_c = initial_velocity(p, g)
    u = np.zeros((3, *g.spectral_shape), np.complex128)
    for i in range(3):
        scatter_compact(u[i], u_c[i] * g.n_points, g)
    del u_c
    ref = reference_setup(g.shape, p.nu)
    u = reference_step(u, p.dt, ref)
    best = best_cpu = float("inf")
    for _ in range(cfg["repeat"]):
        t, c = time.perf_counter(), time.process_time()
        u = reference_step(u, p.dt, ref)
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    return {"step": best, "step_cpu": best_cpu, "rss": _peak_rss_bytes()}


def _worker_memory(cfg: dict) -> dict:
    from solver import memory_estimate, simulate

    n = cfg["size"]
    params = {
        "grid": [n, n, n],
        "Re": 1600.0,
        "dt": 1e-3,
        "T_final": 2e-3,
        "precision": cfg["precision"],
        "fft_backend": cfg["backend"],
        "fft_threads": cfg["threads"],
    }
    simulate(params)
    return {"rss": _peak_rss_bytes(), "estimate": memory_estimate(params)}


def _worker_startup(cfg: dict) -> dict:
    """Fresh process: import costs, numba's first-step cost, Stepper construction at 8^3."""
    t0 = time.perf_counter()
    import numpy as np

    from solver.initial import initial_velocity
    from solver.kernels import installed_kernel_sets
    from solver.params import SolverParams
    from solver.stepper import Stepper

    out = {"import_solver": time.perf_counter() - t0}
    tiny = SolverParams(grid=[8, 8, 8], Re=100.0, dt=1e-2, T_final=1e-2)
    for name in ("first", "cached"):
        t = time.perf_counter()
        Stepper(tiny, "auto", 1).close()
        out["ctor8_" + name] = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(100):
        Stepper(tiny, "auto", 1).close()
    out["ctor8_cached"] = min(out["ctor8_cached"], (time.perf_counter() - t) / 100)
    if "numba" in installed_kernel_sets():
        t = time.perf_counter()
        import numba  # noqa: F401

        out["import_numba"] = time.perf_counter() - t
        n = cfg["size"]
        p = SolverParams(grid=[n, n, n], Re=1600.0, dt=1e-3, T_final=1.0, precision=cfg["precision"])
        st = Stepper(p, "auto", 1, "numba")
        try:
            u = initial_velocity(p, st.grid)
            t = time.perf_counter()
            st.load(u)
            st.step(0, record=True)
            first = time.perf_counter() - t
            t = time.perf_counter()
            st.load(u)
            st.step(0, record=True)
            out["numba_first_step_extra"] = first - (time.perf_counter() - t)
        finally:
            st.close()
        assert np.isfinite(st.u).all()
    return out


def _worker_versions(cfg: dict) -> dict:
    """The FFT libraries' versions and builds (FFTW's SIMD codelets cap the float32 gain)."""
    from solver.fft import BACKENDS

    return {b: BACKENDS[b].version() for b in cfg["backends"]}


WORKERS = {
    "versions": _worker_versions,
    "baseline": _worker_baseline,
    "step": _worker_step,
    "plain": _worker_plain,
    "naive": _worker_naive,
    "memory": _worker_memory,
    "startup": _worker_startup,
}


def _run(kind: str, env: dict | None = None, **cfg) -> dict:
    """Run one measurement in a fresh Python process (``env``: extra variables); return its JSON."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps({"kind": kind, **cfg})],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} {cfg} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ driver


def installed_backends() -> list[str]:
    """Same answer as solver.fft.installed_backends, without importing the solver."""
    import importlib.util

    return [b for b in ("pyfftw", "scipy", "numpy") if importlib.util.find_spec(b) is not None]


def concrete_kernels(name: str) -> str:
    """What solver.kernels resolves ``name`` to on a large grid, without importing the solver."""
    import importlib.util

    if name != "auto":
        return name
    return "numba" if importlib.util.find_spec("numba") is not None else "numpy"


def default_threads() -> int:
    """Same answer as solver.params.default_threads, without importing the solver (this driver's
    peak memory would be inherited by the child processes it measures)."""
    given = os.environ.get("NS_SOLVER_THREADS", "").strip()
    if given:
        try:
            return max(1, int(given))
        except ValueError:
            pass  # a malformed value: the cores, as the solver does
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _precision_split(n: int, f64: dict, f32: dict) -> str:
    """Where the float32 gain comes from: the FFT passes alone and the rest of the step."""
    rest64, rest32 = f64["step"] - f64["fft"], f32["step"] - f32["fft"]
    return (
        f"{'':8s} f64/f32 at {n}^3: FFT passes alone {f64['fft'] / f32['fft']:.2f} "
        f"(cpu {f64['fft_cpu'] / f32['fft_cpu']:.2f}), the rest of the step {rest64 / rest32:.2f} "
        f"({rest64 * 1e3:.1f} / {rest32 * 1e3:.1f} ms)"
    )


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--worker":
        # a measurement subprocess: import nothing else before the measured code
        cfg = json.loads(sys.argv[2])
        print(json.dumps(WORKERS[cfg.pop("kind")](cfg)))
        return 0
    # The driver imports no solver code: Linux carries a process's peak RSS over into the
    # children it forks, so a heavy driver would inflate every measured peak.
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[1:]),
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128], help="cubic grid sizes")
    ap.add_argument("--precisions", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    ap.add_argument(
        "--backends",
        nargs="+",
        default=None,
        help=f"FFT backends (default: all installed: {' '.join(installed_backends())})",
    )
    ap.add_argument(
        "--kernels",
        nargs="+",
        default=["auto"],
        help="kernel sets to time: auto, numba, numpy (default: auto)",
    )
    ap.add_argument(
        "--startup",
        action="store_true",
        help="also measure the per-process start-up costs (numba, Stepper at 8^3)",
    )
    ap.add_argument(
        "--threads", type=int, default=default_threads(), help="threads for one run (default: %(default)s)"
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=7,
        help="timing rounds of one step and one set of 36 FFTs each; the best is kept",
    )
    ap.add_argument(
        "--naive-sizes",
        type=int,
        nargs="*",
        default=[64, 128],
        help="sizes at which to time the straightforward numpy step",
    )
    ap.add_argument(
        "--memory-size", type=int, default=128, help="grid size of the peak-memory runs (0: skip)"
    )
    ap.add_argument("--json", metavar="FILE", help="also write all figures as JSON to FILE")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    backends = args.backends or installed_backends()
    print(
        f"# solver benchmark: {os.cpu_count()} cores, threads per run = {args.threads}, "
        f"backends {', '.join(backends)}; best of {args.repeat} rounds; "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    versions = _run("versions", backends=backends)
    print("# FFT libraries: " + "; ".join(f"{b} {v}" for b, v in versions.items()))
    results: dict = {
        "threads": args.threads,
        "fft_libraries": versions,
        "step": [],
        "naive": [],
        "memory": [],
        "startup": None,
    }

    naive: dict[int, float] = {}
    naive_cpu: dict[int, float] = {}
    for n in args.naive_sizes:
        r = _run("naive", size=n, repeat=max(2, args.repeat // 2))
        naive[n], naive_cpu[n] = r["step"], r["step_cpu"]
        results["naive"].append(
            {
                "size": n,
                "ms_per_step": r["step"] * 1e3,
                "cpu_ms_per_step": r["step_cpu"] * 1e3,
                "rss": r["rss"],
            }
        )
        print(
            f"naive numpy   {n:4d}^3 float64: {r['step'] * 1e3:9.1f} ms/step "
            f"({r['step_cpu'] * 1e3:.1f} ms CPU)"
            + (f"   peak RSS {r['rss'] / 2**20:.0f} MiB (whole process)" if n == args.memory_size else "")
        )

    print(
        f"\n{'backend':8s} {'kernels':7s} {'grid':>6s} {'precision':9s} {'ms/step':>9s} {'36 FFT ms':>10s} "
        f"{'step/FFT':>8s} {'(cpu)':>6s} {'+pack ms':>9s} {'step/+p':>7s} "
        f"{'3-D FFT ms':>10s} {'step/3D':>7s} "
        f"{'vs naive':>9s} {'(cpu)':>6s} {'f64/f32':>8s} {'(cpu)':>6s}"
    )
    for b, kern in itertools.product(backends, args.kernels):
        for n in args.sizes:
            per_prec: dict[str, float] = {}
            per_prec_cpu: dict[str, float] = {}
            steps = _run(
                "step",
                size=n,
                precisions=args.precisions,
                backend=b,
                threads=args.threads,
                repeat=args.repeat,
                kernels=kern,
            )
            for prec in args.precisions:
                r = steps[prec]
                r["plain"] = _run(
                    "plain", size=n, precision=prec, backend=b, threads=args.threads, repeat=args.repeat
                )["plain"]
                per_prec[prec], per_prec_cpu[prec] = r["step"], r["step_cpu"]
                speedup = naive.get(n, float("nan")) / r["step"] if prec == "float64" else float("nan")
                speedup_cpu = (
                    naive_cpu.get(n, float("nan")) / r["step_cpu"] if prec == "float64" else float("nan")
                )
                both = prec == "float32" and "float64" in per_prec
                f64_f32 = per_prec["float64"] / r["step"] if both else float("nan")
                f64_f32_cpu = per_prec_cpu["float64"] / r["step_cpu"] if both else float("nan")
                results["step"].append(
                    {
                        "backend": b,
                        "kernels": r["kernels"],
                        "size": n,
                        "precision": prec,
                        "ms_per_step": r["step"] * 1e3,
                        "fft_ms": r["fft"] * 1e3,
                        "cpu_ms_per_step": r["step_cpu"] * 1e3,
                        "cpu_fft_ms": r["fft_cpu"] * 1e3,
                        "fft_with_packing_ms": r["xform"] * 1e3,
                        "plain_3d_fft_ms": r["plain"] * 1e3,
                        "threads_used": r["threads_used"],
                        "speedup_vs_naive": speedup,
                        "speedup_vs_naive_cpu": speedup_cpu,
                        "float64_over_float32": f64_f32,
                        "float64_over_float32_cpu": f64_f32_cpu,
                    }
                )
                print(
                    f"{b:8s} {r['kernels']:7s} {n:4d}^3 {prec:9s} {r['step'] * 1e3:9.1f} "
                    f"{r['fft'] * 1e3:10.1f} "
                    f"{r['step'] / r['fft']:8.2f} {r['step_cpu'] / r['fft_cpu']:6.2f} "
                    f"{r['xform'] * 1e3:9.1f} {r['step'] / r['xform']:7.2f} "
                    f"{r['plain'] * 1e3:10.1f} {r['step'] / r['plain']:7.2f} "
                    f"{speedup:9.1f} {speedup_cpu:6.1f} {f64_f32:8.2f} {f64_f32_cpu:6.2f}"
                    + ("" if r["threads_used"] == args.threads else f"   ({r['threads_used']} thread)")
                )
            if {"float64", "float32"} <= set(per_prec):
                print(_precision_split(n, steps["float64"], steps["float32"]))

    if args.memory_size:
        base = _run("baseline")["rss"]
        n = args.memory_size
        print(
            f"\npeak memory of simulate() at {n}^3, 2 steps: process RSS minus the RSS of a "
            f"process that only imported numpy ({base / 2**20:.0f} MiB); 'own': minus the RSS of "
            f"the same simulate() at 8^3 instead (libraries excluded: the run's arrays)"
        )
        for b, kern in itertools.product(backends, args.kernels):
            env = {"SOLVER_KERNELS": kern}  # the kernel set simulate() uses
            # the library baseline loads the same kernel set ('auto' takes numpy at 8^3)
            lib_env = {"SOLVER_KERNELS": concrete_kernels(kern)}
            lib = _run("memory", lib_env, size=8, precision="float64", backend=b, threads=args.threads)["rss"]
            for prec in args.precisions:
                r = _run("memory", env, size=n, precision=prec, backend=b, threads=args.threads)
                results["memory"].append(
                    {
                        "backend": b,
                        "kernels": kern,
                        "size": n,
                        "precision": prec,
                        "rss_minus_numpy_baseline": r["rss"] - base,
                        "rss_minus_library_baseline": r["rss"] - lib,
                        "memory_estimate": r["estimate"],
                    }
                )
                print(
                    f"{b:8s} {kern:7s} {prec:9s} {(r['rss'] - base) / 2**20:7.0f} MiB   "
                    f"(own {(r['rss'] - lib) / 2**20:4.0f} MiB; "
                    f"memory_estimate: {r['estimate'] / 2**20:.0f} MiB incl. process baseline)"
                )
        if n in naive:
            r = next(x for x in results["naive"] if x["size"] == n)
            print(
                f"naive    -       float64   {(r['rss'] - base) / 2**20:7.0f} MiB   "
                f"(the reference step at {n}^3)"
            )

    if args.startup:
        r = _run("startup", size=64, precision="float64")
        results["startup"] = r
        print("\nper-process start-up (fresh process):")
        print(f"  import solver                          {r['import_solver'] * 1e3:7.0f} ms")
        print(f"  Stepper at 8^3, first in the process   {r['ctor8_first'] * 1e3:7.2f} ms")
        print(f"  Stepper at 8^3, from workspace cache   {r['ctor8_cached'] * 1e3:7.2f} ms")
        if "import_numba" in r:
            print(f"  import numba                           {r['import_numba'] * 1e3:7.0f} ms")
            print(
                f"  numba first step, extra (cached code)  {r['numba_first_step_extra'] * 1e3:7.0f} ms"
                "   (64^3; a process pays it once; tiny grids use numpy: never)"
            )

    print(f"# load average {os.getloadavg()[0]:.1f} at the end")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
