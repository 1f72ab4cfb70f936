"""Columns decoded on first use: what a reader of the index asks for, not every column.

The index's segments keep ~40 packed columns (``sweep.store.columns``); ``open_results``
uses a dozen, a resume two or three. ``LazyColumns`` maps a column's name to its list and
decodes it from the packed arrays (their compressed bytes read already: a later merge of
segments cannot pull them away) the first time it is asked for; iterating its values or
items decodes them all.

A writer adds rows to a table of a million rows read from the index: ``put_row`` keeps the
values of a column not decoded yet as edits (row -> value), applied when it is decoded, so
that a commit decodes nothing (decoding every column of a million rows took ~1.4 GB), and
``rows_of`` reads written rows back from the edits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any

__all__ = ["LazyColumns", "Maker", "materialized"]

Maker = Callable[[], list[Any]]  # decodes one column


class LazyColumns(MutableMapping[str, list[Any]]):
    """Name -> column (a list a row, ``rows`` rows): made by its maker on first access, then
    kept; the names and their order are known without decoding anything."""

    __slots__ = ("_edits", "_lock", "_made", "_makers", "_names", "rows")

    def __init__(
        self, makers: Mapping[str, Maker], rows: int, made: Mapping[str, list[Any]] | None = None
    ) -> None:
        """``makers``: the columns to decode later (each gives at most ``rows`` values: the
        rest are None); ``made``: columns given whole (``rows`` values each)."""
        self._names: dict[str, None] = dict.fromkeys([*makers, *(made or {})])
        self._makers: dict[str, Maker] = dict(makers)
        self._made: dict[str, list[Any]] = dict(made or {})
        self._edits: dict[str, dict[int, Any]] = {}  # undecoded column -> row -> value written
        self._lock = threading.Lock()  # one decode of a column, and no edit lost during it
        self.rows = rows

    def __getitem__(self, name: str) -> list[Any]:
        try:
            return self._made[name]
        except KeyError:
            pass
        with self._lock:
            if name not in self._made:
                column = self._makers[name]()  # KeyError: no such column
                column.extend([None] * (self.rows - len(column)))
                for i, value in self._edits.pop(name, {}).items():
                    column[i] = value
                self._made[name] = column
                del self._makers[name]
            return self._made[name]

    def __setitem__(self, name: str, column: list[Any]) -> None:
        with self._lock:
            self._names[name] = None
            self._makers.pop(name, None)
            self._edits.pop(name, None)
            self._made[name] = column

    def __delitem__(self, name: str) -> None:
        with self._lock:
            del self._names[name]
            self._makers.pop(name, None)
            self._edits.pop(name, None)
            self._made.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def decoded(self) -> list[str]:
        """The names of the columns decoded (or set) so far, in that order."""
        return list(self._made)

    def grow(self, rows: int) -> None:
        """``rows`` rows from now on: the decoded columns get None in the new ones."""
        with self._lock:
            for column in self._made.values():
                column.extend([None] * (rows - len(column)))
            self.rows = rows

    def put_row(self, i: int, values: Mapping[str, Any], *, new_columns: bool) -> None:
        """Row ``i`` of every column: ``values[name]``, None where ``values`` has no
        ``name``. A name ``values`` has that is no column: with ``new_columns`` a new column
        (None in the other rows), else ignored. Decodes nothing."""
        with self._lock:
            if new_columns:
                for name in values:
                    if name not in self._names:
                        self._names[name] = None
                        self._made[name] = [None] * self.rows
            for name in self._names:
                column = self._made.get(name)
                if column is not None:
                    column[i] = values.get(name)
                else:
                    self._edits.setdefault(name, {})[i] = values.get(name)

    def whole(self) -> dict[str, list[Any]]:
        """Every column, decoded (name -> list; for reading many whole rows)."""
        if self._makers:
            for name in list(self._names):
                self[name]
        return self._made

    def rows_of(self, name: str, rows: Sequence[int]) -> list[Any]:
        """Column ``name`` at ``rows``: from what was written (``put_row``) when every one of
        them was, without decoding the column."""
        edits = self._edits.get(name)
        if name not in self._made and edits is not None and all(i in edits for i in rows):
            return [edits[i] for i in rows]
        column = self[name]
        return [column[i] for i in rows]

    def __repr__(self) -> str:
        return f"LazyColumns({list(self._names)}, decoded={list(self._made)})"


def materialized(columns: MutableMapping[str, list[Any]]) -> dict[str, list[Any]]:
    """``columns`` as a plain dict with every column decoded (a reader of whole records)."""
    if isinstance(columns, LazyColumns):
        return columns.whole()
    return dict(columns)
