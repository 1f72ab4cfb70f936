"""The zarr v3 result store: open it, query it, commit runs into it. One writer, any readers.

Layout (a local path or an fsspec URL)::

    results.zarr/
      zarr.json                 root group; attrs["ns_sweep"]: schema version, creation time
      lock.json                 the writer lock (holder host, pid, since)  (sweep.store.lock)
      runs/<run_id>/            a run with final fields, or above ``pack_bytes``: its Dataset
                                as a zarr group, its marker zarr.json written LAST; a failed
                                run: the marker alone                      (sweep.store.groups)
      batches/<name>/           packed runs stacked on a `run` dimension   (sweep.store.packed)
      log/<seq>-<tag>.jsonl     a record per commit or failure since the index (sweep.store.log)
      index/                    segments of every record, merged by size tiers (sweep.store.index,
                                sweep.store.segments)
      checkpoints/<run_id>/     the latest checkpoint of an unfinished run (sweep.store.checkpoints)
      status.json               what the last sweep's driver said about itself (jobs, workers,
                                running runs), rewritten every few seconds while it runs

Why a log and an index of segments instead of reading ``runs/``: opening 10,000 zarr groups
takes minutes, the columnar index well under a second (scripts/bench_store.py); a commit
must not rewrite a table over all runs, and neither must a flush of the log (segments are
merged by size tiers: each row is rewritten O(log N) times). Why packed runs: a small run's own group
would be 29 files and directories, most of a tiny run's cost and an inode count HPC file
systems refuse.

Commit rule: data first, marker last, then the log record. A crash before the marker
leaves a run group without a done marker (it is redone); a crash between marker and log
record is repaired on the next open (runs whose marker is newer than the index are read
back). A packed run's log record is its data and its marker at once: torn by a crash, the
run is redone. A done run is never overwritten.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, StoreError, option_error
from ..faults import fault_point
from .blobs import LocalBlobs, open_blobs
from .checkpoints import Checkpoints
from .commit import RunWriter
from .groups import MARKER_ATTR
from .index import RunIndex
from .lock import WriterLock, acquire_lock
from .packed import to_dataset
from .records import RunRecord
from .schema import check_schema, creation_cut_short, initialise, upgrade
from .table import RunTable
from .write_errors import writing

__all__ = ["Store"]

log = logging.getLogger("sweep.store")

# the temporary file of an atomic replacement (blobs.LocalBlobs, groups): <name>.<8 hex>.partial
_PARTIAL = re.compile(r"^[^/]+\.[0-9a-f]{8}\.partial$")
STATUS_KEY = "status.json"  # the running sweep's status document (Store.write_status)

_MODES = {"r": False, "a": True}  # zarr's names: read, or read and write


class Store:
    """A result store opened for reading (``mode="r"``) or as its single writer (``mode="a"``)."""

    def __init__(
        self,
        url: str,
        blobs: Any,
        mode: str,
        lock: WriterLock | None,
        pack_bytes: int = 0,
        compact_every: int = 2000,
        merge_fan_in: int = 4,
        merge_max_rows: int = 8192,
    ) -> None:
        self.url = url
        self.mode = mode
        self._blobs = blobs
        self._lock = lock
        self._zarr: Any = None
        self._closed = False
        self.pack_bytes = pack_bytes  # runs of at most this many bytes of small arrays are packed
        self.compact_every = compact_every  # log records before the writer folds them into the index
        self._index = RunIndex(
            blobs,
            url,
            lambda: self.zarr_store,
            writer=mode == "a",
            fan_in=merge_fan_in,
            flush_rows=compact_every,
            merge_max_rows=merge_max_rows,
        )
        self._checkpoints = Checkpoints(blobs, url, lambda: self.zarr_store)
        self._writer = RunWriter(blobs, url, self._index, lambda: self.zarr_store, pack_bytes)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        url: str | os.PathLike[str],
        mode: str = "r",
        *,
        pack_bytes: int | None = None,
        break_lock: bool = False,
        **storage_options: Any,
    ) -> Store:
        """Open the store at ``url``: "r" reads; "a" creates it if needed (or completes a
        creation cut short) and takes the writer lock.

        ``pack_bytes`` (writer): a run whose data are small 1-D arrays of at most this many
        bytes in all is packed (``sweep.store.packed``: no files of its own); 0 gives every run
        its group ``runs/<run_id>/``. Default: the ``sweep.store.pack-bytes`` setting; the log
        is folded into the index every ``sweep.store.compact-every`` records, and the index's
        newest ``sweep.store.merge-fan-in`` segments of one size are merged into one (while the
        result has at most ``sweep.store.merge-max-rows`` rows).
        ``break_lock`` (writer): take over a lock that a process of another host holds
        (``sweep.store.lock``: only when that process is known to be gone).
        """
        from ..config import get as config_get

        if mode not in _MODES:
            raise option_error("mode", mode, "one of " + ", ".join(map(repr, _MODES)))
        pack = config_get("store.pack-bytes", pack_bytes)
        if isinstance(pack, bool) or not isinstance(pack, int) or pack < 0:
            raise ConfigError(
                f"sweep.store.pack-bytes: bad value {pack!r}; allowed: an integer >= 0 "
                "(bytes; 0 = no packed runs)"
            )
        every = config_get("store.compact-every")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(
                f"sweep.store.compact-every: bad value {every!r}; allowed: an integer >= 1 (log records)"
            )
        lock_timing = {}
        for key in ("lock-stale-after", "lock-refresh-every"):
            value = config_get(f"store.{key}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"sweep.store.{key}: bad value {value!r}; allowed: seconds > 0")
            lock_timing[key] = float(value)
        fan_in = config_get("store.merge-fan-in")
        if isinstance(fan_in, bool) or not isinstance(fan_in, int) or fan_in < 2:
            raise ConfigError(
                f"sweep.store.merge-fan-in: bad value {fan_in!r}; allowed: an integer >= 2 (index segments)"
            )
        max_rows = config_get("store.merge-max-rows")
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise ConfigError(
                f"sweep.store.merge-max-rows: bad value {max_rows!r}; allowed: an integer >= 1 (index rows)"
            )
        url = os.fspath(url)
        blobs = open_blobs(url, **storage_options)
        root_path = getattr(blobs, "root", None)  # a local store's directory
        # a regular file (or a link to one); a link to a directory still to be made is the user's choice
        if isinstance(root_path, str) and os.path.exists(root_path) and not os.path.isdir(root_path):
            raise StoreError(
                f"{url}: a file, not a result store; allowed: a directory (an existing store, or a "
                "new path where one is created)"
            )
        root = blobs.read("zarr.json")
        if root is None:
            if mode == "r":
                raise StoreError(
                    f"{url}: no result store here; allowed: a store written by `sweep run` (check the path)"
                )
            if blobs.children("") and not blobs.exists("zarr.json") and not creation_cut_short(blobs):
                raise StoreError(
                    f"{url}: not empty and not a result store; allowed: a new path or an existing store"
                )
        else:
            check_schema(url, root)
        lock = None
        if mode == "a":
            with writing(url, "open the store for writing"):
                blobs.ensure_root()
                if isinstance(blobs, LocalBlobs):  # no link, hard link or FIFO in its tree
                    blobs.check_tree()
                lock = acquire_lock(
                    blobs,
                    stale_after=lock_timing["lock-stale-after"],
                    break_lock=break_lock,
                    refresh_every=lock_timing["lock-refresh-every"],
                )
                try:
                    current = blobs.read("zarr.json")
                    if current is None:
                        # a second writer arriving now is refused, naming this process
                        fault_point("store-create")
                        initialise(blobs)
                    else:
                        upgrade(blobs, current)
                except BaseException:
                    lock.release()
                    raise
        store = cls(url, blobs, mode, lock, pack, every, fan_in, max_rows)
        if mode == "a":
            try:
                with writing(url, "open the store for writing"):
                    store._repair()
            except BaseException:
                store.close()
                raise
        return store

    def _repair(self) -> None:
        """Writer open: load (adopting orphan markers), drop checkpoints of done runs (left by a
        crash between a commit and its checkpoint's removal), drop the temporary files of
        replacements cut short, drop batch groups that no run
        points at and index segments the index does not list, turn an index of format 1 into
        segments, fold a long log into the index, finish a merge that is due."""
        self._index.open_writer()
        # each checkpoint's run looked up (not a set of every done run's id: ~100 MB at 1M)
        for rid in sorted(self.checkpoint_run_ids()):
            if self._index.status(rid) == "done":
                self.drop_checkpoint(rid)
        self._drop_partial_writes()
        self._index.drop_orphans()
        if self._index.legacy is not None:
            self._index.compact()
        self._compact_if_due()
        self._index.merge_due()

    def _drop_partial_writes(self) -> None:
        """Remove the temporary files of replacements a killed writer left half done (the
        status document, the index pointer): the file they were to replace is whole. Those
        inside groups go with their group."""
        for prefix in ("", "index"):
            for name in self._blobs.children(prefix):
                if _PARTIAL.match(name):
                    key = f"{prefix}/{name}" if prefix else name
                    log.info("store %s: removing %s left by a write cut short", self.url, key)
                    self._blobs.delete(key)

    def __enter__(self) -> Store:
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
            if self.mode == "a" and self._index.log.keys:
                self.compact()
        finally:
            self._index.log.close_segment()
            self._closed = True
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            if isinstance(self._blobs, LocalBlobs):
                self._blobs.close()

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
            raise StoreError(
                f"{self.url}: opened read-only or closed; allowed: Store.open(url, mode='a') "
                "by the one process that runs the sweep"
            )
        if self._lock is not None:
            self._lock.check()  # another process took the lock over: stop writing

    # ------------------------------------------------------------------ queries

    def run_table(self) -> RunTable:
        """The index as columns (fast bulk access; see ``sweep.store.table.RunTable``)."""
        return self._index.load()

    def records(self) -> dict[str, RunRecord]:
        """run_id -> RunRecord of every run with a marker (done or failed)."""
        table = self._index.load()
        table.load_provenance(self._index.provenance)
        return {rid: table.record(i) for i, rid in enumerate(table.ids)}

    def records_of(self, run_ids: Iterable[str]) -> dict[str, RunRecord]:
        """run_id -> RunRecord of the given runs (those in the store), provenance included:
        only theirs is read (``records()`` reads every run's)."""
        return self._index.records_of(run_ids)

    def last_done_records(self, per_group: int, params: Sequence[str]) -> list[RunRecord]:
        """The records (provenance included) of the last ``per_group`` done runs of each group
        of runs with one solver and equal values of the parameters ``params``, in store order
        (e.g. what a runtime predictor that keeps the recent runs of each size learns from):
        only their provenance is read."""
        keep = self._index.last_done(per_group, params)
        by_id = self.records_of(keep)
        return [by_id[rid] for rid in keep]

    def provenance_values(self, keys: Iterable[str]) -> dict[str, list[Any]]:
        """Provenance key -> its value in each run's provenance, in ``run_table()`` order (None
        where a run lacks it): a few keys of every run without reading the rest."""
        table = self._index.load()
        keys = list(keys)
        if any(p is None for p in table.prov):  # every row asked for: the index's own order
            out = self._index.provenance_keys(list(table.ids), keys)
        else:
            out = {k: [None] * len(table) for k in keys}
        for i, p in enumerate(table.prov):
            if p is not None:
                for k in keys:
                    out[k][i] = p.get(k)
        return out

    def done_run_ids(self) -> set[str]:
        """Ids of the runs that finished and are complete."""
        return {rid.decode() for rid in self.done_run_id_array().tolist()}

    def done_run_id_array(self) -> np.ndarray:
        """``done_run_ids`` as one sorted array of fixed-width bytes (ids are ASCII): a
        million ids in 16 MB, not a set of strings of ~100 MB."""
        return self._index.done_ids()

    def run_ids_by_package(self) -> dict[str, set[str]]:
        """package id -> ids of the runs recorded for it (for stale detection)."""
        table = self._index.load()
        out: dict[str, set[str]] = {}
        for rid, pids in zip(table.ids, table.cols["package_ids"], strict=True):
            for pid in pids:
                out.setdefault(pid, set()).add(rid)
        return out

    def failures(self) -> dict[str, tuple[str, str]]:
        """run id -> (failure class, error text) of the failed runs."""
        return {rid: (fc or "error", err or "") for rid, (fc, err) in self._index.failures().items()}

    def open_run(self, run_id: str) -> Any:
        """The stored Dataset of one run (lazy for large arrays); StoreError if it is not done."""
        import xarray as xr

        table = self._index.load()
        status = table.status(run_id)
        if status != "done":
            fail = self.failures().get(run_id)
            state = "not in the store" if fail is None else f"failed ({fail[0]}: {fail[1]})"
            raise StoreError(
                f"{self.url}: run {run_id}: {state}; allowed: a done run "
                f"({len(self.done_run_ids())} in this store)"
            )
        home = table.home_of(run_id)
        if home is None:
            return xr.open_zarr(
                self.zarr_store, group=f"runs/{run_id}", consolidated=False, zarr_format=3, chunks=None
            )
        variables, attrs, record = self._index.packed_run(run_id, home)
        return to_dataset(variables, {**attrs, MARKER_ATTR: record})

    # ------------------------------------------------------------------ writing

    def commit_run(self, run_id: str, ds: Any, provenance: Mapping[str, Any]) -> RunRecord:
        """Store a finished run: its data, then its done marker, then its index record.

        ``ds`` is the run's ``xarray.Dataset`` or a ``solver.output.RunResult`` (the same
        result as plain arrays; both store the same bytes). ``provenance`` must hold
        ``params``; ``package_ids``, ``priority``, ``wall_time``, ``start_time``,
        ``end_time``, ``attempt(s)``, ``resumed_from_step`` are recorded as fields,
        everything else is kept as free-form provenance.
        """
        self._require_writer()
        rec = self._writer.commit_run(run_id, ds, provenance)
        self._compact_if_due()
        return rec

    def record_failure(
        self, run_id: str, failure_class: str, error: str, provenance: Mapping[str, Any]
    ) -> RunRecord:
        """Record a failed run (class and error text); a later success replaces it."""
        self._require_writer()
        rec = self._writer.record_failure(run_id, failure_class, error, provenance)
        self._compact_if_due()
        return rec

    def _compact_if_due(self) -> None:
        if self._index.log.records >= self.compact_every:
            self.compact()

    def compact(self) -> None:
        """Fold the log into a new index generation, switch to it, then drop the old one."""
        self._require_writer()
        self._index.compact()

    def rebuild_index(self) -> int:
        """Recreate the index from the runs' own data alone (the markers in runs/, the batch
        groups in batches/, the packed runs in the log); returns the run count."""
        self._require_writer()
        return self._index.rebuild()

    # ------------------------------------------------------------------ the driver's status

    def write_status(self, document: Mapping[str, Any]) -> None:
        """Replace the running sweep's status document (``status.json``: a small JSON object,
        written atomically, so a reader sees the previous or this one). Its own key: safe next to
        the writer thread's commits."""
        self._require_writer()
        import json

        self._blobs.write(STATUS_KEY, json.dumps(document, sort_keys=True, default=str).encode())

    def status_document(self) -> dict[str, Any] | None:
        """The last status document a sweep's driver wrote (None: none, or unreadable)."""
        import json

        raw = self._blobs.read(STATUS_KEY)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(
        self, run_id: str, arrays: Mapping[str, np.ndarray], *, step: int | None = None
    ) -> None:
        """Save a run's latest state (``solver.State.to_arrays()``); atomic: old or new, never half."""
        self._require_writer()
        self._checkpoints.save(run_id, arrays, step)

    def load_checkpoint(self, run_id: str) -> dict[str, np.ndarray] | None:
        """The arrays of a run's latest complete checkpoint, None when it has none."""
        return self._checkpoints.load(run_id)

    def add_checkpoint_segment(self, run_id: str, segment: Mapping[str, Any]) -> bool:
        """Keep an attempt that ended without a result (an interrupted sweep) with the run's
        checkpoint; False when it has none. Its record then lists it and counts its time."""
        self._require_writer()
        return self._checkpoints.add_segment(run_id, segment)

    def checkpoint_segments(self, run_id: str) -> list[dict[str, Any]]:
        """The attempts of earlier sweeps a run's checkpoint carries on (oldest first)."""
        return self._checkpoints.segments(run_id)

    def drop_checkpoint(self, run_id: str) -> None:
        """Forget a run's checkpoint (after its result is committed)."""
        self._require_writer()
        self._checkpoints.drop(run_id)

    def checkpoints(self) -> dict[str, tuple[int | None, str | None]]:
        """run id -> (step, solver version) of each saved checkpoint (None: saved without a
        step / version not known). A run resumes only from a checkpoint of this solver version."""
        return self._checkpoints.steps_and_versions()

    def checkpoint_steps(self) -> dict[str, int | None]:
        """run id -> step of its saved checkpoint (None when saved without a step)."""
        return {rid: step for rid, (step, _) in self.checkpoints().items()}

    def checkpoint_versions(self) -> dict[str, str | None]:
        """run id -> the solver version that wrote its checkpoint (None: not known)."""
        return {rid: version for rid, (_, version) in self.checkpoints().items()}

    def checkpoint_run_ids(self) -> set[str]:
        """Runs that have a saved checkpoint."""
        return self._checkpoints.run_ids()
