"""`sweep explain DIR --store S`: say for each package whether it would run, and why."""

from __future__ import annotations

import argparse
from collections import Counter

from ..errors import EXIT_OK

HELP = "say for each package whether a run would run, resume, skip it (done) or find it stale"
DESCRIPTION = (
    "Read the packages of DIR and the store, change nothing, and print one line per package: "
    "run (new, or failed before), resume (from its checkpoint), skip (done, or the same "
    "parameters as another package), with stale results of edited packages and shared runs noted."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sweep explain`."""
    from ..spec import PRIORITIES

    parser.add_argument("packages", metavar="DIR", help="package directory")
    parser.add_argument("--store", required=True, metavar="STORE", help="result store (path or fsspec URL)")
    parser.add_argument("--priority", choices=(*PRIORITIES, "ALL"), default="ALL", help="only these packages")
    parser.add_argument("--package", action="append", dest="package_ids", metavar="ID",
                        help="only this package: its package_id or file name; repeat for more")
    parser.add_argument("--worker-memory", metavar="BYTES", default=None,
                        help="memory of one worker for the memory check, e.g. 4GiB")


def main(args: argparse.Namespace) -> int:
    """Print the explanation; exit 2 on bad packages (like validate)."""
    import os

    from ..backends import is_local
    from ..plan import explain_packages
    from ..spec import load_packages, select_packages
    from ..store import Store
    from .validate import parse_memory

    packages = select_packages(load_packages(args.packages, worker_memory=parse_memory(args.worker_memory)),
                               args.priority, args.package_ids)
    local_missing = is_local(args.store) and not os.path.exists(args.store.removeprefix("file://"))
    if local_missing:
        entries = explain_packages(packages, None)
    else:
        with Store.open(args.store, mode="r") as st:
            entries = explain_packages(packages, st)
    width = max((len(e.package_id) for e in entries), default=10)
    for e in entries:
        print(e.line(width))
    counts = Counter(e.action for e in entries)
    stale = sum(bool(e.stale_runs) for e in entries)
    where = "(no store yet)" if local_missing else args.store
    print(f"{len(entries)} package(s): {counts.get('run', 0)} would run, {counts.get('resume', 0)} resume, "
          f"{counts.get('skip', 0)} skip; {stale} with stale results; store {where}")
    return EXIT_OK
