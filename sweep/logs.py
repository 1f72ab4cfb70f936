"""The sweep's log files: one main log and one log per package, under a logs directory.

The driver writes every file (workers may share no disk with it): the main log gets every
engine event, a package's log gets its own lines, including those its worker sent back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["MAIN_LOG", "SweepLogs"]

MAIN_LOG = "sweep.log"
_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def _stamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class SweepLogs:
    """Opens ``<dir>/sweep.log`` on the ``sweep.engine`` logger; appends per-package logs."""

    def __init__(self, directory: str | Path, logger_name: str = "sweep.engine") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.logger = logging.getLogger(logger_name)
        self.logger.setLevel(logging.INFO)
        self._handler = logging.FileHandler(self.directory / MAIN_LOG, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter(_FORMAT))
        self.logger.addHandler(self._handler)

    @property
    def main_log(self) -> Path:
        """Path of the main log."""
        return self.directory / MAIN_LOG

    def package_log(self, package_id: str) -> Path:
        """Path of a package's log (package ids are validated plain names)."""
        return self.directory / f"{package_id}.log"

    def package(self, package_id: str, lines: str | Iterable[str], *, stamped: bool = False) -> None:
        """Append lines to a package's log (stamping them with the time if asked)."""
        if isinstance(lines, str):
            lines = [lines]
        text = "".join(f"{_stamp()} {ln}\n" if stamped else f"{ln}\n" for ln in lines)
        with open(self.package_log(package_id), "a", encoding="utf-8") as f:
            f.write(text)

    def close(self) -> None:
        """Detach and close the main log's handler."""
        self.logger.removeHandler(self._handler)
        self._handler.close()
