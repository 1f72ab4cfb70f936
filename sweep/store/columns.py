"""Columns of JSON values as compact arrays, and back: how the index segments and batch groups
store records (one value per run) without a JSON document over all runs.

Each column (a list of JSON-safe values, one per row) is stored as the cheapest of:

- ``null``: every value None (no array at all);
- ``f8``: floats (None as NaN; records hold no NaN: ``jsonable`` spells it "nan");
- ``i8``: integers, with a ``mask`` array (1 = None) when some are None;
- ``dict``: few distinct values (strings, booleans, lists such as a grid, mixed types):
  ``codes`` (int32, -1 = None) into a dictionary of JSON texts kept in the spec;
- ``ascii``: strings of one length, ASCII, many distinct (run ids, timestamps): an (row,
  width) uint8 array, decoded by numpy;
- ``json``: anything else (package ids, provenance's lists): JSON text.

``pack_columns`` stores a set of columns in a handful of arrays however many columns there
are (one file count per group, not per column: HPC file systems count inodes): every f8
column is a row of one (column, row) float64 array, likewise the i8 columns, the masks and
the codes; the JSON columns are one JSON object of lists (``json``), provenance its own
(``prov``: read only when asked for). Every array is zstd-compressed in its chunk
(``sweep.store.zarr_docs``): low-entropy columns (codes, the shared prefix of timestamps, the
repeated keys of provenance) shrink to a few bytes per row.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["encode_column", "decode_column", "pack_columns", "unpack_columns"]

# a column with at most this share of distinct values (or at most DICT_ALWAYS) is dictionary-coded
DICT_SHARE = 0.25
DICT_ALWAYS = 16


def _dictionary(texts: list[str], spec_kind: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(t, len(index)) for t in texts), dtype=np.int32, count=len(texts))
    values = list(index)
    null = index.get("null")
    if null is not None:  # None is code -1: a column of mostly None costs nothing
        codes[codes == null] = -1
        values[null] = "null"
    return {**spec_kind, "kind": "dict", "values": values}, {"codes": codes}


def encode_column(values: Sequence[Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(spec, arrays) of one column: the spec is small JSON (kind, dictionary), the arrays are
    named parts (``values``, ``mask``, ``codes``) of ``len(values)`` rows each (``json``: bytes)."""
    n = len(values)
    types = set(map(type, values))
    if types <= {type(None)}:
        return {"kind": "null"}, {}
    if types <= {float, type(None)}:
        a = np.array([np.nan if v is None else v for v in values], dtype="<f8")
        return {"kind": "f8"}, {"values": a}
    if types <= {int, type(None)} and all(v is None or -(2**63) <= v < 2**63 for v in values):
        a = np.array([0 if v is None else v for v in values], dtype="<i8")
        if type(None) in types:
            mask = np.fromiter((v is None for v in values), dtype=np.uint8, count=n)
            return {"kind": "i8"}, {"values": a, "mask": mask}
        return {"kind": "i8"}, {"values": a}
    if types <= {str, type(None)}:
        distinct = set(values)
        if len(distinct) <= max(DICT_ALWAYS, DICT_SHARE * n):
            return _dictionary([json.dumps(v) for v in values], {})
        if (
            types == {str}
            and len({len(v) for v in distinct}) == 1
            and all(v.isascii() and "\x00" not in v for v in distinct)
        ):
            # run ids, timestamps: fixed-width ASCII, decoded by numpy (no JSON, no loop)
            width = len(values[0])
            raw = np.frombuffer("".join(values).encode("ascii"), dtype=np.uint8).reshape(n, width)
            return {"kind": "ascii", "width": width}, {"values": raw}
    else:
        texts = [json.dumps(v, sort_keys=True) for v in values]
        if len(set(texts)) <= max(DICT_ALWAYS, DICT_SHARE * n):
            return _dictionary(texts, {})
    return {"kind": "json"}, {}


def decode_column(
    spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray], n: int, text: list[Any] | None = None
) -> list[Any]:
    """The values of a column of ``n`` rows (the inverse of ``encode_column``; a ``json``
    column's values are ``text``, decoded by the caller)."""
    kind = spec["kind"]
    if kind == "null":
        return [None] * n
    if kind == "f8":
        a = arrays["values"]
        out = a.tolist()
        if np.isnan(a).any():
            for i in np.flatnonzero(np.isnan(a)).tolist():
                out[i] = None
        return out
    if kind == "i8":
        out = arrays["values"].tolist()
        mask = arrays.get("mask")
        if mask is not None:
            for i in np.flatnonzero(mask).tolist():
                out[i] = None
        return out
    if kind == "dict":
        table = np.empty(len(spec["values"]) + 1, dtype=object)  # code -1: the None at the end
        for i, item in enumerate(json.loads("[" + ",".join(spec["values"]) + "]")):  # one parse
            table[i] = item
        return table[arrays["codes"]].tolist()
    if kind == "json":
        return list(text or [])
    if kind == "ascii":
        raw = np.ascontiguousarray(arrays["values"])
        return raw.view(f"S{spec['width']}").ravel().astype(f"U{spec['width']}").tolist()
    raise ValueError(f"column kind: bad value {kind!r}; allowed: null, f8, i8, dict, json")


