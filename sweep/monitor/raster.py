"""Scatter panels of many points drawn as one picture of their density (datashader).

A bokeh glyph per point puts every point's coordinates and hover values into the report's
HTML: at 100,000 runs tens of megabytes, which a browser takes half a minute to draw, and a
cloud of overlapping dots that hides where the runs are dense. Above ``raster_limit()`` points
(``sweep.report.raster-points``) a panel is drawn instead as one image: the points are
counted in each pixel of the plot's frame (numpy, as datashader's ``Canvas.points`` would) and
datashader shades them, one layer per category in its own colour (its density as
opacity, histogram-equalised; isolated points spread to stay visible), the layers stacked in
the given order (the last on top: failures are not hidden under done runs). The image is a
PNG embedded in the page as a ``data:`` URL (tens of kilobytes) on a bokeh ImageURL glyph,
under the same axes, ranges (log where the glyph panel has them) and legend. The report is a
static file with no server to re-aggregate: zooming in enlarges the pixels.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import config

__all__ = ["Layer", "axis_range", "density_overlay", "raster_limit", "rasterized"]

RASTER_KEY = "report.raster-points"


def raster_limit() -> int:
    """Points above which a scatter panel is drawn as a density image (``sweep.report.raster-points``)."""
    return int(config.get(RASTER_KEY))


def rasterized(n: int) -> bool:
    """Whether a scatter panel of ``n`` points is drawn as a density image."""
    return n > raster_limit()


@dataclass(frozen=True)
class Layer:
    """One category of points: its legend label, colour, points and legend marker."""

    label: str
    color: str
    frame: pd.DataFrame = field(repr=False)
    marker: str = "circle"


def axis_range(values: Any, log: bool, padding: float = 0.1) -> tuple[float, float]:
    """The range an axis shows for ``values`` (on a log axis, its positive ones): their span
    widened by ``padding`` of it on each side (in log10 on a log axis); a single value spans
    half to one and a half of it (as the glyph panels' ``_one_value_lim``), or +-0.5 at 0."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & ((v > 0) if log else True)]
    if not v.size:
        return (1.0, 10.0) if log else (0.0, 1.0)
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        return (lo * 0.5, lo * 1.5) if lo > 0 else (lo - 0.5, hi + 0.5)
    if log:
        a, b = math.log10(lo), math.log10(hi)
        pad = padding * (b - a)
        return 10.0 ** (a - pad), 10.0 ** (b + pad)
    pad = padding * (hi - lo)
    return lo - pad, hi + pad


def _thicken(counts: np.ndarray) -> np.ndarray:
    """Each counted pixel spread to its four neighbours (the largest count wins): a lone run
    is a small cross, not one pixel lost on the screen."""
    out = counts.copy()
    np.maximum(out[1:], counts[:-1], out=out[1:])
    np.maximum(out[:-1], counts[1:], out=out[:-1])
    np.maximum(out[:, 1:], counts[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], counts[:, 1:], out=out[:, :-1])
    return out


def pixel_counts(
    xs: np.ndarray,
    ys: np.ndarray,
    x_range: tuple[float, ...],
    y_range: tuple[float, ...],
    size: tuple[int, int],
) -> Any:
    """Points counted per pixel of a ``size`` (width, height) canvas over the ranges, as the
    (y, x) DataArray datashader's ``Canvas.points(..., count())`` makes (points outside left
    out). numpy's histogram does it: datashader compiles its aggregation with numba in every new
    process, ~1.2 s of a report's 10 s for counts that take milliseconds here."""
    import xarray as xr

    (w, h), (x0, x1), (y0, y1) = size, x_range, y_range
    counts, _, _ = np.histogram2d(ys, xs, bins=(h, w), range=((y0, y1), (x0, x1)))
    dx, dy = (x1 - x0) / w, (y1 - y0) / h
    coords = {"x": x0 + dx * (np.arange(w) + 0.5), "y": y0 + dy * (np.arange(h) + 0.5)}
    return xr.DataArray(counts.astype(np.uint32), coords=coords, dims=("y", "x"))


def over(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``src`` over ``dst``, pixel by pixel (RGBA packed in uint32, as datashader's images):
    datashader's own ``over`` operator, in numpy. Importing datashader's compositing compiles
    all of its operators with numba, in every new process: ~2.5 s of a report's time for a
    few stacked images."""

    def parts(x: np.ndarray) -> list[np.ndarray]:
        return [((x >> shift) & 255) / 255 for shift in (0, 8, 16, 24)]

    (sr, sg, sb, sa), (dr, dg, db, da) = parts(src), parts(dst)
    factor = 1 - sa
    a = sa + da * factor
    with np.errstate(divide="ignore", invalid="ignore"):
        rgb = [(s * sa + d * da * factor) / a for s, d in ((sr, dr), (sg, dg), (sb, db))]
    out = np.zeros(src.shape, dtype=np.uint32)
    for shift, v in zip((0, 8, 16, 24), (*rgb, a), strict=True):
        out |= np.minimum(255, np.where(a == 0, 0, v * 255).astype(np.uint32)) << np.uint32(shift)
    return out


def stack_over(images: Sequence[Any]) -> Any:
    """The images stacked, each later one over the ones before (``datashader.transfer_functions
    .stack(*images)`` with its default ``over``)."""
    from datashader.transfer_functions import Image

    out = images[0].data
    for img in images[1:]:
        out = over(img.data, out)
    return Image(out, coords=images[0].coords, dims=images[0].dims)


def _png_url(
    layers: Sequence[Layer], x: str, y: str, ranges: Any, size: tuple[int, int], logs: Any
) -> str | None:
    """The layers' points counted per pixel and shaded, stacked, as a PNG ``data:`` URL (None
    without a point to draw). A log axis is counted on log10 of the values, on a linear
    canvas: the same pixels as a log canvas."""
    import datashader.transfer_functions as tf

    (xlim, ylim), (w, h), (logx, logy) = ranges, size, logs
    scale = lambda v, log: np.log10(v) if log else v  # noqa: E731
    x_range = tuple(float(v) for v in scale(np.asarray(xlim, dtype=float), logx))
    y_range = tuple(float(v) for v in scale(np.asarray(ylim, dtype=float), logy))
    images = []
    for layer in layers:
        xs, ys = layer.frame[x].to_numpy(dtype=float), layer.frame[y].to_numpy(dtype=float)
        keep = np.isfinite(xs) & np.isfinite(ys) & ((xs > 0) if logx else True) & ((ys > 0) if logy else True)
        if not keep.any():
            continue
        counts = pixel_counts(scale(xs[keep], logx), scale(ys[keep], logy), x_range, y_range, (w, h))
        if np.count_nonzero(counts.data) < 0.1 * counts.data.size:  # sparse: thicken
            counts = counts.copy(data=_thicken(counts.data))
        images.append(tf.shade(counts, cmap=layer.color, how="eq_hist", min_alpha=110))
    if not images:
        return None
    buf = io.BytesIO()
    picture = stack_over(images)
    picture.to_pil().save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def density_overlay(
    layers: Sequence[Layer],
    x: str,
    y: str,
    *,
    logx: bool,
    logy: bool,
    pixels: tuple[int, int],
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    padding: float = 0.1,
) -> Any:
    """A HoloViews Overlay drawing ``layers`` as one density image of ``pixels`` (width,
    height: about the plot frame's, which the browser fits it to), with a legend entry per
    layer; ranges from the points unless given. Style and size it as the glyph panel it stands
    for (title, labels, ticks, legend position, width, height)."""
    import holoviews as hv

    everything = pd.concat([layer.frame[[x, y]] for layer in layers]) if layers else pd.DataFrame()
    xlim = xlim or axis_range(everything.get(x, []), logx, padding)
    ylim = ylim or axis_range(everything.get(y, []), logy, padding)
    url = _png_url(layers, x, y, (xlim, ylim), pixels, (logx, logy))

    def draw(plot: Any, element: Any) -> None:
        (x0, x1), (y0, y1) = xlim, ylim
        if url is not None:
            plot.state.image_url(
                url=[url], x=x0, y=y0, w=x1 - x0, h=y1 - y0, anchor="bottom_left", level="image"
            )

    # legend entries: one point each, outside every range (NaN), in the layer's colour
    keys = [
        hv.Scatter(pd.DataFrame({x: [np.nan], y: [np.nan]}), x, y, label=layer.label).opts(
            color=layer.color, marker=layer.marker, size=9
        )
        for layer in layers
    ]
    return hv.Overlay(keys).opts(
        hv.opts.Overlay(
            logx=logx,
            logy=logy,
            xlim=xlim,
            ylim=ylim,
            hooks=[draw],
        )
    )
