"""Reading the index's data of given runs (time series, profiles, provenance) from the files
one ``index/zarr.json`` names: the segments of index format 2, or the one generation of format
1. ``sweep.store.index.RunIndex`` calls these with a fresh list whenever a racing writer's merge
removed a segment (a missing one raises ``FileNotFoundError``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import scans
from .records import RunRecord
from .segments import (
    read_columns,
    read_ids,
    read_profiles,
    read_provenance,
    read_provenance_keys,
    read_records,
    read_series,
    segment_meta,
    stack,
    stack_profiles,
)
from .table import Profiles, RunTable, Series
from .zarr_docs import read_array

__all__ = [
    "IndexFiles",
    "series",
    "profiles",
    "provenance",
    "provenance_keys",
    "segment_columns",
    "segment_records",
]

# (path, attributes) of each segment of an index, oldest first (IndexFiles.segment_bases)
Bases = Sequence[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class IndexFiles:
    """The files of one index: the store's blobs, its zarr store (format 1 is read through
    zarr) and the attributes of the ``index/zarr.json`` read."""

    blobs: Any
    zarr_store: Callable[[], Any]
    ptr: dict[str, Any]

    def segment_bases(self) -> list[tuple[str, dict[str, Any]]]:
        """(path, metadata) of each segment, oldest first."""
        out = []
        for entry in self.ptr["segments"]:
            base = f"index/{entry['name']}"
            meta = segment_meta(self.blobs, base)
            if meta is None:
                raise FileNotFoundError(base)
            out.append((base, meta))
        return out


def _blocks(f: IndexFiles, what: str) -> tuple[list[str], list[int], list[Any]]:
    """(run ids, row counts, one block of ``what`` per segment) of the index."""
    ids: list[str] = []
    counts: list[int] = []
    blocks: list[Any] = []
    if "segments" in f.ptr:
        for base, meta in f.segment_bases():
            ids += read_ids(f.blobs, f"{base}/records", meta["records"])
            counts.append(int(meta["rows"]))
            if what == "series":
                blocks.append(read_series(f.blobs, base))
            elif what == "profiles":
                blocks.append(read_profiles(f.blobs, base))
            else:
                blocks.append(read_provenance(f.blobs, f"{base}/records", meta["records"]))
    elif f.ptr.get("current"):
        gen = f.ptr["current"]
        raw = f.blobs.read(f"index/{gen}/zarr.json")
        if raw is None:
            raise FileNotFoundError(gen)
        ids = list(json.loads(raw)["attributes"]["columns"]["run_id"])
        counts.append(len(ids))
        if what == "series":
            blocks.append(_generation_arrays(f, f"index/{gen}/series"))
        elif what == "profiles":
            blocks.append(_generation_profiles(f, gen))
        else:
            raw = f.blobs.read(f"index/{gen}/provenance/zarr.json")
            blocks.append(json.loads(raw)["attributes"]["provenance"] if raw else [{}] * len(ids))
    return ids, counts, blocks


def _where(have: list[str], want: list[str]) -> np.ndarray | None:
    """Positions in ``have`` (the last of a repeated id) of each of ``want`` (-1: not there);
    None when ``want`` is ``have`` as it is."""
    if have == want:
        return None
    pos = {rid: i for i, rid in enumerate(have)}
    return np.fromiter((pos.get(rid, -1) for rid in want), dtype=np.int64, count=len(want))


def _gather(block: Series, where: np.ndarray | None) -> Series:
    if where is None:
        return block
    arrays, lengths = block
    missing = where < 0
    out = {k: a[where] for k, a in arrays.items()}
    for a in out.values():
        a[missing] = np.nan
    got = lengths[where]
    got[missing] = 0
    return out, got


def series(f: IndexFiles, ids: list[str]) -> Series:
    """The indexed time series of runs ``ids`` (NaN rows of length 0 for runs not indexed)."""
    have, counts, blocks = _blocks(f, "series")
    return _gather(stack(blocks, counts), _where(have, ids))


def profiles(f: IndexFiles, ids: list[str]) -> Profiles:
    """The indexed profiles of runs ``ids``."""
    have, counts, blocks = _blocks(f, "profiles")
    where = _where(have, ids)
    return {d: _gather(s, where) for d, s in stack_profiles(blocks, counts).items()}


def provenance(f: IndexFiles, ids: list[str]) -> list[dict[str, Any]]:
    """The provenance of runs ``ids``: only the segments holding some of them are read, and
    only their rows rebuilt."""
    if "segments" not in f.ptr:
        have, _, blocks = _blocks(f, "provenance")
        flat = [p for b in blocks for p in b]
        where = _where(have, ids)
        if where is None:
            return [p or {} for p in flat]
        return [flat[i] or {} if i >= 0 else {} for i in where.tolist()]
    wanted = set(ids)
    found: dict[str, dict[str, Any]] = {}
    for base, meta in f.segment_bases():  # oldest first: a later row of a run replaces an earlier one
        seg_ids = read_ids(f.blobs, f"{base}/records", meta["records"])
        rows = [i for i, rid in enumerate(seg_ids) if rid in wanted]
        if rows:
            got = read_provenance(f.blobs, f"{base}/records", meta["records"], rows)
            found.update(zip((seg_ids[i] for i in rows), got, strict=True))
    return [found.get(rid) or {} for rid in ids]


def provenance_keys(f: IndexFiles, ids: list[str], keys: list[str]) -> dict[str, list[Any]]:
    """Provenance key -> its value for each of runs ``ids`` (None where a run lacks it),
    reading those keys' columns only (an index of format 1: all of it)."""
    have: list[str] = []
    values: dict[str, list[Any]] = {k: [] for k in keys}
    if "segments" in f.ptr:
        for base, meta in f.segment_bases():
            have += read_ids(f.blobs, f"{base}/records", meta["records"])
            got = read_provenance_keys(f.blobs, f"{base}/records", meta["records"], keys)
            for k in keys:
                values[k] += got[k]
    else:
        have, _, blocks = _blocks(f, "provenance")
        flat = [p for b in blocks for p in b]
        values = {k: [(p or {}).get(k) for p in flat] for k in keys}
    where = _where(have, ids)
    if where is None:
        return values
    idx = where.tolist()
    return {k: [v[i] if i >= 0 else None for i in idx] for k, v in values.items()}


