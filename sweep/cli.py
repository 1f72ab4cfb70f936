"""The `sweep` command: a thin argparse layer over the Python API.

Each subcommand lives in its own module under ``sweep.commands`` and exposes
``HELP`` (one line), ``add_arguments(parser)`` and ``main(args) -> int``. Adding a
subcommand means adding one entry to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from .errors import EXIT_BAD_INPUT, EXIT_INTERNAL, SweepError

__all__ = ["main", "COMMANDS"]

# name -> module implementing it (imported lazily so `sweep --help` stays fast)
COMMANDS: dict[str, str] = {
    "run": "sweep.commands.run",
    "status": "sweep.commands.status",
    "report": "sweep.commands.report",
    "dashboard": "sweep.commands.dashboard",
    "validate": "sweep.commands.validate",
    "new": "sweep.commands.new",
    "explain": "sweep.commands.explain",
}


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand; with ``command``, only that one gets its options.

    Building the options of `sweep run` reads Dask's config, and of the other subcommands
    whatever they import: a command that does not run them should not pay for that.
    """
    parser = _Parser(
        prog="sweep",
        description="Run, check and monitor parameter sweeps of a pseudo-spectral "
        "Navier-Stokes solver on Dask, with results in a zarr store.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, modname in COMMANDS.items():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name == modname:
                continue  # subcommand not built yet
            raise
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        if command is None or command == name:
            mod.add_arguments(p)
            p.set_defaults(_main=mod.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)  # options before it are global
    parser = build_parser(chosen if chosen in COMMANDS else None)
    args = parser.parse_args(argv)
    if getattr(args, "_main", None) is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args._main(args) or 0)
    except SweepError as exc:
        print(f"sweep {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"sweep {args.command}: interrupted; finished runs are kept, run again to resume",
              file=sys.stderr)
        return 130
    except Exception:  # unexpected: keep the traceback, but say what to do
        logging.getLogger("sweep").debug("internal error", exc_info=True)
        traceback.print_exc()
        print(f"sweep {args.command}: internal error (exit {EXIT_INTERNAL}); please report it "
              "with the traceback above", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
