"""Blobs: byte-level access to a store location, a local directory or an fsspec URL.

The store writes small documents (run markers, log records, the index pointer) itself,
because going through zarr's async machinery costs ~5 ms per array; bulky arrays go
through zarr (``zarr_store()``). Every single-key write is atomic: a reader sees the old
or the new bytes, never a torn file (local: write a temporary file, then rename; object
stores: a PUT is atomic).

A local store's own tree is the only thing its writer creates, truncates or deletes. Every
write and delete of ``LocalBlobs`` walks from the store's root one directory at a time,
relative to the previous directory's descriptor and without following symbolic links
(``O_NOFOLLOW``, ``O_DIRECTORY``), and opens files with ``O_NOFOLLOW``: a symbolic link, a
non-directory where a directory belongs, a hard-linked file or a special file met on the
way is refused with a ``StoreError`` naming it (``UnsafeStoreError``), before anything
outside the store can be touched. The store's root itself may be a link (the user chose
that path). Reads follow links: they change nothing, and a reader never hangs on a FIFO
(files are opened non-blocking and checked to be regular).
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from ..errors import StoreError
from ..spec.files import file_kind

__all__ = [
    "Blobs",
    "LocalBlobs",
    "FsspecBlobs",
    "Appender",
    "UnsafeStoreError",
    "open_blobs",
    "is_local",
    "write_fd",
    "O_NEW",
    "STORE_DIRS",
    "STORE_FILES",
]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# a file the writer makes: it must not exist (no link, no other file's inode can be in the way)
O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
# a file the writer may rewrite in place: never through a link; non-blocking so that a FIFO
# cannot hang the open (it is then refused as not a regular file)
_O_REWRITE = os.O_WRONLY | os.O_CREAT | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
_O_READ = os.O_RDONLY | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
_ELOOP = errno.ELOOP

# the entries a store's root holds (sweep.store.store): what the writer checks when it opens
STORE_DIRS = ("runs", "batches", "log", "index", "checkpoints")
STORE_FILES = ("zarr.json", "lock.json")


class UnsafeStoreError(StoreError):
    """Something in a store's tree that its writer must not write through: a symbolic link,
    a non-directory where a directory belongs, a hard-linked or special file."""


def write_fd(fd: int, data: bytes, fsync: bool) -> None:
    """Write all of ``data`` to an open file descriptor (and fsync it when asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    if fsync:
        os.fsync(fd)


class Appender:
    """An append-only local file that grows by whole records, one ``write`` each.

    Creating a file is the costly file-system operation here (~100-200 us of kernel time
    against ~3 us for an append), so a writer session appends its log records to one file.
    A crash can leave only the last record torn; readers skip a last line without its
    newline.
    """

    def __init__(self, fd: int, fsync: bool) -> None:
        self.fd = fd  # a new file, made by LocalBlobs.open_append
        self.fsync = fsync

    def append(self, data: bytes) -> None:
        write_fd(self.fd, data, self.fsync)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Blobs(Protocol):
    """What the store needs from a storage location (keys are '/'-separated)."""

    url: str

    def ensure_root(self) -> None: ...
    def read(self, key: str) -> bytes | None: ...
    def write(self, key: str, data: bytes, *, atomic: bool = True) -> None: ...
    def write_many(self, items: Mapping[str, bytes], *, atomic: bool = True) -> None: ...
    def exists(self, key: str) -> bool: ...
    def children(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def delete_tree(self, prefix: str) -> None: ...
    def zarr_store(self, read_only: bool = False) -> Any: ...


def is_local(url: str) -> bool:
    """True for a plain path or a file:// URL."""
    return "://" not in url or url.startswith("file://")


class LocalBlobs:
    """A directory on a local (or network-mounted POSIX) file system.

    Writes and deletes never leave the store's tree (see the module docstring): they go
    through ``dir_fd``, which opens a directory of the store one component at a time
    without following links.
    """

    def __init__(self, url: str, *, fsync: bool = False) -> None:
        self.root = os.path.abspath(url[len("file://") :] if url.startswith("file://") else url)
        self.url = self.root
        self.fsync = fsync
        self._root_fd = -1  # the store's root directory, opened on the first write
        self._root_lock = threading.Lock()

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    # ------------------------------------------------------------------ the safe-path layer

    def unsafe(self, rel: str, what: str) -> UnsafeStoreError:
        """The refusal of a store that holds ``what`` at ``rel`` (one line, exit 2)."""
        return UnsafeStoreError(
            f"store {self.url}: {rel} is {what}; allowed: a store holding only its own files and "
            "directories (its writer never creates, truncates or deletes through a symbolic link, "
            "a hard link or a special file): remove it, or give another --store"
        )

    def _check_entry(self, rel: str, st: os.stat_result, *, directory: bool) -> None:
        """Refuse ``rel`` unless it is a directory (``directory``) or a regular file with one link."""
        if directory:
            if not stat.S_ISDIR(st.st_mode):
                raise self.unsafe(rel, file_kind(st.st_mode) + " where a directory belongs")
            return
        if not stat.S_ISREG(st.st_mode):
            raise self.unsafe(rel, file_kind(st.st_mode) + " where a regular file belongs")
        if st.st_nlink > 1:
            raise self.unsafe(rel, f"a hard-linked file ({st.st_nlink} links)")

    def root_fd(self) -> int:
        """The store's root directory, opened once (the root may be a link: the user's path)."""
        if self._root_fd < 0:
            fd = os.open(self.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
            with self._root_lock:
                if self._root_fd < 0:
                    self._root_fd, fd = fd, -1
            if fd >= 0:  # another thread opened it first
                os.close(fd)
        return self._root_fd

    def close(self) -> None:
        """Close the root's descriptor (the writer's store does at close; reopened if used)."""
        with self._root_lock:
            if self._root_fd >= 0:
                os.close(self._root_fd)
                self._root_fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except (OSError, AttributeError):  # interpreter shutdown
            pass

    def dir_fd(self, rel: str, *, create: bool) -> int:
        """A new descriptor of the store's directory ``rel`` ('' is the root), opened one
        component at a time without following links (``create``: making missing ones).
        ``FileNotFoundError`` when it is missing and not to be made; ``UnsafeStoreError`` for a
        link or a non-directory on the way. The caller closes it."""
        fd, owned = self.root_fd(), False
        done: list[str] = []
        try:
            for part in rel.split("/") if rel else ():
                done.append(part)
                try:
                    new = self._open_dir_at(fd, part, "/".join(done))
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, 0o777, dir_fd=fd)
                    except FileExistsError:  # made meanwhile (or a dangling link: refused next)
                        pass
                    new = self._open_dir_at(fd, part, "/".join(done))
                # the new descriptor is ours before the old one is closed: a stop signal
                # between the two (an Interrupted raised anywhere) must not close it twice
                old, old_owned = fd, owned
                fd, owned = new, True
                if old_owned:
                    os.close(old)
        except BaseException:
            if owned:
                os.close(fd)
            raise
        return fd if owned else os.dup(fd)

    def _open_dir_at(self, fd: int, part: str, rel: str) -> int:
        """Open the directory ``part`` of the directory ``fd`` without following a link."""
        try:
            return os.open(part, _O_DIR, dir_fd=fd)
        except OSError as exc:
            if isinstance(exc, NotADirectoryError) or exc.errno == _ELOOP:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                raise self.unsafe(rel, file_kind(st.st_mode) + " where a directory belongs") from None
            raise

    def _split(self, key: str) -> tuple[str, str]:
        parent, _, name = key.rpartition("/")
        return parent, name

    def _new_file(self, dfd: int, name: str, data: bytes) -> None:
        """Create ``name`` in the directory ``dfd`` (it must not exist) and write ``data``."""
        fd = os.open(name, O_NEW, 0o666, dir_fd=dfd)
        try:
            write_fd(fd, data, self.fsync)
        finally:
            os.close(fd)

    def _rewrite_file(self, dfd: int, name: str, rel: str, data: bytes) -> None:
        """Write ``data`` as the whole content of ``name`` in place (a file the writer owns:
        never a link, a hard-linked or special file)."""
        fd = self.open_rewrite(dfd, name, rel)
        try:
            os.ftruncate(fd, 0)
            write_fd(fd, data, self.fsync)
        finally:
            os.close(fd)

    def open_rewrite(self, dfd: int, name: str, rel: str, flags: int = _O_REWRITE) -> int:
        """Open (creating it if missing) a file of the store to change it in place; refuses a
        link (``O_NOFOLLOW``), a hard-linked file and anything not a regular file, before any
        byte of it changes."""
        try:
            fd = os.open(name, flags, 0o666, dir_fd=dfd)
        except OSError as exc:
            if exc.errno in (_ELOOP, errno.ENXIO) or isinstance(exc, IsADirectoryError):
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                raise self.unsafe(rel, file_kind(st.st_mode) + " where a regular file belongs") from None
            raise
        try:
            self._check_entry(rel, os.fstat(fd), directory=False)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _write_at(self, dfd: int, parent: str, name: str, data: bytes, atomic: bool) -> None:
        rel = f"{parent}/{name}" if parent else name
        if not atomic:
            self._rewrite_file(dfd, name, rel, data)
            return
        tmp = f"{name}.{uuid.uuid4().hex[:8]}.partial"
        self._new_file(dfd, tmp, data)
        try:
            # a rename replaces the name itself, never what a link there points at
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except IsADirectoryError:
            os.unlink(tmp, dir_fd=dfd)
            raise self.unsafe(rel, "a directory where a regular file belongs") from None

    # ------------------------------------------------------------------ the Blobs protocol

    def ensure_root(self) -> None:
        # the root may be a link to a directory not made yet (a store on scratch space)
        os.makedirs(os.path.realpath(self.root), exist_ok=True)

    def read(self, key: str) -> bytes | None:
        """A file's bytes (None when missing); a special file is refused, never waited on."""
        try:
            fd = os.open(self._path(key), _O_READ)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                if stat.S_ISDIR(st.st_mode):
                    return None  # a group's directory, not a document
                raise self.unsafe(key, file_kind(st.st_mode) + " where a regular file belongs")
            parts = []
            while chunk := os.read(fd, max(st.st_size, 1 << 16)):
                parts.append(chunk)
            return b"".join(parts)
        finally:
            os.close(fd)

    def write(self, key: str, data: bytes, *, atomic: bool = True) -> None:
        """Write one key; ``atomic=False`` rewrites in place (files a later marker guards)."""
        parent, name = self._split(key)
        dfd = self.dir_fd(parent, create=True)
        try:
            self._write_at(dfd, parent, name, data, atomic)
        finally:
            os.close(dfd)

    def write_many(self, items: Mapping[str, bytes], *, atomic: bool = True) -> None:
        """Write several keys, opening each directory once."""
        fds: dict[str, int] = {}
        try:
            for key, data in items.items():
                parent, name = self._split(key)
                dfd = fds.get(parent)
                if dfd is None:
                    dfd = fds[parent] = self.dir_fd(parent, create=True)
                self._write_at(dfd, parent, name, data, atomic)
        finally:
            for fd in fds.values():
                os.close(fd)

    def exists(self, key: str) -> bool:
        return os.path.exists(self._path(key))

    def children(self, prefix: str) -> list[str]:
        try:
            return os.listdir(self._path(prefix))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete(self, key: str) -> None:
        """Remove one file of the store (a link, directory or hard-linked file is refused)."""
        parent, name = self._split(key)
        try:
            dfd = self.dir_fd(parent, create=False)
        except FileNotFoundError:
            return
        try:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                return
            self._check_entry(key, st, directory=False)
            os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass
        finally:
            os.close(dfd)

    def delete_tree(self, prefix: str) -> None:
        """Remove a directory of the store and everything in it, walking by descriptors and
        refusing any link, hard-linked or special file met (the store keeps what is left)."""
        parent, name = self._split(prefix)
        try:
            dfd = self.dir_fd(parent, create=False)
        except FileNotFoundError:
            return
        try:
            self._remove_tree_at(dfd, name, prefix)
        finally:
            os.close(dfd)

    def _remove_tree_at(self, dfd: int, name: str, rel: str) -> None:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        self._check_entry(rel, st, directory=True)
        try:
            fd = os.open(name, _O_DIR, dir_fd=dfd)
        except FileNotFoundError:
            return
        try:
            for entry, entry_st in _entries(fd):
                sub = f"{rel}/{entry}"
                if stat.S_ISDIR(entry_st.st_mode):
                    self._remove_tree_at(fd, entry, sub)
                else:
                    self._check_entry(sub, entry_st, directory=False)
                    try:
                        os.unlink(entry, dir_fd=fd)
                    except FileNotFoundError:
                        pass
        finally:
            os.close(fd)
        try:
            os.rmdir(name, dir_fd=dfd)
        except FileNotFoundError:
            pass

    def open_append(self, key: str) -> Appender:
        """A new append-only file at ``key`` (local files only: object stores cannot append)."""
        parent, name = self._split(key)
        dfd = self.dir_fd(parent, create=True)
        try:
            fd = os.open(name, O_NEW | os.O_APPEND, 0o666, dir_fd=dfd)
        finally:
            os.close(dfd)
        return Appender(fd, self.fsync)

    def check_tree(self) -> None:
        """The writer's check when it opens the store: the root's entries and those of each
        store directory (without following links) are the store's own (``UnsafeStoreError``
        naming the first that is not). Deeper entries are checked by each write and delete."""
        try:
            dfd = self.dir_fd("", create=False)
        except FileNotFoundError:
            return
        try:
            top = dict(_entries(dfd))
            for name, st in top.items():
                if stat.S_ISLNK(st.st_mode):
                    raise self.unsafe(name, "a symbolic link")
                if name in STORE_DIRS or name in STORE_FILES:
                    self._check_entry(name, st, directory=name in STORE_DIRS)
            for name in STORE_DIRS:
                if name not in top:
                    continue
                fd = self._open_dir_at(dfd, name, name)
                try:
                    for entry, st in _entries(fd):
                        rel = f"{name}/{entry}"
                        if stat.S_ISLNK(st.st_mode):
                            raise self.unsafe(rel, "a symbolic link")
                        if not stat.S_ISDIR(st.st_mode):
                            self._check_entry(rel, st, directory=False)
                finally:
                    os.close(fd)
        finally:
            os.close(dfd)

    def zarr_store(self, read_only: bool = False) -> Any:
        from zarr.storage import LocalStore

        return LocalStore(self.root, read_only=read_only)


def _entries(fd: int) -> Iterator[tuple[str, os.stat_result]]:
    """(name, lstat) of each entry of the open directory ``fd`` (entries removed meanwhile are
    left out)."""
    with os.scandir(fd) as it:
        names = [e.name for e in it]
    for name in names:
        try:
            yield name, os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue


class FsspecBlobs:
    """Any fsspec location (s3://, gs://, memory://, ...)."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        import fsspec

        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **storage_options)
        self.root = self.root.rstrip("/")
        self.storage_options = storage_options

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def ensure_root(self) -> None:
        self.fs.makedirs(self.root, exist_ok=True)

    def read(self, key: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._path(key))
        except (FileNotFoundError, KeyError):
            return None

    def write(self, key: str, data: bytes, *, atomic: bool = True) -> None:
        self.fs.pipe_file(self._path(key), data)  # an object PUT is atomic either way

    def write_many(self, items: Mapping[str, bytes], *, atomic: bool = True) -> None:
        self.fs.pipe({self._path(k): v for k, v in items.items()})

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def children(self, prefix: str) -> list[str]:
        try:
            entries = self.fs.ls(self._path(prefix), detail=False)
        except FileNotFoundError:
            return []
        return sorted({e.rstrip("/").rsplit("/", 1)[-1] for e in entries})

    def delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self._path(key))
        except FileNotFoundError:
            pass

    def delete_tree(self, prefix: str) -> None:
        try:
            self.fs.rm(self._path(prefix), recursive=True)
        except FileNotFoundError:
            pass

    def zarr_store(self, read_only: bool = False) -> Any:
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(
            self.url, read_only=read_only, storage_options=self.storage_options or None
        )


def open_blobs(url: str | os.PathLike[str], **storage_options: Any) -> LocalBlobs | FsspecBlobs:
    """The byte access for ``url``: local paths get plain file I/O, anything else fsspec."""
    url = os.fspath(url)
    if is_local(url):
        return LocalBlobs(url, fsync=bool(storage_options.pop("fsync", False)))
    return FsspecBlobs(url, **storage_options)
