"""A failed store write (disk full, quota, read-only file system) as one line that says how to fix it."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Iterator

from ..errors import StoreError

__all__ = ["writing"]

# errno of a failed write -> what it means; anything else stays an unexpected error
_WRITE_ERRNOS: dict[int, str] = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system or the process's file-size limit",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def writing(url: str, what: str, cleanup: Callable[[], None] | None = None) -> Iterator[None]:
    """Turn the OS errors of a store write (disk full, read-only) into a one-line StoreError,
    after ``cleanup()`` removed what the write left half-done (best effort)."""
    try:
        yield
    except OSError as exc:
        why = _WRITE_ERRNOS.get(exc.errno or 0)
        if why is None:
            raise
        if cleanup is not None:
            try:
                cleanup()
            except OSError:
                pass
        fix = (
            "free some space (or raise the quota/limit) and run again"
            if exc.errno in _FULL_ERRNOS
            else "remount it read-write or fix its permissions, or give another --store; "
            "reading it (sweep status, open_results) still works"
        )
        where = f" ({exc.filename})" if exc.filename else ""
        raise StoreError(
            f"{url}: cannot {what}: {why}{where}; allowed: a writable store with free "
            f"space: {fix}; finished runs are kept"
        ) from None
