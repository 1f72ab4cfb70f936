"""`sweep new DIR`: write a package directory from a grid of parameter values."""

from __future__ import annotations

import argparse

from ..errors import EXIT_OK

HELP = "write package files from a grid (value lists as options, or a TOML/YAML grid file)"
DESCRIPTION = (
    "Write one package file per combination of the given values (cartesian product) and the "
    "priority summary. Each solver parameter has an option taking one or more values, e.g. "
    "`sweep new demo --Re 100 400 1600 --dt 0.01 --T-final 0.5 --grid 16,16,16 --priority HIGH`. "
    "Package ids come from the swept values, so the same grid gives the same files. "
    "Existing packages are kept unless --force."
)


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sweep new`: one per declared solver parameter, plus the grid file."""
    from solver.params import PARAMS

    from ..spec import PRIORITIES, SOLVER_TO_FILE

    parser.add_argument("directory", metavar="DIR", help="directory to write (created if missing)")
    parser.add_argument(
        "--from",
        dest="grid_file",
        metavar="FILE",
        help="grid file (.toml/.yaml): a table with priority, parameters (value lists), "
        "tags; or several under 'grids'",
    )
    parser.add_argument(
        "--priority", choices=PRIORITIES, default=None, help="priority of every package (default MEDIUM)"
    )
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="tag every package")
    parser.add_argument("--force", action="store_true", help="replace existing package files")
    group = parser.add_argument_group("parameter values (one or more each)")
    for name, p in PARAMS.items():
        fname = SOLVER_TO_FILE.get(name, name)
        opts = [_option(fname)] + ([_option(name)] if fname != name else [])
        example = " (e.g. 16,16,16 24,24,24)" if name == "grid" else ""
        group.add_argument(
            *opts,
            dest=f"p_{fname}",
            nargs="+",
            metavar="V",
            default=None,
            help=f"{p.doc} [{p.unit}]{example}",
        )


def main(args: argparse.Namespace) -> int:
    """Expand the grid, check every combination, then write the files."""
    from ..errors import ConfigError, config_error
    from ..spec import check_directory, expand_grids, parse_value, read_grid_file, write_packages

    values = {
        k[2:]: [parse_value(v) for v in vals]
        for k, vals in vars(args).items()
        if k.startswith("p_") and vals is not None
    }
    tags = {}
    for t in args.tag:
        key, sep, val = t.partition("=")
        if not sep or not key:
            raise ConfigError(f"--tag: bad value {t!r}; allowed: KEY=VALUE")
        tags[key] = parse_value(val)
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
        source = args.grid_file
    else:
        if not values:
            raise ConfigError(
                "parameters: bad value (none); allowed: at least one option such as "
                "--Re 100 400, or --from GRID.toml"
            )
        grids = [{"priority": args.priority or "MEDIUM", "parameters": values, "tags": tags}]
        source = "options"
    docs = expand_grids(grids, source=source)
    names = write_packages(args.directory, docs, force=args.force)
    # check what was written, as `sweep validate` would: this also records each file's verdict
    # in the validation cache, so the first `sweep run` of a large sweep need not re-check them
    # (the memory check depends on the workers and is left to `sweep run`)
    _, problems = check_directory(args.directory, check_memory=False)
    if problems:
        raise config_error(problems)
    print(f"wrote {len(names)} package(s) and priority_summary.json to {args.directory} (checked)")
    return EXIT_OK
