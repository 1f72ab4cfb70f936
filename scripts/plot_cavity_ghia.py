"""The lid-driven cavity at Re = 100, 400 and 1000 through the sweep engine, against Ghia et al.
(1982): runs the sweep, reads it back with ``sweep.open_results`` and plots ``u_centerline`` on
``y`` with Table I's points (the README's figure, docs/cavity_ghia.png).

    python scripts/plot_cavity_ghia.py                       # 64 x 64 cells, dt 1 ms, to t = 15 s
    python scripts/plot_cavity_ghia.py --store cavity.zarr   # keep the store (resumes if it exists)

Each run is icoFoam on the bundled ``cavity`` case (L = 0.1 m, lid speed 1 m/s, nu = U L / Re)
to a steady state: 150 lid passages at the default end time. It prints the largest deviation
from Ghia's column for each Re. Takes about a minute per Re on one core.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REYNOLDS = (100, 400, 1000)


def run(store: Path, packages: Path, n_cells: int, dt: float, t_final: float) -> None:
    """Write the three packages (as `sweep new --solver openfoam --case cavity` does) and run them."""
    from sweep.engine import run_sweep
    from sweep.spec import expand_grids, write_packages

    grid = {
        "solver": "openfoam",
        "case": "cavity",
        "priority": "HIGH",
        "parameters": {"Re": [float(r) for r in REYNOLDS], "n_cells": n_cells, "dt": dt, "T_final": t_final},
    }
    write_packages(str(packages), expand_grids([grid]), force=True)
    result = run_sweep(packages, store, mode="parallel")
    if result.exit_code != 0:
        raise SystemExit(f"the sweep failed: {dict(result.counts)}")


def plot(store: Path, out: Path) -> None:
    """u_centerline from open_results against Ghia's points, one colour per Re."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import sweep
    from sweep.solvers.openfoam import GHIA_Y, ghia_u

    ds = sweep.open_results(store, status="done")
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=110)
    for re, colour in zip(REYNOLDS, ("tab:blue", "tab:orange", "tab:green"), strict=True):
        row = ds.isel(run=int(np.flatnonzero(ds.Re.values == re)[0]))
        ax.plot(row.u_centerline.values, ds.y.values, color=colour, lw=1.6, label=f"icoFoam, Re = {re}")
        ax.plot(ghia_u(re), GHIA_Y, "o", mfc="none", color=colour, ms=5, label=f"Ghia et al., Re = {re}")
        at = np.searchsorted(ds.y.values, GHIA_Y - 1e-9)
        deviation = np.abs(row.u_centerline.values[at] - ghia_u(re)).max()
        print(
            f"Re = {re:5d}: {int(row.n_cells)} x {int(row.n_cells)} cells, dt {float(row.dt):g} s, "
            f"t = {float(row.T_final):g} s: max |u - u_Ghia| = {deviation:.4f} over the 17 points"
        )
    ax.set_xlabel("u / U on the vertical centreline x = L/2")
    ax.set_ylabel("y / L")
    ax.set_title(
        f"Lid-driven cavity: sweep.open_results vs Ghia et al. (1982)\n{int(row.n_cells)}² cells", fontsize=10
    )
    ax.axvline(0, color="0.8", lw=0.8, zorder=0)
    ax.legend(fontsize=7.5, loc="lower right", ncols=1)
    ax.set_xlim(-0.5, 1.05)
    ax.set_ylim(0, 1)
    fig.text(
        0.01,
        0.005,
        "Points: Ghia, Ghia & Shin (1982), J. Comput. Phys. 48, 387-411, Table I",
        fontsize=6.5,
        color="0.4",
    )
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


def main(argv: list[str] | None = None) -> int:
    """Run the sweep (unless the store holds it) and draw the figure."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-cells", type=int, default=64)
    ap.add_argument("--dt", type=float, default=0.001, help="s (Courant max ~0.65 on 64^2)")
    ap.add_argument("--T-final", dest="t_final", type=float, default=15.0, help="s (default 15: 150 L/U)")
    ap.add_argument("--store", type=Path, default=None, help="result store (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "cavity_ghia.png")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cavity_ghia_") as tmp:
        store = args.store or Path(tmp) / "cavity.zarr"
        run(store, Path(tmp) / "packages", args.n_cells, args.dt, args.t_final)
        plot(store, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
