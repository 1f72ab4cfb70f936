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
        "packages",
        metavar="DIR",
        help="package directory (priority_summary.json + package_*.json), or one package file",
    )
    parser.add_argument(
        "--worker-memory",
        metavar="BYTES",
        default=None,
        help="memory of one worker, e.g. 4GiB (default: this machine's memory / cores)",
    )


def main(args: argparse.Namespace) -> int:
    """Print the problems (exit 2) or a one-line summary (exit 0)."""
    import os

    import numpy as np

    from ..spec import PRIORITIES, check_directory
    from ..units import parse_size

    if os.path.isfile(args.packages):
        return _one_file(args.packages, parse_size(args.worker_memory))
    packages, problems = check_directory(args.packages, worker_memory=parse_size(args.worker_memory))
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        print(f"sweep validate: {len(problems)} problem(s) in {args.packages}", file=sys.stderr)
        return EXIT_BAD_INPUT
    # priorities in the order first met, with their counts (columns: a million packages)
    codes, first, counts = np.unique(packages.priority_codes(), return_index=True, return_counts=True)
    prios = ", ".join(f"{PRIORITIES[codes[i]]} {counts[i]}" for i in np.argsort(first))
    runs = len(np.unique(packages.run_keys()))
    print(f"OK: {len(packages)} package(s) in {args.packages} ({prios}); {runs} distinct run(s)")
    return EXIT_OK


def _one_file(path: str, worker_memory: int | None) -> int:
    """`sweep validate FILE.json`: the checks of one package file alone (those across files,
    ids and the priority summary, need the directory)."""
    import json
    import os

    from ..machine import memory_per_worker
    from ..spec import check_document
    from ..spec.files import read_json

    name = os.path.basename(path)
    problems: list[str] = []
    doc = read_json(path, name, problems)
    if doc is not None:
        memory = worker_memory if worker_memory is not None else memory_per_worker()
        problems += check_document(name, doc, os.path.dirname(path) or ".", worker_memory=memory)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        print(f"sweep validate: {len(problems)} problem(s) in {path}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"OK: {name}: package {json.dumps(doc.get('package_id'))} (checked alone: validate its directory too)"
    )
    return EXIT_OK
