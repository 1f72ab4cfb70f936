"""The sweep's log files: one main log, and the packages' lines in one file per sweep segment.

The driver writes every file (workers may share no disk with it). The main log
(``sweep.log``) gets every engine event; a package's own lines (queued, started, its worker's
lines, checkpoints, its status) go to the segment file of the ``run_sweep`` call that ran it,
``packages-<UTC start>-<pid>.log``, one line each as ``<package_id><TAB><line>``. Why not one
file per package: 100,000 packages made 100,000 files (400 MB of 4 KB blocks, more inodes than
the store) and an ``open`` per package (~0.4 ms each, most of a tiny package's engine cost).
A package's lines are had by id with ``package_log_lines`` (``sweep logs PACKAGE_ID``), or
``grep '^PACKAGE_ID<TAB>' packages-*.log``: a scan of a 100,000-package sweep's lines (~50 MB)
takes a fraction of a second, so no index is kept. Logs written by earlier versions
(``<package_id>.log``) are still read.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

__all__ = ["MAIN_LOG", "SEGMENT_GLOB", "SweepLogs", "package_log_lines", "log_segments"]

MAIN_LOG = "sweep.log"
SEGMENT_PREFIX = "packages-"
SEGMENT_GLOB = f"{SEGMENT_PREFIX}*.log"
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


def stamp_now() -> str:
    """The time stamp of a line stamped now."""
    return _stamp()


class SweepLogs:
    """Opens ``<dir>/sweep.log`` on the ``sweep.engine`` logger and this sweep's segment file of
    package lines (``packages-<UTC start>-<pid>.log``).

    The segment stays open (no open per package); stamped lines (events: started, checkpoints,
    retries) reach the file at once, a run's closing lines within ``FLUSH_EVERY`` seconds (or
    at the next ``flush_main``, on the driver's tick); lines given with ``defer=True`` wait in
    memory until the package's next line that is not deferred (a package that never runs, e.g.
    one cancelled before its start, still gets them at ``close``).
    """

    FLUSH_EVERY = 0.2  # seconds a package's unstamped lines (its end) may wait in the buffer

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
        self._source: Any = None  # more deferred lines, by package (defer_from)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        self.segment = self.directory / f"{SEGMENT_PREFIX}{stamp}-{os.getpid()}.log"
        self._file: IO[str] | None = None  # the segment, open from its first line to close()
        self._flushed = time.monotonic()

    @property
    def main_log(self) -> Path:
        """Path of the main log."""
        return self.directory / MAIN_LOG

    def package(
        self,
        package_id: str,
        lines: str | Iterable[str],
        *,
        stamped: bool = False,
        when: float | None = None,
        defer: bool = False,
    ) -> None:
        """Add lines to a package's log, stamped with the time (``when``, a ``time.time()``
        value, else now) if asked; ``defer``: keep them in memory until its next lines."""
        if isinstance(lines, str):
            lines = [lines]
        head = f"{package_id}\t{_stamp(when)} " if stamped else f"{package_id}\t"
        text = [f"{head}{ln}\n" if "\n" not in ln else f"{head}{ln.replace(chr(10), ' ')}\n" for ln in lines]
        if defer:
            self._pending.setdefault(package_id, []).extend(text)
            return
        held = self._pending.pop(package_id, None)
        if held:
            text = held + text
        if self._source is not None:
            text = self._source.pop(package_id) + text
        if not text or self.directory in self._unwritable:
            return
        try:
            if self._file is None:
                self._file = open(self.segment, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
            self._file.write("".join(text))
            now = time.monotonic()
            if stamped or now - self._flushed >= self.FLUSH_EVERY:  # events at once; a run's end
                self._flushed = now  # lines (one write each: 0.1 ms a package) a moment later
                self._file.flush()
        except OSError as exc:
            _cannot_write(self.segment, exc, self._unwritable)

    def defer_from(self, source: Any) -> None:
        """Deferred lines kept elsewhere (a million packages' lines, made when written):
        ``source.pop(package_id)`` gives a package's (written before its next lines),
        ``source.rest()`` yields (package_id, lines) of those still waiting (``flush``)."""
        self._source = source

    def flush(self) -> None:
        """Write every deferred line (and what the logs hold back)."""
        for package_id in list(self._pending):
            self.package(package_id, [])
        if self._source is not None:
            for package_id, lines in self._source.rest():
                self._pending.setdefault(package_id, []).extend(lines)
                self.package(package_id, [])
        self.flush_main()

    def flush_main(self) -> None:
        """Write what the logs hold back (call it now and then: a quiet sweep's last lines
        would otherwise wait for the next line)."""
        self._handler.flush()
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                _cannot_write(self.segment, exc, self._unwritable)
            self._flushed = time.monotonic()

    def close(self) -> None:
        """Write the deferred lines; detach and close the main log's handler and the segment. A
        full or read-only disk loses those lines, quietly: the sweep reports that error itself."""
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
            if self._file is not None:
                try:
                    self._file.close()
                except OSError:
                    pass
                self._file = None


def log_segments(directory: str | Path) -> list[Path]:
    """The segment files of package lines in a logs directory, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted(
        Path(e.path)
        for e in os.scandir(d)
        if e.name.startswith(SEGMENT_PREFIX) and e.name.endswith(".log") and e.is_file()
    )


def package_log_lines(directory: str | Path, package_id: str) -> list[str]:
    """Every line logged for ``package_id`` under ``directory``, oldest first (without the
    package id): those of a per-package file of earlier versions (``<id>.log``, or
    ``<id>@package.log`` for an id the main log's name), then each segment's."""
    d = Path(directory)
    out: list[str] = []
    for legacy in (d / f"{package_id}.log", d / f"{package_id}@package.log"):  # ('sweep': the latter)
        if legacy.name.lower() != MAIN_LOG and legacy.is_file():  # (the main log is no package's)
            out += legacy.read_text(encoding="utf-8", errors="replace").splitlines()
    pattern = re.compile(rb"^" + re.escape(package_id.encode()) + rb"\t(.*)$", re.MULTILINE)
    for seg in log_segments(d):
        try:
            data = seg.read_bytes()
        except OSError:
            continue
        out += [m.group(1).decode("utf-8", errors="replace") for m in pattern.finditer(data)]
    return out
