"""The store's one encoder of zarr v3 documents: group documents, and small arrays as
(key, bytes) pairs written without zarr's API.

Creating arrays through zarr's API costs about 5 ms each here (every call hops to zarr's
I/O thread and checks the hierarchy), so a run of 8 small arrays would take ~40 ms to
commit. Small numeric arrays are therefore encoded here as (key, bytes) pairs: the
metadata document comes from zarr itself (generated once per dtype/shape/dims in memory
and cached), the chunk is the array's raw little-endian bytes (one chunk, ``bytes``
codec, no compression). The result is an ordinary zarr v3 group that
``xarray.open_zarr`` reads. Large arrays (final fields) go through zarr's API with its
default compression, where the per-array overhead does not matter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "SMALL_ARRAY_BYTES",
    "group_document",
    "encode_small",
    "decode_small",
    "read_small",
    "is_small",
    "jsonable",
    "write_large",
    "read_array",
]

SMALL_ARRAY_BYTES = 1 << 20  # up to 1 MiB: one uncompressed chunk written directly


_PLAIN = frozenset((str, int, bool, type(None)))


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays and tuples turned into plain JSON values."""
    t = type(value)
    if t in _PLAIN:  # the common cases first, by exact type (ABC checks are slow)
        return value
    if t is float:
        return value if math.isfinite(value) else str(value)
    if t is dict:
        return {k if type(k) is str else str(k): jsonable(v) for k, v in value.items()}
    if t is list or t is tuple:
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def group_document(
    attributes: Mapping[str, Any], *, json_safe: bool = False, members: Mapping[str, bytes] | None = None
) -> bytes:
    """The ``zarr.json`` of a group with these attributes (``json_safe``: already plain JSON
    values, e.g. records, which are JSON-safe by construction: skip the conversion).

    ``members`` (name -> that array's ``zarr.json``): the group's metadata consolidated inline,
    as ``zarr.consolidate_metadata`` writes it, so ``xarray.open_zarr`` of a run or batch
    group opens it in one read and without warning about unconsolidated metadata.
    """
    attrs = attributes if json_safe else jsonable(attributes)
    doc: dict[str, Any] = {"zarr_format": 3, "node_type": "group", "attributes": attrs}
    if members is not None:
        doc["consolidated_metadata"] = {
            "kind": "inline",
            "must_understand": False,
            "metadata": {name: json.loads(meta) for name, meta in sorted(members.items())},
        }
    return json.dumps(doc).encode()


def is_small(a: np.ndarray) -> bool:
    """Whether an array takes the direct path (numeric, at most SMALL_ARRAY_BYTES)."""
    return a.dtype.kind in "biufc" and a.nbytes <= SMALL_ARRAY_BYTES


@lru_cache(maxsize=256)
def _template(
    dtype: str, shape: tuple[int, ...], dims: tuple[str, ...], level: int | None = None
) -> tuple[dict[str, Any], str | None]:
    """zarr's own metadata for a one-chunk array (zstd at ``level``, or uncompressed), and
    its chunk key."""
    import zarr
    from zarr.codecs import ZstdCodec
    from zarr.storage import MemoryStore

    mem: dict[str, Any] = {}
    dt = np.dtype(dtype)
    fill = np.nan if dt.kind in "fc" else 0
    arr = zarr.create_array(
        MemoryStore(mem),
        shape=shape,
        dtype=dt,
        chunks=tuple(max(1, n) for n in shape),
        compressors=None if level is None else ZstdCodec(level=level),
        filters=None,
        fill_value=fill,
        # chunk "0" beside zarr.json, not "c/0": one directory less per
        # array (a tiny run's commit is mostly file-system operations)
        chunk_key_encoding={"name": "v2", "separator": "."},
        dimension_names=dims or None,
        zarr_format=3,
    )
    if int(np.prod(shape)) > 0:
        arr[...] = np.ones(shape, dtype=dt)  # not the fill value: zarr skips writing empty chunks
    meta = json.loads(mem["zarr.json"].to_bytes())
    chunk_keys = [k for k in mem if k != "zarr.json"]
    return meta, (chunk_keys[0] if chunk_keys else None)


@lru_cache(maxsize=1024)
def _document(
    dtype: str, shape: tuple[int, ...], dims: tuple[str, ...], attrs_json: str, level: int | None = None
) -> tuple[bytes, str | None]:
    """An array's ``zarr.json`` (attributes given as their JSON text) and its chunk key.
    A sweep writes the same few documents for every run: they are made once."""
    meta, chunk_key = _template(dtype, shape, dims, level)
    doc = dict(meta)
    doc["attributes"] = json.loads(attrs_json)
    return json.dumps(doc).encode(), chunk_key


