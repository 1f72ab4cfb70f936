"""`sweep status`: counts, progress bar, compute time and ETA of a sweep, from its store."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "show the progress of a sweep (counts by priority, failures, ETA) from its store"
DESCRIPTION = (
    "Show how far a sweep is, from the committed runs of its store (safe to use while "
    "`sweep run` writes to it, or on a copy of the store). With --packages, counts are of "
    "the current packages (done, failed by class, stale = parameters changed since the last "
    "run, pending = neither done nor failed, stale included) and an ETA is estimated; "
    "without, of the runs in the store."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sweep status`."""
    parser.add_argument("--store", required=True, help="the result store (path or fsspec URL)")
    parser.add_argument(
        "--packages",
        metavar="DIR",
        default=None,
        help="the package directory: count packages, detect stale and pending ones",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="runs proceeding at once, for the ETA (default 1)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def main(args: argparse.Namespace) -> int:
    """Print the status; exit 0 (status is information, not a verdict on the sweep)."""
    from ..gc_pause import no_collection_at_exit
    from ..monitor import format_status, load_sweep

    data = load_sweep(args.store, args.packages, workers=args.workers, with_results=False)
    status = data.status
    if args.json:
        doc = {"store": str(args.store), "packages": args.packages, **status.as_dict()}
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        title = f"sweep status: {args.store}" + (f"  (packages: {args.packages})" if args.packages else "")
        print(format_status(status, title=title))
    no_collection_at_exit()  # nothing to close: a read-only open of the store (~0.2 s at 100k)
    return 0
