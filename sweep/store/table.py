"""The store's index in memory: one row per run, record fields as columns, time series as arrays.

Columns (lists) rather than one object per run because the index is read far more often
than it changes, and whole-column reads are what planning (status, package ids) and
``open_results`` (parameters, series) need. ``RunRecord`` objects are made on request.

Time series, profiles and provenance of the rows already in the index's segments are read on
demand, by run id (a writer's segments are merged while it runs: positions change, ids do
not); only the rows written since the last flush keep theirs in memory.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np

from .lazy_columns import LazyColumns, Maker
from .records import RECORD_COLUMNS, RunRecord

__all__ = ["RunTable", "LOG_HOME", "Series", "Profiles"]

LOG_HOME = "log"  # RunTable.home of a packed run whose only copy is its log record
# profiles of many runs: dimension -> (name -> (run, slot) float array, each run's length)
Profiles = dict[str, tuple[dict[str, np.ndarray], np.ndarray]]
Series = tuple[dict[str, np.ndarray], np.ndarray]
# what the index reads on demand for the given run ids (in their order; unknown ids: NaN rows
# of length 0, an empty provenance)
SeriesLoader = Callable[[list[str]], Series]
ProfilesLoader = Callable[[list[str]], Profiles]
ProvenanceLoader = Callable[[list[str]], list[dict[str, Any]]]


class RunTable:
    """All runs of a store: ``ids[i]`` is row i; later writes of a run replace its row."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        # record fields and parameters; read from the index: decoded on first use
        self.cols = LazyColumns({}, 0, {c: [] for c in RECORD_COLUMNS if c != "run_id"})
        self.params = LazyColumns({}, 0)
        self.prov: list[dict[str, Any] | None] = []  # None: not in memory (see load_provenance)
        # where a done run's data are: None its own group runs/<run_id>/, else a batch group's
        # name or LOG_HOME (a packed run not yet compacted: see sweep.packed)
        self.home: list[str | None] = []
        # series and profiles of the rows not in memory, read by run id on first use
        self.series_loader: SeriesLoader | None = None
        self.profiles_loader: ProfilesLoader | None = None
        self._tail: dict[int, dict[str, np.ndarray]] = {}  # series of rows written since the flush
        self._tail_profiles: dict[int, dict[str, dict[str, np.ndarray]]] = {}
        self.dirty: set[int] = set()  # rows written since the last flush of the index

    # ---------------------------------------------------------------- building

    @classmethod
    def from_columns(cls, doc: Mapping[str, Any]) -> RunTable:
        """A table from columns: ``run_id``, the record fields, ``params`` (name -> column),
        ``home`` (lists of one value per row, copied); nothing of it is dirty."""
        cols = {c: list(v) for c in RECORD_COLUMNS if c != "run_id" and (v := doc.get(c))}
        params = {k: list(v) for k, v in (doc.get("params") or {}).items()}
        return cls.from_parts(list(doc["run_id"]), cols, params, doc.get("home"))

    @classmethod
    def from_parts(
        cls,
        ids: list[str],
        cols: MutableMapping[str, list[Any]],
        params: MutableMapping[str, list[Any]],
        home: Sequence[str | None] | None = None,
    ) -> RunTable:
        """A table of the rows ``ids`` whose record fields and parameter columns are handed
        over (each popped from ``cols``/``params`` when first used: no second copy is kept;
        ``home``: the ``home`` column, else a field of ``cols``); a run's last row is kept,
        nothing is dirty. Columns of a ``LazyColumns`` stay undecoded until used."""
        t = cls()
        t.pos = {rid: i for i, rid in enumerate(ids)}
        keep: list[int] | None = None
        if len(t.pos) != len(ids):  # a later row of a run replaces an earlier one
            keep = sorted(t.pos.values())
            ids = [ids[i] for i in keep]
            t.pos = {rid: i for i, rid in enumerate(ids)}
        t.ids = ids
        n = len(ids)

        def kept(values: list[Any] | None) -> list[Any]:
            if not values:
                return [None] * n
            return values if keep is None else [values[i] for i in keep]

        def column(columns: MutableMapping[str, list[Any]], name: str) -> Maker:
            return lambda: kept(columns.pop(name, None))

        homes: list[Any] | None = cols.pop("home", None) if home is None else list(home)
        makers = {c: column(cols, c) for c in RECORD_COLUMNS if c != "run_id"}
        makers["package_ids"] = lambda: [
            p if type(p) is tuple else tuple(p or ()) for p in kept(cols.pop("package_ids", None))
        ]
        t.cols = LazyColumns(makers, n)
        t.params = LazyColumns({k: column(params, k) for k in params}, n)
        t.prov = [None] * n
        t.home = kept(homes)
        return t

    def upsert(
        self,
        d: Mapping[str, Any],
        series: dict[str, np.ndarray] | None = None,
        home: str | None = None,
        profiles: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> int:
        """Add or replace the row of record dict ``d`` (with its series, its profiles and the
        ``home`` of its data); returns the row."""
        rid = d["run_id"]
        i = self.pos.get(rid)
        if i is None:
            i = len(self.ids)
            self.ids.append(rid)
            self.pos[rid] = i
            self.cols.grow(i + 1)
            self.params.grow(i + 1)
            self.prov.append(None)
            self.home.append(None)
        # a column not decoded keeps the row as an edit: a commit into a table of a million
        # rows read from the index decodes nothing
        self.cols.put_row(i, {**d, "package_ids": tuple(d.get("package_ids") or ())}, new_columns=False)
        self.params.put_row(i, d.get("params") or {}, new_columns=True)
        self.prov[i] = dict(d.get("provenance") or {})
        self.home[i] = home
        self._tail[i] = series or {}
        self._tail_profiles[i] = profiles or {}
        self.dirty.add(i)
        return i

    def absorb(self, other: RunTable) -> None:
        """Write the rows of ``other`` (rows in memory: provenance, series and profiles
        included) over this table's, as ``upsert`` would."""
        cols, params = other.cols.whole(), other.params.whole()
        for i, rid in enumerate(other.ids):
            d = {c: col[i] for c, col in cols.items()}
            d["run_id"] = rid
            d["params"] = {k: col[i] for k, col in params.items() if col[i] is not None}
            d["provenance"] = other.prov[i]
            self.upsert(d, other._tail.get(i), other.home[i], other._tail_profiles.get(i))

    def flushed(self, rows: Iterable[int]) -> None:
        """``rows`` are in the index's segments now: their series, profiles and provenance
        are read from there on demand (the writer's memory holds only unflushed rows)."""
        for i in rows:
            self._tail.pop(i, None)
            self._tail_profiles.pop(i, None)
            self.prov[i] = None
            self.dirty.discard(i)

    # ---------------------------------------------------------------- reading

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self.pos

    def status(self, run_id: str) -> str | None:
        """ "done", "failed" or None (not in the table)."""
        i = self.pos.get(run_id)
        return None if i is None else self.cols["status"][i]

    def home_of(self, run_id: str) -> str | None:
        """Where the run's data are (see ``home``); None also for a run not in the table."""
        i = self.pos.get(run_id)
        return None if i is None else self.home[i]

    def seq(self, run_id: str) -> int:
        i = self.pos.get(run_id)
        return -1 if i is None else int(self.cols["seq"][i] or 0)

    def load_provenance(self, loader: ProvenanceLoader) -> None:
        """Fill the provenance of the rows not in memory (read on demand: it is large)."""
        missing = [i for i, p in enumerate(self.prov) if p is None]
        if missing:
            got = loader([self.ids[i] for i in missing])
            for i, p in zip(missing, got, strict=True):
                self.prov[i] = p if p is not None else {}

    def record(self, i: int) -> RunRecord:
        """Row ``i`` as a RunRecord."""
        d = {c: col[i] for c, col in self.cols.whole().items()}
        d["run_id"] = self.ids[i]
        d["params"] = {k: col[i] for k, col in self.params.whole().items()}
        d["provenance"] = self.prov[i] or {}
        return RunRecord.from_dict(d)

    def to_columns(self, rows: Sequence[int] | None = None) -> dict[str, Any]:
        """The rows ``rows`` (default all) without provenance as columns: ``run_id``, the
        record fields, ``params`` (name -> column), ``home``."""
        idx = range(len(self.ids)) if rows is None else rows
        out: dict[str, Any] = {"run_id": [self.ids[i] for i in idx]}
        for c in self.cols:  # rows written since the read come from the writes: nothing decoded
            out[c] = self.cols.rows_of(c, idx)
        out["params"] = {k: self.params.rows_of(k, idx) for k in self.params}
        out["home"] = [self.home[i] for i in idx]
        return out

    def rows_series(self, rows: Sequence[int]) -> Series:
        """The time series of rows ``rows`` (as ``series``, those rows only)."""
        if all(i in self._tail for i in rows):
            tail = {k: self._tail[i] for k, i in enumerate(rows)}
            return _overlay(len(rows), None, tail, _time_length)
        arrays, lengths = self.series()
        idx = np.asarray(rows, dtype=np.int64)
        return {k: a[idx] for k, a in arrays.items()}, lengths[idx]

    def rows_profiles(self, rows: Sequence[int]) -> Profiles:
        """The profiles of rows ``rows`` (as ``profiles``, those rows only)."""
        if all(i in self._tail_profiles for i in rows):
            dims = sorted({d for i in rows for d in self._tail_profiles[i]})
            return {
                dim: _overlay(
                    len(rows),
                    None,
                    {k: self._tail_profiles[i].get(dim, {}) for k, i in enumerate(rows)},
                    functools.partial(_dim_length, dim),
                )
                for dim in dims
            }
        idx = np.asarray(rows, dtype=np.int64)
        return {
            d: ({k: a[idx] for k, a in arrays.items()}, n[idx]) for d, (arrays, n) in self.profiles().items()
        }

    def series(self) -> Series:
        """Every row's time series as (name -> (run, slot) float arrays, lengths); NaN past a run's end."""
        n = len(self.ids)
        base: Series | None = None
        if self.series_loader is not None and len(self._tail) < n:
            base = self.series_loader(self.ids)
        return _overlay(n, base, self._tail, _time_length)

    def profiles(self) -> Profiles:
        """Every row's profiles: dimension -> (name -> (run, slot) float array with the
        dimension's coordinate under its own name, each row's length); NaN past a row's end."""
        n = len(self.ids)
        base: Profiles = {}
        if self.profiles_loader is not None and len(self._tail_profiles) < n:
            base = self.profiles_loader(self.ids)
        dims = set(base) | {d for by_dim in self._tail_profiles.values() for d in by_dim}
        out: Profiles = {}
        for dim in sorted(dims):
            tail = {i: by_dim.get(dim, {}) for i, by_dim in self._tail_profiles.items()}
            out[dim] = _overlay(n, base.get(dim), tail, functools.partial(_dim_length, dim))
        return out


def _dim_length(dim: str, arrays: Mapping[str, np.ndarray]) -> int:
    """A row's length along ``dim``: the length of its coordinate (0: none)."""
    return len(arrays.get(dim, ()))


def _time_length(arrays: Mapping[str, np.ndarray]) -> int:
    return _dim_length("time", arrays)


def _overlay(
    n: int,
    base: Series | None,
    tail: Mapping[int, Mapping[str, np.ndarray]],
    length: Callable[[Mapping[str, np.ndarray]], int],
) -> Series:
    """Rows read from the index (``base``, n rows) with the rows in memory (``tail``: row ->
    name -> values) written over them, NaN-padded to the widest."""
    names: set[str] = set()
    width = 0
    if base is not None:
        names.update(base[0])
        width = max([a.shape[1] for a in base[0].values()] + [0])
    for s in tail.values():
        names.update(s)
        width = max([width] + [len(v) for v in s.values()])
    out = {k: np.full((n, width), np.nan) for k in sorted(names)}
    lengths = np.zeros(n, dtype=np.int64)
    if base is not None:
        arrays, base_len = base
        lengths[:] = base_len
        for k, a in arrays.items():
            out[k][:, : a.shape[1]] = a
    for i, s in tail.items():
        for a in out.values():
            a[i, :] = np.nan
        lengths[i] = length(s)
        for k, v in s.items():
            out[k][i, : len(v)] = v
    return out, lengths
