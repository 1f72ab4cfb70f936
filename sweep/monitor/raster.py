"""Scatter panels of many points drawn as one picture of their density (datashader's way).

A bokeh glyph per point puts every point's coordinates and hover values into the report's
HTML: at 100,000 runs tens of megabytes, which a browser takes half a minute to draw, and a
cloud of overlapping dots that hides where the runs are dense. Above ``raster_limit()`` points
(``sweep.report.raster-points``) a panel is drawn instead as one image: the points are
counted in each pixel of the plot's frame and shaded, one layer per category in its own
colour (its density as opacity, histogram-equalised; isolated points spread to stay visible),
the layers stacked in the given order (the last on top: failures are not hidden under done
runs). Each step is datashader's (``Canvas.points`` with ``count()``, ``tf.shade`` with one
colour and ``how="eq_hist"``, ``tf.stack``), written in numpy and tested bit for bit against
it: datashader compiles its kernels with numba in every new process, and its import alone
(dask.dataframe with it) is ~0.65 s of a 100k report's ~9.5 s, for images of a few hundred
pixels a side. The image is a PNG embedded in the page as a ``data:`` URL (tens of
kilobytes) on a bokeh ImageURL glyph, under the same axes, ranges (log where the glyph panel
has them) and legend. The report is a static file with no server to re-aggregate: zooming in
enlarges the pixels.
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

__all__ = [
    "Layer",
    "axis_range",
    "density_overlay",
    "png_bytes",
    "raster_limit",
    "rasterized",
    "shade",
    "stack_over",
]

RASTER_KEY = "report.raster-points"
MIN_ALPHA = 110  # the opacity of the sparsest pixels: a lone run stays visible on white


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


def stack_over(images: Sequence[np.ndarray]) -> np.ndarray:
    """The images (RGBA packed in uint32) stacked, each later one over the ones before
    (``datashader.transfer_functions.stack(*images)`` with its default ``over``)."""
    out = images[0]
    for img in images[1:]:
        out = over(img, out)
    return out


def _hex_rgb(color: str) -> tuple[int, int, int]:
    """``#rrggbb`` as (r, g, b) (the report's colours are all given so)."""
    if not (color.startswith("#") and len(color) == 7):
        raise ValueError(f"colour {color!r}: give it as #rrggbb")
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _eq_hist(data: np.ndarray, mask: np.ndarray, nbins: int = 256 * 256) -> np.ndarray:
    """Each value's rank in the distribution of the values not masked, in (0, 1] (NaN where
    masked): datashader's ``eq_hist`` (exact counts for integers of a range under ``nbins``,
    else a histogram of ``nbins`` bins without its empty ones)."""
    kept = data[~mask]
    if np.issubdtype(kept.dtype, np.integer) and np.ptp(kept) < nbins:
        values, counts = np.unique(kept, return_counts=True)
        vmin, vmax = values[0].item(), values[-1].item()
        centers = np.arange(vmin, vmax + 1)
        hist = np.zeros(vmax - vmin + 1, dtype="uint64")
        hist[values - vmin] = counts
    else:
        hist, edges = np.histogram(kept, bins=nbins)
        centers = (edges[:-1] + edges[1:]) / 2
        keep = hist > 0
        hist, centers = hist[keep], centers[keep]
    cdf = hist.cumsum()
    cdf = cdf / float(cdf[-1])
    out = np.interp(data, centers, cdf).reshape(data.shape)
    return np.where(mask, np.nan, out)


def shade(counts: np.ndarray, color: str, min_alpha: int, alpha: int = 255) -> np.ndarray:
    """Counts per pixel as an image (RGBA packed in uint32) of one colour, its opacity from
    ``min_alpha`` to ``alpha`` by the counts' histogram-equalised rank, empty pixels clear:
    ``datashader.transfer_functions.shade(counts, cmap=color, how="eq_hist", min_alpha=...)``."""
    mask = counts == 0
    if mask.all():
        return np.zeros(counts.shape, dtype=np.uint32)
    # as datashader: offset by the smallest count (the masked zeros wrap around; masked anyway)
    data = counts - counts[~mask].min()
    with np.errstate(invalid="ignore", divide="ignore"):
        ranks = _eq_hist(data, mask)
        span = np.nanmin(ranks), np.nanmax(ranks)
    aspan = np.arange(min_alpha, alpha + 1)
    a = np.interp(ranks, np.linspace(span[0], span[1], len(aspan)), aspan, left=0, right=255)
    r, g, b = (np.full(counts.shape, c, dtype=np.uint8) for c in _hex_rgb(color))
    rgba = np.dstack([r, g, b, np.nan_to_num(a, copy=False).astype(np.uint8)])
    return rgba.view(np.uint32).reshape(counts.shape)


def png_bytes(image: np.ndarray) -> bytes:
    """An image (RGBA packed in uint32, row 0 at the bottom, as datashader's) as a PNG file."""
    from PIL import Image

    rgba = np.flipud(image).view(np.uint8).reshape((*image.shape, 4))
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _png_url(
    layers: Sequence[Layer], x: str, y: str, ranges: Any, size: tuple[int, int], logs: Any
) -> str | None:
    """The layers' points counted per pixel and shaded, stacked, as a PNG ``data:`` URL (None
    without a point to draw). A log axis is counted on log10 of the values, on a linear
    canvas: the same pixels as a log canvas."""
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
        counts = pixel_counts(scale(xs[keep], logx), scale(ys[keep], logy), x_range, y_range, (w, h)).data
        if np.count_nonzero(counts) < 0.1 * counts.size:  # sparse: thicken
            counts = _thicken(counts)
        images.append(shade(counts, layer.color, min_alpha=MIN_ALPHA))
    if not images:
        return None
    return "data:image/png;base64," + base64.b64encode(png_bytes(stack_over(images))).decode("ascii")


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
