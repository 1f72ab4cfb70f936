"""Index segments: immutable zarr groups of index rows, written once, merged by size tiers.

A segment ``index/<name>/`` holds the rows of one flush of the log (or of one merge of
segments) as columns, never as one JSON document over all runs::

    index/<name>/zarr.json       attrs["ns_sweep_segment"]: rows, first/last sequence number,
                                 level, and the spec of every column (sweep.store.columns)
    index/<name>/records/        the record fields, the parameters and the provenance as packed
                                 columns (sweep.store.columns.pack_columns: f8, i8, mask, codes,
                                 json and prov arrays, whatever the number of columns;
                                 provenance is read only when asked for)
    index/<name>/series/         the time series as one (name, run, slot) float64 array
                                 ``values`` (names in the group's attributes) and ``length``
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
import math
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .columns import pack_columns, unpack_columns, unpack_lazy
from .lazy_columns import LazyColumns, Maker
from .records import RECORD_COLUMNS
from .zarr_docs import encode_small, group_document, read_small

__all__ = [
    "SEGMENT_ATTR",
    "Rows",
    "records_documents",
    "columns_documents",
    "data_documents",
    "read_columns",
    "read_records",
    "read_ids",
    "read_provenance",
    "read_provenance_keys",
    "segment_documents",
    "read_segment",
    "read_series",
    "read_profiles",
    "concat_rows",
    "level_of",
    "merge_plan",
]

SEGMENT_ATTR = "ns_sweep_segment"
PROV_KEYS = "provenance-keys"  # each row's provenance keys, in order; "v:<key>": their values
COLUMN_LEVEL = 3  # zstd level of record columns (small, repetitive)
SERIES_LEVEL = 1  # zstd level of series and profiles (floats: little to gain, keep it cheap)
# the record columns a segment stores (run_id apart), plus where a done run's data are
FIELDS = tuple(c for c in RECORD_COLUMNS if c != "run_id") + ("home",)

# profiles of many rows: dimension -> (name -> (run, slot) float array, each row's length)
Profiles = dict[str, tuple[dict[str, np.ndarray], np.ndarray]]
Series = tuple[dict[str, np.ndarray], np.ndarray]


@dataclass
class Rows:
    """Index rows in memory: run ids, record columns (``FIELDS``), parameter columns (read
    from a segment: ``LazyColumns``, decoded on first use), provenance (None: not read),
    series and profiles (None: not read)."""

    ids: list[str]
    cols: MutableMapping[str, list[Any]]
    params: MutableMapping[str, list[Any]]
    prov: list[Any] | None = None
    series: Series | None = None
    profiles: Profiles | None = None
    seqs: tuple[int, int] = (0, 0)  # first and last sequence number

    def __len__(self) -> int:
        return len(self.ids)


def _reader(blobs: Any, prefix: str) -> Callable[[str], np.ndarray]:
    read = _snapshot(blobs, prefix)
    return lambda key: read(key)()


def _snapshot(blobs: Any, prefix: str) -> Callable[[str], Callable[[], np.ndarray]]:
    """``_reader`` in two steps (``zarr_docs.read_small``): the files now, the decoding later."""

    def read(key: str) -> Callable[[], np.ndarray]:
        decode = read_small(blobs, f"{prefix}/{key}")
        if decode is None:
            raise FileNotFoundError(f"{prefix}/{key}")
        return decode

    return read


def records_documents(
    prefix: str, rows: Rows, extra: Mapping[str, Sequence[Any]] | None = None
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(spec, documents) of the record columns of ``rows`` (and the ``extra`` columns) as the
    group ``prefix`` (``sweep.store.columns.pack_columns``: a handful of arrays)."""
    columns: dict[str, Sequence[Any]] = {"run_id": rows.ids}
    columns.update({f"f:{c}": rows.cols[c] for c in FIELDS if c in rows.cols})
    pids = columns.get("f:package_ids")
    if pids and all(p is not None and len(p) == 1 for p in pids):  # one package a run: its id alone
        columns["f:package_ids"] = [p[0] for p in pids]
        columns = {("one:package_ids" if k == "f:package_ids" else k): v for k, v in columns.items()}
    columns.update({f"p:{k}": v for k, v in sorted(rows.params.items())})
    if rows.prov is not None:  # a column per key: a few keys are read without the rest
        columns[PROV_KEYS] = [list(p) for p in rows.prov]
        names = list(dict.fromkeys(k for p in rows.prov for k in p))
        columns.update({f"v:{k}": [p.get(k) for p in rows.prov] for k in names})
    columns.update({f"x:{k}": v for k, v in (extra or {}).items()})
    return columns_documents(prefix, columns)


