"""The store's log: one JSON record per commit or failure, newer than the compacted index.

Local stores: a writer session appends its records to one file ``log/<seq>-<tag>.jsonl``
(creating a file is the costly file-system operation here, ~100-200 us against ~3 us for an
append), named after its first record's sequence number. Stores on object storage (which
cannot append) get one object per record, ``log/<seq>-<run_id>.json``. A crash can leave only
a file's last record torn; readers skip a last line without its newline, and any line that
does not parse.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any

from .blobs import Appender

__all__ = ["RunLog"]

log = logging.getLogger("sweep.store")


class RunLog:
    """The log files of a store: reading them all, appending records, dropping them once the
    index holds their records."""

    def __init__(self, blobs: Any, url: str) -> None:
        self._blobs = blobs
        self._url = url
        self.keys: list[str] = []  # log files holding records newer than the index
        self.records = 0  # records in them (counted by the reader that applies them)
        self._segment: Appender | None = None  # this writer session's log file (local stores)

    def scan(self) -> Iterator[dict[str, Any]]:
        """Every readable record body of every log file, in file order (``keys`` is reset to
        the files read; ``records`` to 0: the caller counts what it applies)."""
        self.keys, self.records = [], 0
        for key in sorted(self._blobs.children("log")):
            if not key.endswith((".json", ".jsonl")):
                continue
            raw = self._blobs.read(f"log/{key}")
            if raw is None:
                continue  # removed by a compaction right now: the new index holds it
            self.keys.append(key)
            # a .jsonl file holds whole lines only up to its last newline: a torn last record
            # (being written, or cut by a crash) is left out
            for line in [raw] if key.endswith(".json") else raw.split(b"\n")[:-1]:
                try:
                    body = json.loads(line)
                    rec = body["record"]
                    rec["seq"] = int(rec["seq"])
                    if not isinstance(rec["run_id"], str):
                        raise TypeError("run_id")
                except (TypeError, ValueError, KeyError):
                    # torn by a crash, or being written right now: a run group's marker, written
                    # before its record, stands in for it; a packed run's record is its marker:
                    # such a run is redone
                    log.debug("store %s: skipping an unreadable log record in %s", self._url, key)
                    continue
                yield body

    def append(self, body: dict[str, Any], seq: int, run_id: str) -> None:
        """Append one record (not atomic: a torn record does not parse and is skipped)."""
        data = json.dumps(body).encode()
        if self._segment is None and hasattr(self._blobs, "open_append"):
            key = f"{seq:012d}-{os.urandom(4).hex()}.jsonl"
            self._segment = self._blobs.open_append(f"log/{key}")
            self.keys.append(key)
        if self._segment is not None:
            try:
                self._segment.append(data + b"\n")
            except BaseException:  # a torn record stays alone at its file's end
                self.close_segment()
                raise
        else:  # object storage: one object per record
            key = f"{seq:012d}-{run_id}.json"
            self._blobs.write(f"log/{key}", data, atomic=False)
            self.keys.append(key)
        self.records += 1

    def close_segment(self) -> None:
        """End this session's log file: the next record starts a new one."""
        if self._segment is not None:
            self._segment.close()
            self._segment = None

    def drop(self) -> None:
        """Delete the log files (their records are in the index now)."""
        self.close_segment()
        for key in self.keys:
            self._blobs.delete(f"log/{key}")
        self.keys, self.records = [], 0
