"""The sweep report: the views of ``sweep.monitor.views`` as one offline HTML file, and a PNG.

The live dashboard (``sweep.monitor.dashboard``) shows the same views. The HTML embeds
bokeh's and panel's JavaScript and CSS inline (about 3 MB): it opens on a machine without
network, e.g. a cluster's login node or a laptop on a plane. The PNG summary is
``sweep.monitor.summary_png``'s, drawn meanwhile in a process of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .page import report_layout
from .status import SweepData
from .summary_png import start_summary_png, summary_inputs, write_summary_png

__all__ = [
    "ReportFiles",
    "offline_problems",
    "write_html",
    "write_summary_png",
    "write_report",
]

HTML_NAME = "sweep_report.html"
PNG_NAME = "sweep_progress.png"
# A tiny inline favicon: panel's page template otherwise links one from its CDN.
_FAVICON = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
    "%3Crect width='16' height='16' fill='%232ca02c'/%3E%3C/svg%3E"
)


@dataclass(frozen=True)
class ReportFiles:
    """Paths ``write_report`` wrote."""

    html: Path
    png: Path


_REMOTE = re.compile(
    r"""<script[^>]+src\s*=\s*["']?\s*(?:https?:)?//|<link[^>]+href\s*=\s*["']?\s*(?:https?:)?//"""
    r"""|@import\s+(?:url\()?\s*["']?(?:https?:)?//"""
    r"""|"url"\s*:\s*"(?:https?:)?//""",  # a stylesheet model bokeh would load at run time
    re.IGNORECASE,
)


def offline_problems(html: str) -> list[str]:
    """Tags in an HTML page that would load something from the network (empty: self-contained)."""
    return [html[m.start() : m.start() + 160].split(">")[0] + ">" for m in _REMOTE.finditer(html)]


def write_html(layout: Any, path: Path, title: str = "Sweep report") -> Path:
    """Save a Panel layout as one self-contained HTML file (bokeh/panel JS and CSS inline)."""
    from bokeh.document import Document
    from bokeh.models.ui import UIElement
    from bokeh.resources import INLINE
    from panel.io.model import add_to_doc
    from panel.io.notebook import patch_inline_stylesheets
    from panel.io.resources import set_resource_mode
    from panel.io.save import save

    path = Path(path)
    # Panel links its component stylesheets from its CDN even with INLINE resources; render
    # the models in inline mode and swap those links for the packaged CSS text, as panel
    # itself does for notebooks with pn.config.inline.
    doc = Document()
    with set_resource_mode("inline"):
        root = layout.get_root(doc)
    for model in root.select({"type": UIElement}):
        patch_inline_stylesheets(model)
    add_to_doc(root, doc, True)
    save(
        doc,
        str(path),
        resources=INLINE,
        title=title,
        template_variables={"app_favicon": _FAVICON, "apple_icon": ""},
    )
    problems = offline_problems(path.read_text(encoding="utf-8"))
    if problems:  # a panel/bokeh upgrade started linking remote resources: fail loudly
        raise RuntimeError(f"{path}: the report would load network resources: {problems[:3]}")
    return path


def write_report(data: SweepData, out_dir: Path) -> ReportFiles:
    """Write ``sweep_report.html`` (self-contained) and ``sweep_progress.png`` into ``out_dir``:
    the PNG is drawn in a process of its own meanwhile (at 100,000 runs the page takes ~7 s
    and the PNG ~1.3 s more, one core each)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = start_summary_png(
        summary_inputs(data.status, results=data.results, references=data.references), out / PNG_NAME
    )
    try:
        html = write_html(report_layout(data), out / HTML_NAME)
    except BaseException:
        png.cancel()
        raise
    return ReportFiles(html=html, png=png.result())
