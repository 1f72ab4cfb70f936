"""The `sweep` command: a thin argparse layer over the Python API.

Each subcommand lives in its own module under ``sweep.commands`` and exposes ``HELP`` (one
line), ``add_arguments(parser)`` and ``main(args) -> int``. Adding a subcommand means adding one
entry to ``COMMANDS``. Errors of the Python API name its parameters (``timeout: bad value ...``);
here they name the flag that sets that parameter (``--timeout: bad value ...``).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

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
    """ArgumentParser whose usage errors are one line and exit code 2. Options are never
    abbreviated: ``--re`` is not ``--retries`` (a typo must not change what runs)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

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
    from .provenance import ns_sweep_version

    parser.add_argument("--version", action="version", version=f"sweep (ns-sweep) {ns_sweep_version()}")
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


def _unrecognized(extra: Sequence[str], parser: argparse.ArgumentParser | None) -> str:
    """``unrecognized arguments: --re 3 (did you mean --retries?)``: close matches among the
    options of ``parser``: the same but for case (``--re`` -> ``--Re``), one it starts, spelling."""
    text = "unrecognized arguments: " + " ".join(extra)
    if parser is None:
        return text
    options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    hints = []
    for arg in extra:
        if not arg.startswith("--"):
            continue
        flag = arg.split("=", 1)[0]
        same = [o for o in options if o.lower() == flag.lower()]
        longer = [o for o in options if o.lower().startswith(flag.lower())]  # a cut-short option
        close = same or longer or difflib.get_close_matches(flag, options, n=1, cutoff=0.6)
        if close:
            hints.append(f"did you mean {close[0]}?")
    return text + (f" ({'; '.join(hints)})" if hints else "")


def _flag_message(exc: ConfigError, parser: argparse.ArgumentParser | None) -> str:
    """The error's text with the parameter names of the Python API replaced by the flags that
    set them: the leading one (``timeout: ...`` -> ``--timeout: ...``), and any other name
    with an underscore (``tls_ca`` -> ``--tls-ca``; plain words may be ordinary words)."""
    text = str(exc)
    if parser is None:
        return text
    # argparse keeps a parser's options in _actions (long stable, though not documented)
    flags = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}
    # the leading name may also be the flag's own (`sweep new --grid` has dest p_grid)
    leading = {f[2:].replace("-", "_"): f for a in parser._actions for f in a.option_strings if f[:2] == "--"}
    leading.update(flags)
    if exc.option in leading and text.startswith(f"{exc.option}:"):
        text = leading[exc.option] + text[len(exc.option) :]
    for dest, flag in flags.items():
        if "_" in dest:
            text = re.sub(rf"(?<![\w-]){re.escape(dest)}\b", flag, text)
    return text


EXIT_PIPE = 128 + 13  # what a shell reports for a process ended by SIGPIPE


def _reader_gone() -> int:
    """The reader of our output left (``sweep explain ... | head -1``): stop quietly, as
    command-line tools do. Later writes (the interpreter's last flush) go to /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_PIPE


def _one_line_warnings(prog: str) -> None:
    """Our warnings (a deprecated parameter name) as one line each, ``sweep validate: warning:
    ...``, not Python's two lines with a source location."""

    def show(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
        print(f"{prog}: warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    warnings.filterwarnings("default", category=FutureWarning, module=r"(sweep|solver)(\.|$)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code. SIGINT, SIGTERM and
    SIGHUP stop every command cleanly (one line, exit 128 + the signal's number); a second one
    stops it at once (``sweep.engine.interrupts``)."""
    from .engine.interrupts import interruptible

    try:
        with interruptible():
            return _main(argv)
    except KeyboardInterrupt as exc:  # a stop Python swallowed, raised as the block ended
        return _stopped("sweep", exc)


def _stopped(prog: str, exc: KeyboardInterrupt) -> int:
    """Say that a command was stopped (Ctrl-C, SIGTERM, SIGHUP), in one line; its exit code."""
    name = getattr(exc, "signal_name", "SIGINT")
    how = "interrupted" if name == "SIGINT" else f"stopped by {name}"
    print(f"{prog}: {how}; finished runs are kept, run again to resume", file=sys.stderr)
    return int(getattr(exc, "exit_code", 130))


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)  # options before it are global
    parser, subparsers = build_parser(chosen if chosen in COMMANDS else None, argv)
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the subcommand's parser, with the options the mistyped ones resemble
        (subparsers.get(args.command) or parser).error(_unrecognized(extra, subparsers.get(args.command)))
    _one_line_warnings(f"sweep {args.command}" if args.command else "sweep")
    if getattr(args, "_main", None) is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        code = int(args._main(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at the interpreter's exit
        return code
    except BrokenPipeError:
        return _reader_gone()
    except SweepError as exc:
        text = _flag_message(exc, subparsers.get(args.command)) if isinstance(exc, ConfigError) else str(exc)
        print(f"sweep {args.command}: error: {text}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP during a sweep (sweep.engine.interrupts)
        return _stopped(f"sweep {args.command}", exc)
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
