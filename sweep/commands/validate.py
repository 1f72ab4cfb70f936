"""`sweep validate DIR`: check a package directory and report every problem, one line each."""

from __future__ import annotations

import argparse
import sys

from ..errors import EXIT_BAD_INPUT, EXIT_OK

HELP = "check a package directory; print every problem (exit 2) or a one-line summary"
DESCRIPTION = (
    "Check every package file of DIR and the priority summary: JSON syntax, keys, types, "
    "parameter ranges (the solver's own checks), ids, priorities, file sizes and memory per "
    "worker. Prints one line per problem and exits 2, or one summary line and exits 0."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sweep validate`."""
    parser.add_argument(
        "packages", metavar="DIR", help="package directory (priority_summary.json + package_*.json)"
    )
    parser.add_argument(
        "--worker-memory",
        metavar="BYTES",
        default=None,
        help="memory of one worker, e.g. 4GiB (default: this machine's memory / cores)",
    )


def main(args: argparse.Namespace) -> int:
    """Print the problems (exit 2) or a one-line summary (exit 0)."""
    from collections import Counter

    from ..spec import check_directory
    from ..units import parse_size

    packages, problems = check_directory(args.packages, worker_memory=parse_size(args.worker_memory))
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        print(f"sweep validate: {len(problems)} problem(s) in {args.packages}", file=sys.stderr)
        return EXIT_BAD_INPUT
    by_prio = Counter(p.priority for p in packages)
    runs = len({p.run_id for p in packages})
    prios = ", ".join(f"{k} {v}" for k, v in by_prio.items())
    print(f"OK: {len(packages)} package(s) in {args.packages} ({prios}); {runs} distinct run(s)")
    return EXIT_OK
