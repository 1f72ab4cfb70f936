"""The store's writes of run outcomes: a done run as its own group or packed into the log, a
failure as its marker; each record checked against its parameters first (a result is never
stored under another run's id) and never replacing a done run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError, StoreError, option_error
from ..faults import fault_point
from .groups import write_failure_marker, write_run_group
from .index import RunIndex
from .packed import encode_run, packable
from .records import FAILURE_CLASSES, RunRecord, make_record
from .variables import Variable, encode_profiles, encode_series, profiles_of, result_variables, series_of
from .write_errors import writing
from .zarr_docs import jsonable

__all__ = ["RunWriter"]


class RunWriter:
    """Commits into one store (its writer lock is held by the ``Store`` that owns this)."""

    def __init__(
        self, blobs: Any, url: str, index: RunIndex, zarr_store: Callable[[], Any], pack_bytes: int
    ) -> None:
        self._blobs = blobs
        self.url = url
        self._index = index
        self._zarr_store = zarr_store
        self.pack_bytes = pack_bytes  # runs of at most this many bytes of small arrays are packed

    def _record(
        self,
        run_id: str,
        status: str,
        provenance: Mapping[str, Any],
        *,
        failure_class: str | None = None,
        error: str | None = None,
    ) -> RunRecord:
        """The record of a commit, after checking that the parameters hash to ``run_id``."""
        from solver import SolverParams

        from ..solvers.registry import DEFAULT_SOLVER
        from ..solvers.run_params import RunParams
        from ..spec import run_id_of

        prov = dict(provenance)
        if "params" not in prov:
            raise ConfigError(
                "provenance: params: missing; allowed: the run's solver parameters (SolverParams, "
                "RunParams or a mapping of spectral parameters)"
            )
        given = prov.pop("params")
        solver, case = DEFAULT_SOLVER, None
        if isinstance(given, RunParams):  # another solver: its identity, template and name
            expected, params = run_id_of(given), jsonable(given.canonical())
            solver, case = given.solver_name, given.case
            prov.setdefault("template_hash", given.template_hash)
            prov.setdefault("all_params", jsonable(given.as_dict()))  # execution-only ones too
        elif isinstance(given, SolverParams):  # validated already: hash it as it is
            expected, params = run_id_of(given), jsonable(given.as_dict())
        else:
            params = jsonable(dict(given))
            expected = run_id_of(params)
        if expected != run_id:
            raise StoreError(
                f"run {run_id}: parameters hash to run {expected}; allowed: the run_id of "
                "these parameters (a result must never be stored under another run)"
            )
        return make_record(
            run_id,
            status,
            params,
            prov,
            seq=self._index.next_seq(),
            failure_class=failure_class,
            error=error,
            solver=solver,
            case=case,
        )

    def _guard_done(self, run_id: str) -> None:
        if self._index.status(run_id) == "done":
            raise StoreError(
                f"run {run_id} is already done in {self.url}; allowed: a run not done "
                "yet (a done result is never replaced: give another --store to redo it)"
            )

    def commit_run(self, run_id: str, ds: Any, provenance: Mapping[str, Any]) -> RunRecord:
        """Store a finished run (see ``Store.commit_run``): its data, then its done marker, then
        its index record; or, packed, one log record that is all three."""
        self._guard_done(run_id)
        rec = self._record(run_id, "done", provenance)
        variables, attrs = result_variables(ds)
        if packable(variables, self.pack_bytes):
            self._commit_packed(rec, variables, attrs)
            return rec
        base = f"runs/{run_id}"
        # a write that fails (disk full) removes the partial run: nothing half-committed stays
        with writing(self.url, f"commit run {run_id}", lambda: self._blobs.delete_tree(base)):
            write_run_group(
                self._blobs,
                self._zarr_store(),
                rec,
                variables,
                attrs,
                replace=self._index.status(run_id) is not None,
            )
        fault_point("before-log", run_id)
        series = series_of(variables)
        profiles = encode_profiles(profiles_of(variables))
        with writing(
            self.url, f"log the commit of run {run_id} (the run is done; the next open recovers its record)"
        ):
            self._index.append(rec, encode_series(series), series, profiles=profiles)
        return rec

    def _commit_packed(self, rec: RunRecord, variables: list[Variable], attrs: dict[str, Any]) -> None:
        """Commit a small run as one log record holding all its data (``sweep.store.packed``):
        the record is its done marker; compaction moves it into a batch group."""
        base = f"runs/{rec.run_id}"
        packed = encode_run(variables, attrs)
        fault_point("before-marker", rec.run_id)
        with writing(self.url, f"commit run {rec.run_id}"):
            self._index.append(rec, {}, packed=packed)
            fault_point("before-log", rec.run_id)
            if self._blobs.exists(base):  # an earlier failure's marker or a partial attempt
                self._blobs.delete_tree(base)

    def record_failure(
        self, run_id: str, failure_class: str, error: str, provenance: Mapping[str, Any]
    ) -> RunRecord:
        """Record a failed run (class and error text); a later success replaces it."""
        if failure_class not in FAILURE_CLASSES:
            raise option_error("failure_class", failure_class, "one of " + ", ".join(FAILURE_CLASSES))
        self._guard_done(run_id)
        rec = self._record(run_id, "failed", provenance, failure_class=failure_class, error=str(error))
        base = f"runs/{run_id}"
        with writing(self.url, f"record the failure of run {run_id}", lambda: self._blobs.delete_tree(base)):
            write_failure_marker(self._blobs, rec)
            self._index.append(rec, {})
        return rec
