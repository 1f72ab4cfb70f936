"""Run examples/adapt/tg-dt-limit.toml into a temporary store and draw docs/adapt_stability.png
(the README's figure): the runs the learner chose, against a uniform grid of as many runs.

    python scripts/plot_adapt_example.py
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sweep.adapt import adapt

    tmp = Path(tempfile.mkdtemp(prefix="adapt_example_"))
    try:
        spec = tmp / "tg-dt-limit.toml"
        shutil.copyfile(ROOT / "examples" / "adapt" / "tg-dt-limit.toml", spec)
        res = adapt(
            spec, tmp / "store.zarr", mode="parallel", max_parallel=2, out=io.StringIO(), log_dir=tmp / "logs"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    pts = sorted((10 ** p.x[0], p.value, p.round) for p in res.points if p.value is not None)
    n = len(pts)
    stable = max(dt for dt, v, _ in pts if v == 0)
    unstable = min(dt for dt, v, _ in pts if v == 1)
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", color="#1f77b4", lw=1, alpha=0.6)
    sc = ax.scatter(
        [p[0] for p in pts],
        [p[1] for p in pts],
        c=[p[2] for p in pts],
        cmap="viridis",
        zorder=3,
        label=f"{n} runs chosen by Learner1D (colour: round)",
    )
    uniform = [0.1 * (3.0 / 0.1) ** (i / (n - 1)) for i in range(n)]
    ax.vlines(uniform, -0.15, -0.05, color="#888888", label=f"a uniform (log) grid of {n} runs")
    ax.axvspan(
        stable,
        unstable,
        color="#d62728",
        alpha=0.3,
        label=f"the limit: dt in [{stable:.4g}, {unstable:.4g}] ({(unstable - stable) / stable:.2%})",
    )
    ax.set_xscale("log")
    ax.set_xlabel("dt")
    ax.set_ylabel("diverged")
    ax.set_ylim(-0.2, 1.15)
    ax.set_title("Taylor-Green, Re = 1600, 16^3, RK4: the largest stable time step")
    ax.legend(loc="center left", fontsize=8)
    fig.colorbar(sc, ax=ax, label="round", pad=0.01)
    fig.tight_layout()
    out = ROOT / "docs" / "adapt_stability.png"
    fig.savefig(out)
    print(f"wrote {out}: {n} runs, limit in [{stable:.5g}, {unstable:.5g}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
