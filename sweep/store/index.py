"""The store's index of runs: compacted generations, the log after them, and compaction.

``index/zarr.json`` (attrs ``current``, ``upto_seq``) points at the current generation
``index/<gen>/``: every record up to a log sequence number as columns (its zarr.json attrs),
``provenance/`` (attrs, read on demand), ``series/`` (the time series as (run, slot)
arrays) and ``profiles/<dim>/`` (the profiles on each other dimension, the same way, with that
dimension's coordinate: ``sweep.store.variables``; a generation written before profiles were
indexed has none). Records after it are in the log (``sweep.store.log``). The index is a cache:
``rebuild()`` recreates it from the runs' own data alone (the markers in runs/, the batch
groups, the packed runs of the log).

Compaction (at close, and every ``sweep.store.compact-every`` log records) writes the packed runs still in
the log as batch groups, then the new generation pointing at them, then the pointer, and only
then drops the log and the old generation. A crash anywhere leaves the old pointer valid
and the log whole; a batch group no index points at (a compaction cut short: its runs are
still in the log) is removed by the next writer (``drop_orphan_batches``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import StoreError
from ..faults import fault_point
from .groups import group_indexed, read_marker
from .log import RunLog
from .packed import Batch, batch_documents, decode_run, read_batch
from .records import RunRecord
from .table import LOG_HOME, Profiles, RunTable
from .variables import Variable, decode_profiles, decode_series, profiles_of, series_of
from .write_errors import writing
from .zarr_docs import encode_small, group_document, read_array

__all__ = ["RunIndex"]

log = logging.getLogger("sweep.store")

# a packed run whose only copy is the log, decoded: (record dict, variables, dataset attributes)
PendingRun = tuple[dict[str, Any], list[Variable], dict[str, Any]]


class RunIndex:
    """The index of one open store: the run table in memory and what keeps it on disk."""

    def __init__(self, blobs: Any, url: str, zarr_store: Callable[[], Any], *, writer: bool) -> None:
        self._blobs = blobs
        self.url = url
        self._zarr_store = zarr_store  # called when arrays are read (zarr is imported then)
        self.writer = writer
        self.table: RunTable | None = None
        self.gen: str | None = None  # the compacted generation the table was read from
        self.max_seq = 0
        self.log = RunLog(blobs, url)
        self.pending: dict[str, PendingRun] = {}  # packed runs whose only copy is the log
        self._batch_cache: tuple[str, Batch] | None = None  # the batch group read last

    # ------------------------------------------------------------------ reading

    def pointer(self) -> dict[str, Any]:
        """The attributes of ``index/zarr.json`` (the current generation and its last record)."""
        raw = self._blobs.read("index/zarr.json")
        return json.loads(raw).get("attributes", {}) if raw else {"current": None, "upto_seq": 0}

    def load(self) -> RunTable:
        """The run table: compacted index, then the log after it, then markers newer than both."""
        if self.table is not None:
            return self.table
        for attempt in range(5):  # a reader racing the writer's compaction reads the new pointer
            ptr = self.pointer()
            upto = int(ptr.get("upto_seq") or 0)
            gen = ptr.get("current")
            raw = self._blobs.read(f"index/{gen}/zarr.json") if gen else None
            if not gen or raw is not None:
                break
            time.sleep(0.1 * (attempt + 1))
        else:
            raise StoreError(
                f"{self.url}: index generation {gen} is missing; allowed: a complete "
                "index: run Store.open(url, 'a').rebuild_index() to rebuild it from runs/"
            )
        self.max_seq = upto
        if gen and raw is not None:
            table = RunTable.from_columns(
                json.loads(raw)["attributes"]["columns"],
                functools.partial(self._generation_series, gen),
                functools.partial(self._generation_profiles, gen),
            )
        else:  # no index yet (or lost): the batch groups stand in for it
            table = RunTable()
            self._read_batches(table)
        self.gen = gen
        self.table = table
        self.pending = {}
        self._apply_log(table, upto)
        self._adopt_markers(table)
        return table

    def _generation_series(self, gen: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        import zarr  # only when time series are wanted: planning needs the columns only

        grp = zarr.open_group(self._zarr_store(), path=f"index/{gen}/series", mode="r", zarr_format=3)
        arrays = {name: read_array(grp, name) for name in grp.array_keys()}
        return arrays, arrays.pop("length")

    def _generation_profiles(self, gen: str) -> Profiles:
        import zarr

        raw = self._blobs.read(f"index/{gen}/profiles/zarr.json")
        if raw is None:  # written before profiles were indexed
            return {}
        out: Profiles = {}
        for dim in json.loads(raw).get("attributes", {}).get("dims", []):
            path = f"index/{gen}/profiles/{dim}"
            grp = zarr.open_group(self._zarr_store(), path=path, mode="r", zarr_format=3)
            arrays = {name: read_array(grp, name) for name in grp.array_keys()}
            out[dim] = (arrays, arrays.pop("length"))
        return out

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
        for name in sorted(self._blobs.children("batches")):
            batch = read_batch(self._zarr_store(), f"batches/{name}") if name != "zarr.json" else None
            if batch is None:  # never completed (a compaction cut short): its runs are in the log
                continue
            for rid, record in zip(batch.run_ids, batch.records, strict=True):
                if int(record["seq"]) > table.seq(rid):
                    variables = batch.run(rid)[0]
                    table.upsert(record, series_of(variables), name, profiles_of(variables))
                    self.max_seq = max(self.max_seq, int(record["seq"]))

    def _adopt_markers(self, table: RunTable) -> None:
        """Runs whose marker is in runs/ but whose log record was lost to a crash."""
        for name in self._blobs.children("runs"):
            if name == "zarr.json" or table.status(name) == "done":
                continue
            rec = read_marker(self._blobs, name)
            if rec is None or table.seq(name) >= rec.seq:
                continue
            series, profiles = group_indexed(self._zarr_store(), name) if rec.status == "done" else ({}, {})
            self.max_seq = max(self.max_seq, rec.seq)
            if self.writer:
                log.info("store %s: recovering the index record of run %s", self.url, name)
                self.append(rec, series, profiles=profiles)
            else:
                table.upsert(rec.to_dict(), decode_series(series), None, decode_profiles(profiles))

    def provenance(self) -> list[dict[str, Any]]:
        """The provenance of the compacted generation's rows (read on demand: it is large)."""
        if not self.gen:
            return []
        raw = self._blobs.read(f"index/{self.gen}/provenance/zarr.json")
        return json.loads(raw)["attributes"]["provenance"] if raw else []

    def packed_run(self, run_id: str, home: str) -> tuple[list[Variable], dict[str, Any], dict[str, Any]]:
        """(variables, dataset attributes, record) of a packed run, from the log or its batch."""
        if home == LOG_HOME:
            record, variables, attrs = self.pending[run_id]
            return variables, attrs, record
        batch = self._batch(home)
        variables, attrs = batch.run(run_id)
        return variables, attrs, batch.records[batch.row[run_id]]

    def _batch(self, name: str) -> Batch:
        """The batch group ``batches/<name>`` (the last one read is kept: runs are read in order)."""
        if self._batch_cache is None or self._batch_cache[0] != name:
            batch = read_batch(self._zarr_store(), f"batches/{name}")
            if batch is None:
                raise StoreError(
                    f"{self.url}: batch group batches/{name} is missing or incomplete; "
                    "allowed: a complete store: run Store.open(url, 'a').rebuild_index() to "
                    "re-index what is there"
                )
            self._batch_cache = (name, batch)
        return self._batch_cache[1]

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

    def compact(self) -> None:
        """Fold the log into a new generation, switch to it, then drop the old one and the log."""
        table = self.load()
        if not len(table) and not self.log.keys:
            return
        table.load_provenance(self.provenance)
        ptr = self.pointer()
        tag = f"{self.max_seq:012d}-{os.urandom(3).hex()}"
        gen = f"g{tag}"
        batches: list[str] = []

        def cleanup() -> None:  # a failed write: the log still holds everything
            for name in batches:
                self._blobs.delete_tree(f"batches/{name}")
            self._blobs.delete_tree(f"index/{gen}")

        with writing(self.url, "write the index", cleanup):
            homes = self._write_batches(f"b{tag}", batches)
            fault_point("compact-before-index")
            try:
                for rid, name in homes.items():
                    table.home[table.pos[rid]] = name
                self._write_generation(gen, table)
                self._blobs.write(
                    "index/zarr.json", group_document({"current": gen, "upto_seq": self.max_seq})
                )
            except BaseException:
                for rid in homes:
                    table.home[table.pos[rid]] = LOG_HOME
                raise
        self.pending = {}
        self.gen = gen
        if ptr.get("current") and ptr["current"] != gen:
            self._blobs.delete_tree(f"index/{ptr['current']}")
        self.log.drop()

    def _write_batches(self, base: str, written: list[str]) -> dict[str, str]:
        """Write the packed runs that only the log holds as batch groups (named ``base-<k>``,
        appended to ``written`` before their first file); returns run id -> batch name."""
        # batches/zarr.json exists: made with the store, or by the schema upgrade
        homes: dict[str, str] = {}
        for name, run_ids, items, group in batch_documents(base, list(self.pending.values())):
            written.append(name)
            self._blobs.write_many({f"batches/{name}/{k}": v for k, v in items.items()}, atomic=False)
            self._blobs.write(f"batches/{name}/zarr.json", group)  # last: the batch exists
            homes.update(dict.fromkeys(run_ids, name))
        return homes

    def _write_generation(self, gen: str, table: RunTable) -> None:
        """One index generation: columns (zarr.json attrs), provenance, series as single chunks.

        Written uncompressed in one chunk per array: it is always read whole, and float
        series barely compress (measured: zstd saves ~10% and costs ~0.2 s per 10,000 runs).
        """
        base = f"index/{gen}"
        self._blobs.delete_tree(base)  # leftovers of a compaction cut short
        series, lengths = table.series()
        # values are JSON-safe by construction
        items = {
            f"{base}/provenance/zarr.json": group_document({"provenance": table.prov}, json_safe=True),
            f"{base}/series/zarr.json": group_document({}),
        }
        items.update(encode_small(f"{base}/series/length", lengths, ("run",), {}))
        for name, a in series.items():
            items.update(encode_small(f"{base}/series/{name}", a, ("run", "slot"), {}))
        profiles = table.profiles()
        items[f"{base}/profiles/zarr.json"] = group_document({"dims": sorted(profiles)})
        for dim, (arrays, lengths) in profiles.items():
            items[f"{base}/profiles/{dim}/zarr.json"] = group_document({})
            items.update(encode_small(f"{base}/profiles/{dim}/length", lengths, ("run",), {}))
            for name, a in arrays.items():
                items.update(encode_small(f"{base}/profiles/{dim}/{name}", a, ("run", "slot"), {}))
        self._blobs.write_many(items)
        # the generation's root document last: a generation without it is never pointed at
        self._blobs.write(
            f"{base}/zarr.json",
            group_document(
                {"upto_seq": self.max_seq, "n_runs": len(table), "columns": table.to_columns()},
                json_safe=True,
            ),
        )

    def rebuild(self) -> int:
        """Recreate the index from the runs' own data alone (the markers in runs/, the batch
        groups in batches/, the packed runs in the log); returns the run count."""
        table = RunTable()
        for name in sorted(self._blobs.children("runs")):
            rec = read_marker(self._blobs, name) if name != "zarr.json" else None
            if rec is not None and rec.seq > table.seq(name):
                done = rec.status == "done"
                series, profiles = group_indexed(self._zarr_store(), name) if done else ({}, {})
                table.upsert(rec.to_dict(), decode_series(series), None, decode_profiles(profiles))
                self.max_seq = max(self.max_seq, rec.seq)
        self._read_batches(table)
        self.table, self.gen, self.pending = table, None, {}
        self.log.close_segment()
        self._apply_log(table, 0)
        if len(table):
            self.compact()
        return len(table)

    def drop_orphan_batches(self) -> None:
        """Remove batch groups that no run points at (left by a compaction cut short: their
        runs are still in the log)."""
        used = set(self.load().home)
        for name in self._blobs.children("batches"):
            if name != "zarr.json" and name not in used:
                log.info("store %s: removing batch group %s left by an unfinished compaction", self.url, name)
                self._blobs.delete_tree(f"batches/{name}")
