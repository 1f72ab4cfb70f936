"""The zarr v3 result store: a group per large run, batch groups of small runs, an index
over all runs, one writer.

Layout (a local path or an fsspec URL)::

    results.zarr/
      zarr.json                 root group; attrs["ns_sweep"]: schema version, creation time
      lock.json                 the writer lock (holder host, pid, since)
      runs/<run_id>/            a run with final fields on (x, y, z), or above ``pack_bytes``:
                                its Dataset as a zarr group (time series on `time`, spectrum
                                on `k`, the fields); its zarr.json, whose attrs["ns_sweep_run"]
                                is the run's record (parameters, provenance, status), is
                                written LAST: it is the marker. A failed run: the marker alone
      batches/<name>/           packed runs (``sweep.packed``: every other done run), stacked
                                on a `run` dimension; written by compaction, zarr.json last
      log/<seq>-<tag>.jsonl     one record per line for each commit or failure, with the
                                run's small time series; a packed run's record holds all its
                                data (it is the run's marker) until compaction batches it. A
                                writer session appends to one file (named after its first
                                record's sequence number); stores on object storage get
                                log/<seq>-<run_id>.json, one object per record
      index/                    attrs: the current compacted generation. index/<gen>/ holds
                                every record up to a log sequence number as columns (attrs),
                                provenance/ (attrs, read on demand) and series/ (the time
                                series as (run, slot) arrays). Compacted from the log at close
                                and every COMPACT_EVERY records
      checkpoints/<run_id>/     the latest checkpoint of an unfinished run (attrs point at
                                the complete generation; written by the driver)

Why a log and a compacted index instead of reading ``runs/``: opening 10,000 zarr groups
takes minutes, the columnar index well under a second (scripts/bench_store.py); and a
commit must not rewrite a table over all runs. The index is a cache: ``rebuild_index()``
recreates it from the markers in ``runs/``, the batch groups and the log. Small arrays of a
run group are written as zarr documents directly (``sweep.zarr_io``): through zarr's API
each array costs ~5 ms. A small run is packed because its own group would be 29 files and
directories: most of a tiny run's cost, and an inode count HPC file systems refuse.

Commit rule: data first, marker last, then the log record. A crash before the marker
leaves a run group without a done marker (it is redone); a crash between marker and log
record is repaired on the next open (runs whose marker is newer than the index are read
back). A packed run's log record is its data and its marker at once: torn by a crash, the
run is redone. Compaction writes the batch groups, then the index generation pointing at
them, then drops the log; a batch group no index points at (a compaction cut short: its
runs are still in the log) is removed by the next writer. A done run is never overwritten.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import functools
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .backends import O_CREATE, Appender, LocalBlobs, open_blobs, write_fd
from .errors import ConfigError, StoreError
from .index import LOG_HOME, RunRecord, RunTable
from .lock import WriterLock, acquire_lock
from .packed import Batch, Variable, batch_documents, decode_run, encode_run, packable, read_batch, to_dataset
from .zarr_io import encode_small, group_document, is_small, jsonable, write_large

__all__ = [
    "SCHEMA_VERSION",
    "FAILURE_CLASSES",
    "STATUSES",
    "SERIES_DIM",
    "COMPACT_EVERY",
    "RunRecord",
    "Store",
    "solver_version",
    "git_commit",
]

SCHEMA_VERSION = 2  # 2: packed runs (batches/, log records with data); 1 is upgraded on write
STATUSES = ("done", "failed")
FAILURE_CLASSES = ("diverged", "timeout", "error", "worker-lost")
SERIES_DIM = "time"  # variables on this dimension alone are copied into the index
COMPACT_EVERY = 2000  # log records before the writer folds them into the index
MARKER_ATTR = "ns_sweep_run"
ROOT_ATTR = "ns_sweep"
_PAUSE_ENV = "NS_SWEEP_TEST_PAUSE_BEFORE_MARKER"  # test hook: "<flag file>:<seconds>"

log = logging.getLogger("sweep.store")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ns-sweep")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


@functools.lru_cache(maxsize=1)
def solver_version() -> str:
    """The solver's version (``solver.SOLVER_VERSION``), else the ns-sweep distribution's."""
    import solver

    found = getattr(solver, "SOLVER_VERSION", None)
    return str(found) if found else _package_version()


@functools.lru_cache(maxsize=1)
def _hostname() -> str:
    return socket.gethostname()


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The project's git commit (with '+dirty' for local changes), None outside a checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


# record field -> provenance keys that fill it, the first present wins (the engine's and
# runner's names included)
_PROVENANCE_FIELDS: dict[str, tuple[str, ...]] = {
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


def _result_parts(ds: Any) -> tuple[list[Variable], dict[str, Any]]:
    """The variables and attributes of a result: an ``xarray.Dataset`` or a
    ``solver.output.RunResult`` (plain arrays: what a sweep's workers send, read without
    xarray's per-variable overhead). Both give the same stored bytes."""
    from solver.output import RunResult

    if isinstance(ds, RunResult):
        coords = ds.coords
        return ([Variable(n, tuple(d), np.asarray(v), a, n in coords) for n, d, v, a in ds.variables()],
                dict(ds.attrs))
    attrs = dict(ds.attrs)
    non_index = [n for n in ds.coords if n not in ds.dims]
    if non_index:
        attrs["coordinates"] = " ".join(non_index)
    coords = set(ds.coords)
    return ([Variable(n, tuple(v.dims), np.asarray(v.values), v.attrs, n in coords)
             for n, v in ds.variables.items()], attrs)


def _series_of(variables: list[Variable]) -> dict[str, np.ndarray]:
    """The run's 1-D numeric time series (and the time coordinate) as float64 copies."""
    by_name = {v.name: v for v in variables}
    time = by_name.get(SERIES_DIM)
    if time is None or time.dims != (SERIES_DIM,):
        return {}
    names = [SERIES_DIM] + [v.name for v in variables if not v.is_coord and v.dims == (SERIES_DIM,)
                            and v.values.dtype.kind in "biuf"]
    return {n: np.array(by_name[n].values, dtype="<f8") for n in names}


def _b64_series(series: Mapping[str, np.ndarray]) -> dict[str, str]:
    return {n: base64.b64encode(np.ascontiguousarray(a, dtype="<f8").tobytes()).decode()
            for n, a in series.items()}


def _encode_series(ds: Any) -> dict[str, str]:
    """The run's 1-D time series (and the time coordinate) as base64 float64."""
    return _b64_series(_series_of(_result_parts(ds)[0]))


def _decode_series(enc: Mapping[str, str]) -> dict[str, np.ndarray]:
    return {k: np.frombuffer(base64.b64decode(v), dtype="<f8") for k, v in enc.items()}


class Store:
    """A result store opened for reading (``mode="r"``) or as its single writer (``mode="a"``)."""

    def __init__(self, url: str, blobs: Any, mode: str, lock: WriterLock | None, pack_bytes: int = 0) -> None:
        self.url = url
        self.mode = mode
        self._blobs = blobs
        self._lock = lock
        self._zarr: Any = None
        self._table: RunTable | None = None
        self._gen: str | None = None  # the compacted index generation the table was read from
        self._max_seq = 0
        self._log_keys: list[str] = []  # log files holding records newer than the index
        self._log_records = 0  # records in them
        self._segment: Appender | None = None  # this writer session's log file (local stores)
        self._closed = False
        self.pack_bytes = pack_bytes  # runs of at most this many bytes of small arrays are packed
        # packed runs whose only copy is the log, decoded: run_id -> (record dict, variables,
        # dataset attributes)
        self._pending: dict[str, tuple[dict[str, Any], list[Variable], dict[str, Any]]] = {}
        self._batch_cache: tuple[str, Batch] | None = None  # the batch group read last

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, url: str | os.PathLike[str], mode: str = "r", *, pack_bytes: int | None = None,
             **storage_options: Any) -> "Store":
        """Open the store at ``url``: "r" reads; "a" creates it if needed and takes the writer lock.

        ``pack_bytes`` (writer): a run whose data are small 1-D arrays of at most this many
        bytes in all is packed (``sweep.packed``: no files of its own); 0 gives every run its
        group ``runs/<run_id>/``. Default: the ``sweep.store.pack-bytes`` setting.
        """
        from .config import get as config_get

        modes = {"r": False, "a": True}
        if mode not in modes:
            raise ConfigError(f"mode: bad value {mode!r}; allowed: one of " + ", ".join(map(repr, modes)))
        pack = config_get("store.pack-bytes", pack_bytes)
        if isinstance(pack, bool) or not isinstance(pack, int) or pack < 0:
            raise ConfigError(f"sweep.store.pack-bytes: bad value {pack!r}; allowed: an integer >= 0 "
                              "(bytes; 0 = no packed runs)")
        url = os.fspath(url)
        blobs = open_blobs(url, **storage_options)
        root = blobs.read("zarr.json")
        if root is None:
            if mode == "r":
                raise StoreError(f"{url}: no result store here; allowed: a store written by `sweep run` "
                                 "(check the path)")
            if blobs.children("") and not blobs.exists("zarr.json"):
                raise StoreError(f"{url}: not empty and not a result store; allowed: a new path or an "
                                 "existing store")
        else:
            cls._check_schema(url, root)
        lock = None
        if mode == "a":
            with _writing(url, "open the store for writing"):
                blobs.ensure_root()
                lock = acquire_lock(blobs)
                try:
                    current = blobs.read("zarr.json")
                    if current is None:
                        cls._initialise(blobs)
                    else:
                        cls._upgrade(blobs, current)
                except BaseException:
                    lock.release()
                    raise
        store = cls(url, blobs, mode, lock, pack)
        if mode == "a":
            try:
                with _writing(url, "open the store for writing"):
                    store._repair()
            except BaseException:
                store.close()
                raise
        return store

    @staticmethod
    def _check_schema(url: str, root: bytes) -> None:
        try:
            attrs = json.loads(root).get("attributes", {})
        except ValueError:
            raise StoreError(f"{url}/zarr.json: unreadable JSON; allowed: a result store's root "
                             "document (restore it from a backup)") from None
        meta = attrs.get(ROOT_ATTR)
        if not isinstance(meta, dict) or "schema_version" not in meta:
            raise StoreError(f"{url}: a zarr store but not an ns-sweep result store (no "
                             f"'{ROOT_ATTR}' attribute); allowed: a store written by `sweep run`")
        version = meta["schema_version"]
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise StoreError(f"{url}: schema_version: bad value {version!r}; allowed: at most "
                             f"{SCHEMA_VERSION} (this ns-sweep {_package_version()}); the store was written "
                             "by a newer ns-sweep: upgrade (pip install -U ns-sweep) to read it")

    @staticmethod
    def _upgrade(blobs: Any, root: bytes) -> None:
        """A writer of this version may write what older readers do not know (packed runs):
        raise the store's schema version so that they refuse it instead of misreading it."""
        doc = json.loads(root)
        meta = doc["attributes"][ROOT_ATTR]
        if meta["schema_version"] >= SCHEMA_VERSION:
            return
        if not blobs.exists("batches/zarr.json"):
            blobs.write("batches/zarr.json", group_document({}))
        meta.update(schema_version=SCHEMA_VERSION, upgraded=_now())
        blobs.write("zarr.json", json.dumps(doc).encode())

    @staticmethod
    def _initialise(blobs: Any) -> None:
        blobs.write_many({
            "runs/zarr.json": group_document({}),
            "batches/zarr.json": group_document({}),
            "checkpoints/zarr.json": group_document({}),
            "index/zarr.json": group_document({"current": None, "upto_seq": 0}),
        })
        blobs.write("zarr.json", group_document({ROOT_ATTR: {
            "schema_version": SCHEMA_VERSION, "created": _now(), "writer": f"ns-sweep {_package_version()}",
        }}))

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # an error is propagating: a close that fails too (disk full) must not mask it
            self.close()
        except (OSError, StoreError) as err:
            log.warning("store %s: index not compacted on close: %s", self.url, err)

    def close(self) -> None:
        """Fold the log into the index (writer) and release the lock; idempotent."""
        if self._closed:
            return
        try:
            if self.mode == "a" and self._log_keys:
                self.compact()
        finally:
            self._close_segment()
            self._closed = True
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __repr__(self) -> str:
        return f"Store({self.url!r}, mode={self.mode!r})"

    @property
    def zarr_store(self) -> Any:
        """The zarr Store object of this location (for zarr/xarray reads)."""
        if self._zarr is None:
            self._zarr = self._blobs.zarr_store(read_only=self.mode == "r")
        return self._zarr

    def _require_writer(self) -> None:
        if self.mode != "a" or self._closed:
            raise StoreError(f"{self.url}: opened read-only or closed; allowed: Store.open(url, mode='a') "
                             "by the one process that runs the sweep")

    # ------------------------------------------------------------------ reading

    def _index_pointer(self) -> dict[str, Any]:
        raw = self._blobs.read("index/zarr.json")
        return json.loads(raw).get("attributes", {}) if raw else {"current": None, "upto_seq": 0}

    def _load(self) -> RunTable:
        """The run table: compacted index, then the log after it, then markers newer than both."""
        if self._table is not None:
            return self._table
        for attempt in range(5):  # a reader racing the writer's compaction reads the new pointer
            ptr = self._index_pointer()
            upto = int(ptr.get("upto_seq") or 0)
            gen = ptr.get("current")
            raw = self._blobs.read(f"index/{gen}/zarr.json") if gen else None
            if not gen or raw is not None:
                break
            time.sleep(0.1 * (attempt + 1))
        else:
            raise StoreError(f"{self.url}: index generation {gen} is missing; allowed: a complete "
                             "index: run Store.open(url, 'a').rebuild_index() to rebuild it from runs/")
        if gen:
            doc = json.loads(raw)["attributes"]

            def series(gen: str = gen) -> tuple[dict[str, np.ndarray], np.ndarray]:
                import zarr  # only when time series are wanted: planning needs the columns only

                grp = zarr.open_group(self.zarr_store, path=f"index/{gen}/series", mode="r", zarr_format=3)
                arrays = {name: np.asarray(grp[name][...]) for name in grp.array_keys()}
                return arrays, arrays.pop("length")

            table = RunTable.from_columns(doc["columns"], series)
        else:  # no index yet (or lost): the batch groups stand in for it
            table = RunTable()
            self._read_batches(table)
        self._gen = gen
        self._table = table
        self._max_seq = upto
        self._pending = {}
        self._read_log(table, upto)
        self._adopt_markers(table)
        return table

    def _read_log(self, table: RunTable, upto: int) -> None:
        """Add the log's records newer than ``upto`` to ``table`` (a later record of a run wins)."""
        self._log_keys, self._log_records = [], 0
        for key in sorted(self._blobs.children("log")):
            if not key.endswith((".json", ".jsonl")):
                continue
            raw = self._blobs.read(f"log/{key}")
            if raw is None:
                continue  # removed by a compaction right now: the new index holds it
            self._log_keys.append(key)
            # a .jsonl file holds whole lines only up to its last newline: a torn last record
            # (being written, or cut by a crash) is left out
            lines = [raw] if key.endswith(".json") else raw.split(b"\n")[:-1]
            for line in lines:
                try:
                    d = json.loads(line)
                    rec = d["record"]
                    seq = int(rec["seq"])
                    if seq <= upto or seq <= table.seq(rec["run_id"]):
                        continue  # already folded into the index (left by a compaction cut short)
                    packed = d.get("run")
                    if packed is not None:  # a packed run: the record holds all its data
                        variables, attrs = decode_run(packed)
                        table.upsert(rec, _series_of(variables), LOG_HOME)
                        self._pending[rec["run_id"]] = (rec, variables, attrs)
                    else:
                        table.upsert(rec, _decode_series(d.get("series") or {}))
                        self._pending.pop(rec["run_id"], None)
                except (TypeError, ValueError, KeyError):
                    # torn by a crash, or being written right now: the run's marker, written
                    # before its record, stands in for it (_adopt_markers); a packed run's
                    # record is its marker: such a run is redone
                    log.debug("store %s: skipping an unreadable log record in %s", self.url, key)
                    continue
                self._log_records += 1
                self._max_seq = max(self._max_seq, seq)

    def _read_batches(self, table: RunTable) -> None:
        """Add the runs of every complete batch group to ``table`` (a later record of a run wins)."""
        for name in sorted(self._blobs.children("batches")):
            batch = read_batch(self.zarr_store, f"batches/{name}") if name != "zarr.json" else None
            for rid, record in zip(batch.run_ids, batch.records) if batch is not None else ():
                if int(record["seq"]) > table.seq(rid):
                    table.upsert(record, _series_of(batch.run(rid)[0]), name)
                    self._max_seq = max(self._max_seq, int(record["seq"]))

    def _read_marker(self, run_id: str) -> RunRecord | None:
        raw = self._blobs.read(f"runs/{run_id}/zarr.json")
        if raw is None:
            return None
        try:
            d = json.loads(raw).get("attributes", {}).get(MARKER_ATTR)
        except ValueError:
            return None
        if not isinstance(d, dict) or d.get("status") not in STATUSES:
            return None  # partial: written up to (not including) the marker
        return RunRecord.from_dict(d)

    def _adopt_markers(self, table: RunTable) -> None:
        """Runs whose marker is in runs/ but whose log record was lost to a crash."""
        for name in self._blobs.children("runs"):
            if name == "zarr.json" or table.status(name) == "done":
                continue
            rec = self._read_marker(name)
            if rec is None or table.seq(name) >= rec.seq:
                continue
            series = self._series_from_run(name) if rec.status == "done" else {}
            self._max_seq = max(self._max_seq, rec.seq)
            if self.mode == "a" and self._lock is not None:
                log.info("store %s: recovering the index record of run %s", self.url, name)
                self._append_log(rec, series)
            else:
                table.upsert(rec.to_dict(), _decode_series(series))

    def _provenance_of_index(self) -> list[dict[str, Any]]:
        if not self._gen:
            return []
        raw = self._blobs.read(f"index/{self._gen}/provenance/zarr.json")
        return json.loads(raw)["attributes"]["provenance"] if raw else []

    def run_table(self) -> RunTable:
        """The index as columns (fast bulk access; see ``sweep.index.RunTable``)."""
        return self._load()

    def records(self) -> dict[str, RunRecord]:
        """run_id -> RunRecord of every run with a marker (done or failed)."""
        table = self._load()
        table.load_provenance(self._provenance_of_index)
        return {rid: table.record(i) for i, rid in enumerate(table.ids)}

    def done_run_ids(self) -> set[str]:
        """Ids of the runs that finished and are complete."""
        table = self._load()
        return {rid for rid, st in zip(table.ids, table.cols["status"]) if st == "done"}

    def run_ids_by_package(self) -> dict[str, set[str]]:
        """package id -> ids of the runs recorded for it (for stale detection)."""
        table = self._load()
        out: dict[str, set[str]] = {}
        for rid, pids in zip(table.ids, table.cols["package_ids"]):
            for pid in pids:
                out.setdefault(pid, set()).add(rid)
        return out

    def failures(self) -> dict[str, tuple[str, str]]:
        """run id -> (failure class, error text) of the failed runs."""
        table = self._load()
        return {rid: (fc or "error", err or "") for rid, st, fc, err in
                zip(table.ids, table.cols["status"], table.cols["failure_class"], table.cols["error"])
                if st == "failed"}

    def open_run(self, run_id: str) -> Any:
        """The stored Dataset of one run (lazy for large arrays); StoreError if it is not done."""
        import xarray as xr

        table = self._load()
        status = table.status(run_id)
        if status != "done":
            fail = self.failures().get(run_id)
            state = "not in the store" if status is None else f"failed ({fail[0]}: {fail[1]})"
            raise StoreError(f"{self.url}: run {run_id}: {state}; allowed: a done run "
                             f"({len(self.done_run_ids())} in this store)")
        home = table.home_of(run_id)
        if home is None:
            return xr.open_zarr(self.zarr_store, group=f"runs/{run_id}", consolidated=False, zarr_format=3,
                                chunks=None)
        if home == LOG_HOME:
            record, variables, attrs = self._pending[run_id]
        else:
            batch = self._batch(home)
            variables, attrs = batch.run(run_id)
            record = batch.records[batch.row[run_id]]
        return to_dataset(variables, {**attrs, MARKER_ATTR: record})

    def _batch(self, name: str) -> Batch:
        """The batch group ``batches/<name>`` (the last one read is kept: runs are read in order)."""
        if self._batch_cache is None or self._batch_cache[0] != name:
            batch = read_batch(self.zarr_store, f"batches/{name}")
            if batch is None:
                raise StoreError(f"{self.url}: batch group batches/{name} is missing or incomplete; "
                                 "allowed: a complete store: run Store.open(url, 'a').rebuild_index() to "
                                 "re-index what is there")
            self._batch_cache = (name, batch)
        return self._batch_cache[1]

    def _series_from_run(self, run_id: str) -> dict[str, str]:
        import xarray as xr

        ds = xr.open_zarr(self.zarr_store, group=f"runs/{run_id}", consolidated=False, zarr_format=3,
                          chunks=None)
        return _encode_series(ds)

    # ------------------------------------------------------------------ writing

    def _record(self, run_id: str, status: str, provenance: Mapping[str, Any], *,
                failure_class: str | None = None, error: str | None = None) -> RunRecord:
        from .spec import run_id_of

        prov = dict(provenance)
        if "params" not in prov:
            raise ConfigError("provenance: params: missing; allowed: the run's solver parameters "
                              "(SolverParams or mapping)")
        from solver import SolverParams

        given = prov.pop("params")
        if isinstance(given, SolverParams):  # validated already: hash it as it is
            expected, params = run_id_of(given), jsonable(given.as_dict())
        else:
            params = jsonable(dict(given))
            expected = run_id_of(params)
        if expected != run_id:
            raise StoreError(f"run {run_id}: parameters hash to run {expected}; allowed: the run_id of "
                             "these parameters (a result must never be stored under another run)")
        fields: dict[str, Any] = {}
        for target, keys in _PROVENANCE_FIELDS.items():
            value = next((prov[k] for k in keys if prov.get(k) is not None), None)
            if value is not None:
                fields[target] = value
        pids = fields.get("package_ids", ())
        fields["package_ids"] = (pids,) if isinstance(pids, str) else tuple(str(p) for p in pids)
        fields = jsonable(fields)
        fields["package_ids"] = tuple(fields["package_ids"])
        if "resumed_from_step" in fields and "resumed_from_checkpoint" not in fields:
            fields["resumed_from_checkpoint"] = True
        fields["resumed_from_checkpoint"] = bool(fields.get("resumed_from_checkpoint", False))
        if "host" not in fields:
            fields["host"] = _hostname()
        fields.setdefault("solver_version", solver_version())
        fields.setdefault("git_commit", git_commit())
        self._max_seq += 1
        return RunRecord(run_id=run_id, status=status, params=params, failure_class=failure_class,
                         error=error, committed=_now(), seq=self._max_seq,
                         provenance=jsonable(prov), **fields)

    def _guard_done(self, run_id: str) -> None:
        if self._load().status(run_id) == "done":
            raise StoreError(f"run {run_id} is already done in {self.url}; allowed: a run not done "
                             "yet (a done result is never replaced: give another --store to redo it)")

    def _append_log(self, rec: RunRecord, series: Mapping[str, str],
                    arrays: dict[str, np.ndarray] | None = None, packed: dict[str, Any] | None = None) -> None:
        """Append the record (and its base64 ``series``, decoded as ``arrays`` when given; or a
        packed run's encoded data, ``packed``, from which its series are taken)."""
        d = rec.to_dict()
        # a packed run: the store's own copy until compaction, decoded from the record itself
        # (what a reader of the log gets after a restart, and no view of the caller's arrays)
        if packed is not None:
            variables, attrs = decode_run(packed)
            arrays = _series_of(variables)
        # not atomic: a torn record does not parse and is skipped; the run's marker, written
        # before, then restores it (see _adopt_markers); a packed run is then redone
        body = {"record": d, "run": packed} if packed is not None else {"record": d, "series": dict(series)}
        data = json.dumps(body).encode()
        if self._segment is None and hasattr(self._blobs, "open_append"):
            key = f"{rec.seq:012d}-{os.urandom(4).hex()}.jsonl"
            self._segment = self._blobs.open_append(f"log/{key}")
            self._log_keys.append(key)
        if self._segment is not None:
            try:
                self._segment.append(data + b"\n")
            except BaseException:  # a torn record stays alone at its file's end
                self._close_segment()
                raise
        else:  # object storage: one object per record
            key = f"{rec.seq:012d}-{rec.run_id}.json"
            self._blobs.write(f"log/{key}", data, atomic=False)
            self._log_keys.append(key)
        self._log_records += 1
        if self._table is not None:
            self._table.upsert(d, arrays if arrays is not None else _decode_series(series),
                               LOG_HOME if packed is not None else None)
        if packed is not None:
            self._pending[rec.run_id] = (d, variables, attrs)

    def commit_run(self, run_id: str, ds: Any, provenance: Mapping[str, Any]) -> RunRecord:
        """Store a finished run: its data, then its done marker, then its index record.

        ``ds`` is the run's ``xarray.Dataset`` or a ``solver.output.RunResult`` (the same
        result as plain arrays; both store the same bytes). ``provenance`` must hold
        ``params``; ``package_ids``, ``priority``, ``wall_time``, ``start_time``,
        ``end_time``, ``attempt(s)``, ``resumed_from_step`` are recorded as fields,
        everything else is kept as free-form provenance.
        """
        self._require_writer()
        self._guard_done(run_id)
        rec = self._record(run_id, "done", provenance)
        base = f"runs/{run_id}"
        variables, attrs = _result_parts(ds)
        if packable(variables, self.pack_bytes):
            self._commit_packed(rec, variables, attrs)
            return rec
        # The group's zarr.json is the marker, written last; until then the directory holds
        # arrays but no group, which every reader treats as "not done". Data files skip the
        # write-then-rename (the marker guards them): half the file-system operations.
        items: dict[str, bytes] = {}
        large = []
        for v in variables:
            if is_small(v.values):
                items.update(encode_small(f"{base}/{v.name}", v.values, v.dims, v.attrs))
            else:
                large.append(v)
        # the record is JSON-safe by construction: only the Dataset's attributes need converting
        marker = json.dumps({"zarr_format": 3, "node_type": "group",
                             "attributes": {**jsonable(attrs), MARKER_ATTR: rec.to_dict()}}).encode()
        local = isinstance(self._blobs, LocalBlobs)
        # a write that fails (disk full) removes the partial run: nothing half-committed stays
        with _writing(self.url, f"commit run {run_id}", lambda: self._blobs.delete_tree(base)):
            if local:
                group = _NewLocalGroup(self._blobs, base, replace=self._load().status(run_id) is not None)
            else:
                if self._blobs.exists(base):
                    self._blobs.delete_tree(base)  # a failed or partial attempt: never mix its files in
                group = None
            try:
                if group is not None:
                    group.write_many(items)
                else:
                    self._blobs.write_many(items, atomic=False)
                for v in large:
                    write_large(self.zarr_store, f"{base}/{v.name}", v.values, v.dims, v.attrs)
                _test_pause()
                fault_point("before-marker", run_id)
                if group is not None:
                    group.write_atomic("zarr.json", marker)
                else:
                    self._blobs.write(f"{base}/zarr.json", marker)
            finally:
                if group is not None:
                    group.close()
        fault_point("before-log", run_id)
        series = _series_of(variables)
        with _writing(self.url, f"log the commit of run {run_id} (the run is done; the next open "
                      "recovers its record)"):
            self._append_log(rec, _b64_series(series), series)
        self._after_write(rec)
        return rec

    def _commit_packed(self, rec: RunRecord, variables: list[Variable], attrs: dict[str, Any]) -> None:
        """Commit a small run as one log record holding all its data (``sweep.packed``): the
        record is its done marker; compaction moves it into a batch group."""
        base = f"runs/{rec.run_id}"
        packed = encode_run(variables, attrs)
        _test_pause()
        fault_point("before-marker", rec.run_id)
        with _writing(self.url, f"commit run {rec.run_id}"):
            self._append_log(rec, {}, packed=packed)
            fault_point("before-log", rec.run_id)
            if self._blobs.exists(base):  # an earlier failure's marker or a partial attempt
                self._blobs.delete_tree(base)
        self._after_write(rec)

    def record_failure(self, run_id: str, failure_class: str, error: str,
                       provenance: Mapping[str, Any]) -> RunRecord:
        """Record a failed run (class and error text); a later success replaces it."""
        self._require_writer()
        if failure_class not in FAILURE_CLASSES:
            raise ConfigError(f"failure_class: bad value {failure_class!r}; allowed: one of "
                              + ", ".join(FAILURE_CLASSES))
        self._guard_done(run_id)
        rec = self._record(run_id, "failed", provenance, failure_class=failure_class, error=str(error))
        base = f"runs/{run_id}"
        with _writing(self.url, f"record the failure of run {run_id}", lambda: self._blobs.delete_tree(base)):
            if self._blobs.exists(f"{base}/zarr.json"):
                self._blobs.delete_tree(base)
            self._blobs.write(f"{base}/zarr.json", group_document({MARKER_ATTR: rec.to_dict()}))
            self._append_log(rec, {})
        self._after_write(rec)
        return rec

    def _close_segment(self) -> None:
        if self._segment is not None:
            self._segment.close()
            self._segment = None

    def _after_write(self, rec: RunRecord) -> None:
        if self._log_records >= COMPACT_EVERY:
            self.compact()

    def compact(self) -> None:
        """Fold the log into a new index generation, switch to it, then drop the old one."""
        self._require_writer()
        table = self._load()
        if not len(table) and not self._log_keys:
            return
        table.load_provenance(self._provenance_of_index)
        ptr = self._index_pointer()
        tag = f"{self._max_seq:012d}-{os.urandom(3).hex()}"
        gen = f"g{tag}"
        batches: list[str] = []

        def cleanup() -> None:  # a failed write: the log still holds everything
            for name in batches:
                self._blobs.delete_tree(f"batches/{name}")
            self._blobs.delete_tree(f"index/{gen}")

        with _writing(self.url, "write the index", cleanup):
            homes = self._write_batches(f"b{tag}", batches)
            fault_point("compact-before-index")
            try:
                for rid, name in homes.items():
                    table.home[table.pos[rid]] = name
                self._write_index(gen, table)
                self._blobs.write("index/zarr.json", group_document({"current": gen, "upto_seq": self._max_seq}))
            except BaseException:
                for rid in homes:
                    table.home[table.pos[rid]] = LOG_HOME
                raise
        self._pending = {}
        self._gen = gen
        if ptr.get("current") and ptr["current"] != gen:
            self._blobs.delete_tree(f"index/{ptr['current']}")
        self._close_segment()  # the next record starts a new log file
        for key in self._log_keys:
            self._blobs.delete(f"log/{key}")
        self._log_keys, self._log_records = [], 0

    def _write_batches(self, base: str, written: list[str]) -> dict[str, str]:
        """Write the packed runs that only the log holds as batch groups (named ``base-<k>``,
        appended to ``written`` before their first file); returns run id -> batch name."""
        # batches/zarr.json exists: made with the store, or by _upgrade when a writer opened it
        homes: dict[str, str] = {}
        for name, run_ids, items, group in batch_documents(base, list(self._pending.values())):
            written.append(name)
            self._blobs.write_many({f"batches/{name}/{k}": v for k, v in items.items()}, atomic=False)
            self._blobs.write(f"batches/{name}/zarr.json", group)  # last: the batch exists
            homes.update(dict.fromkeys(run_ids, name))
        return homes

    def _write_index(self, gen: str, table: RunTable) -> None:
        """One index generation: columns (zarr.json attrs), provenance, series as single chunks.

        Written uncompressed in one chunk per array: it is always read whole, and float
        series barely compress (measured: zstd saves ~10% and costs ~0.2 s per 10,000 runs).
        """
        base = f"index/{gen}"
        self._blobs.delete_tree(base)  # leftovers of a compaction cut short
        series, lengths = table.series()

        def group(attrs: dict[str, Any]) -> bytes:  # values are JSON-safe by construction
            return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": attrs}).encode()

        items = {f"{base}/provenance/zarr.json": group({"provenance": table.prov}),
                 f"{base}/series/zarr.json": group({})}
        items.update(encode_small(f"{base}/series/length", lengths, ("run",), {}))
        for name, a in series.items():
            items.update(encode_small(f"{base}/series/{name}", a, ("run", "slot"), {}))
        self._blobs.write_many(items)
        # the generation's root document last: a generation without it is never pointed at
        self._blobs.write(f"{base}/zarr.json", group({"upto_seq": self._max_seq, "n_runs": len(table),
                                                      "columns": table.to_columns()}))

    def rebuild_index(self) -> int:
        """Recreate the index from the runs' own data alone (the markers in runs/, the batch
        groups in batches/, the packed runs in the log); returns the run count."""
        self._require_writer()
        table = RunTable()
        for name in sorted(self._blobs.children("runs")):
            rec = self._read_marker(name) if name != "zarr.json" else None
            if rec is not None and rec.seq > table.seq(name):
                series = self._series_from_run(name) if rec.status == "done" else {}
                table.upsert(rec.to_dict(), _decode_series(series))
                self._max_seq = max(self._max_seq, rec.seq)
        self._read_batches(table)
        self._table, self._gen, self._pending = table, None, {}
        self._close_segment()
        self._read_log(table, 0)
        if len(table):
            self.compact()
        return len(table)

    def _repair(self) -> None:
        """Writer open: load (adopting orphan markers), drop checkpoints of done runs (left by a
        crash between a commit and its checkpoint's removal), drop batch groups that no run
        points at (left by a compaction cut short: their runs are still in the log), fold a
        long log into the index."""
        table = self._load()
        for rid in self.checkpoint_run_ids() & self.done_run_ids():
            self.drop_checkpoint(rid)
        used = set(table.home)
        for name in self._blobs.children("batches"):
            if name != "zarr.json" and name not in used:
                log.info("store %s: removing batch group %s left by an unfinished compaction", self.url, name)
                self._blobs.delete_tree(f"batches/{name}")
        if self._log_records >= COMPACT_EVERY:
            self.compact()

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, run_id: str, arrays: Mapping[str, np.ndarray], *,
                        step: int | None = None) -> None:
        """Save a run's latest state (``solver.State.to_arrays()``); atomic: old or new, never half."""
        self._require_writer()
        gen = f"s{int(step) if step is not None else 0:012d}-{int(time.time() * 1000):x}"
        base = f"checkpoints/{run_id}"
        items = {f"{base}/{gen}/zarr.json": group_document({"step": step})}
        large = []
        for name, a in arrays.items():
            a = np.asarray(a)
            if is_small(a):
                items.update(encode_small(f"{base}/{gen}/{name}", a, (), {}))
            else:
                large.append((name, a))
        # a failed write drops the new generation only: the pointer still names the old one
        with _writing(self.url, f"save a checkpoint of run {run_id}",
                      lambda: self._blobs.delete_tree(f"{base}/{gen}")):
            self._blobs.write_many(items)
            for name, a in large:
                write_large(self.zarr_store, f"{base}/{gen}/{name}", a, (), {})
            fault_point("checkpoint-before-pointer", run_id)
            old = self._checkpoint_pointer(run_id)
            self._blobs.write(f"{base}/zarr.json", group_document({
                "current": gen, "step": step, "names": sorted(arrays), "saved": _now(),
                "solver_version": _state_solver_version(arrays.get("params_json"))}))
        if old and old.get("current") and old["current"] != gen:
            self._blobs.delete_tree(f"{base}/{old['current']}")

    def _checkpoint_pointer(self, run_id: str) -> dict[str, Any] | None:
        raw = self._blobs.read(f"checkpoints/{run_id}/zarr.json")
        return json.loads(raw).get("attributes") if raw else None

    def load_checkpoint(self, run_id: str) -> dict[str, np.ndarray] | None:
        """The arrays of a run's latest complete checkpoint, None when it has none."""
        import zarr

        ptr = self._checkpoint_pointer(run_id)
        if not ptr or not ptr.get("current"):
            return None
        grp = zarr.open_group(self.zarr_store, path=f"checkpoints/{run_id}/{ptr['current']}", mode="r",
                              zarr_format=3)
        return {name: np.asarray(grp[name][...]) for name in ptr.get("names", grp.array_keys())}

    def drop_checkpoint(self, run_id: str) -> None:
        """Forget a run's checkpoint (after its result is committed)."""
        self._require_writer()
        self._blobs.delete(f"checkpoints/{run_id}/zarr.json")  # the pointer first: never half-visible
        self._blobs.delete_tree(f"checkpoints/{run_id}")

    def checkpoints(self) -> dict[str, tuple[int | None, str | None]]:
        """run id -> (step, solver version) of each saved checkpoint, from one read of its
        pointer (None: saved without a step / version not known). A run resumes only from a
        checkpoint of this solver version (other versions round differently)."""
        out = {}
        for rid in self.checkpoint_run_ids():
            ptr = self._checkpoint_pointer(rid) or {}
            version = ptr.get("solver_version")
            if version is None and ptr.get("current"):  # a pointer written before it said so
                version = self._checkpoint_state_version(rid, ptr["current"])
            out[rid] = (ptr.get("step"), version)
        return out

    def _checkpoint_state_version(self, run_id: str, gen: str) -> str | None:
        import zarr

        try:
            arr = zarr.open_array(self.zarr_store, path=f"checkpoints/{run_id}/{gen}/params_json",
                                  mode="r", zarr_format=3)
            return _state_solver_version(arr[...])
        except (KeyError, FileNotFoundError, ValueError):
            return None

    def checkpoint_steps(self) -> dict[str, int | None]:
        """run id -> step of its saved checkpoint (None when saved without a step)."""
        return {rid: step for rid, (step, _) in self.checkpoints().items()}

    def checkpoint_versions(self) -> dict[str, str | None]:
        """run id -> the solver version that wrote its checkpoint (None: not known)."""
        return {rid: version for rid, (_, version) in self.checkpoints().items()}

    def checkpoint_run_ids(self) -> set[str]:
        """Runs that have a saved checkpoint."""
        return {n for n in self._blobs.children("checkpoints")
                if n != "zarr.json" and self._blobs.exists(f"checkpoints/{n}/zarr.json")}

    def iter_records(self) -> Iterator[RunRecord]:
        """Records in commit order."""
        return iter(sorted(self.records().values(), key=lambda r: r.seq))


