"""The store's index of runs: immutable segments, the log after them, flushes and merges.

``index/zarr.json`` (attrs ``format`` 2, ``segments``, ``upto_seq``) lists the index's
segments, oldest first (``sweep.store.segments``: each one a zarr group of columns, series
and profiles); together they hold every record up to log sequence number ``upto_seq``, a
later row of a run replacing an earlier one. Records after it are in the log
(``sweep.store.log``). The index is a cache: ``rebuild()`` recreates it from the runs' own
data alone (the markers in runs/, the batch groups, the packed runs of the log).

A flush (at close, and every ``sweep.store.compact-every`` log records) writes the packed
runs still in the log as batch groups, then the log's rows as one new segment (level 0),
then the new list, and only then drops the log. Then, while the newest
``sweep.store.merge-fan-in`` segments share a level, they are merged into one segment of
the next level: written whole, listed in their place, and only then deleted. Each row is
rewritten about log_fan_in(N / flush size) times, so the index costs O(N log N) in all, not
the O(N^2) of rewriting every row at every flush. A crash anywhere leaves the old list
valid: the log is whole until the list that holds its rows is written, a merge's inputs
until the list that replaces them is; segments and batch groups no list points at are
removed by the next writer (``drop_orphans``).

Stores of index format 1 (``current``: one generation ``index/<gen>/`` with every record
as JSON columns, rewritten at every compaction) are read as they are; their first writer
turns the generation into a segment (``compact``) and deletes it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import StoreError
from ..faults import fault_point
from . import index_reads as by_id
from . import scans
from .batch_groups import BatchGroups
from .groups import group_indexed, read_marker
from .log import RunLog
from .packed import decode_run
from .records import RunRecord
from .run_keys import RunKeys
from .segment_merge import merged_documents
from .segments import (
    Rows,
    concat_rows,
    level_of,
    merge_plan,
    read_segment,
    segment_documents,
)
from .table import LOG_HOME, Profiles, RunTable, Series
from .variables import Variable, decode_profiles, decode_series, profiles_of, series_of
from .write_errors import writing
from .zarr_docs import group_document

__all__ = ["RunIndex", "INDEX_FORMAT"]

log = logging.getLogger("sweep.store")

INDEX_FORMAT = 2  # 2: segments; 1: one generation rewritten at every compaction
_RETRIES = 5  # reads of the segment list when a racing writer's merge removed a segment

# a packed run whose only copy is the log, decoded: (record dict, variables, dataset attributes)
PendingRun = tuple[dict[str, Any], list[Variable], dict[str, Any]]


def empty_pointer() -> bytes:
    """``index/zarr.json`` of an index without segments."""
    return group_document({"format": INDEX_FORMAT, "segments": [], "upto_seq": 0})


class RunIndex:
    """The index of one open store: the run table in memory and what keeps it on disk."""

    def __init__(
        self,
        blobs: Any,
        url: str,
        zarr_store: Callable[[], Any],
        *,
        writer: bool,
        fan_in: int = 4,
        flush_rows: int = 2000,
        merge_max_rows: int = 8192,
    ) -> None:
        self._blobs = blobs
        self.url = url
        self._zarr_store = zarr_store  # called when arrays are read (zarr is imported then)
        self.writer = writer
        self.fan_in = fan_in  # segments of one level merged at once
        self.flush_rows = flush_rows  # rows of a flush, about (sizes the level of a rebuilt index)
        self.merge_max_rows = merge_max_rows  # no merge makes a segment of more rows
        self.table: RunTable | None = None
        # a writer, once it flushed: the status of the runs in the segments; ``table`` then
        # holds only the rows written since (``load`` reads the whole table again on request)
        self.flushed: RunKeys | None = None
        self.segments: list[dict[str, Any]] = []  # the list read (and kept up to date by the writer)
        self._metas: dict[str, tuple[str, dict[str, Any]]] = {}  # segment name -> (path, attributes)
        self.legacy: str | None = None  # an index format 1 generation the table was read from
        self.max_seq = 0
        self.log = RunLog(blobs, url)
        self.pending: dict[str, PendingRun] = {}  # packed runs whose only copy is the log
        self.batches = BatchGroups(blobs, url, zarr_store)
        self.merge_seconds = 0.0  # time this session spent merging segments (benchmarks)
        self.flush_seconds = 0.0  # time this session spent flushing the log (merges apart)

    # ------------------------------------------------------------------ reading

    def pointer(self) -> dict[str, Any]:
        """The attributes of ``index/zarr.json`` (the segments, or a format 1 generation)."""
        raw = self._blobs.read("index/zarr.json")  # missing: lost (the batch groups stand in)
        return json.loads(raw).get("attributes", {}) if raw else {}

    def _retrying(self, read: Callable[[dict[str, Any]], Any], what: str) -> Any:
        """``read(pointer)``, again with a fresh pointer when a racing writer's merge removed
        a segment it names."""
        for attempt in range(_RETRIES):
            ptr = self.pointer()
            try:
                return read(ptr)
            except FileNotFoundError:
                time.sleep(0.1 * (attempt + 1))
        raise StoreError(
            f"{self.url}: {what}: the index names a missing segment or generation; allowed: a "
            "complete index: run Store.open(url, 'a').rebuild_index() to rebuild it from runs/"
        )

    def load(self) -> RunTable:
        """The run table: the index's segments, then the log after them, then markers newer
        than both."""
        if self.flushed is not None:
            return self._whole()
        if self.table is not None:
            return self.table
        for _ in range(_RETRIES):
            ptr, table = self._retrying(lambda p: (p, self._read_table(p)), "read the index")
            upto = int(ptr.get("upto_seq") or 0)
            self.max_seq = max(self.max_seq, upto)
            self.pending = {}
            fault_point("index-read-before-log")
            self._apply_log(table, upto)
            # A writer's flush between the two reads lists a new segment, then drops the log
            # files it folded in: this reader saw neither (a done run gone, in the soak test).
            # The pointer changes before the log goes, so an unchanged one means a whole view.
            if self.pointer() == ptr:
                break
        self.segments = list(ptr.get("segments") or [])
        self.legacy = ptr.get("current") if "segments" not in ptr else None
        self._attach(table)
        self.table = table
        self._adopt_markers(table)
        return table

    def open_writer(self) -> None:
        """A writer's start: of the rows in the segments only their run ids and status
        (``flushed``), the log's rows as the table (``load`` reads the rest on request)."""
        ptr = self.pointer()  # the writer holds the lock: no merge changes it under us
        if not ptr.get("segments"):  # no segment yet, or index format 1 (converted whole now)
            self.load()
            return
        self.segments = list(ptr["segments"])
        upto = int(ptr.get("upto_seq") or 0)
        self.max_seq = max(self.max_seq, upto)
        self.flushed, self.table = RunKeys(), RunTable()  # _blocks reads the segments alone
        for ids, cols in self._blocks(("f:status",)):
            self.flushed.add(ids, cols["f:status"])
        self.pending = {}
        self._apply_log(self.table, upto)
        self._attach(self.table)
        self._adopt_markers(self.table)

    def _is_thin(self) -> bool:
        """Whether this is a writer that keeps only its unflushed rows (``flushed``: the
        status of the rest, in the segments)."""
        return self.flushed is not None and self.table is not None

    def _memory_rows(self) -> RunTable:
        """The rows in memory: a thin writer's own (unflushed) rows, else the whole table."""
        if self.flushed is not None and self.table is not None:  # as _is_thin (and for mypy)
            return self.table
        return self.load()

    def status(self, run_id: str) -> str | None:
        """The run's status ("done", "failed"; None: not in the store), without reading the
        whole table again in a writer that kept only its unflushed rows."""
        if self.flushed is None or self.table is None:
            return self.load().status(run_id)
        return self.table.status(run_id) or self.flushed.status(run_id)

    def failures(self) -> dict[str, tuple[str | None, str | None]]:
        """run id -> (failure class, error text) of the failed runs; a writer that kept only
        its unflushed rows reads these columns of its segments alone (not the whole table)."""
        return scans.failures(self._blocks(scans.FAILURE_COLUMNS))

    def _blocks(self, names: Sequence[str]) -> Iterator[scans.Block]:
        """The columns ``names`` (``f:<field>``, ``p:<parameter>``) of every row, a block at a
        time, oldest first: a writer that kept only its unflushed rows reads each segment's
        alone, then gives its own rows; else the whole table is one block."""
        if self._is_thin():
            yield from by_id.segment_columns(self._blobs, self._segment_metas(self.segments), names)
        yield scans.table_block(self._memory_rows(), names)

    def done_ids(self) -> np.ndarray:
        """The sorted, distinct ids (fixed-width bytes) of the done runs: a writer that kept
        only its unflushed rows makes them from its keys, not a set of a million strings."""
        table = self._memory_rows()
        done = [rid.encode() for rid, st in zip(table.ids, table.cols["status"], strict=True) if st == "done"]
        if self.flushed is None:
            return np.unique(np.array(done, dtype=bytes))
        keys = self.flushed.ids_with("done")  # sorted and distinct already
        return np.union1d(keys, np.array(done, dtype=bytes)) if done else keys

    def last_done(self, per_group: int, params: Sequence[str]) -> list[str]:
        """The run ids of the last ``per_group`` done runs of each group of runs with one
        solver and equal values of the parameters ``params``, in store order."""
        names = ("f:status", "f:solver", *(f"p:{k}" for k in params))
        blocks = self._blocks(names)
        return scans.last_done(
            ((ids, cols[names[0]], [cols[n] for n in names[1:]]) for ids, cols in blocks), per_group
        )

    def records_of(self, run_ids: Iterable[str]) -> dict[str, RunRecord]:
        """run_id -> RunRecord of the given runs in the index, provenance included: only
        theirs is read (a writer that kept only its unflushed rows: from the segments that
        hold them, one at a time)."""
        wanted = set(run_ids)
        out: dict[str, RunRecord] = {}
        if self._is_thin():  # the segments' rows first: the writer's own are newer
            out = by_id.segment_records(
                self._blobs, self._segment_metas(self.segments), wanted, self.provenance
            )
        table = self._memory_rows()
        out.update(
            scans.records(table, sorted(table.pos[r] for r in wanted if r in table.pos), self.provenance)
        )
        return out

    def _segment_metas(self, entries: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """(path, attributes) of the listed segments ``entries`` of this writer's index (a
        segment never changes: each one's are read once, not at every pass over them)."""
        new = [e for e in entries if e["name"] not in self._metas]
        try:
            read = self._reader({"segments": new}).segment_bases()
        except FileNotFoundError as exc:
            name = str(exc).removeprefix("index/")
            raise StoreError(
                f"{self.url}: index segment {name} is missing; allowed: a complete index: run "
                "Store.open(url, 'a').rebuild_index() to rebuild it from runs/"
            ) from None
        self._metas.update(zip([e["name"] for e in new], read, strict=True))
        return [self._metas[e["name"]] for e in entries]

    def _thin(self, table: RunTable) -> None:
        """A writer's flush put every row of ``table`` in the segments: keep their status only."""
        if self.flushed is None:
            self.flushed = RunKeys()
        self.flushed.add(table.ids, table.cols["status"])
        self.table = RunTable()
        self._attach(self.table)

    def _whole(self) -> RunTable:
        """The whole table of a writer that kept only its unflushed rows: the segments read
        again, those rows written over them (kept whole until the next flush)."""
        assert self.table is not None
        whole = self._retrying(self._read_table, "read the index")
        whole.absorb(self.table)
        self._attach(whole)
        self.table, self.flushed = whole, None
        return whole

    def _attach(self, table: RunTable) -> None:
        table.series_loader = self.series_by_id
        table.profiles_loader = self.profiles_by_id

    def _read_table(self, ptr: dict[str, Any]) -> RunTable:
        if "segments" in ptr:
            parts = []
            for entry in ptr["segments"]:
                got = read_segment(self._blobs, f"index/{entry['name']}")
                if got is None:
                    raise FileNotFoundError(entry["name"])
                parts.append(got[1])
            rows = concat_rows(parts)  # from_parts keeps a run's last row
            return RunTable.from_parts(rows.ids, rows.cols, rows.params)
        gen = ptr.get("current")
        if gen:  # index format 1
            raw = self._blobs.read(f"index/{gen}/zarr.json")
            if raw is None:
                raise FileNotFoundError(gen)
            return RunTable.from_columns(json.loads(raw)["attributes"]["columns"])
        table = RunTable()  # no index yet (or lost): the batch groups stand in for it
        self._read_batches(table)
        return table

    # -------------------------------------------------- series, profiles, provenance by run id

    def series_by_id(self, ids: list[str]) -> Series:
        """The indexed time series of runs ``ids`` (NaN rows of length 0 for runs not indexed)."""
        return self._retrying(lambda p: by_id.series(self._reader(p), ids), "read the time series")

    def profiles_by_id(self, ids: list[str]) -> Profiles:
        """The indexed profiles of runs ``ids``."""
        return self._retrying(lambda p: by_id.profiles(self._reader(p), ids), "read the profiles")

    def provenance(self, ids: list[str]) -> list[dict[str, Any]]:
        """The provenance of runs ``ids`` in the index (read on demand: it is large; only the
        segments holding some of them are read, and only their rows rebuilt)."""
        return self._retrying(lambda p: by_id.provenance(self._reader(p), ids), "read the provenance")

    def provenance_keys(self, ids: list[str], keys: list[str]) -> dict[str, list[Any]]:
        """Provenance key -> its value for each of runs ``ids`` in the index (None where a run
        lacks it), reading those keys' columns only (an index of format 1: all of it)."""
        return self._retrying(
            lambda p: by_id.provenance_keys(self._reader(p), ids, keys), "read the provenance"
        )

    def _reader(self, ptr: dict[str, Any]) -> by_id.IndexFiles:
        return by_id.IndexFiles(self._blobs, self._zarr_store, ptr)

    def _apply_log(self, table: RunTable, upto: int) -> None:
        """Add the log's records newer than ``upto`` to ``table`` (a later record of a run wins)."""
        for body in self.log.scan():
            rec = body["record"]
            seq = rec["seq"]
            if seq <= upto or seq <= table.seq(rec["run_id"]):
                continue  # already folded into the index (left by a compaction cut short)
            try:
                packed = body.get("run")
                if packed is not None:  # a packed run: the record holds all its data
                    variables, attrs = decode_run(packed)
                    table.upsert(rec, series_of(variables), LOG_HOME, profiles_of(variables))
                    self.pending[rec["run_id"]] = (rec, variables, attrs)
                else:
                    series = decode_series(body.get("series") or {})
                    table.upsert(rec, series, None, decode_profiles(body.get("profiles") or {}))
                    self.pending.pop(rec["run_id"], None)
            except (TypeError, ValueError, KeyError):
                log.debug("store %s: skipping an undecodable log record of run %s", self.url, rec["run_id"])
                continue
            self.log.records += 1
            self.max_seq = max(self.max_seq, seq)

    def _read_batches(self, table: RunTable) -> None:
        """Add the runs of every complete batch group to ``table`` (a later record of a run wins)."""
        for name, batch in self.batches.complete():
            for i, rid in enumerate(batch.run_ids):
                record = batch.record(i)
                if int(record["seq"]) > table.seq(rid):
                    variables = batch.run(rid)[0]
                    table.upsert(record, series_of(variables), name, profiles_of(variables))
                    self.max_seq = max(self.max_seq, int(record["seq"]))

    def _adopt_markers(self, table: RunTable) -> None:
        """Runs whose marker is in runs/ but whose log record was lost to a crash."""
        found = []
        for name in self._blobs.children("runs"):
            if name != "zarr.json" and self.status(name) != "done":
                rec = read_marker(self._blobs, name)
                if rec is not None:
                    found.append((name, rec))
        seqs = self._seqs({name for name, _ in found}) if found else {}
        for name, rec in found:
            if seqs.get(name, -1) >= rec.seq:
                continue
            series, profiles = group_indexed(self._zarr_store(), name) if rec.status == "done" else ({}, {})
            self.max_seq = max(self.max_seq, rec.seq)
            if self.writer:
                log.info("store %s: recovering the index record of run %s", self.url, name)
                self.append(rec, series, profiles=profiles)
            else:
                table.upsert(rec.to_dict(), decode_series(series), None, decode_profiles(profiles))

    def _seqs(self, run_ids: set[str]) -> dict[str, int]:
        """run id -> sequence number of its last row, of the runs ``run_ids`` in the index."""
        out: dict[str, int] = {}
        for ids, cols in self._blocks(("f:seq",)):
            out.update(
                (rid, int(s or 0)) for rid, s in zip(ids, cols["f:seq"], strict=True) if rid in run_ids
            )
        return out

    def packed_run(self, run_id: str, home: str) -> tuple[list[Variable], dict[str, Any], dict[str, Any]]:
        """(variables, dataset attributes, record) of a packed run, from the log or its batch."""
        if home == LOG_HOME:
            record, variables, attrs = self.pending[run_id]
            return variables, attrs, record
        batch = self.batches.get(home)
        variables, attrs = batch.run(run_id)
        return variables, attrs, batch.record(batch.row[run_id])

    # ------------------------------------------------------------------ writing

    def next_seq(self) -> int:
        """The sequence number of the next record."""
        self.max_seq += 1
        return self.max_seq

    def append(
        self,
        rec: RunRecord,
        series: dict[str, str],
        arrays: dict[str, np.ndarray] | None = None,
        packed: dict[str, Any] | None = None,
        profiles: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """Log a record with its base64 ``series`` (decoded as ``arrays`` when given) and
        ``profiles``, or a packed run's encoded data ``packed`` (its series and profiles are
        taken from it), and add it to the table."""
        d = rec.to_dict()
        # a packed run: the store's own copy until compaction, decoded from the record itself
        # (what a reader of the log gets after a restart, and no view of the caller's arrays)
        profile_arrays = decode_profiles(profiles or {})
        if packed is not None:
            variables, attrs = decode_run(packed)
            arrays = series_of(variables)
            profile_arrays = profiles_of(variables)
        body: dict[str, Any] = {"record": d}
        if packed is not None:
            body["run"] = packed
        else:
            body["series"] = dict(series)
            if profiles:
                body["profiles"] = dict(profiles)
        self.log.append(body, rec.seq, rec.run_id)
        if self.table is not None:
            self.table.upsert(
                d,
                arrays if arrays is not None else decode_series(series),
                LOG_HOME if packed is not None else None,
                profile_arrays,
            )
        if packed is not None:
            self.pending[rec.run_id] = (d, variables, attrs)

    def compact(self, *, everything: bool = False) -> None:
        """Flush: write the packed runs of the log as batch groups and the rows written since
        the last flush as a new segment, list it, drop the log; then merge what is due.
        ``everything`` (and an index of format 1): one segment of every row replaces the
        index (a rebuild, the conversion of an old store)."""
        t0 = time.perf_counter()
        # a writer that flushed before: its table holds exactly the rows to flush
        table = self.table if self.flushed is not None and not everything else self.load()
        assert table is not None
        everything = everything or self.legacy is not None
        rows = list(range(len(table))) if everything else sorted(table.dirty)
        if not rows and not self.log.keys and not self.pending:
            return
        tag = f"{self.max_seq:012d}-{os.urandom(3).hex()}"
        name = f"s{tag}"
        batches: list[str] = []
        replaced = [e["name"] for e in self.segments] if everything else []
        if everything and self.legacy:
            replaced.append(self.legacy)
        kept = [] if everything else list(self.segments)

        def cleanup() -> None:  # a failed write: the log and the listed segments still hold everything
            for b in batches:
                self._blobs.delete_tree(f"batches/{b}")
            self._blobs.delete_tree(f"index/{name}")

        with writing(self.url, "write the index", cleanup):
            homes = self.batches.write(f"b{tag}", list(self.pending.values()), batches)
            fault_point("compact-before-index")
            try:
                for rid, batch in homes.items():
                    table.home[table.pos[rid]] = batch
                segments = kept
                if rows:
                    data = self._rows(table, rows)
                    level = level_of(len(rows), self.flush_rows, self.fan_in) if everything else 0
                    self._write_segment(name, data, level)
                    segments = kept + [
                        {"name": name, "rows": len(rows), "level": level, "upto_seq": self.max_seq}
                    ]
                self._write_pointer(segments)
            except BaseException:
                for rid in homes:
                    table.home[table.pos[rid]] = LOG_HOME
                raise
        self.pending = {}
        self.segments = segments
        self.legacy = None
        table.flushed(rows)
        if self.writer:
            self._thin(table)
        for old in replaced:
            self._blobs.delete_tree(f"index/{old}")
            self._metas.pop(old, None)
        self.log.drop()
        self.flush_seconds += time.perf_counter() - t0
        self.merge_due()

    def _rows(self, table: RunTable, rows: list[int]) -> Rows:
        """Rows ``rows`` of the table with their provenance, series and profiles."""
        if any(table.prov[i] is None for i in rows):
            table.load_provenance(self.provenance)
        cols = table.to_columns(rows)
        ids = cols.pop("run_id")
        params = cols.pop("params")
        seqs = [s for s in cols["seq"] if s is not None]
        return Rows(
            ids,
            cols,
            params,
            [table.prov[i] or {} for i in rows],
            series=table.rows_series(rows),
            profiles=table.rows_profiles(rows),
            seqs=(min(seqs, default=0), self.max_seq),
        )

    def _write_segment(self, name: str, rows: Rows, level: int) -> None:
        base = f"index/{name}"
        self._write_documents(base, *segment_documents(base, rows, level))

    def _write_documents(self, base: str, items: dict[str, bytes], group: bytes) -> None:
        """Write segment ``base``: its documents, then its group document (it exists then)."""
        self._blobs.delete_tree(base)  # leftovers of a flush or merge cut short
        self._blobs.write_many(items, atomic=False)  # the group document guards them
        self._blobs.write(f"{base}/zarr.json", group)

    def _write_pointer(self, segments: list[dict[str, Any]]) -> None:
        self._blobs.write(
            "index/zarr.json",
            group_document({"format": INDEX_FORMAT, "segments": segments, "upto_seq": self.max_seq}),
        )

    def merge_due(self) -> None:
        """Merge the newest segments while ``merge_plan`` says so."""
        while True:
            levels, rows = ([int(e[k]) for e in self.segments] for k in ("level", "rows"))
            start = merge_plan(levels, self.fan_in, rows, self.merge_max_rows)
            if start is None:
                return
            self.merge(start)

    def merge(self, start: int) -> None:
        """Merge the segments from ``start`` on (the newest ones) into one of the next level:
        written whole, listed in their place, then deleted."""
        t0 = time.perf_counter()
        entries = self.segments[start:]
        bases, metas = zip(*self._segment_metas(entries), strict=True)
        level = max(int(e["level"]) for e in entries) + 1
        upto = max(int(e["upto_seq"]) for e in entries)
        name = f"s{upto:012d}-{os.urandom(3).hex()}-L{level}"
        out = f"index/{name}"
        with writing(self.url, "merge index segments", lambda: self._blobs.delete_tree(out)):
            items, group, rows = merged_documents(self._blobs, bases, metas, out, level)
            self._write_documents(out, items, group)
            del items
            fault_point("merge-before-list", f"L{level}")
            merged = {"name": name, "rows": rows, "level": level, "upto_seq": upto}
            segments = self.segments[:start] + [merged]
            self._write_pointer(segments)
        self.segments = segments
        fault_point("merge-before-drop", f"L{level}")
        for entry in entries:
            self._blobs.delete_tree(f"index/{entry['name']}")
            self._metas.pop(entry["name"], None)
        self.merge_seconds += time.perf_counter() - t0

    def rebuild(self) -> int:
        """Recreate the index from the runs' own data alone (the markers in runs/, the batch
        groups in batches/, the packed runs in the log); returns the run count."""
        self.load()  # the segments to replace
        table = RunTable()
        for name in sorted(self._blobs.children("runs")):
            rec = read_marker(self._blobs, name) if name != "zarr.json" else None
            if rec is not None and rec.seq > table.seq(name):
                done = rec.status == "done"
                series, profiles = group_indexed(self._zarr_store(), name) if done else ({}, {})
                table.upsert(rec.to_dict(), decode_series(series), None, decode_profiles(profiles))
                self.max_seq = max(self.max_seq, rec.seq)
        self._read_batches(table)
        self._attach(table)
        self.table, self.pending, self.flushed = table, {}, None
        self.log.close_segment()
        self._apply_log(table, 0)
        self.compact(everything=True)
        return len(table)

    def drop_orphans(self) -> None:
        """Remove batch groups no run points at and segments the index does not list (left by
        a flush or a merge cut short: what they hold is in the log or in listed segments)."""
        # a writer that kept only its unflushed rows: every row's home (a run's earlier rows
        # too: a batch group one of them names is kept, never one a listed row needs)
        used = {home for _, cols in self._blocks(("f:home",)) for home in set(cols["f:home"])}
        for name in self._blobs.children("batches"):
            if name != "zarr.json" and name not in used:
                log.info("store %s: removing batch group %s left by an unfinished compaction", self.url, name)
                self._blobs.delete_tree(f"batches/{name}")
        listed = {e["name"] for e in self.segments} | {self.legacy}
        for name in self._blobs.children("index"):
            if name != "zarr.json" and name not in listed and not name.endswith(".partial"):
                log.info("store %s: removing index segment %s left by an unfinished merge", self.url, name)
                self._blobs.delete_tree(f"index/{name}")
