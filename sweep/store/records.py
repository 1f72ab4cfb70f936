"""A run's record: what the store knows about one run besides its arrays, and how a record
is made from the provenance the engine hands in (one place that maps provenance names onto
record fields)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..provenance import git_commit, hostname, solver_version, utc_now
from .zarr_docs import jsonable

__all__ = ["RunRecord", "RECORD_COLUMNS", "STATUSES", "FAILURE_CLASSES", "PROVENANCE_FIELDS", "make_record"]

STATUSES = ("done", "failed")
FAILURE_CLASSES = ("diverged", "timeout", "error", "worker-lost")


@dataclass(frozen=True)
class RunRecord:
    """What the store knows about one run (no array data)."""

    run_id: str
    status: str  # "done" or "failed"
    params: dict[str, Any]  # spectral: every value; another solver: its identity parameters
    package_ids: tuple[str, ...] = ()
    priority: str | None = None
    failure_class: str | None = None
    error: str | None = None
    wall_time: float | None = None
    start_time: str | None = None
    end_time: str | None = None
    attempts: int = 1
    resumed_from_checkpoint: bool = False
    resumed_from_step: int | None = None
    host: str | None = None
    solver_version: str | None = None
    git_commit: str | None = None
    committed: str | None = None
    seq: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)
    solver: str | None = None  # its registered name; None in records written before solvers had names
    case: str | None = None  # the name of the solver's template (an OpenFOAM case, a command)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (as stored); the values are JSON-safe by construction."""
        d = {f: getattr(self, f) for f in _FIELDS}
        d["package_ids"] = list(self.package_ids)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunRecord:
        """The inverse of ``to_dict`` (unknown keys of newer writers are ignored)."""
        known = {k: v for k, v in d.items() if k in _FIELD_SET}
        known["package_ids"] = tuple(known.get("package_ids") or ())
        known["params"] = dict(known.get("params") or {})
        known["provenance"] = dict(known.get("provenance") or {})
        return cls(**known)


_FIELDS = tuple(f.name for f in fields(RunRecord))
_FIELD_SET = frozenset(_FIELDS)
# the fields kept as plain columns (params are columns per parameter, provenance a side list)
RECORD_COLUMNS = tuple(f for f in _FIELDS if f not in ("params", "provenance"))


# record field -> provenance keys that fill it, the first present wins (the engine's and the
# worker side's names included)
PROVENANCE_FIELDS: dict[str, tuple[str, ...]] = {
    "package_ids": ("package_ids", "package_id"),
    "priority": ("priority",),
    "wall_time": ("wall_time",),
    "start_time": ("start_time", "started"),
    "end_time": ("end_time", "finished"),
    "attempts": ("attempts", "attempt"),
    "resumed_from_checkpoint": ("resumed_from_checkpoint", "resumed"),
    "resumed_from_step": ("resumed_from_step",),
    "host": ("host",),
    "solver_version": ("solver_version",),
    "git_commit": ("git_commit",),
}


def make_record(
    run_id: str,
    status: str,
    params: Mapping[str, Any],
    provenance: Mapping[str, Any],
    *,
    seq: int,
    failure_class: str | None = None,
    error: str | None = None,
    solver: str | None = None,
    case: str | None = None,
) -> RunRecord:
    """The record of one commit: ``params`` (JSON-safe identity parameters), the run's
    ``solver`` and ``case``, the record fields taken from ``provenance``
    (``PROVENANCE_FIELDS``), the rest of it kept as free-form provenance; host, solver version
    and git commit default to this process's."""
    prov = dict(provenance)
    values: dict[str, Any] = {}
    for target, keys in PROVENANCE_FIELDS.items():
        value = next((prov[k] for k in keys if prov.get(k) is not None), None)
        if value is not None:
            values[target] = value
    pids = values.get("package_ids", ())
    values["package_ids"] = (pids,) if isinstance(pids, str) else tuple(str(p) for p in pids)
    values = jsonable(values)
    values["package_ids"] = tuple(values["package_ids"])
    if "resumed_from_step" in values and "resumed_from_checkpoint" not in values:
        values["resumed_from_checkpoint"] = True
    values["resumed_from_checkpoint"] = bool(values.get("resumed_from_checkpoint", False))
    values.setdefault("host", hostname())
    values.setdefault("solver_version", solver_version())
    values.setdefault("git_commit", git_commit())
    return RunRecord(
        run_id=run_id,
        status=status,
        params=dict(params),
        failure_class=failure_class,
        error=error,
        committed=utc_now(),
        seq=seq,
        provenance=jsonable(prov),
        solver=solver,
        case=case,
        **values,
    )
