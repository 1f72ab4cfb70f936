"""`sweep new DIR`: write a package directory from a grid of parameter values."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..errors import EXIT_OK

HELP = "write package files from a grid (value lists as options, or a TOML/YAML grid file)"
DESCRIPTION = (
    "Write one package file per combination of the given values (cartesian product) and the "
    "priority summary. Each parameter of the chosen solver has an option taking one or more "
    "values, e.g. `sweep new demo --Re 100 400 1600 --dt 0.01 --T-final 0.5 --grid 16,16,16 "
    "--priority HIGH`, or for an OpenFOAM case `sweep new cavity --solver openfoam --case cavity "
    "--Re 100 400 1000 --n-cells 64` (`--solver S --case C --help` lists that solver's "
    "parameters). Package ids come from the swept values, so the same grid gives the same files. "
    "A directory that has packages is refused unless --append (add these) or --force (replace them)."
)
OPTIONS_FROM_ARGV = True  # the parameter options are those of the solver --solver/--case name


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _chosen(argv: Sequence[str] | None) -> tuple[str, str | None]:
    """The --solver and --case values of the command line (before the full parse)."""
    from ..solvers.registry import DEFAULT_SOLVER

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--solver", default=DEFAULT_SOLVER)
    pre.add_argument("--case", default=None)
    known, _ = pre.parse_known_args(list(argv or []))
    return known.solver, known.case


def add_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> None:
    """Options of `sweep new`: the solver and its case, one per parameter the solver declares,
    the grid file. A bad --solver or --case is a usage error (exit 2), --help included."""
    from ..errors import ConfigError
    from ..solvers.registry import DEFAULT_SOLVER, load_solver
    from ..spec import PRIORITIES

    solver_name, case = _chosen(argv)
    parser.add_argument("directory", metavar="DIR", help="directory to write (created if missing)")
    parser.add_argument(
        "--solver",
        default=DEFAULT_SOLVER,
        metavar="NAME",
        help=f"the solver of every package (default {DEFAULT_SOLVER}): spectral, openfoam, command, or "
        "one an installed package registers (entry point group ns_sweep.solvers)",
    )
    parser.add_argument(
        "--case",
        default=None,
        metavar="TEMPLATE",
        help="the solver's template: a bundled OpenFOAM case (cavity) or a case directory, a command "
        "directory; paths are written relative to DIR",
    )
    parser.add_argument(
        "--from",
        dest="grid_file",
        metavar="FILE",
        help="grid file (.toml/.yaml): a table with priority, parameters (value lists), "
        "tags, solver, case; or several under 'grids'",
    )
    parser.add_argument(
        "--priority",
        choices=PRIORITIES,
        type=str.upper,
        default=None,
        help="priority of every package (default MEDIUM)",
    )
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="tag every package")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--force", action="store_true", help="replace existing package files")
    how.add_argument(
        "--append",
        action="store_true",
        help="add the packages to an existing sweep (its packages are kept; an id already there is refused)",
    )
    parser.add_argument(
        "--max-packages",
        default=None,
        metavar="N",
        help="refuse a grid of more combinations (counted first; default: the sweep.new.max-packages "
        "setting, 100000)",
    )
    parser.add_argument(
        "--worker-memory",
        default=None,
        metavar="SIZE",
        help="memory of one worker for the check that every run fits, e.g. 8GiB (default: this "
        "machine's memory / cores, as sweep validate)",
    )
    try:
        solver = load_solver(solver_name, case, ".")
    except ConfigError as exc:  # the options depend on it: say why now, as a usage error
        text = f"--{exc}" if isinstance(exc.option, str) and str(exc).startswith(exc.option) else str(exc)
        parser.error(text)
    spectral = solver_name == DEFAULT_SOLVER
    which = "" if spectral else f" of solver {solver_name}" + (f", case {case}" if case else "")
    group = parser.add_argument_group(f"parameter values{which} (one or more each)")
    for name, p in solver.params.items():
        opts = [_option(name), *(_option(old) for old in p.deprecated_names)]  # older names still work
        example = " (e.g. 32, 16x16x32 or 16,16,16; several: 16 32)" if spectral and name == "grid" else ""
        group.add_argument(
            *opts,
            dest=f"p_{name}",
            nargs="+",
            metavar="V",
            default=None,
            help=f"{p.doc} [{p.unit}; default {p.default}]{example}",
        )


def main(args: argparse.Namespace) -> int:
    """Expand the grid, check every combination, then write the files."""
    import os

    from ..errors import ConfigError, config_error
    from ..machine import memory_per_worker
    from ..solvers.registry import DEFAULT_SOLVER
    from ..spec import (
        append_packages,
        check_directory,
        check_document,
        expand_grids,
        listed_ids,
        parse_grid,
        parse_value,
        read_grid_file,
        write_packages,
    )
    from ..units import parse_size

    worker_memory = parse_size(args.worker_memory)
    values = {
        k[2:]: [
            (parse_grid if k[2:] == "grid" and args.solver == DEFAULT_SOLVER else parse_value)(v)
            for v in vals
        ]
        for k, vals in vars(args).items()
        if k.startswith("p_") and vals is not None
    }
    tags = {}
    for t in args.tag:
        key, sep, val = t.partition("=")
        if not sep or not key:
            raise ConfigError(f"--tag: bad value {t!r}; allowed: KEY=VALUE")
        tags[key] = parse_value(val)
    chosen = {"solver": args.solver} if args.solver != DEFAULT_SOLVER else {}
    if args.case is not None:
        chosen["case"] = args.case
    if args.grid_file:
        if values:
            raise ConfigError(
                f"--from: bad value {args.grid_file!r} together with parameter options "
                f"({', '.join(values)}); allowed: a grid file or options, not both"
            )
        grids = read_grid_file(args.grid_file)
        for g in grids:
            if args.priority and "priority" not in g:
                g["priority"] = args.priority
            if tags:
                g["tags"] = {**tags, **(g.get("tags") or {})}
            for key, value in chosen.items():
                g.setdefault(key, value)
        source, base = args.grid_file, os.path.dirname(os.path.abspath(args.grid_file))
    else:
        if not values:
            raise ConfigError(
                "parameters: bad value (none); allowed: at least one option such as "
                "--Re 100 400, or --from GRID.toml"
            )
        grids = [{"priority": args.priority or "MEDIUM", "parameters": values, "tags": tags, **chosen}]
        source, base = "options", "."
    taken = [pid for ids in listed_ids(args.directory).values() for pid in ids] if args.append else []
    docs = expand_grids(
        grids,
        source=source,
        base=base,
        directory=args.directory,
        max_packages=args.max_packages,
        taken=taken,
    )
    # every package is checked as `sweep validate` checks a file (memory included) before
    # anything is written: what `sweep new` writes, `sweep validate` accepts
    memory = worker_memory if worker_memory is not None else memory_per_worker()
    problems = [
        line
        for doc in docs
        for line in check_document(
            f"{source}: {doc['package_id']}", doc, args.directory, worker_memory=memory
        )
    ]
    if problems:
        raise config_error(problems)
    if args.append:
        names = append_packages(args.directory, docs)
    else:
        names = write_packages(args.directory, docs, force=args.force)
    del docs  # a million package documents: not kept through the check below
    # then the directory as a whole, exactly as `sweep validate` does: this also records each
    # file's verdict in the validation cache (the first `sweep run` need not re-check them)
    _, problems = check_directory(args.directory, worker_memory=memory)
    if problems:
        raise config_error(problems)
    what = "added" if args.append else "wrote"
    print(f"{what} {len(names)} package(s) and priority_summary.json in {args.directory} (checked)")
    return EXIT_OK