def columns_documents(
    prefix: str, columns: Mapping[str, Sequence[Any]]
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(spec, documents) of ``columns`` (named as ``records_documents`` names them) as the
    group ``prefix``; a lazy mapping is read one column at a time (``pack_columns``)."""
    spec, arrays = pack_columns(columns, own=lambda name: name.startswith("v:"))
    items: dict[str, bytes] = {f"{prefix}/zarr.json": group_document({})}
    for key, a in arrays.items():
        dims = ("column", "row") if a.ndim == 2 else ("byte",)
        items.update(encode_small(f"{prefix}/{key}", a, dims, {}, level=COLUMN_LEVEL))
    return spec, items


def read_columns(
    blobs: Any, prefix: str, spec: Mapping[str, Any], names: Sequence[str] | None = None
) -> dict[str, list[Any]]:
    """Columns ``names`` (default all) of the group ``prefix`` (``records_documents``)."""
    return unpack_columns(spec, _reader(blobs, prefix), names)


def read_records(blobs: Any, prefix: str, spec: Mapping[str, Any], ids: list[str] | None = None) -> Rows:
    """The record columns under ``prefix`` (the inverse of ``records_documents``; provenance
    apart: ``read_provenance``; extra columns: ``read_columns``): the run ids now (``ids``:
    read already), the other columns' files read now (compressed) and decoded on first use
    (``LazyColumns``)."""
    names = [k for k in spec["columns"] if k != PROV_KEYS and k[:2] not in ("x:", "v:")]
    if ids is not None:
        names.remove("run_id")
    makers = unpack_lazy(spec, _snapshot(blobs, prefix), names)
    if ids is None:
        ids = makers.pop("run_id")()
    fields: dict[str, Maker] = {k[2:]: m for k, m in makers.items() if k.startswith("f:")}
    if "one:package_ids" in makers:  # else JSON lists (RunTable.from_parts makes them tuples)
        one = makers["one:package_ids"]
        fields["package_ids"] = lambda: list(zip(one()))  # 1-tuples, made in C
    params = {k[2:]: m for k, m in makers.items() if k.startswith("p:")}
    return Rows(ids, LazyColumns(fields, len(ids)), LazyColumns(params, len(ids)))


def read_ids(blobs: Any, prefix: str, spec: Mapping[str, Any]) -> list[str]:
    """The run ids of the rows under ``prefix``."""
    return read_columns(blobs, prefix, spec, ["run_id"])["run_id"]


def read_provenance(
    blobs: Any, prefix: str, spec: Mapping[str, Any], rows: Sequence[int] | None = None
) -> list[Any]:
    """The provenance of the rows under ``prefix`` (``rows``: of those positions only; empty
    dicts when none was stored)."""
    n = int(spec["rows"])
    if PROV_KEYS not in spec["columns"]:
        return [{}] * (n if rows is None else len(rows))
    names = [k for k in spec["columns"] if k[:2] == "v:"]
    cols = read_columns(blobs, prefix, spec, [PROV_KEYS, *names])
    keys = cols.pop(PROV_KEYS)
    by_key = {k[2:]: v for k, v in cols.items()}
    which = range(n) if rows is None else rows
    return [{k: by_key[k][i] for k in keys[i]} for i in which]


def read_provenance_keys(
    blobs: Any, prefix: str, spec: Mapping[str, Any], keys: Sequence[str]
) -> dict[str, list[Any]]:
    """Provenance key -> its value in each row under ``prefix`` (None where a row lacks it),
    for ``keys`` only (each one a column of its own: the rest is not read)."""
    n = int(spec["rows"])
    present = [k for k in keys if f"v:{k}" in spec["columns"]]
    cols = read_columns(blobs, prefix, spec, [f"v:{k}" for k in present])
    return {k: cols[f"v:{k}"] if k in present else [None] * n for k in keys}


def _arrays_documents(prefix: str, arrays: Mapping[str, np.ndarray], lengths: np.ndarray) -> dict[str, bytes]:
    """Arrays of one shape (run, slot) as one (name, run, slot) array ``values`` and each
    run's ``length``."""
    names = sorted(arrays)
    n = len(lengths)
    width = max([a.shape[1] for a in arrays.values()] + [0])
    values = np.full((len(names), n, width), np.nan)
    for k, name in enumerate(names):
        values[k, :, : arrays[name].shape[1]] = arrays[name]
    items = {f"{prefix}/zarr.json": group_document({"names": names})}
    items.update(encode_small(f"{prefix}/length", lengths, ("run",), {}, level=SERIES_LEVEL))
    items.update(encode_small(f"{prefix}/values", values, ("name", "run", "slot"), {}, level=SERIES_LEVEL))
    return items


def segment_documents(base: str, rows: Rows, level: int) -> tuple[dict[str, bytes], bytes]:
    """The documents of segment ``base`` holding ``rows`` (with provenance, series and
    profiles): (every document but its group, its group ``zarr.json``: written last, it
    makes the segment exist)."""
    assert rows.series is not None and rows.profiles is not None
    assert rows.prov is not None
    spec, items = records_documents(f"{base}/records", rows)
    return data_documents(base, items, spec, (rows.series, rows.profiles), rows.seqs, level)


def data_documents(
    base: str,
    items: dict[str, bytes],
    spec: Mapping[str, Any],
    data: tuple[Series, Profiles],
    seqs: tuple[int, int],
    level: int,
) -> tuple[dict[str, bytes], bytes]:
    """``segment_documents`` from the documents ``items`` of its records (``spec``), adding
    the series and profiles ``data``, whose lengths give the row count."""
    (series, lengths), profiles = data
    items.update(_arrays_documents(f"{base}/series", series, lengths))
    items[f"{base}/profiles/zarr.json"] = group_document({"dims": sorted(profiles)})
    for dim, (arrays, dim_lengths) in profiles.items():
        items.update(_arrays_documents(f"{base}/profiles/{dim}", arrays, dim_lengths))
    meta = {
        "format": 1,
        "rows": len(lengths),
        "first_seq": seqs[0],
        "upto_seq": seqs[1],
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
    rows = read_records(blobs, f"{base}/records", meta["records"])
    rows.seqs = (int(meta["first_seq"]), int(meta["upto_seq"]))
    return meta, rows


def _read_arrays(blobs: Any, prefix: str) -> Series:
    raw = blobs.read(f"{prefix}/zarr.json")
    if raw is None:
        raise FileNotFoundError(prefix)
    names = json.loads(raw)["attributes"]["names"]
    read = _reader(blobs, prefix)
    lengths, values = read("length"), read("values")
    return {name: values[k] for k, name in enumerate(names)}, lengths


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


def _chain(columns: Sequence[list[Any] | None], counts: Sequence[int]) -> list[Any]:
    """Lists one after the other (None: that many Nones)."""
    if len(columns) == 1 and columns[0] is not None:
        return columns[0]
    out: list[Any] = []
    for col, count in zip(columns, counts, strict=True):
        out.extend([None] * count if col is None else col)
    return out


def concat_rows(parts: Sequence[Rows]) -> Rows:
    """The record columns of consecutive segments (older first) as one block, every row
    kept (``RunTable.from_parts`` keeps a run's last; a merge: ``segment_merge``); a column
    is chained on first use, and the parts' own copies of it handed over."""
    counts = [len(p) for p in parts]
    ids = _chain([p.ids for p in parts], counts)

    def chained(blocks: list[MutableMapping[str, list[Any]]], name: str) -> Maker:
        return lambda: _chain([block.pop(name, None) for block in blocks], counts)

    cols = LazyColumns({c: chained([p.cols for p in parts], c) for c in FIELDS}, len(ids))
    names = sorted({k for p in parts for k in p.params})
    params = LazyColumns({k: chained([p.params for p in parts], k) for k in names}, len(ids))
    seqs = (min((p.seqs[0] for p in parts), default=0), max((p.seqs[1] for p in parts), default=0))
    return Rows(ids, cols, params, seqs=seqs)


def level_of(rows: int, flush_rows: int, fan_in: int) -> int:
    """The level of a segment of ``rows`` rows made at once (a rebuild, a converted index):
    the level a series of flushes of ``flush_rows`` rows would have merged it to."""
    if rows <= flush_rows or fan_in < 2:
        return 0
    return int(math.floor(math.log(rows / flush_rows, fan_in)))


def merge_plan(
    levels: Sequence[int], fan_in: int, rows: Sequence[int] | None = None, max_rows: int | None = None
) -> int | None:
    """Where a merge starts: the index of the first of the newest ``fan_in`` segments when
    they all have one level (and, given each segment's ``rows``, hold at most ``max_rows``
    together), else None (``levels``: each segment's level, oldest first)."""
    if fan_in < 2 or len(levels) < fan_in:
        return None
    tail = levels[-fan_in:]
    if rows is not None and max_rows is not None and sum(rows[-fan_in:]) > max_rows:
        return None  # a segment of the largest size: merging it would hold too many rows at once
    return len(levels) - fan_in if len(set(tail)) == 1 else None
