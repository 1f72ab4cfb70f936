#!/usr/bin/env python
"""Time one FFTW build's 1-D complex transforms on the solver's line shapes, float64 and float32.

The solver's FFTs are batches of short lines (n = the grid size): contiguous along z, strided
(neighbouring lines adjacent in memory) along x and y. This prints ns per line for each shape
and precision, and their ratio: the single-precision gain of the FFT library itself, which
bounds what a float32 step can gain over a float64 one (``bench_solver.py`` splits the step's
gain into its FFTs and the rest). Use it to judge another FFTW build before rebuilding pyFFTW.

Plans are made with FFTW_ESTIMATE (what the solver uses), forward, in place, through ctypes
on the shared libraries themselves. By default the FFTW that pyFFTW loads: the copies bundled
in its wheel (pyfftw.libs/), else the system's libfftw3 / libfftw3f.
Example: python scripts/bench_fft_lines.py --sizes 64 128
         python scripts/bench_fft_lines.py --lib64 /opt/fftw/lib/libfftw3.so.3 \\
             --lib32 /opt/fftw/lib/libfftw3f.so.3
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import glob
import importlib.util
import os
import sys
import time

import numpy as np

FFTW_ESTIMATE, FFTW_DESTROY_INPUT, FFTW_FORWARD = 1 << 6, 1, -1
# (name, lines): contiguous lines as the z passes; strided as the y passes of one kz block
SHAPES = (("contiguous", 256), ("strided", 22), ("strided", 44))


def default_libraries() -> tuple[str, str]:
    """(float64, float32) FFTW shared libraries that pyFFTW uses here."""
    spec = importlib.util.find_spec("pyfftw")
    if spec is not None and spec.origin:
        libs = os.path.join(os.path.dirname(os.path.dirname(spec.origin)), "pyfftw.libs")
        f64 = sorted(glob.glob(os.path.join(libs, "libfftw3-*.so*")))
        f32 = sorted(glob.glob(os.path.join(libs, "libfftw3f-*.so*")))
        if f64 and f32:
            return f64[0], f32[0]
    f64, f32 = ctypes.util.find_library("fftw3"), ctypes.util.find_library("fftw3f")
    if not (f64 and f32):
        sys.exit("bench_fft_lines: no FFTW found (install pyFFTW, or give --lib64 and --lib32)")
    return f64, f32


class Fftw:
    """The few FFTW functions the benchmark calls, bound once per library and precision."""

    def __init__(self, path: str, prefix: str) -> None:
        lib = ctypes.CDLL(path)
        self.plan_many = getattr(lib, prefix + "plan_many_dft")
        self.plan_many.restype = ctypes.c_void_p
        self.plan_many.argtypes = [
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_uint,
        ]
        self.execute, self.destroy = getattr(lib, prefix + "execute"), getattr(lib, prefix + "destroy_plan")
        self.execute.argtypes = self.destroy.argtypes = [ctypes.c_void_p]
        self.path = path


def ns_per_line(fftw: Fftw, cdt: type, n: int, lines: int, strided: bool, rounds: int) -> float:
    """Best time of one plan's execution over ``rounds``, per line, in ns."""
    buf = np.zeros(n * lines + 64, cdt)
    off = (-buf.ctypes.data % 32) // buf.itemsize  # 32-byte aligned, as pyfftw.empty_aligned
    a = buf[off : off + n * lines]
    a[:] = np.random.default_rng(0).random(a.size)
    stride, dist = (lines, 1) if strided else (1, n)
    p = fftw.plan_many(
        1,
        (ctypes.c_int * 1)(n),
        lines,
        a.ctypes.data,
        None,
        stride,
        dist,
        a.ctypes.data,
        None,
        stride,
        dist,
        FFTW_FORWARD,
        FFTW_ESTIMATE | FFTW_DESTROY_INPUT,
    )
    if not p:
        raise RuntimeError(f"{fftw.path}: FFTW made no plan for {lines} lines of {n}")
    try:
        best = float("inf")
        for _ in range(rounds):
            t0 = time.perf_counter()
            fftw.execute(p)
            best = min(best, time.perf_counter() - t0)
    finally:
        fftw.destroy(p)
    return best / lines * 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[1:]),
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128], help="line lengths (grid sizes)")
    ap.add_argument("--lib64", help="float64 FFTW library (libfftw3); default: the one pyFFTW uses")
    ap.add_argument("--lib32", help="float32 FFTW library (libfftw3f); default: the one pyFFTW uses")
    ap.add_argument("--rounds", type=int, default=300, help="executions per shape; the best is kept")
    args = ap.parse_args(argv)
    if args.rounds < 1 or min(args.sizes) < 2:
        ap.error("--rounds must be >= 1 and --sizes >= 2")
    lib64, lib32 = (args.lib64, args.lib32) if args.lib64 and args.lib32 else default_libraries()
    f64, f32 = Fftw(lib64, "fftw_"), Fftw(lib32, "fftwf_")
    print(
        f"# FFTW float64: {lib64}\n# FFTW float32: {lib32}\n# one thread, FFTW_ESTIMATE, forward, in place; "
        f"best of {args.rounds}; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'n':>5s} {'lines':>18s} {'f64 ns/line':>12s} {'f32 ns/line':>12s} {'f64/f32':>8s}")
    for n in args.sizes:
        for shape, lines in SHAPES:
            t64 = ns_per_line(f64, np.complex128, n, lines, shape == "strided", args.rounds)
            t32 = ns_per_line(f32, np.complex64, n, lines, shape == "strided", args.rounds)
            print(f"{n:5d} {f'{lines} {shape}':>18s} {t64:12.0f} {t32:12.0f} {t64 / t32:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