def _state_solver_version(params_json: Any) -> str | None:
    """The solver version inside a ``solver.State``'s ``params_json`` array (None if absent)."""
    from solver import State

    if params_json is None:
        return None
    try:
        version = json.loads(State.key_of_arrays({"params_json": params_json})).get("solver_version")
    except (ValueError, AttributeError):
        return None
    return str(version) if version is not None else None


class _NewLocalGroup:
    """Writes the files of a new run group on a local file system with the fewest system
    calls: the group directory is created (``replace``: after removing an earlier attempt's;
    a partial one left by a crash is removed too), then every file and directory is made
    relative to its descriptor, with no existence checks (a commit costs ~60 file-system
    operations, each ~60 us here: they were most of a tiny run's commit)."""

    def __init__(self, blobs: LocalBlobs, base: str, *, replace: bool) -> None:
        self.fsync = blobs.fsync
        path = os.path.join(blobs.root, *base.split("/"))
        if replace:
            shutil.rmtree(path, ignore_errors=True)
        try:
            os.mkdir(path)
        except FileExistsError:  # a partial attempt (crash before its marker): never mix it in
            shutil.rmtree(path)
            os.mkdir(path)
        except FileNotFoundError:
            os.makedirs(path)
        self.prefix = base + "/"
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        self.made: set[str] = set()

    def _parents(self, rel: str) -> None:
        parent = rel.rpartition("/")[0]
        if not parent or parent in self.made:
            return
        self._parents(parent)
        os.mkdir(parent, dir_fd=self.fd)
        self.made.add(parent)

    def write_many(self, items: Mapping[str, bytes]) -> None:
        """Write files (keys under the group's path) in place: the marker guards them."""
        n = len(self.prefix)
        for key, data in items.items():
            rel = key[n:]
            self._parents(rel)
            fd = os.open(rel, O_CREATE, 0o666, dir_fd=self.fd)
            try:
                write_fd(fd, data, self.fsync)
            finally:
                os.close(fd)

    def write_atomic(self, name: str, data: bytes) -> None:
        """Write a file of the group directory through a temporary file and a rename."""
        tmp = f"{name}.{os.urandom(4).hex()}.partial"
        fd = os.open(tmp, O_CREATE, 0o666, dir_fd=self.fd)
        try:
            write_fd(fd, data, self.fsync)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _test_pause() -> None:
    """Test hook: with NS_SWEEP_TEST_PAUSE_BEFORE_MARKER=<flag>:<s>, touch flag, sleep before the marker."""
    spec = os.environ.get(_PAUSE_ENV)
    if spec:
        flag, _, seconds = spec.rpartition(":")
        with open(flag, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(float(seconds))


_FAULT_ENV = "NS_SWEEP_TEST_PAUSE_AT"  # fault-injection hook: "<point>:<flag file>:<seconds>"


def fault_point(name: str, run_id: str | None = None) -> None:
    """Fault-injection hook (tests only): with NS_SWEEP_TEST_PAUSE_AT=<name>:<flag>:<seconds>
    (or <name>@<run_id>:... for one run only), write this pid to <flag> and sleep at the named
    point, where a test SIGKILLs the process.

    Points: store ``before-marker`` (run data written, done marker not; a packed run: nothing
    written yet), ``before-log`` (marker written, log record not; a packed run: its record is
    its marker, the run is done), ``checkpoint-before-pointer``, ``compact-before-index``
    (batch groups written, the index pointing at them not); engine ``before-commit``,
    ``after-commit``, ``after-checkpoint``. Unset (always, outside tests), it does nothing.
    """
    spec = os.environ.get(_FAULT_ENV)
    if not spec:
        return
    point, _, rest = spec.partition(":")
    if point not in (name, f"{name}@{run_id}"):
        return
    flag, _, seconds = rest.rpartition(":")
    with open(flag, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(float(seconds))


# errno of a failed write -> what it means; anything else stays an unexpected error
_WRITE_ERRNOS: dict[int, str] = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system or the process's file-size limit",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def _writing(url: str, what: str, cleanup: Any = None) -> Iterator[None]:
    """Turn the OS errors of a store write (disk full, read-only) into a one-line StoreError,
    after ``cleanup()`` removed what the write left half-done (best effort)."""
    try:
        yield
    except OSError as exc:
        why = _WRITE_ERRNOS.get(exc.errno or 0)
        if why is None:
            raise
        if cleanup is not None:
            try:
                cleanup()
            except OSError:
                pass
        fix = ("free some space (or raise the quota/limit) and run again" if exc.errno in _FULL_ERRNOS
               else "remount it read-write or fix its permissions, or give another --store; "
                    "reading it (sweep status, open_results) still works")
        where = f" ({exc.filename})" if exc.filename else ""
        raise StoreError(f"{url}: cannot {what}: {why}{where}; allowed: a writable store with free "
                         f"space: {fix}; finished runs are kept") from None
