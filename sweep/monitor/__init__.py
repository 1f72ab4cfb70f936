"""Monitoring a sweep from its store (read only): ``status`` (the figures of ``sweep status``),
``report`` (the hvplot report and PNG summary), ``dashboard`` (the live Panel page).
Re-exports only, imported on first use (pandas, HoloViews and Panel are heavy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from .dashboard import serve_dashboard, start_dashboard
    from .report import write_report
    from .status import SweepData, SweepStatus, format_status, load_sweep, sweep_status

_EXPORTS: dict[str, str] = {
    "SweepData": "sweep.monitor.status",
    "SweepStatus": "sweep.monitor.status",
    "format_status": "sweep.monitor.status",
    "load_sweep": "sweep.monitor.status",
    "sweep_status": "sweep.monitor.status",
    "write_report": "sweep.monitor.report",
    "serve_dashboard": "sweep.monitor.dashboard",
    "start_dashboard": "sweep.monitor.dashboard",
}

__all__ = [
    "SweepData",
    "SweepStatus",
    "format_status",
    "load_sweep",
    "serve_dashboard",
    "start_dashboard",
    "sweep_status",
    "write_report",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
