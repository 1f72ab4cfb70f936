"""The validation cache: verdicts on package files, keyed by the SHA-1 of their bytes, and the
files' stat keys, in one SQLite file per package directory.

Checking a package is a pure function of its bytes and of the checking code, so a file whose
bytes were checked before (same SHA-1, same code) needs no second check. A file whose stat key
(size, modification and change times in ns, inode) is what it was when its bytes were hashed
is not even read again: its change time (ctime) is set by the kernel on every write, rename
or ``touch -d`` and cannot be set back by a user, so an edit always changes the key. Keys of
files changed within ``RACY_SECONDS`` of the pass are not kept (a later write in the same clock
tick would leave the key unchanged: git's "racy" index entries), so such files are hashed
again next time. Only packages without problems are cached; the cross-file checks (ids,
summary, priorities, memory) always run.

Why SQLite and not a JSON document: at 1,000,000 packages the document was ~300 MB parsed
into memory on every pass; a lookup per file reads only that file's rows. The file is
rewritten by a writer at a time (SQLite's own locking); a cache that cannot be read or
written only costs time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
import time
from typing import Any, NamedTuple

__all__ = [
    "CACHE_ENV",
    "CACHE_KEEP",
    "FLUSH_ROWS",
    "FileStat",
    "RACY_SECONDS",
    "SNAPSHOT_SUFFIX",
    "ValidationCache",
    "cache_file",
    "code_fingerprint",
    "snapshot_file",
    "stat_key",
]

CACHE_ENV = "NS_SWEEP_CACHE_DIR"  # directory of the validation cache; "off" disables it
CACHE_KEEP = 64  # package directories remembered; the least recently rewritten are forgotten
RACY_SECONDS = 2.0  # a file changed this recently is hashed again on the next pass
FLUSH_ROWS = 10_000  # rows learnt are written to the cache this many at a time
SNAPSHOT_SUFFIX = ".table.npz"  # a directory's whole table, beside its cache (snapshot_file)
_SCHEMA = 3  # a verdict's fields in columns, a package's values as JSON text


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of the code whose rules a cached verdict depends on."""
    import solver
    import solver.memory
    import solver.params

    from . import check, files, package, summary

    h = hashlib.sha1()
    paths = [
        getattr(mod, "__file__", None)
        for mod in (solver.params, solver.memory, package, files, check, summary)
    ]
    # the checks of other solvers' parameters (their verdicts also hold only for the same
    # template: check.py compares the run id, which hashes the template's content)
    solvers = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "solvers")
    paths += [os.path.join(solvers, name) for name in ("manifest.py", "registry.py", "run_params.py")]
    for path in paths:
        if path:
            with open(path, "rb") as f:
                h.update(f.read())
    h.update(str(getattr(solver, "SOLVER_VERSION", "")).encode())
    h.update(str(_SCHEMA).encode())
    return h.hexdigest()


def cache_file(directory: str) -> str | None:
    """The cache file of a package directory (None: the cache is off)."""
    root = os.environ.get(CACHE_ENV)
    if root is not None and root.strip().lower() in ("", "off", "0", "no"):
        return None
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "ns-sweep")
    key = hashlib.sha1(os.path.abspath(directory).encode()).hexdigest()[:16]
    return os.path.join(root, f"packages-{key}.sqlite")


def snapshot_file(cache: str) -> str:
    """The file beside cache file ``cache`` that keeps the directory's whole table
    (``sweep.spec.snapshot``); pruned with it."""
    return cache.removesuffix(".sqlite") + SNAPSHOT_SUFFIX


_FIELDS = "v.package_id, v.priority, v.vals, v.tags, v.run_id, v.need, v.solver"


def _layout_ok(db: sqlite3.Connection) -> bool:
    """Whether the tables are those this code reads and writes."""
    try:
        db.execute(f"SELECT {_FIELDS} FROM verdicts v LIMIT 0")
        db.execute("SELECT name, stat, digest FROM files LIMIT 0")
    except sqlite3.Error:
        return False
    return True


