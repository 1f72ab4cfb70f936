"""Index segments: immutable zarr groups of index rows, written once, merged by size tiers.

A segment ``index/<name>/`` holds the rows of one flush of the log (or of one merge of
segments) as columns, never as one JSON document over all runs::

    index/<name>/zarr.json       attrs["ns_sweep_segment"]: rows, first/last sequence number,
                                 level, and the spec of every column (sweep.store.columns)
    index/<name>/records/        the record fields, one array (or two) per field: run_id.values,
                                 status.codes, wall_time.values, ...; p<k>.<part> per parameter,
                                 provenance.values (read on demand)
    index/<name>/series/         the time series as (run, slot) float64 arrays, and ``length``
    index/<name>/profiles/<dim>/ the profiles on each other dimension the same way

Every array is a single zstd-compressed chunk (``zarr_docs.encode_small``), read back with
plain reads (``zarr_docs.decode_small``); any zarr v3 reader can read a segment. A batch group
(``sweep.store.packed``) keeps its runs' records the same way (``records_documents``).

Merge policy (``merge_plan``): a flush writes a segment of level 0; whenever the newest
``fan_in`` segments share a level L they are merged into one of level L+1 (a counter in base
``fan_in``). A merge rewrites only segments of one size class, so each row is rewritten about
``log_fan_in(N / flush size)`` times: the store's cost stays linear in its runs (the former
index rewrote every row at every compaction: quadratic).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .columns import decode_column, encode_column
from .records import RECORD_COLUMNS
from .zarr_docs import decode_small, encode_small, group_document

__all__ = [
    "SEGMENT_ATTR",
    "Rows",
    "encode_named",
    "decode_named",
    "records_documents",
    "read_records",
    "read_provenance",
    "segment_documents",
    "read_segment",
    "read_series",
    "read_profiles",
    "concat_rows",
    "merge_plan",
]

SEGMENT_ATTR = "ns_sweep_segment"
COLUMN_LEVEL = 3  # zstd level of record columns (small, repetitive)
SERIES_LEVEL = 1  # zstd level of series and profiles (floats: little to gain, keep it cheap)
# the record columns a segment stores (run_id apart), plus where a done run's data are
FIELDS = tuple(c for c in RECORD_COLUMNS if c != "run_id") + ("home",)

# profiles of many rows: dimension -> (name -> (run, slot) float array, each row's length)
Profiles = dict[str, tuple[dict[str, np.ndarray], np.ndarray]]
Series = tuple[dict[str, np.ndarray], np.ndarray]


@dataclass
class Rows:
    """Index rows in memory: run ids, record columns (``FIELDS``), parameter columns,
    provenance (None: not read), series and profiles (None: not read)."""

    ids: list[str]
    cols: dict[str, list[Any]]
    params: dict[str, list[Any]]
    prov: list[Any] | None = None
    series: Series | None = None
    profiles: Profiles | None = None
    seqs: tuple[int, int] = (0, 0)  # first and last sequence number
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def encode_named(prefix: str, name: str, values: Sequence[Any], items: dict[str, bytes]) -> dict[str, Any]:
    """Encode column ``name`` (``values``) as arrays ``<prefix>/<name>.<part>`` added to
    ``items``; returns its spec."""
    spec, arrays = encode_column(values)
    for part, a in arrays.items():
        items.update(encode_small(f"{prefix}/{name}.{part}", a, ("row",), {}, level=COLUMN_LEVEL))
    return spec


def decode_named(blobs: Any, prefix: str, name: str, spec: Mapping[str, Any], n: int) -> list[Any]:
    """The column ``name`` under ``prefix`` (``encode_named``'s inverse)."""
    parts = {"null": (), "f8": ("values",), "json": ("values",), "dict": ("codes",)}.get(spec["kind"])
    if parts is None:  # i8: its mask only when written
        parts = ("values", "mask")
    arrays = {}
    for part in parts:
        a = decode_small(blobs, f"{prefix}/{name}.{part}")
        if a is not None:
            arrays[part] = a
        elif part != "mask":
            raise FileNotFoundError(f"{prefix}/{name}.{part}")
    return decode_column(spec, arrays, n)


def records_documents(prefix: str, rows: Rows) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(spec, documents) of the record columns of ``rows`` under the group ``prefix``."""
    items: dict[str, bytes] = {f"{prefix}/zarr.json": group_document({})}
    spec: dict[str, Any] = {
        "run_id": encode_named(prefix, "run_id", rows.ids, items),
        "fields": {},
        "params": [],
    }
    for name in FIELDS:
        if name in rows.cols:
            spec["fields"][name] = encode_named(prefix, name, rows.cols[name], items)
    for k, (name, values) in enumerate(sorted(rows.params.items())):
        spec["params"].append([name, encode_named(prefix, f"p{k}", values, items)])
    if rows.prov is not None:
        spec["provenance"] = encode_named(prefix, "provenance", rows.prov, items)
    return spec, items


def read_records(blobs: Any, prefix: str, spec: Mapping[str, Any], n: int) -> Rows:
    """The record columns under ``prefix`` (the inverse of ``records_documents``; provenance
    apart: ``read_provenance``)."""
    ids = decode_named(blobs, prefix, "run_id", spec["run_id"], n)
    cols = {name: decode_named(blobs, prefix, name, s, n) for name, s in spec["fields"].items()}
    if "package_ids" in cols:
        cols["package_ids"] = [tuple(p or ()) for p in cols["package_ids"]]
    params = {name: decode_named(blobs, prefix, f"p{k}", s, n) for k, (name, s) in enumerate(spec["params"])}
    return Rows(ids, cols, params)


def read_provenance(blobs: Any, prefix: str, spec: Mapping[str, Any], n: int) -> list[Any]:
    """The provenance column under ``prefix`` (empty dicts when none was stored)."""
    if "provenance" not in spec:
        return [{}] * n
    return [p or {} for p in decode_named(blobs, prefix, "provenance", spec["provenance"], n)]


def _arrays_documents(prefix: str, arrays: Mapping[str, np.ndarray], lengths: np.ndarray) -> dict[str, bytes]:
    items = {f"{prefix}/zarr.json": group_document({"names": sorted(arrays)})}
    items.update(encode_small(f"{prefix}/length", lengths, ("run",), {}, level=SERIES_LEVEL))
    for name, a in arrays.items():
        items.update(encode_small(f"{prefix}/{name}", a, ("run", "slot"), {}, level=SERIES_LEVEL))
    return items


def segment_documents(base: str, rows: Rows, level: int) -> tuple[dict[str, bytes], bytes]:
    """The documents of segment ``base`` holding ``rows`` (with provenance, series and
    profiles): (every document but its group, its group ``zarr.json``: written last, it
    makes the segment exist)."""
    assert rows.series is not None and rows.profiles is not None and rows.prov is not None
    spec, items = records_documents(f"{base}/records", rows)
    series, lengths = rows.series
    items.update(_arrays_documents(f"{base}/series", series, lengths))
    items[f"{base}/profiles/zarr.json"] = group_document({"dims": sorted(rows.profiles)})
    for dim, (arrays, dim_lengths) in rows.profiles.items():
        items.update(_arrays_documents(f"{base}/profiles/{dim}", arrays, dim_lengths))
    meta = {
        "format": 1,
        "rows": len(rows),
        "first_seq": rows.seqs[0],
        "upto_seq": rows.seqs[1],
        "level": level,
        "records": spec,
    }
    return items, group_document({SEGMENT_ATTR: meta}, json_safe=True)


def segment_meta(blobs: Any, base: str) -> dict[str, Any] | None:
    """The attributes of segment ``base`` (None: missing or incomplete)."""
    raw = blobs.read(f"{base}/zarr.json")
    if raw is None:
        return None
    meta = json.loads(raw).get("attributes", {}).get(SEGMENT_ATTR)
    return meta if isinstance(meta, dict) else None


def read_segment(blobs: Any, base: str) -> tuple[dict[str, Any], Rows] | None:
    """(attributes, record columns) of segment ``base``; None when it is missing."""
    meta = segment_meta(blobs, base)
    if meta is None:
        return None
    rows = read_records(blobs, f"{base}/records", meta["records"], int(meta["rows"]))
    rows.seqs = (int(meta["first_seq"]), int(meta["upto_seq"]))
    return meta, rows


def _read_arrays(blobs: Any, prefix: str) -> Series:
    raw = blobs.read(f"{prefix}/zarr.json")
    if raw is None:
        raise FileNotFoundError(prefix)
    names = json.loads(raw)["attributes"]["names"]
    lengths = decode_small(blobs, f"{prefix}/length")
    if lengths is None:
        raise FileNotFoundError(f"{prefix}/length")
    arrays = {}
    for name in names:
        a = decode_small(blobs, f"{prefix}/{name}")
        if a is None:
            raise FileNotFoundError(f"{prefix}/{name}")
        arrays[name] = a
    return arrays, lengths


def read_series(blobs: Any, base: str) -> Series:
    """The time series of segment ``base``."""
    return _read_arrays(blobs, f"{base}/series")


def read_profiles(blobs: Any, base: str) -> Profiles:
    """The profiles of segment ``base``."""
    raw = blobs.read(f"{base}/profiles/zarr.json")
    if raw is None:
        raise FileNotFoundError(f"{base}/profiles")
    return {
        dim: _read_arrays(blobs, f"{base}/profiles/{dim}") for dim in json.loads(raw)["attributes"]["dims"]
    }


def stack(parts: Sequence[Series], counts: Sequence[int]) -> Series:
    """Series (or one dimension's profiles) of consecutive row blocks as one block: NaN-padded
    to the widest, a block without a name gets NaN rows of length 0."""
    n = sum(counts)
    names = sorted({k for arrays, _ in parts for k in arrays})
    width = max([a.shape[1] for arrays, _ in parts for a in arrays.values()] + [0])
    out = {k: np.full((n, width), np.nan) for k in names}
    lengths = np.zeros(n, dtype=np.int64)
    start = 0
    for (arrays, part_lengths), count in zip(parts, counts, strict=True):
        lengths[start : start + count] = part_lengths
        for k, a in arrays.items():
            out[k][start : start + count, : a.shape[1]] = a
        start += count
    return out, lengths


def stack_profiles(parts: Sequence[Profiles], counts: Sequence[int]) -> Profiles:
    """``stack`` for every profile dimension."""
    dims = sorted({d for p in parts for d in p})
    empty: Series = ({}, np.zeros(0, dtype=np.int64))
    out: Profiles = {}
    for dim in dims:
        blocks = [p.get(dim) or ({}, np.zeros(c, dtype=np.int64)) for p, c in zip(parts, counts, strict=True)]
        out[dim] = stack(blocks or [empty], counts)
    return out


def select(series: Series, rows: np.ndarray) -> Series:
    """The rows ``rows`` of a block of series."""
    arrays, lengths = series
    return {k: a[rows] for k, a in arrays.items()}, lengths[rows]


def last_of_each(ids: Sequence[str]) -> np.ndarray | None:
    """Positions of the last row of each run id, in order (None: no id repeats)."""
    pos = {rid: i for i, rid in enumerate(ids)}
    if len(pos) == len(ids):
        return None
    return np.array(sorted(pos.values()), dtype=np.int64)


def concat_rows(parts: Sequence[Rows]) -> Rows:
    """Rows of consecutive segments (older first) as one block; a later row of a run replaces
    an earlier one. Series, profiles and provenance are combined when every part has them."""
    counts = [len(p) for p in parts]
    ids = [rid for p in parts for rid in p.ids]
    n = len(ids)
    cols = {c: [v for p in parts for v in p.cols.get(c, [None] * len(p))] for c in FIELDS}
    names = sorted({k for p in parts for k in p.params})
    params = {k: [v for p in parts for v in p.params.get(k, [None] * len(p))] for k in names}
    prov = [v for p in parts for v in (p.prov or [])] if all(p.prov is not None for p in parts) else None
    series = stack([p.series for p in parts], counts) if all(p.series is not None for p in parts) else None  # type: ignore[misc]
    profiles = (
        stack_profiles([p.profiles for p in parts], counts)  # type: ignore[misc]
        if all(p.profiles is not None for p in parts)
        else None
    )
    seqs = (min((p.seqs[0] for p in parts), default=0), max((p.seqs[1] for p in parts), default=0))
    keep = last_of_each(ids)
    if keep is not None and len(keep) < n:
        k = keep.tolist()
        ids = [ids[i] for i in k]
        cols = {c: [v[i] for i in k] for c, v in cols.items()}
        params = {c: [v[i] for i in k] for c, v in params.items()}
        prov = None if prov is None else [prov[i] for i in k]
        series = None if series is None else select(series, keep)
        profiles = None if profiles is None else {d: select(s, keep) for d, s in profiles.items()}
    return Rows(ids, cols, params, prov, series, profiles, seqs)


def merge_plan(levels: Sequence[int], fan_in: int) -> int | None:
    """Where a merge starts: the index of the first of the newest ``fan_in`` segments when
    they all have one level, else None (``levels``: each segment's level, oldest first)."""
    if fan_in < 2 or len(levels) < fan_in:
        return None
    tail = levels[-fan_in:]
    return len(levels) - fan_in if len(set(tail)) == 1 else None
