"""A package directory's loaded table kept whole, beside its validation cache.

``load_packages`` of a directory whose files did not change gives the table it gave before.
The validation cache (``sweep.spec.cache``) already knows each file's verdict from its stat
key, but using it still costs a lookup and a row appended per file: 1.6 s of a 2.9-s resume
at 100,000 packages. The snapshot is the table itself (``PackageTable.to_arrays``, one
``.npz`` file), kept with a key that hashes, in file-name order, every package file's name
and stat key, the priority summary's stat key and the checking code's fingerprint. A pass
whose key is the kept one stats the files, reads the one file and is done.

Like the cache's stat keys, the key holds because a write to a file, a rename or a
``touch`` sets its change time, which no user can set back: the key of a directory that
changed is never seen again. A snapshot is written only when a file's key can be trusted:
no file changed within ``RACY_SECONDS`` of the pass. It is written only for a table whose
every package passed every check; its largest memory need is kept with it, so that a pass
checking memory against a smaller worker checks the files again (and says which do not fit).
Not kept: a directory with another solver's packages (their verdicts also hang on a template's
files) or writing a deprecated parameter name (said on every pass). On a miss, the full pass
takes the listing and stats the key was made of (no second stat of every file). A snapshot
that cannot be read or written only costs time.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import tempfile
import time
from array import array
from typing import Any

import numpy as np

from . import table
from .cache import RACY_SECONDS, FileStat, cache_file, code_fingerprint, snapshot_file
from .package import SUMMARY_FILE, package_file_names
from .table import PackageTable

__all__ = ["Snapshot"]

_TYPE_BITS, _REGULAR = 0o170000, stat.S_IFREG  # what stat.S_ISREG tests, on arrays


@functools.lru_cache(maxsize=1)
def _code() -> bytes:
    """Hash of the code a snapshot depends on: the checks' (as the cache's verdicts) and the
    table's layout."""
    h = hashlib.sha1(code_fingerprint().encode())
    for path in (table.__file__, __file__):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.digest()


class Snapshot:
    """The snapshot of one directory as it is now: ``load`` the kept table if the files are
    as they were, else ``save`` the table of a full pass."""

    def __init__(
        self, path: str, cache: str, key: bytes, trusted: bool, listing: str, stats: np.ndarray
    ) -> None:
        self.path = path  # the snapshot file
        self.cache = cache  # the validation cache's file, beside it
        self.key = key  # the directory as it is now
        self.trusted = trusted  # no file changed too recently for its stat key to say so
        # what the key was made of, for a full pass not to list and stat the files again
        self.listing = listing  # the package files' names, sorted, NUL-separated
        self.stats = stats  # (file, FileStat field) int64: each file's stat, in that order

    @classmethod
    def of(cls, directory: str) -> Snapshot | None:
        """The directory's key (one stat a package file); None when there is no snapshot to
        use: the cache is off, or an entry is not a plain file (a full pass says why)."""
        cache = cache_file(directory)
        if cache is None:
            return None
        started = time.time()
        try:
            names, _ = package_file_names(directory)  # a link or other odd entry: its lstat says
            keys = array("q")
            fd = os.open(directory, os.O_RDONLY)
            try:
                for name in [*names, SUMMARY_FILE]:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    keys.extend((st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
            finally:
                os.close(fd)
        except OSError:
            return None
        listing = "\0".join(names)  # ~1/4 of the list's memory
        del names
        fields = np.frombuffer(keys, np.int64).reshape(-1, len(FileStat._fields))
        if not np.all(fields[:, 0] & _TYPE_BITS == _REGULAR):
            return None
        newest = int(fields[:, 2:4].max()) / 1e9
        h = hashlib.sha1(_code())
        h.update(listing.encode())
        h.update(keys)
        trusted = newest <= started - RACY_SECONDS
        return cls(snapshot_file(cache), cache, h.digest(), trusted, listing, fields[:-1])

    def load(self, prefix: str, worker_memory: int | None) -> PackageTable | None:
        """The kept table when the files are what they were (None: check them), its files in
        directory ``prefix``; ``worker_memory``: bytes every package must fit in (None: no
        memory check)."""
        try:
            with np.load(self.path, allow_pickle=False) as z:
                a = {name: z[name] for name in z.files}
        except Exception:  # missing, partly written or of other code: the files are checked
            return None
        if a.get("key") is None or a["key"].tobytes() != self.key:
            return None
        if worker_memory is not None and int(a["largest_need"]) > worker_memory:
            return None  # a package may not fit: the full check names it
        try:
            table = PackageTable.from_arrays(prefix, a)
        except (KeyError, ValueError, TypeError):
            return None
        try:  # used: the cache and its snapshot are among the last pruned (CACHE_KEEP)
            os.utime(self.cache)
        except OSError:
            pass
        return table

    def save(self, table: PackageTable, largest_need: int) -> None:
        """Keep ``table``, the table of a full pass over the files as they are (every package
        valid; ``largest_need``: the largest memory a package needs), when the key is trusted."""
        arrays: dict[str, Any] | None = table.to_arrays() if self.trusted else None
        if arrays is None:
            return
        arrays["key"] = np.frombuffer(self.key, np.uint8)
        arrays["largest_need"] = np.int64(largest_need)
        directory = os.path.dirname(self.path)
        try:
            fd, tmp = tempfile.mkstemp(prefix=".snapshot-", dir=directory)
        except OSError:
            return
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, self.path)  # a reader sees the old snapshot or the new one, whole
        except OSError:
            try:
                os.remove(tmp)
            except OSError:
                pass
