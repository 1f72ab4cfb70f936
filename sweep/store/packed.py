"""Packed runs: small results stored without a zarr group of their own.

A run whose data are only small 1-D arrays (time series on ``time``, the spectrum on ``k``:
every run without final fields) would take 29 file-system entries as its own group
``runs/<run_id>/`` (a directory, and a ``zarr.json`` and a chunk per array, each ~60-200 us
to create here, several times that on Lustre/GPFS, and an inode quota on most HPC systems).
Such a run is *packed* instead: its commit is one log record holding the whole run (this
record is its marker), and the store's compaction writes the packed runs of the log as
batch groups ``batches/<name>/``, an ordinary zarr group per batch whose arrays have a
``run`` dimension::

    batches/<name>/zarr.json   attrs["ns_sweep_batch"]: format 2, rows, variables (name, dims,
                               dtype, attrs, coordinate or not: one layout per batch), and
                               the specs of the columns below
    batches/<name>/<variable>  (run, <dim>_slot) array, padded past each run's length
                               (NaN for floats); 0-d variables are (run,)
    batches/<name>/records/    the runs' records (each one a run's marker) as packed compressed
                               columns (sweep.store.segments.records_documents), each run's
                               Dataset attributes (``x:attrs``) and its length along each
                               dimension (``x:len-<dim>``) the same way

Per-run metadata as compressed columns, not JSON lists: a tiny run's record, provenance and
attributes repeat most of their bytes from run to run (the solver's attributes, the host, the
versions), so they cost ~100 B a run instead of ~2.6 KB (format 1, still read: ``run_ids``,
``records``, ``attrs``, ``lengths`` as JSON in the group's attributes).

``xarray.open_zarr(store, group="batches/<name>")`` reads a batch as is; ``Store.open_run``
gives each run back as the Dataset it was, bit for bit (tests/test_store_packed.py).

This module encodes and decodes; the store decides what is packed and when it is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..codec import from_base64, little_endian, to_base64
from .lazy_columns import materialized
from .records import RECORD_COLUMNS
from .segments import Rows, read_columns, read_provenance, read_records, records_documents
from .variables import Variable
from .zarr_docs import encode_small, group_document, jsonable, read_array

__all__ = [
    "BATCH_ATTR",
    "Batch",
    "packable",
    "encode_run",
    "decode_run",
    "to_dataset",
    "batch_documents",
    "read_batch",
]

BATCH_ATTR = "ns_sweep_batch"
DATA_LEVEL = 1  # zstd level of the stacked arrays (floats: the padding is what compresses)
_FIELDS = tuple(c for c in RECORD_COLUMNS if c != "run_id")


def records_rows(records: Sequence[Mapping[str, Any]]) -> Rows:
    """Record dicts (``RunRecord.to_dict``) as columns."""
    names = sorted({k for r in records for k in (r.get("params") or {})})
    return Rows(
        ids=[str(r["run_id"]) for r in records],
        cols={c: [r.get(c) for r in records] for c in _FIELDS},
        params={k: [(r.get("params") or {}).get(k) for r in records] for k in names},
        prov=[r.get("provenance") or {} for r in records],
    )


def packable(variables: Sequence[Variable], limit: int) -> bool:
    """Whether a run is packed: numeric arrays of at most one dimension, ``limit`` bytes in all."""
    if limit <= 0:
        return False
    total = 0
    for v in variables:
        if v.values.dtype.kind not in "biufc" or v.values.ndim > 1 or len(v.dims) != v.values.ndim:
            return False
        total += v.values.nbytes
    return total <= limit


def _spec(v: Variable) -> list[Any]:
    """A variable without its values, JSON-safe: [name, dims, dtype, attributes, is_coord]."""
    return [v.name, list(v.dims), little_endian(v.values.dtype).str, jsonable(v.attrs), bool(v.is_coord)]


def encode_run(variables: Sequence[Variable], attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A packed run as JSON-safe data (its log record's ``run``): attributes and arrays."""
    out = []
    for v in variables:
        out.append(_spec(v) + [to_base64(v.values)])
    return {"attrs": jsonable(attrs), "vars": out}


def decode_run(payload: Mapping[str, Any]) -> tuple[list[Variable], dict[str, Any]]:
    """The inverse of ``encode_run``: (variables, dataset attributes)."""
    variables = []
    for name, dims, dtype, attrs, is_coord, data in payload["vars"]:
        a = from_base64(data, dtype, () if not dims else None)
        variables.append(Variable(name, tuple(dims), a, attrs, bool(is_coord)))
    return variables, dict(payload["attrs"])


def to_dataset(variables: Iterable[Variable], attrs: Mapping[str, Any]) -> Any:
    """The run's ``xarray.Dataset``, decoded as ``xarray.open_zarr`` decodes a run group (so a
    packed run and a run group of the same result open identically)."""
    import xarray as xr

    raw = xr.Dataset(
        {v.name: xr.Variable(v.dims, np.array(v.values), dict(v.attrs)) for v in variables}, attrs=dict(attrs)
    )
    coords = [v.name for v in variables if v.is_coord and v.name not in raw.dims]
    return xr.decode_cf(raw.set_coords(coords))


def _layout(variables: Sequence[Variable]) -> str:
    """What runs must share to be stacked in one batch: names, dims, dtypes, attributes."""
    return json.dumps([_spec(v) for v in variables], sort_keys=True)