def encode_small(
    path: str, a: np.ndarray, dims: tuple[str, ...], attrs: Mapping[str, Any], *, level: int | None = None
) -> dict[str, bytes]:
    """The documents of one small array at ``path``: metadata and its single chunk
    (zstd-compressed at ``level``; None: raw bytes)."""
    a = np.asarray(a)
    little = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
    doc, chunk_key = _document(little.str, tuple(a.shape), tuple(dims), json.dumps(jsonable(attrs)), level)
    out = {f"{path}/zarr.json": doc}
    if chunk_key is not None:
        raw = np.ascontiguousarray(a, dtype=little).tobytes()
        out[f"{path}/{chunk_key}"] = raw if level is None else _zstd(level).encode(raw)
    return out


@lru_cache(maxsize=8)
def _zstd(level: int) -> Any:
    from numcodecs import Zstd  # type: ignore[import-untyped]

    return Zstd(level=level)


def decode_small(blobs: Any, path: str) -> np.ndarray | None:
    """The array at ``path`` as ``encode_small`` wrote it (one chunk, raw or zstd), read with
    plain reads instead of zarr's API (~50 us instead of ~3 ms an array: an index read is
    hundreds of arrays); None when it is missing. Anything else is read through zarr."""
    read = read_small(blobs, path)
    return None if read is None else read()


def read_small(blobs: Any, path: str) -> Callable[[], np.ndarray] | None:
    """``decode_small`` in two steps: the files of the array at ``path`` are read now, the
    array is decoded (decompressed) when the returned function is called, each time (a reader
    keeps a consistent view of a group that may go later, at the size of its compressed
    bytes); None when it is missing."""
    raw = blobs.read(f"{path}/zarr.json")
    if raw is None:
        return None
    meta = json.loads(raw)
    shape = tuple(meta["shape"])
    dtype = np.dtype(_DTYPES.get(meta["data_type"], meta["data_type"]))
    codecs = [c["name"] for c in meta["codecs"]]
    grid = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
    encoding = meta["chunk_key_encoding"]
    simple = (
        codecs in (["bytes"], ["bytes", "zstd"])
        and grid == tuple(max(1, n) for n in shape)
        and encoding.get("name") == "v2"
        and all(c.get("configuration", {}).get("endian", "little") == "little" for c in meta["codecs"][:1])
    )
    if not simple:
        import zarr

        a = np.asarray(zarr.open_array(blobs.zarr_store(read_only=True), path=path, mode="r")[...])
        return lambda: a
    if 0 in shape:
        return lambda: np.zeros(shape, dtype=dtype)
    sep = encoding.get("configuration", {}).get("separator", ".")
    chunk = blobs.read(f"{path}/{sep.join('0' * len(shape)) or '0'}")
    if chunk is None:  # never written: all fill value
        return lambda: np.full(shape, meta["fill_value"], dtype=dtype)
    zstd = codecs[-1] == "zstd"

    def decode() -> np.ndarray:
        data = _zstd(1).decode(chunk) if zstd else chunk
        return np.frombuffer(data, dtype=dtype.newbyteorder("<")).reshape(shape)

    return decode


# zarr v3 data type names -> numpy
_DTYPES = {
    "bool": "?",
    "int8": "<i1",
    "int16": "<i2",
    "int32": "<i4",
    "int64": "<i8",
    "uint8": "<u1",
    "uint16": "<u2",
    "uint32": "<u4",
    "uint64": "<u8",
    "float32": "<f4",
    "float64": "<f8",
}


def write_large(
    zarr_store: Any, path: str, a: np.ndarray, dims: tuple[str, ...], attrs: Mapping[str, Any]
) -> None:
    """Write one large array through zarr's API (default chunking and compression)."""
    import zarr

    arr = zarr.create_array(
        zarr_store,
        name=path,
        shape=a.shape,
        dtype=a.dtype,
        dimension_names=dims or None,
        attributes=jsonable(attrs),
        overwrite=True,
        zarr_format=3,
    )
    arr[...] = a


def read_array(group: Any, name: str) -> np.ndarray:
    """The whole array ``name`` of an open zarr group (a group of that name is an error)."""
    import zarr

    node = group[name]
    if not isinstance(node, zarr.Array):
        raise TypeError(f"{group.path}/{name}: a zarr group where an array was expected")
    return np.asarray(node[...])
