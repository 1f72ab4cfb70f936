"""The store's index in memory: one row per run, record fields as columns, time series as arrays.

Columns (lists) rather than one object per run because the index is read far more often
than it changes, and whole-column reads are what planning (status, package ids) and
``open_results`` (parameters, series) need: parsing columnar JSON and slicing arrays is
several times faster than building 10,000 records. ``RunRecord`` objects are made on request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .records import RECORD_COLUMNS, RunRecord

__all__ = ["RunTable", "LOG_HOME"]

LOG_HOME = "log"  # RunTable.home of a packed run whose only copy is its log record
# profiles of many runs: dimension -> (name -> (run, slot) float array, each run's length)
Profiles = dict[str, tuple[dict[str, np.ndarray], np.ndarray]]


class RunTable:
    """All runs of a store: ``ids[i]`` is row i; later writes of a run replace its row."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self.cols: dict[str, list[Any]] = {c: [] for c in RECORD_COLUMNS if c != "run_id"}
        self.params: dict[str, list[Any]] = {}
        self.prov: list[dict[str, Any] | None] = []  # None: not loaded yet (see load_provenance)
        # where a done run's data are: None its own group runs/<run_id>/, else a batch group's
        # name or LOG_HOME (a packed run not yet compacted: see sweep.packed)
        self.home: list[str | None] = []
        # series of the rows read from the compacted index: arrays, or a loader called on first use
        self._base: tuple[dict[str, np.ndarray], np.ndarray] | None = None
        self._base_loader: Callable[[], tuple[dict[str, np.ndarray], np.ndarray]] | None = None
        self._tail: dict[int, dict[str, np.ndarray]] = {}  # series of rows written after the base
        # profiles (sweep.store.variables.profiles_of) of the base rows and of later rows, the same way
        self._base_profiles: Profiles | None = None
        self._profiles_loader: Callable[[], Profiles] | None = None
        self._tail_profiles: dict[int, dict[str, dict[str, np.ndarray]]] = {}

    # ---------------------------------------------------------------- building

    @classmethod
    def from_columns(
        cls,
        doc: Mapping[str, Any],
        series: Callable[[], tuple[dict[str, np.ndarray], np.ndarray]] | None = None,
        profiles: Callable[[], Profiles] | None = None,
    ) -> RunTable:
        """A table from the columnar JSON of ``to_columns``; ``series()`` and ``profiles()``
        load its time series and profiles (only when asked for: planning never needs them)."""
        t = cls()
        t.ids = list(doc["run_id"])
        t.pos = {rid: i for i, rid in enumerate(t.ids)}
        n = len(t.ids)
        for c in t.cols:
            t.cols[c] = list(doc.get(c) or [None] * n)
        t.cols["package_ids"] = [tuple(p or ()) for p in t.cols["package_ids"]]
        t.params = {k: list(v) for k, v in (doc.get("params") or {}).items()}
        t.prov = [None] * n
        t.home = list(doc.get("home") or [None] * n)
        t._base_loader = series
        t._profiles_loader = profiles
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
            for col in self.cols.values():
                col.append(None)
            for col in self.params.values():
                col.append(None)
            self.prov.append(None)
            self.home.append(None)
        for c, col in self.cols.items():
            col[i] = d.get(c)
        self.cols["package_ids"][i] = tuple(d.get("package_ids") or ())
        for k, v in (d.get("params") or {}).items():
            if k not in self.params:
                self.params[k] = [None] * len(self.ids)
            self.params[k][i] = v
        for k, col in self.params.items():
            if k not in (d.get("params") or {}):
                col[i] = None
        self.prov[i] = dict(d.get("provenance") or {})
        self.home[i] = home
        self._tail[i] = series or {}
        self._tail_profiles[i] = profiles or {}
        return i

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

    def load_provenance(self, loader: Callable[[], list[dict[str, Any]]]) -> None:
        """Fill the provenance of the rows read from the compacted index (read on demand)."""
        if any(p is None for p in self.prov):
            base = loader()
            for i, p in enumerate(base):
                if i < len(self.prov) and self.prov[i] is None:
                    self.prov[i] = p
            self.prov = [p if p is not None else {} for p in self.prov]

    def record(self, i: int) -> RunRecord:
        """Row ``i`` as a RunRecord."""
        d = {c: col[i] for c, col in self.cols.items()}
        d["run_id"] = self.ids[i]
        d["params"] = {k: col[i] for k, col in self.params.items()}
        d["provenance"] = self.prov[i] or {}
        return RunRecord.from_dict(d)

    def to_columns(self) -> dict[str, Any]:
        """The table (without provenance) as columnar, JSON-safe lists."""
        out: dict[str, Any] = {"run_id": list(self.ids)}
        for c, col in self.cols.items():
            out[c] = [list(v) for v in col] if c == "package_ids" else list(col)
        out["params"] = {k: list(v) for k, v in self.params.items()}
        out["home"] = list(self.home)
        return out

    def series(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Every row's time series as (name -> (run, slot) float arrays, lengths); NaN past a run's end."""
        n = len(self.ids)
        names: set[str] = set()
        width = 0
        if self._base is None and self._base_loader is not None:
            self._base = self._base_loader()
        if self._base is not None:
            names.update(self._base[0])
            width = max([a.shape[1] for a in self._base[0].values()] + [0])
        for s in self._tail.values():
            names.update(s)
            width = max([width] + [len(v) for v in s.values()])
        out = {k: np.full((n, width), np.nan) for k in sorted(names)}
        lengths = np.zeros(n, dtype=np.int64)
        if self._base is not None:
            arrays, base_len = self._base
            m = len(base_len)
            lengths[:m] = base_len
            for k, a in arrays.items():
                out[k][:m, : a.shape[1]] = a
        for i, s in self._tail.items():
            for a in out.values():
                a[i, :] = np.nan
            lengths[i] = len(s.get("time", ()))
            for k, v in s.items():
                out[k][i, : len(v)] = v
        return out, lengths

    def profiles(self) -> Profiles:
        """Every row's profiles: dimension -> (name -> (run, slot) float array with the
        dimension's coordinate under its own name, each row's length); NaN past a row's end."""
        n = len(self.ids)
        if self._base_profiles is None and self._profiles_loader is not None:
            self._base_profiles = self._profiles_loader()
        base = self._base_profiles or {}
        names: dict[str, set[str]] = {dim: set(arrays) for dim, (arrays, _) in base.items()}
        width = {dim: max([a.shape[1] for a in arrays.values()] + [0]) for dim, (arrays, _) in base.items()}
        for by_dim in self._tail_profiles.values():
            for dim, arrays in by_dim.items():
                names.setdefault(dim, set()).update(arrays)
                width[dim] = max([width.get(dim, 0)] + [len(v) for v in arrays.values()])
        out: Profiles = {}
        for dim in sorted(names):
            arrays = {k: np.full((n, width[dim]), np.nan) for k in sorted(names[dim])}
            lengths = np.zeros(n, dtype=np.int64)
            if dim in base:
                base_arrays, base_len = base[dim]
                m = len(base_len)
                lengths[:m] = base_len
                for k, a in base_arrays.items():
                    arrays[k][:m, : a.shape[1]] = a
            for i, by_dim in self._tail_profiles.items():  # a later write of a row replaces it whole
                for a in arrays.values():
                    a[i, :] = np.nan
                own = by_dim.get(dim, {})
                lengths[i] = len(own.get(dim, ()))
                for k, v in own.items():
                    arrays[k][i, : len(v)] = v
            out[dim] = (arrays, lengths)
        return out