def batch_documents(
    base: str, runs: Sequence[tuple[dict[str, Any], list[Variable], dict[str, Any]]]
) -> list[tuple[str, list[str], dict[str, bytes], bytes]]:
    """The zarr documents of batch groups for ``runs`` ((record, variables, attrs) each).

    Runs of one layout go into one batch named ``{base}-{k}``; for each batch this returns
    (its name, its run ids, its documents keyed by their path under batches/, its group
    ``zarr.json``: to be written last, it makes the batch exist).
    """
    by_layout: dict[str, list[int]] = {}
    for i, (_, variables, _) in enumerate(runs):
        by_layout.setdefault(_layout(variables), []).append(i)
    out = []
    for k, rows in enumerate(by_layout.values()):
        name = f"{base}-{k}"
        first = runs[rows[0]][1]
        sizes = [
            {d: n for v in runs[i][1] for d, n in zip(v.dims, v.values.shape, strict=True)} for i in rows
        ]
        lengths = {d: [s[d] for s in sizes] for d in sizes[0]}  # each run's length along each dim
        items: dict[str, bytes] = {}
        for j, v in enumerate(first):
            dtype = little_endian(v.values.dtype)
            width = tuple(max(lengths[d], default=0) for d in v.dims)
            fill = np.nan if dtype.kind in "fc" else 0
            stacked = np.full((len(rows),) + width, fill, dtype=dtype)
            for r, i in enumerate(rows):
                a = runs[i][1][j].values
                stacked[(r,) + tuple(slice(0, n) for n in a.shape)] = a
            dims = ("run",) + tuple(f"{d}_slot" for d in v.dims)
            items.update(encode_small(f"{name}/{v.name}", stacked, dims, v.attrs, level=DATA_LEVEL))
        run_ids = [str(runs[i][0]["run_id"]) for i in rows]
        extra = {"attrs": [jsonable(runs[i][2]) for i in rows], **{f"len-{d}": v for d, v in lengths.items()}}
        spec, docs = records_documents(f"{name}/records", records_rows([runs[i][0] for i in rows]), extra)
        items.update(docs)
        meta = {
            "format": 2,
            "rows": len(rows),
            "records": spec,
            "dims": sorted(lengths),
            "variables": [_spec(v) for v in first],
        }
        # consolidated (the stacked arrays: what xarray.open_zarr reads): one read
        members = {v.name: items[f"{name}/{v.name}/zarr.json"] for v in first}
        group = group_document({BATCH_ATTR: meta}, json_safe=True, members=members)
        out.append((name, run_ids, items, group))
    return out


class Batch:
    """One batch group read back: its runs' records, and each run's variables on request."""

    def __init__(
        self,
        run_ids: list[str],
        record: Any,
        attrs: list[dict[str, Any]],
        lengths: Mapping[str, list[int]],
        variables: list[Any],
        arrays: Mapping[str, np.ndarray],
    ) -> None:
        self.run_ids = run_ids
        self._record = record  # row -> record dict
        self._attrs = attrs
        self._lengths = dict(lengths)
        self._variables = variables
        self._arrays = arrays
        self.row = {rid: i for i, rid in enumerate(self.run_ids)}

    def record(self, i: int) -> dict[str, Any]:
        """The record (a dict, as ``RunRecord.to_dict``) of row ``i``."""
        return dict(self._record(i))

    def run(self, run_id: str) -> tuple[list[Variable], dict[str, Any]]:
        """(variables, dataset attributes) of one run of the batch."""
        r = self.row[run_id]
        out = []
        for name, dims, dtype, attrs, is_coord in self._variables:
            cut = tuple(slice(0, self._lengths[d][r]) for d in dims)
            a = np.array(self._arrays[name][(r,) + cut], dtype=np.dtype(dtype))
            out.append(Variable(name, tuple(dims), a, attrs, bool(is_coord)))
        return out, dict(self._attrs[r])


def read_batch(blobs: Any, zarr_store: Any, path: str) -> Batch | None:
    """The batch group at ``path`` (None when it has no group document: never completed)."""
    import zarr

    try:
        grp = zarr.open_group(zarr_store, path=path, mode="r", zarr_format=3)
    except (FileNotFoundError, KeyError, ValueError):
        return None
    meta = grp.attrs.get(BATCH_ATTR)
    if not isinstance(meta, dict):
        return None
    arrays = {name: read_array(grp, name) for name, *_ in meta["variables"]}
    if meta.get("format", 1) == 1:  # per-run metadata as JSON lists
        records = list(meta["records"])
        return Batch(
            list(meta["run_ids"]),
            records.__getitem__,
            list(meta["attrs"]),
            meta["lengths"],
            meta["variables"],
            arrays,
        )
    prefix = f"{path}/records"
    rows = read_records(blobs, prefix, meta["records"])
    prov = read_provenance(blobs, prefix, meta["records"])
    cols, params = materialized(rows.cols), materialized(rows.params)  # whole records are read

    def record(i: int) -> dict[str, Any]:
        d = {c: v[i] for c, v in cols.items()}
        d.update(
            run_id=rows.ids[i],
            package_ids=list(d.get("package_ids") or ()),
            params={k: v[i] for k, v in params.items()},
            provenance=prov[i],
        )
        return d

    extra = read_columns(blobs, prefix, meta["records"], ["x:attrs", *(f"x:len-{d}" for d in meta["dims"])])
    attrs = extra["x:attrs"]
    lengths = {d: extra[f"x:len-{d}"] for d in meta["dims"]}
    return Batch(rows.ids, record, attrs, lengths, meta["variables"], arrays)
