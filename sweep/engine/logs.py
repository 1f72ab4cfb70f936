"""The sweep's log files: one main log and one log per package, under a logs directory.

The driver writes every file (workers may share no disk with it): the main log gets every
engine event, a package's log gets its own lines, including those its worker sent back.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["MAIN_LOG", "SweepLogs"]

MAIN_LOG = "sweep.log"
_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def _cannot_write(path: Path, exc: OSError, reported: set[Path]) -> None:
    """Say once per logs directory that its files cannot be written (a full or read-only
    disk): logs are secondary, the sweep goes on and its results are still committed."""
    if path.parent in reported:
        return
    reported.add(path.parent)
    sys.stderr.write(
        f"sweep: warning: cannot write the log {path}: {exc.strerror or exc}; lines for "
        f"{path.parent} are dropped from now on (results are still committed)\n"
    )


class _MainLogHandler(logging.FileHandler):
    """The main log's handler: warnings and errors are written at once, other lines at most
    ``FLUSH_EVERY`` seconds later (one write per line cost a thousand tiny packages more
    than their logging itself)."""

    FLUSH_EVERY = 0.5

    def __init__(self, path: Path, reported: set[Path]) -> None:
        super().__init__(path, encoding="utf-8")
        self._flushed = time.monotonic()
        self._reported = reported  # logs directories already said to be unwritable
        self.failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.failed:
            return
        try:
            if self.stream is None:  # closed, as logging.FileHandler.emit reopens it
                self.stream = self._open()
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING or time.monotonic() - self._flushed >= self.FLUSH_EVERY:
                self.flush()
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
            return
        self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        # not logging's "--- Logging error ---" traceback: one line, then no more tries
        self.failed = True
        _cannot_write(Path(self.baseFilename), exc, self._reported)

    def flush(self) -> None:
        if self.failed:
            return
        try:
            super().flush()
        except OSError as exc:
            self._failed(exc)
        self._flushed = time.monotonic()


def _stamp(when: float | None = None) -> str:
    t = datetime.now(UTC) if when is None else datetime.fromtimestamp(when, UTC)
    return t.isoformat(timespec="milliseconds")


class SweepLogs:
    """Opens ``<dir>/sweep.log`` on the ``sweep.engine`` logger; appends per-package logs.

    Lines given with ``defer=True`` wait in memory until the package's next line that is
    not deferred (or ``flush``/``close``): a package's log is then written in one go, not
    one file opening per line (thousands of tiny packages would spend more time opening
    their logs than running).
    """

    def __init__(self, directory: str | Path, logger_name: str = "sweep.engine") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.logger = logging.getLogger(logger_name)
        self.logger.setLevel(logging.INFO)
        self._unwritable: set[Path] = set()
        self._handler = _MainLogHandler(self.directory / MAIN_LOG, self._unwritable)
        self._handler.setFormatter(logging.Formatter(_FORMAT))
        self.logger.addHandler(self._handler)
        self._pending: dict[str, list[str]] = {}

    @property
    def main_log(self) -> Path:
        """Path of the main log."""
        return self.directory / MAIN_LOG

    def package_log(self, package_id: str) -> Path:
        """Path of a package's log: ``<package_id>.log`` (ids are validated plain names), except
        for a package whose log would be the main log's file (id ``sweep`` in any case: case-
        insensitive file systems), which gets ``<package_id>@package.log`` ('@' is in no id,
        so no other package's log can have that name)."""
        name = f"{package_id}.log"
        if name.lower() == MAIN_LOG.lower():
            name = f"{package_id}@package.log"
        return self.directory / name

    def package(
        self,
        package_id: str,
        lines: str | Iterable[str],
        *,
        stamped: bool = False,
        when: float | None = None,
        defer: bool = False,
    ) -> None:
        """Append lines to a package's log, stamped with the time (``when``, a ``time.time()``
        value, else now) if asked; ``defer``: keep them in memory until its next lines."""
        if isinstance(lines, str):
            lines = [lines]
        stamp = f"{_stamp(when)} " if stamped else ""
        text = [f"{stamp}{ln}\n" for ln in lines]
        if defer:
            self._pending.setdefault(package_id, []).extend(text)
            return
        text = self._pending.pop(package_id, []) + text
        if self.directory in self._unwritable:
            return
        path = self.package_log(package_id)
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write("".join(text))
        except OSError as exc:
            _cannot_write(path, exc, self._unwritable)

    def flush(self) -> None:
        """Write every deferred line (and what the main log holds back)."""
        for package_id in list(self._pending):
            self.package(package_id, [])
        self._handler.flush()

    def flush_main(self) -> None:
        """Write what the main log holds back (call it now and then: a quiet sweep's last
        info lines would otherwise wait for the next line)."""
        self._handler.flush()

    def close(self) -> None:
        """Write the deferred lines; detach and close the main log's handler. A full or
        read-only disk loses those lines, quietly: the sweep reports that error itself."""
        try:
            self.flush()
        except OSError:
            pass
        finally:
            self.logger.removeHandler(self._handler)
            try:
                self._handler.close()
            except OSError:
                pass
