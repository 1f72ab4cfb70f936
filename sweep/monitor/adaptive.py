"""The learner's view of an adaptive sweep in the report: the sampled points and the learner's
interpolant (1-D: a line with its points; 2-D: the triangulation as an image), next to a
uniform grid of the same number of runs for comparison.

The specs of the adaptive sweeps of a package directory are the ``adapt-<name>.toml`` (or
.yaml) copies ``sweep adapt`` keeps there; each learner is rebuilt by replaying the store.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["adaptive_specs", "learner_views"]


def adaptive_specs(packages_dir: str | None) -> list[Path]:
    """The adaptive-sweep specs kept in a package directory."""
    if packages_dir is None or not Path(packages_dir).is_dir():
        return []
    return sorted(p for p in Path(packages_dir).glob("adapt-*") if p.suffix in (".toml", ".yaml", ".yml"))


def learner_views(packages_dir: str | None, store: str) -> dict[str, Any]:
    """One view per adaptive sweep of the directory, keyed ``learner-<name>``."""
    from ..adapt import load_spec, replay

    views = {}
    for path in adaptive_specs(packages_dir):
        spec = load_spec(path, packages_dir=path.parent)
        learner, points = replay(spec, store)
        told = [p for p in points if p.value is not None]
        if len(told) < 2:
            continue
        view = _view_1d(spec, learner, told) if len(spec.axes) == 1 else _view_2d(spec, learner, told)
        if view is not None:
            views[f"learner-{spec.name}"] = view
    return views


def _uniform_spacing(lo: float, hi: float, n: int) -> float:
    return (hi - lo) / max(1, n - 1)


def _view_1d(spec: Any, learner: Any, told: list[Any]) -> Any:
    import holoviews as hv

    axis = spec.axes[0]
    xs = np.array([axis.from_learner(p.x[0]) for p in told])
    ys = np.array([p.value for p in told], dtype=float)
    order = np.argsort(xs)
    n = len(told)
    uniform = np.array([axis.from_learner(x) for x in np.linspace(axis.bounds[0], axis.bounds[1], n)])
    space = _uniform_spacing(axis.bounds[0], axis.bounds[1], n)
    chosen = f"{n} runs chosen by {spec.learner}"
    if spec.objective.kind == "diverged" and ys.min() == 0 and ys.max() == 1:
        stable, unstable = xs[ys == 0].max(), xs[ys == 1].min()
        chosen += f": limit in [{stable:.5g}, {unstable:.5g}] ({abs(unstable - stable) / stable:.2%} wide)"
    kw = {"logx": axis.log, "width": 860, "height": 360, "xlabel": axis.name, "ylabel": spec.objective.text}
    line = hv.Curve((xs[order], ys[order]), label="learner's interpolant").opts(color="#1f77b4", **kw)
    dots = hv.Scatter((xs, ys), label=chosen).opts(size=8, color="#1f77b4")
    span = float(np.nanmax(ys) - np.nanmin(ys)) or 1.0
    grid = hv.Spikes(
        uniform,
        label=f"a uniform grid of {n} runs, {space:.3g} apart"
        + (f" in log10 {axis.name}" if axis.log else ""),
    ).opts(color="#999999", spike_length=0.15 * span, position=float(np.nanmin(ys)))
    title = f"Adaptive sweep {spec.name}: {spec.objective.text} vs {axis.name}"
    return (line * dots * grid).opts(title=title, legend_position="top_left")


def _view_2d(spec: Any, learner: Any, told: list[Any]) -> Any:
    import holoviews as hv

    if len(spec.axes) != 2 or not hasattr(learner, "interpolated_on_grid"):
        return None
    ax, ay = spec.axes
    gx, gy, values = learner.interpolated_on_grid(64)
    n = len(told)
    nx = max(2, round(math.sqrt(n)))
    ny = max(2, math.ceil(n / nx))
    kw = {
        "width": 460,
        "height": 400,
        "xlabel": f"{ax.name}" + (" (log10)" if ax.log else ""),
        "ylabel": f"{ay.name}" + (" (log10)" if ay.log else ""),
    }
    image = hv.Image((gx, gy, np.asarray(values).T), kdims=["x", "y"]).opts(
        cmap="viridis", colorbar=True, **kw
    )
    pts = hv.Points([(p.x[0], p.x[1]) for p in told]).opts(color="white", line_color="black", size=6)
    ux, uy = np.meshgrid(
        np.linspace(ax.bounds[0], ax.bounds[1], nx), np.linspace(ay.bounds[0], ay.bounds[1], ny)
    )
    uniform = hv.Points((ux.ravel(), uy.ravel())).opts(color="#dddddd", line_color="black", size=6)
    return (
        hv.Layout(
            [
                (image * pts).opts(
                    title=f"{spec.name}: {spec.objective.text}, {n} runs chosen by {spec.learner}"
                ),
                (image * uniform).opts(title=f"a uniform {nx}x{ny} grid ({nx * ny} runs), for comparison"),
            ]
        )
        .cols(2)
        .opts(shared_axes=True)
    )
