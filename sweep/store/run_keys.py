"""The status of every run a writer flushed to the index, ~17 bytes a run instead of a row.

A store's writer answers "is this run done already?" at every commit (a done result is never
replaced). Its table of rows (``sweep.store.table.RunTable``: Python values, ~1 KB a run) is
what readers query; kept whole in the writer it grew with every committed run, ~1-2 GB for a
sweep of a million. Once rows are in the index's segments the writer keeps only their run ids
(fixed-width bytes) and status codes here, in sorted chunks merged like a binary counter up
to ``MAX_CHUNK`` ids (each id is copied O(log MAX_CHUNK) times in all); a query that needs
whole rows reads the segments again.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["RunKeys", "MAX_CHUNK"]

_STATUSES = (None, "done", "failed")  # code -> status
# ids in one chunk, at most: a merge of chunks copies them ~5 times (uncapped, 768k ids of a
# 1M sweep: ~5 x 12 MB at once); a lookup searches ~N / MAX_CHUNK chunks (µs each)
MAX_CHUNK = 1 << 16
_CODE = {s: i for i, s in enumerate(_STATUSES)}


class RunKeys:
    """Run id -> status of many runs; a later ``add`` of a run replaces its status."""

    def __init__(self) -> None:
        # (sorted ids, their status codes), oldest first
        self._chunks: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        """Entries held (a run added twice to different chunks counts twice until they merge)."""
        return sum(len(ids) for ids, _ in self._chunks)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (benchmarks: what the writer keeps per flushed run)."""
        return sum(ids.nbytes + codes.nbytes for ids, codes in self._chunks)

    def add(self, run_ids: Sequence[str], statuses: Sequence[str | None]) -> None:
        """Record the status ("done", "failed" or None) of each run of ``run_ids``."""
        if not run_ids:
            return
        codes = np.fromiter((_CODE[s] for s in statuses), dtype=np.uint8, count=len(run_ids))
        ids = np.array([r.encode() for r in run_ids], dtype=bytes)
        self._chunks.append(_last_of_each(ids, codes))
        while (
            len(self._chunks) > 1
            and len(self._chunks[-2][0]) <= 2 * len(self._chunks[-1][0])
            and len(self._chunks[-2][0]) + len(self._chunks[-1][0]) <= MAX_CHUNK
        ):
            (old_ids, old_codes), (new_ids, new_codes) = self._chunks[-2:]
            both = np.concatenate([old_ids, new_ids])  # the wider of the two byte widths
            self._chunks[-2:] = [_last_of_each(both, np.concatenate([old_codes, new_codes]))]

    def status(self, run_id: str) -> str | None:
        """The run's latest status; None when it was never added (or added without one)."""
        key = run_id.encode()
        for ids, codes in reversed(self._chunks):  # newest first: a later status wins
            if len(key) > ids.dtype.itemsize:
                continue  # longer than every id of the chunk (numpy would truncate it)
            i = int(np.searchsorted(ids, key))
            if i < len(ids) and ids[i] == key:
                return _STATUSES[codes[i]]
        return None

    def ids_with(self, status: str) -> np.ndarray:
        """The sorted ids (fixed-width bytes) whose latest status is ``status``, made from
        the chunks at once (transiently ~17 bytes a run: no set of a million strings)."""
        if not self._chunks:
            return np.zeros(0, dtype="S1")
        ids = np.concatenate([ids for ids, _ in self._chunks])  # the widest of the widths
        ids, codes = _last_of_each(ids, np.concatenate([codes for _, codes in self._chunks]))
        return ids[codes == _CODE[status]]


def _last_of_each(ids: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ids`` sorted with their codes, the last given entry of a repeated id kept."""
    order = np.argsort(ids, kind="stable")  # equal ids stay in the order given
    ids, codes = ids[order], codes[order]
    last = np.ones(len(ids), dtype=bool)
    last[:-1] = ids[1:] != ids[:-1]
    return ids[last], codes[last]
