"""Turn a finished case directory into a ``solver.output.RunResult``.

The result has the shape of the spectral solver's: time series on ``time`` (the initial
residual of each solved field per step, the Courant numbers, probe values on ``time`` x
``<probes function>``), sampled profiles on their own coordinate (``u_centerline`` on ``y``),
and, when asked, the final fields on ``cell`` with the cell centres. Attributes are strings
and numbers only: the parameters as JSON, the case's name and content hash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from solver.output import RunResult

from ..errors import ExternalSolverError
from .case import CaseTemplate
from .parse import LogSeries, parse_dimensions, parse_internal_field, parse_probes, parse_raw_set

__all__ = ["read_result", "COMPONENTS"]

# component suffixes by number of components (scalar, vector, symmTensor, tensor)
COMPONENTS: Mapping[int, tuple[str, ...]] = {
    1: ("",),
    3: ("_x", "_y", "_z"),
    6: ("_xx", "_xy", "_xz", "_yy", "_yz", "_zz"),
    9: ("_xx", "_xy", "_xz", "_yx", "_yy", "_yz", "_zx", "_zy", "_zz"),
}

Variables = dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, Any]]]


def read_result(
    case: CaseTemplate,
    values: Mapping[str, Any],
    work: Path,
    series: LogSeries,
    provenance: Mapping[str, Any],
) -> RunResult:
    """The RunResult of a finished run of ``case`` in ``work`` (``series``: its application log)."""
    n = series.completed
    times = np.asarray(series.times[:n], dtype=np.float64)
    time_unit = case.params[case.time_end].unit if case.time_end else ""
    data: Variables = {}
    coords: Variables = {"time": (("time",), times, {"units": time_unit, "long_name": "simulation time"})}
    for name, column in series.residuals.items():
        data[f"residual_{name}"] = (
            ("time",),
            np.asarray(column[:n], dtype=np.float64),
            {"units": "1", "long_name": f"initial residual of {name} (first solve of the time step)"},
        )
    data["courant_mean"] = (
        ("time",),
        np.asarray(series.courant_mean[:n], dtype=np.float64),
        {"units": "1", "long_name": "mean Courant number"},
    )
    data["courant_max"] = (
        ("time",),
        np.asarray(series.courant_max[:n], dtype=np.float64),
        {"units": "1", "long_name": "maximum Courant number"},
    )
    for function in case.outputs.probes:
        _probes(case, work, function, times, data, coords)
    scope = {**case.constants, **values}
    final = series.time_names[n - 1] if n else "0"
    for prof in case.outputs.profiles:
        path = work / prof.file.format(time=final)
        table = parse_raw_set(_read(path, work, f"outputs.profiles.{prof.name}"))
        coord = table[:, prof.coord_column] * float(prof.coord_scale.evaluate(scope))
        value = table[:, prof.column] * float(prof.scale.evaluate(scope))
        if prof.coord in coords and not np.array_equal(coords[prof.coord][1], coord):
            raise ValueError(f"profiles on coordinate {prof.coord!r} sample different points")
        coords[prof.coord] = (
            (prof.coord,),
            coord,
            {"units": prof.coord_units, "long_name": prof.coord_long_name},
        )
        data[prof.name] = ((prof.coord,), value, {"units": prof.units, "long_name": prof.long_name})
    if values.get("keep_fields"):
        _fields(case, work, final, data, coords)
    attrs = {
        "title": f"OpenFOAM case {case.name}: {case.description}".rstrip(": "),
        "solver": "openfoam",
        "case": case.name,
        "case_source": case.source,
        "case_hash": case.hash,
        "application": case.application,
        "params": json.dumps(dict(values), sort_keys=True),
        "final_time": final,
        "n_steps": n,
        **provenance,
    }
    return RunResult(data, coords, attrs)


def _read(path: Path, work: Path, what: str) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise ExternalSolverError(f"{what}: the case wrote no {path.relative_to(work)}") from None


def _units(case: CaseTemplate, field: str) -> str:
    template = case.tree.files.get(f"0/{field}")
    return parse_dimensions(template.decode("utf-8", "replace")) if template else ""


def _probes(
    case: CaseTemplate, work: Path, function: str, times: np.ndarray, data: Variables, coords: Variables
) -> None:
    """Probe values on (time, <function>); rows of a resumed run's later start directory win."""
    root = work / "postProcessing" / function
    starts = sorted(_time_dirs(root), key=lambda p: float(p.name))
    fields = sorted({f.name for start in starts for f in start.iterdir() if f.is_file()})
    tol = 0.5 * float(np.min(np.diff(times))) if times.size > 1 else 1e-12
    for field in fields:
        locations, merged = None, None
        for start in starts:
            path = start / field
            if not path.is_file():
                continue
            text = path.read_text()
            loc, t, v = parse_probes(text[: text.rfind("\n") + 1])  # no partly written last row
            if merged is None:
                locations = loc
                merged = np.full((times.size, v.shape[1], v.shape[2]), np.nan)
            rows = _match(times, t, tol)
            ok = rows >= 0
            merged[rows[ok]] = v[ok]
        if merged is None:
            continue
        coords[function] = (
            (function,),
            np.arange(merged.shape[1]),
            {
                "long_name": f"probe of function {function}",
                "locations": json.dumps(np.asarray(locations).tolist()),
            },
        )
        for k, suffix in enumerate(
            COMPONENTS.get(merged.shape[2], tuple(f"_{i}" for i in range(merged.shape[2])))
        ):
            data[f"{function}_{field}{suffix}"] = (
                ("time", function),
                merged[:, :, k],
                {"units": _units(case, field), "long_name": f"{field}{suffix} at the probes of {function}"},
            )


def _time_dirs(root: Path) -> list[Path]:
    """The subdirectories of ``root`` named by a time (a function object's start times)."""
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        try:
            float(p.name)
        except ValueError:
            continue
        if p.is_dir():
            out.append(p)
    return out


def _match(times: np.ndarray, t: np.ndarray, tol: float) -> np.ndarray:
    """Index into ``times`` of each ``t`` (the nearest within ``tol``), -1 where none is."""
    if times.size == 0 or t.size == 0:
        return np.full(t.shape, -1)
    i = np.clip(np.searchsorted(times, t), 1, times.size - 1) if times.size > 1 else np.zeros(t.shape, int)
    if times.size > 1:
        left = np.abs(times[i - 1] - t) <= np.abs(times[i] - t)
        i = np.where(left, i - 1, i)
    return np.where(np.abs(times[i] - t) <= tol, i, -1)


def _fields(case: CaseTemplate, work: Path, final: str, data: Variables, coords: Variables) -> None:
    """The final time's cell values of ``outputs.fields``, on ``cell``, with the cell centres."""
    directory = work / final
    centres = directory / "C"
    n_cells = None
    if centres.is_file():
        c = parse_internal_field(centres.read_text())
        n_cells = len(c)
        for k, axis in enumerate("xyz"):
            data[f"cell_{axis}"] = (("cell",), c[:, k], {"units": "m", "long_name": f"cell centre {axis}"})
    for field in case.outputs.fields:
        values = parse_internal_field(_read(directory / field, work, f"outputs.fields.{field}"), n_cells)
        n_cells = len(values)
        for k, suffix in enumerate(COMPONENTS.get(values.shape[1], ())):
            data[f"{field}{suffix}"] = (
                ("cell",),
                values[:, k],
                {"units": _units(case, field), "long_name": f"{field}{suffix} at t = {final} (cell values)"},
            )
    if n_cells is not None:
        coords["cell"] = (("cell",), np.arange(n_cells), {"long_name": "cell index"})
