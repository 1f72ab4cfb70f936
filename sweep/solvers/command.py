"""The ``command`` solver: any executable as a sweep run.

A command is a directory with a manifest, ``sweep-command.yaml``, and whatever the program
needs (a script, an input template). The manifest declares the parameters, the command line
(``${...}`` fields allowed), the input file written from the parameters (JSON of all values,
or a text template with ``${...}`` fields) and the output files the program writes (CSV,
NetCDF or zarr), which become the run's ``RunResult``. Example: ``examples/command/``.

``load_command`` reads the directory into memory (it travels with each task, as an OpenFOAM
case does); ``run_command`` runs it in a scratch directory, in its own process group under the
deadline. A non-zero exit is an ``ExternalSolverError`` whose message is the program's last
stderr line (``ProgramDiverged`` for the exit codes the manifest lists as divergence); a
declared output the program did not write is an error naming the file; the deadline kills the
whole process group (``ProgramTimeout``). Programs outside the directory (``python3``, your
solver's binary on PATH) are not part of the content hash: record their version yourself.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shlex
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from solver.output import RunResult
from solver.params import Param
from sweep.errors import ConfigError

from .errors import ExternalSolverError, ProgramDiverged, ProgramTimeout, check_keys, config_line
from .expressions import Expression, compile_expression, render_fields, template_fields
from .manifest import (
    COMMON_PARAMS,
    DeclaredSolver,
    declare_params,
    load_manifest,
    parse_time_block,
)
from .process import SCRATCH_ENV, describe_exit, run_program, scratch_dir
from .protocol import FieldError
from .template import TemplateTree, read_tree, rebuilt

__all__ = [
    "COMMAND_MANIFEST",
    "OUTPUT_FORMATS",
    "OutputFile",
    "CommandSpec",
    "load_command",
    "command_from_tree",
    "run_command",
    "load_solver",
]

COMMAND_MANIFEST = "sweep-command.yaml"
_TOP_KEYS = ("description", "params", "time", "command", "input", "outputs", "diverged_exit_codes")

Variables = dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, Any]]]


@dataclass(frozen=True)
class OutputFile:
    """A file the program writes, relative to its run directory, and how to read it."""

    file: str
    format: str  # a key of OUTPUT_FORMATS
    coord: str | None = None  # CSV: the column that is the dimension (default: the first)


@dataclass(frozen=True, eq=False)
class CommandSpec(DeclaredSolver):
    """A checked command directory: files, parameters, command line, input and outputs."""

    name: str
    source: str
    tree: TemplateTree = field(repr=False)
    description: str
    params: Mapping[str, Param] = field(repr=False)
    time_end: str | None
    time_step: str | None
    command: tuple[str, ...]
    command_fields: Mapping[str, Expression] = field(repr=False)
    input_file: str | None
    input_template: str | None
    input_fields: Mapping[str, Expression] = field(repr=False)
    outputs: tuple[OutputFile, ...]
    diverged_exit_codes: frozenset[int]

    supports_resume = False  # a command runs from the start every time
    solver_name: ClassVar[str] = "command"

    def __reduce__(self) -> tuple[Any, ...]:
        # a task carries the files only; the manifest is checked again where it arrives (once
        # per worker process for the same files)
        return (rebuilt, (command_from_tree, self.tree, self.name, self.source))

    def run(
        self,
        params: Mapping[str, Any],
        *,
        deadline: float | None = None,
        scratch_root: str | os.PathLike[str] | None = None,
        progress: Callable[[int, int, float], None] | None = None,
        checkpoint: Callable[[Any], None] | None = None,
        checkpoint_every_seconds: float | None = None,
        checkpoint_every_steps: int | None = None,
        resume: Any = None,
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        """``run_command`` with the keywords of ``run_case`` (a command reports no progress and
        takes no checkpoints; ``resume`` must be None)."""
        if resume is not None:
            raise ValueError("a command solver cannot resume; run it again from the start")
        return run_command(self, params, deadline=deadline, scratch_root=scratch_root, env=env)


def load_solver(case: str | None, base: Path) -> CommandSpec:
    """The solver registry's entry for ``"solver": "command"``: ``case`` is the command
    directory, relative to ``base`` (the package directory) unless absolute. A directory without
    ``sweep-command.yaml`` is a FieldError of field ``case``; a bad manifest a ConfigError."""
    allowed = (
        f"a command directory with {COMMAND_MANIFEST} (a relative path starts at the package "
        "directory; see examples/command/)"
    )
    if not isinstance(case, str) or not case:
        raise FieldError("case", case, allowed)
    path = Path(case).expanduser()
    path = path if path.is_absolute() else Path(base) / path
    if not (path / COMMAND_MANIFEST).is_file():
        raise FieldError("case", case, allowed)
    return load_command(path)


def load_command(directory: str | Path) -> CommandSpec:
    """A command directory (with ``sweep-command.yaml``), read into memory and checked; a missing
    directory or manifest or a bad manifest is a one-line ConfigError."""
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise ConfigError(
            config_line(
                str(directory), "(command)", str(directory), f"an existing directory with {COMMAND_MANIFEST}"
            )
        )
    if not (path / COMMAND_MANIFEST).is_file():
        raise ConfigError(
            config_line(
                str(path / COMMAND_MANIFEST),
                "(file)",
                None,
                f"a manifest {COMMAND_MANIFEST} in the command directory (see examples/command/)",
            )
        )
    return command_from_tree(read_tree(path, "command directory"), path.resolve().name, str(path.resolve()))


def command_from_tree(tree: TemplateTree, name: str, source: str) -> CommandSpec:
    """A CommandSpec from files in memory (how a task's command is rebuilt on a worker)."""
    file = str(Path(source) / COMMAND_MANIFEST)
    doc = load_manifest(tree, COMMAND_MANIFEST, file)
    check_keys(doc, _TOP_KEYS, file, "", required=("params", "command", "outputs"))
    declared = declare_params(doc["params"], file, reserved=tuple(COMMON_PARAMS))
    params = {**declared, **COMMON_PARAMS}
    names = list(params)
    defaults = {k: p.coerce(p.default) for k, p in params.items()}
    time_end, time_step = parse_time_block(doc.get("time"), file, declared)

    command = doc["command"]
    argv = shlex.split(command) if isinstance(command, str) else command
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise ConfigError(
            config_line(file, "command", command, "a command line: a string or a list of strings")
        )
    command_fields = _fields_of(argv, names, file, "command", defaults)

    input_file, input_template, input_fields = _input(doc.get("input"), file, tree, names, defaults)
    outputs = _outputs(doc["outputs"], file)
    codes = doc.get("diverged_exit_codes") or []
    if not (
        isinstance(codes, list)
        and all(isinstance(c, int) and not isinstance(c, bool) and 0 < c < 256 for c in codes)
    ):
        raise ConfigError(config_line(file, "diverged_exit_codes", codes, "a list of exit codes 1..255"))
    return CommandSpec(
        name,
        source,
        tree,
        str(doc.get("description", "")),
        MappingProxyType(params),
        time_end,
        time_step,
        tuple(argv),
        MappingProxyType(command_fields),
        input_file,
        input_template,
        MappingProxyType(input_fields),
        outputs,
        frozenset(codes),
    )


def _fields_of(
    texts: list[str], names: list[str], file: str, where: str, defaults: Mapping[str, Any]
) -> dict[str, Expression]:
    """The compiled ``${...}`` fields of some texts (a field naming no parameter: ConfigError)."""
    return {
        inner: compile_expression(inner, names, file, f"{where}: ${{{inner}}}", defaults)
        for text in texts
        for inner in template_fields(text)
    }


def _input(
    block: Any, file: str, tree: TemplateTree, names: list[str], defaults: Mapping[str, Any]
) -> tuple[str | None, str | None, dict[str, Expression]]:
    if block is None:
        return None, None, {}
    check_keys(block, ("file", "template"), file, "input", required=("file",))
    target = block["file"]
    if not isinstance(target, str) or not _relative(target):
        raise ConfigError(config_line(file, "input.file", target, "a relative path inside the run directory"))
    template = block.get("template")
    if template is None:
        return target, None, {}
    if template not in tree.files:
        raise ConfigError(
            config_line(
                file,
                "input.template",
                template,
                "a file of the command directory: "
                + ", ".join(sorted(p for p in tree.files if p != COMMAND_MANIFEST)),
            )
        )
    try:
        text = tree.files[template].decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(config_line(file, "input.template", template, "a UTF-8 text file")) from None
    shown = str(Path(file).parent / template)
    return target, template, _fields_of([text], names, shown, "input.template", defaults)


def _relative(path: str) -> bool:
    p = PurePosixPath(path)
    return bool(path) and not p.is_absolute() and ".." not in p.parts


def _outputs(block: Any, file: str) -> tuple[OutputFile, ...]:
    if not isinstance(block, list) or not block:
        raise ConfigError(config_line(file, "outputs", block, "a non-empty list of {file, format}"))
    out = []
    for i, spec in enumerate(block):
        where = f"outputs[{i}]"
        spec = {"file": spec} if isinstance(spec, str) else spec
        check_keys(spec, ("file", "format", "coord"), file, where, required=("file",))
        target = spec["file"]
        if not isinstance(target, str) or not _relative(target):
            raise ConfigError(
                config_line(file, f"{where}.file", target, "a relative path inside the run directory")
            )
        fmt = spec.get("format") or _SUFFIXES.get(PurePosixPath(target).suffix.lower())
        if not isinstance(fmt, str) or fmt not in OUTPUT_FORMATS:
            raise ConfigError(
                config_line(
                    file,
                    f"{where}.format",
                    fmt,
                    "one of " + ", ".join(OUTPUT_FORMATS) + " (or a file name ending .csv, .nc, .zarr)",
                )
            )
        out.append(OutputFile(target, fmt, spec.get("coord")))
    return tuple(out)


def run_command(
    spec: CommandSpec,
    params: Mapping[str, Any],
    *,
    deadline: float | None = None,
    scratch_root: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> RunResult:
    """Run the command with ``params`` (validated here; defaults filled in) in a scratch copy
    of its directory and return its outputs as a RunResult. ``deadline``: a ``time.time()``
    value; ``env``: extra environment variables."""
    t0 = time.time()
    values = spec.validate(params)
    with scratch_dir(scratch_root, f"ns-sweep-{spec.name}-", values["keep_failed"]) as work:
        spec.tree.write(work)
        _write_input(spec, values, work)
        argv = [render_fields(a, spec.command_fields, values) for a in spec.command]
        program = _resolve(argv[0], work, env)
        run_env = {**os.environ, **(env or {}), SCRATCH_ENV: str(work)}
        run = run_program(
            [program, *argv[1:]],
            cwd=work,
            env=run_env,
            deadline=deadline,
            stdout_path=work / "log.stdout",
            stderr_path=work / "log.stderr",
        )
        # name the script when the program is an interpreter running one of the directory's files
        shown = Path(next((a for a in argv if a in spec.tree.files), argv[0])).name
        if run.timed_out:
            assert deadline is not None
            raise ProgramTimeout(shown, -1, math.nan, deadline)
        said = (
            _last_words(run.stderr_tail)
            or _last_words((work / "log.stdout").read_text(errors="replace").splitlines())
            or "no output"
        )
        if run.returncode in spec.diverged_exit_codes:
            raise ProgramDiverged(shown, -1, math.nan, math.nan, f"exit code {run.returncode}: {said}")
        if run.returncode != 0:
            raise ExternalSolverError(f"{shown} failed ({describe_exit(run.returncode)}): {said}")
        data: Variables = {}
        coords: Variables = {}
        attrs: dict[str, Any] = {}
        for out in spec.outputs:
            path = work / out.file
            if not path.exists():
                raise ExternalSolverError(
                    f"{shown} wrote no {out.file} (declared in outputs of "
                    f"{COMMAND_MANIFEST}); its last words: {said}"
                )
            OUTPUT_FORMATS[out.format](path, out, data, coords, attrs)
    attrs.update(
        {
            "title": f"{spec.description} (command {spec.name})".lstrip(),
            "solver": "command",
            "command": spec.name,
            "command_source": spec.source,
            "command_line": shlex.join(argv),
            "program": program,
            "template_hash": spec.hash,
            "params": json.dumps(values, sort_keys=True),
            "wall_time": time.time() - t0,
        }
    )
    return RunResult(data, coords, attrs)


def _write_input(spec: CommandSpec, values: Mapping[str, Any], work: Path) -> None:
    if spec.input_file is None:
        return
    if spec.input_template is None:
        shown = {k: v for k, v in values.items() if k not in COMMON_PARAMS}
        text = json.dumps(shown, indent=1, sort_keys=True) + "\n"
    else:
        text = render_fields(spec.tree.files[spec.input_template].decode("utf-8"), spec.input_fields, values)
    target = work / spec.input_file
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def _resolve(program: str, work: Path, env: Mapping[str, str] | None) -> str:
    """The executable: a path (relative to the run directory) or a name on PATH."""
    if "/" in program:
        path = (work / program) if not os.path.isabs(program) else Path(program)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise ExternalSolverError(f"{program}: no executable file at {path}")
    found = shutil.which(program, path=(env or {}).get("PATH", os.environ.get("PATH")))
    if found is None:
        raise ExternalSolverError(f"{program}: not found on PATH")
    return found


def _last_words(lines: list[str]) -> str:
    """The last non-blank line of a program's output."""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def _json_safe(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes kept as strings and numbers (numpy scalars unwrapped), others dropped."""
    out = {}
    for k, v in attrs.items():
        v = v.item() if isinstance(v, np.generic) else v
        if isinstance(v, (str, int, float)) and not isinstance(v, bool):
            out[str(k)] = v
    return out


def _add(
    name: str,
    entry: tuple[tuple[str, ...], np.ndarray, dict[str, Any]],
    into: Variables,
    out: OutputFile,
    coords: bool = False,
) -> None:
    if name in into:
        if coords and np.array_equal(into[name][1], entry[1]):
            return
        raise ExternalSolverError(f"{out.file}: variable {name!r} is also in another output file")
    into[name] = entry


def _read_csv(path: Path, out: OutputFile, data: Variables, coords: Variables, attrs: dict[str, Any]) -> None:
    """A CSV with a header: one column is the dimension (``coord``, default the first), the
    others variables on it."""
    rows = list(csv.reader(io.StringIO(path.read_text())))
    if not rows or not rows[0]:
        raise ExternalSolverError(f"{out.file}: empty CSV; expected a header line and numeric rows")
    header = [h.strip() for h in rows[0]]
    try:
        table = np.asarray([[float(v) for v in row] for row in rows[1:] if row], dtype=np.float64)
    except ValueError as exc:
        raise ExternalSolverError(f"{out.file}: not a numeric CSV ({exc})") from None
    table = table.reshape(-1, len(header))
    dim = out.coord or header[0]
    if dim not in header:
        raise ExternalSolverError(f"{out.file}: no column {dim!r}; columns: {', '.join(header)}")
    _add(dim, ((dim,), table[:, header.index(dim)], {}), coords, out, coords=True)
    for k, name in enumerate(header):
        if name != dim:
            _add(name, ((dim,), table[:, k], {}), data, out)


def _read_xarray(
    path: Path, out: OutputFile, data: Variables, coords: Variables, attrs: dict[str, Any]
) -> None:
    """A NetCDF file or zarr store: its variables and dimension coordinates (an index for a
    dimension without one)."""
    import xarray as xr

    opener = xr.open_zarr if out.format == "zarr" else xr.open_dataset
    with opener(path) as ds:
        ds = ds.load()
    for dim, size in ds.sizes.items():
        values = ds[dim].values if dim in ds.coords else np.arange(size)
        meta = _json_safe(ds[dim].attrs) if dim in ds.coords else {}
        _add(str(dim), ((str(dim),), np.asarray(values), meta), coords, out, coords=True)
    for name, var in ds.variables.items():
        if name in ds.dims:
            continue
        _add(
            str(name),
            (tuple(str(d) for d in var.dims), np.asarray(var.values), _json_safe(var.attrs)),
            data,
            out,
        )
    for k, v in _json_safe(ds.attrs).items():
        attrs.setdefault(k, v)


_SUFFIXES = {".csv": "csv", ".nc": "netcdf", ".nc4": "netcdf", ".zarr": "zarr"}
# format -> reader(path, output, data_vars, coords, attrs): adds what the file holds
OUTPUT_FORMATS = MappingProxyType({"csv": _read_csv, "netcdf": _read_xarray, "zarr": _read_xarray})
