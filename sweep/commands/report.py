"""`sweep report`: the hvplot report (one offline HTML file) and a PNG summary of a sweep."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write the sweep report: a self-contained HTML page (hvplot) and a PNG summary"
DESCRIPTION = (
    "Write OUT/sweep_report.html (progress and statistics; the physics: energy, dissipation "
    "and enstrophy against time, E(k) at the final time, peak dissipation against Re with "
    "unreached peaks flagged, a published reference where one applies; a sortable table of "
    "runs; wall time and parameter space; opens offline) and OUT/sweep_progress.png, from the "
    "committed runs of the store."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sweep report`."""
    parser.add_argument("--store", required=True, help="the result store (path or fsspec URL)")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory to write the report into")
    parser.add_argument(
        "--packages",
        metavar="DIR",
        default=None,
        help="the package directory: show pending and stale packages too",
    )
    parser.add_argument(
        "--reference",
        action="append",
        default=None,
        metavar="FILE",
        help="a reference curve to overlay (.gdiag: time, energy, dissipation), e.g. the Taylor-Green "
        "Re=1600 DNS spectral_Re1600_512.gdiag; repeatable (default: those in sweep/monitor/reference_data)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="runs proceeding at once, for the ETA (default 1)",
    )


def main(args: argparse.Namespace) -> int:
    """Write the report files and print their paths."""
    from ..errors import ConfigError
    from ..gc_pause import no_collection_at_exit
    from ..monitor import load_sweep
    from ..monitor.report import write_report

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"--out: bad value {str(out)!r} (a file); allowed: a directory (created if missing)"
        )
    data = load_sweep(args.store, args.packages, workers=args.workers, reference_files=args.reference)
    files = write_report(data, out)
    print(f"report: {files.html}")
    print(f"summary: {files.png}")
    no_collection_at_exit()  # the files are written and closed (~1 s at 100k)
    return 0
