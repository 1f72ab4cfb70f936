"""Columns of JSON values as compact arrays, and back: how the index segments and batch groups
store records (one value per run) without a JSON document over all runs.

Each column (a list of JSON-safe values, one per row) is stored as the cheapest of:

- ``null``: every value None (no array at all);
- ``f8``: floats (None as NaN; records hold no NaN: ``jsonable`` spells it "nan");
- ``i8``: integers, with a ``mask`` array (1 = None) when some are None;
- ``dict``: few distinct values (strings, booleans, lists such as a grid, mixed types):
  ``codes`` (int32, -1 = None) into a dictionary of JSON texts kept in the spec;
- ``json``: anything else (run ids, package ids, timestamps, provenance): the JSON text of
  the whole list as one uint8 array.

Every array is zstd-compressed in its chunk (``sweep.store.zarr_docs``): low-entropy columns
(codes, the shared prefix of timestamps, the repeated keys of provenance) shrink to a few
bytes per row. ``encode_column``/``decode_column`` are pure functions: arrays in, arrays out;
the caller names and writes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["encode_column", "decode_column", "take"]

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
    else:
        texts = [json.dumps(v, sort_keys=True) for v in values]
        if len(set(texts)) <= max(DICT_ALWAYS, DICT_SHARE * n):
            return _dictionary(texts, {})
    data = json.dumps(list(values)).encode()
    return {"kind": "json"}, {"values": np.frombuffer(data, dtype=np.uint8)}


def decode_column(spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray], n: int) -> list[Any]:
    """The values of a column of ``n`` rows (the inverse of ``encode_column``)."""
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
        for i, text in enumerate(spec["values"]):
            table[i] = json.loads(text)
        return table[arrays["codes"]].tolist()
    if kind == "json":
        return list(json.loads(arrays["values"].tobytes()))
    raise ValueError(f"column kind: bad value {kind!r}; allowed: null, f8, i8, dict, json")


def take(values: list[Any], rows: Sequence[int] | np.ndarray) -> list[Any]:
    """``values`` at ``rows`` (a list)."""
    return [values[i] for i in rows]
