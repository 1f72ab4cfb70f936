"""`sweep explain DIR --store S`: say for each package whether it would run, and why."""

from __future__ import annotations

import argparse

from ..errors import EXIT_OK

HELP = "say for each package whether a run would run, resume, skip it (done) or find it stale"
DESCRIPTION = (
    "Read the packages of DIR and the store, change nothing, and print one line per package: "
    "run (new, or failed before), resume (from its checkpoint), skip (done, or the same "
    "parameters as another package), with stale results of edited packages and shared runs noted."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sweep explain`."""
    from ..spec import PRIORITY_CHOICES

    parser.add_argument("packages", metavar="DIR", help="package directory")
    parser.add_argument("--store", required=True, metavar="STORE", help="result store (path or fsspec URL)")
    parser.add_argument(
        "--priority", choices=PRIORITY_CHOICES, type=str.upper, default="ALL", help="only these packages"
    )
    parser.add_argument(
        "--package",
        action="append",
        dest="package_ids",
        metavar="ID",
        help="only this package: its package_id or file name; repeat for more",
    )
    parser.add_argument(
        "--worker-memory",
        metavar="BYTES",
        default=None,
        help="memory of one worker for the memory check, e.g. 4GiB",
    )


def main(args: argparse.Namespace) -> int:
    """Print the explanation; exit 2 on bad packages (like validate)."""
    from ..engine.plan import explain_store, iter_explanation_lines
    from ..spec import load_packages, select_packages, selection_label
    from ..units import parse_size

    packages = select_packages(
        load_packages(args.packages, worker_memory=parse_size(args.worker_memory)),
        args.priority,
        args.package_ids,
    )
    entries, where = explain_store(packages, args.store)
    for line in iter_explanation_lines(
        entries, scope=selection_label(args.priority, args.package_ids), store=where
    ):
        print(line)
    return EXIT_OK
