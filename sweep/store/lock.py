"""The store's single-writer lock, naming its holder (host, pid, since when).

Local stores use an OS lock (``fcntl.flock``) on ``<store>/lock.json``: the kernel drops
it when the holder dies, so a crashed driver can never block the store, and there is no
race between two processes taking over a stale lock. The file also holds the holder's
host, pid and start time, for the refusal message. A lock file still naming a holder
when the OS lock is free was left by a process that died: it is taken over (and logged).

Object stores (fsspec URLs) have no such lock: the holder record is written if absent and
read back; a record left by a dead process on this host is taken over; one from another
host must be removed by hand (the message says how).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from typing import Any

from ..errors import StoreLockedError
from ..provenance import hostname, utc_now
from .blobs import FsspecBlobs, LocalBlobs

__all__ = ["LOCK_KEY", "WriterLock", "acquire_lock", "holder_alive"]

LOCK_KEY = "lock.json"
LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
log = logging.getLogger("sweep.store")


def _me() -> dict[str, Any]:
    import psutil

    pid = os.getpid()
    return {
        "host": hostname(),
        "pid": pid,
        "since": utc_now("seconds"),
        "pid_started": psutil.Process(pid).create_time(),
        "token": uuid.uuid4().hex,
    }


def holder_alive(holder: dict[str, Any]) -> bool | None:
    """Whether the process named by a lock record still runs: None when it is on another host."""
    import psutil

    if holder.get("host") != hostname():
        return None
    try:
        proc = psutil.Process(int(holder["pid"]))
        started = holder.get("pid_started")
        # the same pid with another start time is a new process: the holder is gone
        return started is None or abs(proc.create_time() - float(started)) < 1.0
    except (psutil.NoSuchProcess, KeyError, ValueError, TypeError):
        return False


def _refusal(url: str, holder: dict[str, Any], extra: str = "") -> StoreLockedError:
    return StoreLockedError(
        f"store {url} is open for writing by pid {holder.get('pid')} on host {holder.get('host')} "
        f"since {holder.get('since')}; wait for it to finish or stop it{extra}"
    )


class WriterLock:
    """A held writer lock; ``release()`` (or process death) frees it."""

    def __init__(self, blobs: Any, holder: dict[str, Any], fd: int | None) -> None:
        self.blobs = blobs
        self.holder = holder
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        if self._fd is not None:
            import fcntl

            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
        elif self.holder is not None and isinstance(self.blobs, FsspecBlobs):
            raw = self.blobs.read(LOCK_KEY)
            if raw and json.loads(raw).get("token") == self.holder["token"]:
                self.blobs.delete(LOCK_KEY)
            self.holder = None  # type: ignore[assignment]


def _acquire_local(blobs: LocalBlobs) -> WriterLock:
    import fcntl

    # never through a link, a hard link or a FIFO: the lock file is truncated and rewritten
    root = blobs.dir_fd("", create=False)
    try:
        fd = blobs.open_rewrite(root, LOCK_KEY, LOCK_KEY, LOCK_FLAGS)
    finally:
        os.close(root)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            holder = {}
        os.close(fd)
        raise _refusal(blobs.url, holder) from None
    try:
        old = os.pread(fd, 4096, 0)
        if old.strip():
            try:
                prev = json.loads(old)
            except ValueError:
                prev = {}
            log.warning(
                "store %s: taking over the write lock left by pid %s on host %s since %s "
                "(that process is gone)",
                blobs.url,
                prev.get("pid"),
                prev.get("host"),
                prev.get("since"),
            )
        me = _me()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return WriterLock(blobs, me, fd)


def _acquire_object(blobs: FsspecBlobs) -> WriterLock:
    raw = blobs.read(LOCK_KEY)
    if raw:
        try:
            holder = json.loads(raw)
        except ValueError:
            holder = {}
        alive = holder_alive(holder)
        if alive is None:
            raise _refusal(blobs.url, holder, f"; if that process is gone, delete {blobs.url}/{LOCK_KEY}")
        if alive:
            raise _refusal(blobs.url, holder)
        log.warning(
            "store %s: taking over the write lock left by dead pid %s on this host since %s",
            blobs.url,
            holder.get("pid"),
            holder.get("since"),
        )
    me = _me()
    blobs.write(LOCK_KEY, json.dumps(me).encode())
    time.sleep(0.05)  # a concurrent writer's PUT lands first or last; reading back decides
    back = blobs.read(LOCK_KEY)
    holder = json.loads(back) if back else {}
    if holder.get("token") != me["token"]:
        raise _refusal(blobs.url, holder)
    return WriterLock(blobs, me, None)


def acquire_lock(blobs: Any) -> WriterLock:
    """Take the store's writer lock or raise ``StoreLockedError`` naming the holder."""
    if isinstance(blobs, LocalBlobs):
        return _acquire_local(blobs)
    return _acquire_object(blobs)