_STACKS = {"values": None, "mask": "mask", "codes": "codes"}  # part -> packed array (values: by kind)
_SHARED = frozenset(("f8", "i8", "mask", "codes", "json"))  # packed arrays of several columns


def pack_columns(
    columns: Mapping[str, Sequence[Any]], own: Callable[[str], bool] = lambda name: False
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(spec, arrays) of a set of columns of equal length: at most ``f8``, ``i8``, ``mask``,
    ``codes`` ((column, row) arrays), ``a<k>`` (each ascii column), ``json`` (uint8: JSON text
    of the JSON columns) and, for each JSON column whose name ``own`` accepts, ``j<k>`` (its
    own JSON text: read alone)."""
    stacks: dict[str, list[np.ndarray]] = {"f8": [], "i8": [], "mask": [], "codes": []}
    # each JSON column's text, made at once (its values, Python objects, are dropped: a lazy
    # ``columns`` then holds one column at a time)
    texts: dict[str, dict[str, str]] = {"json": {}}
    specs: dict[str, Any] = {}
    ascii_parts: dict[str, np.ndarray] = {}
    n = 0
    for name, values in columns.items():
        n = len(values)
        spec, arrays = encode_column(values)
        if spec["kind"] == "json":
            spec["part"] = f"j{len(texts) - 1}" if own(name) else "json"
            texts.setdefault(spec["part"], {})[name] = json.dumps(list(values))
        if spec["kind"] == "ascii":
            spec["part"] = f"a{len(ascii_parts)}"
            ascii_parts[spec["part"]] = arrays.pop("values")
        for part, a in arrays.items():
            key = _STACKS[part] or spec["kind"]
            spec[f"at_{part}"] = len(stacks[key])
            stacks[key].append(a)
        specs[name] = spec
    out: dict[str, np.ndarray] = {}
    dtypes = {"f8": "<f8", "i8": "<i8", "mask": "u1", "codes": "<i4"}
    for key, arrays_of in stacks.items():
        if arrays_of:
            out[key] = np.stack(arrays_of).astype(dtypes[key], copy=False)
    for key, lists in texts.items():
        if lists:  # json.dumps of {name: values}, from the texts
            text = "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in lists.items()) + "}"
            out[key] = np.frombuffer(text.encode(), dtype=np.uint8)
    out.update(ascii_parts)
    return {"rows": n, "columns": specs}, out


def _parts_of(col: Mapping[str, Any]) -> list[str]:
    """The packed arrays column spec ``col`` is decoded from."""
    if col["kind"] in ("json", "ascii"):
        return [col["part"]]
    return [_STACKS[key] or col["kind"] for key in ("values", "mask", "codes") if f"at_{key}" in col]


def _column_reader(spec: Mapping[str, Any], read: Callable[[str], np.ndarray]) -> Callable[[str], list[Any]]:
    """name -> that column of ``pack_columns``' output; ``read(part)`` gives a packed array
    (each one shared by several columns read, and a JSON part parsed, once; a column's own
    part, ``a<k>`` or ``j<k>``, is not kept once its column is decoded)."""
    n = int(spec["rows"])
    cache: dict[str, Any] = {}

    def part(key: str) -> Any:
        if key in cache:
            return cache[key]
        a = read(key)
        value = json.loads(a.tobytes()) if key == "json" or key[0] == "j" else a
        if key in _SHARED:
            cache[key] = value
        return value

    def column(name: str) -> list[Any]:
        col = spec["columns"][name]
        kind = col["kind"]
        if kind == "json":
            return decode_column(col, {}, n, part(col["part"])[name])
        if kind == "ascii":
            return decode_column(col, {"values": part(col["part"])}, n)
        arrays = {key: part(_STACKS[key] or kind)[col[f"at_{key}"]] for key in _STACKS if f"at_{key}" in col}
        return decode_column(col, arrays, n)

    return column


def unpack_columns(
    spec: Mapping[str, Any], read: Callable[[str], np.ndarray], names: Iterable[str] | None = None
) -> dict[str, list[Any]]:
    """The columns ``names`` (default all) of ``pack_columns``' output; ``read(part)`` gives a
    packed array (each one read once)."""
    column = _column_reader(spec, read)
    return {name: column(name) for name in (spec["columns"] if names is None else names)}


def unpack_lazy(
    spec: Mapping[str, Any], read: Callable[[str], Callable[[], np.ndarray]], names: Iterable[str]
) -> dict[str, Callable[[], list[Any]]]:
    """name -> a maker of that column, for the columns ``names`` of ``pack_columns``' output.
    ``read(part)`` reads a packed array's files now and gives a function that decodes it: a
    snapshot of the group (a later merge may remove it) at the size of its compressed bytes;
    a packed array is decoded when a column of it is first made."""
    names = list(names)
    keys = dict.fromkeys(key for name in names for key in _parts_of(spec["columns"][name]))
    thunks = {key: read(key) for key in keys}
    column = _column_reader(spec, lambda key: thunks[key]())
    return {name: functools.partial(column, name) for name in names}
