"""Blobs: byte-level access to a store location, a local directory or an fsspec URL.

The store writes small documents (run markers, log records, the index pointer) itself,
because going through zarr's async machinery costs ~5 ms per array; bulky arrays go
through zarr (``zarr_store()``). Every single-key write is atomic: a reader sees the old
or the new bytes, never a torn file (local: write a temporary file, then rename; object
stores: a PUT is atomic).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["Blobs", "LocalBlobs", "FsspecBlobs", "Appender", "open_blobs", "is_local", "write_fd", "O_CREATE"]

O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
_O_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


def open_new(path: str, flags: int) -> int:
    """``os.open(path, flags)``, making the parent directory only when it is missing (the
    first file of a directory): no existence check on the common path."""
    try:
        return os.open(path, flags, 0o666)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, flags, 0o666)


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

    def __init__(self, path: str, fsync: bool) -> None:
        self.fd = open_new(path, _O_APPEND)
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
    """A directory on a local (or network-mounted POSIX) file system."""

    def __init__(self, url: str, *, fsync: bool = False) -> None:
        self.root = os.path.abspath(url[len("file://") :] if url.startswith("file://") else url)
        self.url = self.root
        self.fsync = fsync

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    def ensure_root(self) -> None:
        os.makedirs(self.root, exist_ok=True)

    def read(self, key: str) -> bytes | None:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write(self, key: str, data: bytes, *, atomic: bool = True) -> None:
        """Write one key; ``atomic=False`` skips the rename for files a later marker guards.

        Plain system calls (half the cost of ``open()``); the parent directory is made only
        when the file cannot be created without it.
        """
        path = self._path(key)
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.partial" if atomic else path
        fd = open_new(tmp, O_CREATE)
        try:
            write_fd(fd, data, self.fsync)
        finally:
            os.close(fd)
        if atomic:
            os.replace(tmp, path)

    def write_many(self, items: Mapping[str, bytes], *, atomic: bool = True) -> None:
        for key, data in items.items():
            self.write(key, data, atomic=atomic)

    def exists(self, key: str) -> bool:
        return os.path.exists(self._path(key))

    def children(self, prefix: str) -> list[str]:
        try:
            return os.listdir(self._path(prefix))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete(self, key: str) -> None:
        try:
            os.remove(self._path(key))
        except FileNotFoundError:
            pass

    def delete_tree(self, prefix: str) -> None:
        path = self._path(prefix)
        shutil.rmtree(path, ignore_errors=True)

    def open_append(self, key: str) -> Appender:
        """A new append-only file at ``key`` (local files only: object stores cannot append)."""
        return Appender(self._path(key), self.fsync)

    def zarr_store(self, read_only: bool = False) -> Any:
        from zarr.storage import LocalStore

        return LocalStore(self.root, read_only=read_only)


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
