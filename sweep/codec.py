"""The one array codec: numeric arrays as (dtype, shape, little-endian bytes), raw for Dask's
messages (checkpoints travelling from workers) or base64 inside JSON (log records of the store).
Lossless: the bytes decoded are the bytes encoded."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "little_endian",
    "to_bytes",
    "from_bytes",
    "to_base64",
    "from_base64",
    "encode_arrays",
    "decode_arrays",
]


def little_endian(dtype: np.dtype) -> np.dtype:
    """``dtype`` in little-endian byte order (how every array is stored and sent)."""
    return dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype


def to_bytes(a: Any, dtype: Any = None) -> bytes:
    """The array's values as C-order little-endian bytes (of ``dtype`` when given)."""
    a = np.asarray(a)
    return np.ascontiguousarray(a, little_endian(np.dtype(dtype) if dtype is not None else a.dtype)).tobytes()


def from_bytes(data: bytes, dtype: Any, shape: Any = None) -> np.ndarray:
    """The inverse of ``to_bytes``: a read-only view of ``data`` (``shape`` () for a scalar)."""
    a = np.frombuffer(data, dtype=np.dtype(dtype))
    return a if shape is None else a.reshape(tuple(shape))


def to_base64(a: Any, dtype: Any = None) -> str:
    """``to_bytes`` as base64 text (for JSON documents)."""
    return base64.b64encode(to_bytes(a, dtype)).decode()


def from_base64(text: str, dtype: Any, shape: Any = None) -> np.ndarray:
    """The inverse of ``to_base64``."""
    return from_bytes(base64.b64decode(text), dtype, shape)


def encode_arrays(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """Named arrays as msgpack-friendly values ({dtype, shape, data}); 0-d shapes are kept."""
    out = {}
    for name, a in arrays.items():
        a = np.asarray(a)
        out[name] = {"dtype": little_endian(a.dtype).str, "shape": list(a.shape), "data": to_bytes(a)}
    return out


def decode_arrays(encoded: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The inverse of ``encode_arrays`` as writable copies (plain arrays pass through unchanged)."""
    out = {}
    for name, v in encoded.items():
        out[name] = v if isinstance(v, np.ndarray) else from_bytes(v["data"], v["dtype"], v["shape"]).copy()
    return out
