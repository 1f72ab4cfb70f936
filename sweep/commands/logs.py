"""`sweep logs PACKAGE_ID --store S`: print the log lines of one package, from every sweep."""

from __future__ import annotations

import argparse
import sys

from ..errors import EXIT_OK, ConfigError

HELP = "print the log lines of one package (every sweep into the store that ran it)"
DESCRIPTION = (
    "Print, oldest first, the lines a package's runs logged (queued, started, its worker's lines, "
    "checkpoints, its status) in every sweep into STORE. They live in the store's logs directory, "
    "one file per sweep for all packages (see --log-dir of sweep run)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sweep logs`."""
    parser.add_argument("package_id", metavar="PACKAGE_ID", help="the package's id")
    parser.add_argument("--store", required=True, metavar="STORE", help="result store (path or fsspec URL)")
    parser.add_argument(
        "--log-dir", metavar="DIR", default=None, help="the logs directory, if sweep run was given one"
    )


def main(args: argparse.Namespace) -> int:
    """Print the lines; exit 2 when the package has none there."""
    from pathlib import Path

    from ..engine.logs import log_segments, package_log_lines
    from ..engine.sweep import default_log_dir

    where = Path(args.log_dir) if args.log_dir else default_log_dir(args.store)
    lines = package_log_lines(where, args.package_id)
    if not lines:
        found = "no logs directory" if not where.is_dir() else f"{len(log_segments(where))} sweep log(s)"
        raise ConfigError(
            f"{args.package_id}: package_id: no log lines in {where} ({found}); allowed: the id of a "
            "package a sweep into this store ran (give --log-dir if sweep run was given one)",
            option="package_id",
        )
    out = sys.stdout
    for line in lines:
        out.write(line + "\n")
    return EXIT_OK
