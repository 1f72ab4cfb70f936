"""The store's single-writer lock, naming its holder (host, pid, since when).

Local stores use an OS lock (``fcntl.flock``) on ``<store>/lock.json``: the kernel drops
it when the holder dies, so a crashed driver on this host can never block the store, and
there is no race between two processes taking over a stale lock. The file also holds the
holder's record (host, pid, start time, a token), for the refusal message, and its holder
refreshes it (the file's modification time) every ``sweep.store.lock-refresh-every``
seconds while it holds the lock.

A record still there when the OS lock is free was left by a process that died, if that
process was on this host (checked: a live one is refused). One from another host cannot be
checked from here: on a shared file system whose ``flock`` does not reach across hosts (NFS
mounted ``nolock`` or ``local_lock``, Lustre ``localflock``) the other host's sweep may
still run. It is refused unless it was not refreshed for ``sweep.store.lock-stale-after``
seconds or the caller breaks it (``break_lock``, ``sweep run --break-lock``). A holder whose
lock was taken over (it was suspended longer than the stale age, or broken) notices at its
next refresh and stops writing (``WriterLock.check``). A file system without ``flock`` at
all is locked by the record alone, as object stores are.

Object stores (fsspec URLs) have no such lock: the holder record is written if absent and
read back; the same rules decide whether a record left behind may be taken over, and the
holder refreshes the record's ``refreshed`` time.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from typing import Any

from ..errors import StoreLockedError
from ..provenance import hostname, utc_now
from .blobs import FsspecBlobs, LocalBlobs

__all__ = ["LOCK_KEY", "WriterLock", "acquire_lock", "holder_alive"]

LOCK_KEY = "lock.json"
# never through a link (O_NOFOLLOW), never blocked by a FIFO (O_NONBLOCK): see blobs.open_rewrite
LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# flock() errors of a file system that has no flock at all (Lustre without -o flock, ...)
_NO_FLOCK = (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP)
log = logging.getLogger("sweep.store")


def _me() -> dict[str, Any]:
    import psutil

    pid = os.getpid()
    return {
        "host": hostname(),
        "pid": pid,
        "since": utc_now("seconds"),
        "pid_started": psutil.Process(pid).create_time(),
        "token": os.urandom(16).hex(),
        "refreshed": time.time(),
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


def _who(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')}"


def _refusal(url: str, holder: dict[str, Any], extra: str = "") -> StoreLockedError:
    return StoreLockedError(
        f"store {url} is open for writing by {_who(holder)}; wait for it to finish or stop it{extra}"
    )


def _parse(raw: bytes | None) -> dict[str, Any]:
    """A lock record (empty when there is none or it does not parse: a torn write)."""
    try:
        holder = json.loads(raw) if raw and raw.strip() else {}
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _judge(
    url: str, holder: dict[str, Any], age: float | None, stale_after: float, break_lock: bool
) -> str | None:
    """Whether the record of a holder whose OS lock is free (or that has none) may be taken over:
    the warning to log, None when there is no record, ``StoreLockedError`` when it may not."""
    if not holder:
        return None
    alive = holder_alive(holder)
    if alive is False:
        return f"taking over the write lock left by {_who(holder)} (that process is gone)"
    if alive:  # this host, still running: its lock is not an OS lock we can see (no flock)
        raise _refusal(url, holder)
    if break_lock:
        return f"breaking the write lock of {_who(holder)} (break_lock / --break-lock)"
    if age is not None and age > stale_after:
        return (
            f"taking over the write lock of {_who(holder)}: not refreshed for {age:.0f} s, more than "
            f"sweep.store.lock-stale-after ({stale_after:g} s)"
        )
    when = "" if age is None else f" (refreshed {max(age, 0):.0f} s ago)"
    raise _refusal(
        url,
        holder,
        f"{when}; this host cannot see whether a process of another host still runs: if it is gone, "
        f"run again with --break-lock (Python: break_lock=True), or wait until its lock is "
        f"{stale_after:g} s old (sweep.store.lock-stale-after)",
    )


class WriterLock:
    """A held writer lock; ``release()`` (or process death) frees it. A heartbeat thread
    refreshes it and notices when another process took it over (``check`` then raises)."""

    def __init__(self, blobs: Any, holder: dict[str, Any], fd: int | None, *, flocked: bool = True) -> None:
        self.blobs = blobs
        self.holder = holder
        self._fd = fd
        self._flocked = flocked
        self.lost: dict[str, Any] | None = None  # the record of whoever took the lock over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_heartbeat(self, every: float) -> None:
        """Refresh the lock every ``every`` seconds in a daemon thread until ``release()``."""
        self._thread = threading.Thread(
            target=self._beat, args=(every,), name="sweep-store-lock", daemon=True
        )
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every) and self.lost is None:
            try:
                self.refresh()
            except (OSError, ValueError) as exc:  # a passing file-system error: the next beat retries
                log.debug("store %s: cannot refresh the write lock: %s", self.blobs.url, exc)

    def refresh(self) -> None:
        """Mark the lock as held now; note (``lost``) a record that is not ours any more."""
        if self._fd is not None:
            current = _parse(os.pread(self._fd, 4096, 0))
        else:
            current = _parse(self.blobs.read(LOCK_KEY))
        if current.get("token") != self.holder["token"]:
            self.lost = current
            log.error("store %s: the write lock was taken over by %s", self.blobs.url, _who(current))
            return
        if self._fd is not None:
            os.utime(self._fd)
        else:
            self.holder["refreshed"] = time.time()
            self.blobs.write(LOCK_KEY, json.dumps(self.holder).encode())

    def check(self) -> None:
        """Raise ``StoreLockedError`` if another process took the lock over (stop writing)."""
        if self.lost is not None:
            raise StoreLockedError(
                f"store {self.blobs.url}: the write lock was taken over by {_who(self.lost)} (this "
                "process did not refresh it for longer than sweep.store.lock-stale-after, or it was "
                "broken with --break-lock); this process stops writing; finished runs are kept"
            )

    def release(self) -> None:
        """Give the lock up (idempotent); a record that is not ours any more is left alone."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._fd is not None:
            import fcntl

            try:
                if self.lost is None:
                    os.ftruncate(self._fd, 0)
                if self._flocked:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
        elif self.holder is not None and isinstance(self.blobs, FsspecBlobs):
            if _parse(self.blobs.read(LOCK_KEY)).get("token") == self.holder["token"]:
                self.blobs.delete(LOCK_KEY)
            self.holder = None  # type: ignore[assignment]


