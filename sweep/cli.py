"""The `sweep` command: a thin argparse layer over the Python API.

Each subcommand lives in its own module under ``sweep.commands`` and exposes ``HELP`` (one
line), ``add_arguments(parser)`` and ``main(args) -> int``. Adding a subcommand means adding one
entry to ``COMMANDS``. Errors of the Python API name its parameters (``timeout: bad value ...``);
here they name the flag that sets that parameter (``--timeout: bad value ...``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
import traceback
from collections.abc import Sequence

from .errors import EXIT_BAD_INPUT, EXIT_INTERNAL, ConfigError, SweepError

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
    "adapt": "sweep.commands.adapt",
    "logs": "sweep.commands.logs",
}


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser(
    command: str | None = None, argv: Sequence[str] | None = None
) -> tuple[_Parser, dict[str, _Parser]]:
    """The parser and each subcommand's parser; only ``command``'s gets its options (none
    without one: ``sweep --help`` lists the subcommands only).

    Building the options of `sweep run` reads Dask's config, and of the other subcommands
    whatever they import: a command that does not run them should not pay for that (``sweep
    --help`` took 0.5 s importing them all). A command
    whose options depend on others (`sweep new`: the parameters of the solver ``--solver``
    names) sets ``OPTIONS_FROM_ARGV`` and gets ``argv`` too.
    """
    parser = _Parser(
        prog="sweep",
        description="Run, check and monitor parameter sweeps of a pseudo-spectral "
        "Navier-Stokes solver on Dask, with results in a zarr store.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers = {}
    for name, modname in COMMANDS.items():
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        subparsers[name] = p
        if command == name:
            if getattr(mod, "OPTIONS_FROM_ARGV", False):
                mod.add_arguments(p, argv)
            else:
                mod.add_arguments(p)
            p.set_defaults(_main=mod.main)
    return parser, subparsers


def _flag_message(exc: ConfigError, parser: argparse.ArgumentParser | None) -> str:
    """The error's text with the parameter names of the Python API replaced by the flags that
    set them: the leading one (``timeout: ...`` -> ``--timeout: ...``), and any other name
    with an underscore (``tls_ca`` -> ``--tls-ca``; plain words may be ordinary words)."""
    text = str(exc)
    if parser is None:
        return text
    # argparse keeps a parser's options in _actions (long stable, though not documented)
    flags = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}
    if exc.option in flags and text.startswith(f"{exc.option}:"):
        text = flags[exc.option] + text[len(exc.option) :]
    for dest, flag in flags.items():
        if "_" in dest:
            text = re.sub(rf"(?<![\w-]){re.escape(dest)}\b", flag, text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code. SIGINT, SIGTERM and
    SIGHUP stop every command cleanly (one line, exit 128 + the signal's number); a second one
    stops it at once (``sweep.engine.interrupts``)."""
    from .engine.interrupts import interruptible

    with interruptible():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)  # options before it are global
    parser, subparsers = build_parser(chosen if chosen in COMMANDS else None, argv)
    args = parser.parse_args(argv)
    if getattr(args, "_main", None) is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args._main(args) or 0)
    except SweepError as exc:
        text = _flag_message(exc, subparsers.get(args.command)) if isinstance(exc, ConfigError) else str(exc)
        print(f"sweep {args.command}: error: {text}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP during a sweep (sweep.engine.interrupts)
        name = getattr(exc, "signal_name", "SIGINT")
        how = "interrupted" if name == "SIGINT" else f"stopped by {name}"
        print(f"sweep {args.command}: {how}; finished runs are kept, run again to resume", file=sys.stderr)
        return int(getattr(exc, "exit_code", 130))
    except Exception:  # unexpected: keep the traceback, but say what to do
        logging.getLogger("sweep").debug("internal error", exc_info=True)
        traceback.print_exc()
        print(
            f"sweep {args.command}: internal error (exit {EXIT_INTERNAL}); please report it "
            "with the traceback above",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
