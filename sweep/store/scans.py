"""Questions a store's writer answers from its index segments one at a time, not as a table.

A writer keeps of the rows in its segments only their run ids and status
(``sweep.store.run_keys``). The few questions of a sweep's start that need more (the failed
runs, the batch groups in use, the last done runs of each size and their records) are
answered from the columns they need, read a segment at a time (``RunIndex._blocks``): a writer
of a store of a million runs never holds a million rows (1.8 GB of Python values at 1M,
against ~17 MB of keys).

Each function takes *blocks*: consecutive rows, oldest first (a segment, then the writer's
own rows), as a later row of a run replaces an earlier one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .records import RunRecord
from .table import RunTable

__all__ = ["FAILURE_COLUMNS", "Block", "table_block", "records", "failures", "last_done"]

# a block: run ids, and each column asked for by name (a column a segment lacks: Nones)
Block = tuple[Sequence[str], Mapping[str, Sequence[Any]]]

FAILURE_COLUMNS = ("f:status", "f:failure_class", "f:error")


def table_block(table: RunTable, names: Sequence[str]) -> Block:
    """The rows of ``table`` as a block of the columns ``names`` (named as in a segment:
    ``f:<field>``, ``p:<parameter>``)."""
    none = [None] * len(table)

    def column(name: str) -> Sequence[Any]:
        if name == "f:home":
            return table.home
        return (table.cols if name.startswith("f:") else table.params).get(name[2:], none)

    return table.ids, {name: column(name) for name in names}


def records(
    table: RunTable, rows: Sequence[int], provenance: Callable[[list[str]], list[Any]]
) -> dict[str, RunRecord]:
    """run id -> RunRecord of the rows ``rows`` of ``table`` (the provenance of a row that
    has none in memory read by ``provenance``)."""
    missing = [i for i in rows if table.prov[i] is None]
    if missing:
        for i, p in zip(missing, provenance([table.ids[i] for i in missing]), strict=True):
            table.prov[i] = p
    return {table.ids[i]: table.record(i) for i in rows}


def failures(blocks: Iterable[Block]) -> dict[str, tuple[str | None, str | None]]:
    """run id -> (failure class, error) of the runs whose last row says "failed" (blocks with
    the ``FAILURE_COLUMNS``)."""
    out: dict[str, tuple[str | None, str | None]] = {}
    for ids, cols in blocks:
        for rid in ids:  # a later row replaces: a failed run done since is not failed
            out.pop(rid, None)
        status, fc, err = (cols[c] for c in FAILURE_COLUMNS)
        out.update(
            (rid, (f, e)) for rid, st, f, e in zip(ids, status, fc, err, strict=True) if st == "failed"
        )
    return out


def last_done(
    blocks: Iterable[tuple[Sequence[str], Sequence[Any], Sequence[Sequence[Any]]]], per_group: int
) -> list[str]:
    """The run ids of the last ``per_group`` done runs of each group of runs with equal values
    of the columns, in order; a block is (run ids, status, columns). A done row is final (a
    done run is never written again), so a run is counted where its done row is."""
    groups: dict[str, deque[tuple[int, str]]] = {}
    start = 0
    for ids, status, columns in blocks:
        # grouped by the identity of the values first (values decoded from the index share
        # their objects: no per-run hashing), then those groups by value
        by_identity: dict[tuple[int, ...], list[int]] = {}
        sizes = zip(*(map(id, col) for col in columns), strict=True)
        for i, (st, size) in enumerate(zip(status, sizes, strict=True)):
            if st == "done":
                by_identity.setdefault(size, []).append(i)
        by_value: dict[str, list[int]] = {}
        for rows in by_identity.values():
            by_value.setdefault(repr([col[rows[0]] for col in columns]), []).extend(rows)
        for key, rows in by_value.items():
            kept = groups.setdefault(key, deque(maxlen=per_group))
            kept.extend((start + i, ids[i]) for i in sorted(rows)[-per_group:])
        start += len(ids)
    return [rid for _, rid in sorted(row for kept in groups.values() for row in kept)]