def _holder_of_busy_lock(fd: int) -> dict[str, Any]:
    """The record of a live holder (its OS lock is held): it writes the record right after
    taking the lock, so an empty one is read again for a moment."""
    for _ in range(20):
        holder = _parse(os.pread(fd, 4096, 0))
        if holder:
            return holder
        time.sleep(0.05)
    return {}


def _acquire_local(blobs: LocalBlobs, stale_after: float, break_lock: bool) -> WriterLock:
    import fcntl

    # never through a link, a hard link or a FIFO: the lock file is truncated and rewritten
    root = blobs.dir_fd("", create=False)
    try:
        fd = blobs.open_rewrite(root, LOCK_KEY, LOCK_KEY, LOCK_FLAGS)
    finally:
        os.close(root)
    flocked = True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder_of_busy_lock(fd)
        os.close(fd)
        raise _refusal(blobs.url, holder) from None
    except OSError as exc:
        if exc.errno not in _NO_FLOCK:
            os.close(fd)
            raise
        flocked = False  # no flock on this file system: the record alone locks
    try:
        age = time.time() - os.fstat(fd).st_mtime
        warning = _judge(blobs.url, _parse(os.pread(fd, 4096, 0)), age, stale_after, break_lock)
        if warning:
            log.warning("store %s: %s", blobs.url, warning)
        me = _me()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        if not flocked:  # a concurrent writer's record lands first or last: reading back decides
            time.sleep(0.05)
            back = _parse(os.pread(fd, 4096, 0))
            if back.get("token") != me["token"]:
                raise _refusal(blobs.url, back)
    except BaseException:
        os.close(fd)
        raise
    return WriterLock(blobs, me, fd, flocked=flocked)


def _acquire_object(blobs: FsspecBlobs, stale_after: float, break_lock: bool) -> WriterLock:
    holder = _parse(blobs.read(LOCK_KEY))
    refreshed = holder.get("refreshed")
    age = time.time() - float(refreshed) if isinstance(refreshed, (int, float)) else None
    warning = _judge(blobs.url, holder, age, stale_after, break_lock)
    if warning:
        log.warning("store %s: %s", blobs.url, warning)
    me = _me()
    blobs.write(LOCK_KEY, json.dumps(me).encode())
    time.sleep(0.05)  # a concurrent writer's PUT lands first or last; reading back decides
    back = _parse(blobs.read(LOCK_KEY))
    if back.get("token") != me["token"]:
        raise _refusal(blobs.url, back)
    return WriterLock(blobs, me, None)


def acquire_lock(
    blobs: Any, *, stale_after: float = 900.0, break_lock: bool = False, refresh_every: float | None = None
) -> WriterLock:
    """Take the store's writer lock or raise ``StoreLockedError`` naming the holder.

    ``stale_after``: seconds without a refresh after which another host's lock is taken
    over; ``break_lock``: take another host's lock over at once; ``refresh_every``: seconds
    between two refreshes of the held lock (None: no heartbeat thread).
    """
    if isinstance(blobs, LocalBlobs):
        lock = _acquire_local(blobs, stale_after, break_lock)
    else:
        lock = _acquire_object(blobs, stale_after, break_lock)
    if refresh_every is not None:
        lock.start_heartbeat(refresh_every)
    return lock