def _verdict(row: tuple[Any, ...]) -> list[Any]:
    """A verdict from its columns (no JSON to parse for a package without tags)."""
    pid, prio, values, tags, run_id, need, solver = row
    out = [pid, prio, values, {} if tags == "{}" else json.loads(tags), run_id, need]
    if solver is not None:
        out.append(json.loads(solver))
    return out


class FileStat(NamedTuple):
    """The fields of a file's ``os.stat`` that the cache uses (``os.stat_result`` has them too)."""

    st_mode: int
    st_size: int
    st_mtime_ns: int
    st_ctime_ns: int
    st_ino: int


def stat_key(st: os.stat_result | FileStat) -> str:
    """What must not change for a file's bytes to be known without reading it."""
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


class ValidationCache:
    """The cache of one package directory for one pass: ``lookup`` what is known, ``record``
    what was learnt, ``save`` it at the end (one transaction).

    What is learnt is written every ``FLUSH_ROWS`` rows inside that transaction (begun at the
    first write, committed by ``save``), not held: at 1,000,000 new files the pending rows were
    ~1 KB a file. Until ``save`` the pass only adds facts (a file's stat key and digest, the
    verdict on some bytes); a pass that stops before it leaves the cache as it was."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self.started = time.time()
        self._files: list[tuple[str, str | None, bytes]] = []  # (name, stat key or None, digest)
        self._verdicts: list[tuple[Any, ...]] = []
        self._forget: list[bytes] = []
        self._writing = False  # the transaction of this pass is open
        self._failed = False  # a write failed: nothing more is written, the transaction is undone
        self._rows: Any = None  # the scan of the files table, by name (see known)
        self._row: Any = None
        self._last: str | None = None
        if path is None:
            return
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
            if not (row is not None and row[0] == code_fingerprint() and _layout_ok(db)):
                # other code: its verdicts do not hold, its tables may differ
                db.execute("BEGIN")
                db.execute("DROP TABLE IF EXISTS verdicts")
                db.execute("DROP TABLE IF EXISTS files")
                db.execute(
                    "CREATE TABLE verdicts (digest BLOB PRIMARY KEY, package_id TEXT, priority TEXT, "
                    "vals TEXT, tags TEXT, run_id TEXT, need INTEGER, solver TEXT)"
                )
                db.execute("CREATE TABLE files (name TEXT PRIMARY KEY, stat TEXT, digest BLOB)")
                db.execute("INSERT OR REPLACE INTO meta VALUES ('fingerprint', ?)", (code_fingerprint(),))
                db.execute("COMMIT")
            self._db = db
        except (OSError, sqlite3.Error):  # no cache: every file is checked
            self._db = None

    def known(self, name: str, key: str) -> tuple[bytes, list[Any]] | None:
        """(digest, verdict) of file ``name`` when its stat key is ``key`` and its bytes' verdict
        is cached: the file need not be read. Ask in ascending order of names (one scan of the
        cache, not a query per file); out of order, a query answers."""
        if self._db is None:
            return None
        try:
            if self._rows is None or (self._last is not None and name < self._last):
                if self._rows is not None:  # out of order: ask for this one
                    return self._query(name, key)
                self._rows = self._db.execute(
                    f"SELECT f.name, f.stat, f.digest, {_FIELDS} FROM files f "
                    "JOIN verdicts v ON f.digest = v.digest ORDER BY f.name"
                )
                self._row = next(self._rows, None)
            self._last = name
            row = self._row
            while row is not None and row[0] < name:
                row = next(self._rows, None)
            self._row = row
        except sqlite3.Error:
            return None
        if row is None or row[0] != name or row[1] != key:
            return None
        return row[2], _verdict(row[3:])

    def _query(self, name: str, key: str) -> tuple[bytes, list[Any]] | None:
        assert self._db is not None
        row = self._db.execute(
            f"SELECT f.digest, {_FIELDS} FROM files f JOIN verdicts v ON f.digest = v.digest "
            "WHERE f.name = ? AND f.stat = ?",
            (name, key),
        ).fetchone()
        return None if row is None else (row[0], _verdict(row[1:]))

    def verdict(self, digest: bytes) -> list[Any] | None:
        """The cached verdict on bytes of this SHA-1 (None: not checked before)."""
        if self._db is None:
            return None
        try:
            row = self._db.execute(f"SELECT {_FIELDS} FROM verdicts v WHERE digest = ?", (digest,)).fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else _verdict(row)

    def record_file(self, name: str, st: os.stat_result | FileStat | None, digest: bytes) -> None:
        """File ``name`` (stat ``st``) has bytes of SHA-1 ``digest``: its stat key is kept unless
        it changed too recently to be trusted (``RACY_SECONDS``)."""
        racy = st is None or max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 > self.started - RACY_SECONDS
        self._files.append((name, None if racy else stat_key(st), digest))  # type: ignore[arg-type]
        self._pending()

    def record_verdict(self, digest: bytes, verdict: list[Any]) -> None:
        """A verdict on new bytes (a package without problems): ``[package_id, priority, values
        (JSON text), tags, run_id, memory need]``, and ``[solver, case]`` of another solver."""
        pid, prio, values, tags, run_id, need, *solver = verdict
        self._verdicts.append(
            (
                digest,
                pid,
                prio,
                values,
                json.dumps(tags, separators=(",", ":")) if tags else "{}",
                run_id,
                need,
                json.dumps(solver[0]) if solver else None,
            )
        )
        self._pending()

    def forget(self, digest: bytes) -> None:
        """A cached verdict that no longer holds (another solver's template changed)."""
        self._forget.append(digest)

    def _pending(self) -> None:
        if len(self._files) + len(self._verdicts) >= FLUSH_ROWS:
            self._write()

    def _write(self) -> None:
        """Write the pending rows in this pass's transaction (begun by the first write)."""
        db = self._db
        forget, verdicts, files = self._forget, self._verdicts, self._files
        self._files, self._verdicts, self._forget = [], [], []
        if db is None or self._failed or not (files or verdicts or forget):
            return
        try:
            if not self._writing:
                db.execute("BEGIN")
                self._writing = True
            db.executemany("DELETE FROM verdicts WHERE digest = ?", [(d,) for d in forget])
            db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?,?,?,?,?,?,?,?)", verdicts)
            db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?)", files)
        except sqlite3.Error:  # a cache that cannot be written only costs time
            self._failed = True

    def save(self) -> None:
        """Write what this pass learnt (one transaction), then close."""
        db = self._db
        if db is None:
            return
        self._rows = self._row = None
        try:
            self._write()
            if self._writing:
                db.execute("ROLLBACK" if self._failed else "COMMIT")
        except sqlite3.Error:  # a cache that cannot be written only costs time
            pass
        finally:
            self._db = None
            db.close()
        if self.path is not None:
            _prune_cache(os.path.dirname(self.path))

    def close(self) -> None:
        """Close without saving (what was written in this pass is undone)."""
        self._rows = self._row = None
        self._files, self._verdicts, self._forget = [], [], []
        if self._db is not None:
            self._db.close()  # an open transaction is rolled back
            self._db = None


def _prune_cache(root: str) -> None:
    try:
        entries = [
            e
            for e in os.scandir(root)
            if e.name.startswith("packages-") and (e.name.endswith(".sqlite") or e.name.endswith(".json"))
        ]
        if len(entries) > CACHE_KEEP:
            entries.sort(key=lambda e: e.stat().st_mtime)
            for e in entries[: len(entries) - CACHE_KEEP]:
                for path in (e.path, e.path + "-wal", e.path + "-shm", snapshot_file(e.path)):
                    try:
                        os.remove(path)
                    except OSError:
                        pass
    except OSError:
        pass
