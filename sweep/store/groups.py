"""Run groups ``runs/<run_id>/``: a run's Dataset as its own zarr group, its ``zarr.json`` (whose
attrs hold the run's record) written LAST as the run's marker; a failed run is the marker alone.

A run gets a group when it has final fields on (x, y, z) or is larger than the store's
``pack_bytes`` (smaller runs are packed: ``sweep.store.packed``). Until the marker exists the
directory holds arrays but no group, which every reader treats as "not done".
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..faults import fault_point
from .blobs import O_NEW, LocalBlobs, write_fd
from .records import STATUSES, RunRecord
from .variables import Variable, encode_profiles, encode_series, profiles_of, result_variables, series_of
from .zarr_docs import encode_small, group_document, is_small, jsonable, write_large

__all__ = ["MARKER_ATTR", "write_run_group", "write_failure_marker", "read_marker", "group_indexed"]

MARKER_ATTR = "ns_sweep_run"


def write_run_group(
    blobs: Any,
    zarr_store: Any,
    rec: RunRecord,
    variables: Sequence[Variable],
    attrs: Mapping[str, Any],
    *,
    replace: bool,
) -> None:
    """Write a done run's group: its arrays, then its marker (``replace``: an earlier attempt's
    group, a failure marker or a partial one, is removed first; a partial one always is)."""
    base = f"runs/{rec.run_id}"
    items: dict[str, bytes] = {}
    large = []
    for v in variables:
        if is_small(v.values):
            items.update(encode_small(f"{base}/{v.name}", v.values, v.dims, v.attrs))
        else:
            large.append(v)
    if isinstance(blobs, LocalBlobs):
        group: _NewLocalGroup | None = _NewLocalGroup(blobs, base, replace=replace)
    else:
        if blobs.exists(base):
            blobs.delete_tree(base)  # a failed or partial attempt: never mix its files in
        group = None
    try:
        # data files skip the write-then-rename (the marker guards them): half the operations
        if group is not None:
            group.write_many(items)
        else:
            blobs.write_many(items, atomic=False)
        for v in large:
            write_large(zarr_store, f"{base}/{v.name}", v.values, v.dims, v.attrs)
        # the record is JSON-safe by construction: only the Dataset's attributes need converting;
        # the arrays' metadata, consolidated in the marker, is what was just written
        members = {
            v.name: items.get(f"{base}/{v.name}/zarr.json")
            or blobs.read(f"{base}/{v.name}/zarr.json")
            or b"{}"
            for v in variables
        }
        marker = group_document(
            {**jsonable(attrs), MARKER_ATTR: rec.to_dict()}, json_safe=True, members=members
        )
        fault_point("before-marker", rec.run_id)
        if group is not None:
            group.write_atomic("zarr.json", marker)
        else:
            blobs.write(f"{base}/zarr.json", marker)
    finally:
        if group is not None:
            group.close()


def write_failure_marker(blobs: Any, rec: RunRecord) -> None:
    """A failed run's group: its marker alone (replacing an earlier attempt's group)."""
    base = f"runs/{rec.run_id}"
    if blobs.exists(f"{base}/zarr.json"):
        blobs.delete_tree(base)
    blobs.write(f"{base}/zarr.json", group_document({MARKER_ATTR: rec.to_dict()}, json_safe=True))


def read_marker(blobs: Any, run_id: str) -> RunRecord | None:
    """The record in a run group's marker; None when there is no complete marker."""
    raw = blobs.read(f"runs/{run_id}/zarr.json")
    if raw is None:
        return None
    try:
        d = json.loads(raw).get("attributes", {}).get(MARKER_ATTR)
    except ValueError:
        return None
    if not isinstance(d, dict) or d.get("status") not in STATUSES:
        return None  # partial: written up to (not including) the marker
    return RunRecord.from_dict(d)


def group_indexed(zarr_store: Any, run_id: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The time series and profiles of a done run group, encoded as a log record holds them."""
    import xarray as xr

    ds = xr.open_zarr(zarr_store, group=f"runs/{run_id}", consolidated=False, zarr_format=3, chunks=None)
    variables = result_variables(ds)[0]
    return encode_series(series_of(variables)), encode_profiles(profiles_of(variables))


class _NewLocalGroup:
    """Writes the files of a new run group on a local file system with the fewest system
    calls: the group directory is created (``replace``: after removing an earlier attempt's;
    a partial one left by a crash is removed too), then every file and directory is made
    relative to its descriptor, with no existence checks (a commit costs ~60 file-system
    operations, each ~60 us here: they were most of a tiny run's commit). The directory is
    new and reached without following links (``LocalBlobs.dir_fd``), and each file is
    created exclusively (``O_EXCL``, ``O_NOFOLLOW``): nothing outside the store is written."""

    def __init__(self, blobs: LocalBlobs, base: str, *, replace: bool) -> None:
        self.fsync = blobs.fsync
        parent, _, name = base.rpartition("/")
        if replace:
            blobs.delete_tree(base)
        pfd = blobs.dir_fd(parent, create=True)
        try:
            try:
                os.mkdir(name, 0o777, dir_fd=pfd)
            except FileExistsError:  # a partial attempt (crash before its marker): never mix it in
                blobs.delete_tree(base)
                os.mkdir(name, 0o777, dir_fd=pfd)
            self.fd = blobs.dir_fd(base, create=False)
        finally:
            os.close(pfd)
        self.prefix = base + "/"
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
            fd = os.open(rel, O_NEW, 0o666, dir_fd=self.fd)
            try:
                write_fd(fd, data, self.fsync)
            finally:
                os.close(fd)

    def write_atomic(self, name: str, data: bytes) -> None:
        """Write a file of the group directory through a temporary file and a rename."""
        tmp = f"{name}.{os.urandom(4).hex()}.partial"
        fd = os.open(tmp, O_NEW, 0o666, dir_fd=self.fd)
        try:
            write_fd(fd, data, self.fsync)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
