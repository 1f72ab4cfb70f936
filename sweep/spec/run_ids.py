"""Run ids (16 hex digits: a hash of a package's parameters) as 8-byte integer keys.

Planning compares a sweep's run ids with a store's, up to a million of each: as sorted
uint64 keys (``run_keys_of``, ``RunIdSet``) that is a few numpy calls and 8 bytes a run,
where sets of id strings were ~100 bytes a run and a Python loop.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet

import numpy as np

__all__ = ["run_key", "run_keys_of", "RunIdSet"]


def run_key(run_id: str) -> int | None:
    """A run id of 16 hex digits as an integer (None: another form of id; ``int`` alone would
    take a sign, spaces or underscores)."""
    if len(run_id) != 16 or not (run_id.isascii() and run_id.isalnum()):
        return None
    try:
        return int(run_id, 16)
    except ValueError:
        return None


_KEYS_BLOCK = 1 << 16  # run ids parsed at once by run_keys_of
_HEX = np.full(256, 16, dtype=np.uint8)  # a character's value as a hex digit (16: not one)
_LOWER_HEX = _HEX.copy()  # the same, lowercase digits only (the form ids are written in)
for _value, _digit in enumerate("0123456789abcdef"):
    _HEX[ord(_digit)] = _HEX[ord(_digit.upper())] = _LOWER_HEX[ord(_digit)] = _value


def _keys(digits: np.ndarray) -> np.ndarray:
    """The uint64 key of each row of 16 hex digit values (widened a column at a time: the
    whole (n, 16) array as uint64 was 128 MB at a million ids)."""
    keys = np.zeros(len(digits), dtype=np.uint64)
    for k in range(16):
        keys = (keys << np.uint64(4)) | digits[:, k].astype(np.uint64)
    return keys


def run_keys_of(run_ids: Iterable[str]) -> np.ndarray:
    """``run_key`` of every id of 16 hex digits among ``run_ids`` (the others are left out),
    as uint64, computed on arrays: 100,000 ids in a few ms, not one ``int(id, 16)`` each; in
    blocks of ``_KEYS_BLOCK`` ids (a million at once held ~270 MB of digits)."""
    it = iter(run_ids)
    blocks = []
    while chunk := list(itertools.islice(it, _KEYS_BLOCK)):
        ids = np.array([r for r in chunk if len(r) == 16], dtype="U16")
        chars = ids.view(np.uint32).reshape(len(ids), 16)
        digits = _HEX[np.minimum(chars, 255)]  # a character past 255 is no digit
        blocks.append(_keys(digits[(digits < 16).all(axis=1)]))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.uint64)


class RunIdSet(AbstractSet[str]):
    """A set of run ids kept as sorted keys (ids of 16 lowercase hex digits, the form run ids
    are made in) and, as strings, the few others: a store's million done runs in 8 MB."""

    def __init__(self, ids: np.ndarray) -> None:
        """``ids``: run ids as fixed-width bytes (ASCII), in any order, repeats allowed."""
        width = ids.dtype.itemsize
        raw = np.ascontiguousarray(ids).view(np.uint8).reshape(len(ids), width)
        ok = np.zeros(len(ids), dtype=bool)
        digits = np.zeros((len(ids), 16), dtype=np.uint8)
        if width >= 16:  # an id of 16 characters: padded with NULs to the width
            digits = _LOWER_HEX[raw[:, :16]]
            ok = (digits < 16).all(axis=1) & (raw[:, 16:] == 0).all(axis=1)
        self.keys = np.unique(_keys(digits[ok]))
        self.others = frozenset(r.decode() for r in ids[~ok].tolist())

    def __contains__(self, run_id: object) -> bool:
        if not isinstance(run_id, str):
            return False
        if len(run_id) != 16 or run_id.strip("0123456789abcdef"):
            return run_id in self.others
        key = np.uint64(int(run_id, 16))
        i = int(np.searchsorted(self.keys, key))
        return i < len(self.keys) and self.keys[i] == key

    def __len__(self) -> int:
        return len(self.keys) + len(self.others)

    def __iter__(self) -> Iterator[str]:
        for key in self.keys.tolist():
            yield f"{key:016x}"
        yield from self.others

    def run_keys(self) -> np.ndarray:
        """The keys of every id of 16 hex digits (``run_keys_of`` of the set, sorted)."""
        return np.union1d(self.keys, run_keys_of(self.others))