def segment_columns(blobs: Any, bases: Bases, names: Sequence[str]) -> Iterator[scans.Block]:
    """The run ids and the columns ``names`` of each segment in turn (``sweep.store.scans``);
    a column a segment lacks is Nones."""
    for base, meta in bases:
        spec = meta["records"]
        have = [n for n in names if n in spec["columns"]]
        cols = read_columns(blobs, f"{base}/records", spec, ["run_id", *have])
        ids = cols.pop("run_id")
        yield ids, {n: cols.get(n) or [None] * len(ids) for n in names}


def segment_records(
    blobs: Any, bases: Bases, ids: set[str], provenance: Callable[[list[str]], list[Any]]
) -> dict[str, RunRecord]:
    """run id -> RunRecord (provenance included) of the runs ``ids`` in the segments: only
    the segments holding some of them are read whole, a later row of a run replacing."""
    out: dict[str, RunRecord] = {}
    for base, meta in bases:
        spec = meta["records"]
        have = read_ids(blobs, f"{base}/records", spec)
        where = {rid: i for i, rid in enumerate(have) if rid in ids}
        if where:
            rows = read_records(blobs, f"{base}/records", spec, have)
            segment = RunTable.from_parts(rows.ids, rows.cols, rows.params)
            got = read_provenance(blobs, f"{base}/records", spec, list(where.values()))
            for rid, p in zip(where, got, strict=True):
                segment.prov[segment.pos[rid]] = p
            out.update(scans.records(segment, [segment.pos[rid] for rid in where], provenance))
    return out


def _generation_arrays(f: IndexFiles, path: str) -> Series:
    import zarr  # index format 1: read through zarr

    grp = zarr.open_group(f.zarr_store(), path=path, mode="r", zarr_format=3)
    arrays = {name: read_array(grp, name) for name in grp.array_keys()}
    return arrays, arrays.pop("length")


def _generation_profiles(f: IndexFiles, gen: str) -> Profiles:
    raw = f.blobs.read(f"index/{gen}/profiles/zarr.json")
    if raw is None:  # written before profiles were indexed
        return {}
    dims = json.loads(raw).get("attributes", {}).get("dims", [])
    return {dim: _generation_arrays(f, f"index/{gen}/profiles/{dim}") for dim in dims}
