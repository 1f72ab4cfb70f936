"""A store's batch groups (``batches/<name>/``: the packed runs of one flush, see
``sweep.store.packed``) as the index uses them: written at a flush, read by name (the last
one kept: runs are read in order), listed when the index is rebuilt."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import StoreError
from .packed import Batch, batch_documents, read_batch
from .variables import Variable

__all__ = ["BatchGroups"]


class BatchGroups:
    """The batch groups under ``batches/`` of the store at ``url``."""

    def __init__(self, blobs: Any, url: str, zarr_store: Callable[[], Any]) -> None:
        self._blobs = blobs
        self.url = url
        self._zarr_store = zarr_store  # called when a batch is read (zarr is imported then)
        self._last: tuple[str, Batch] | None = None  # the batch group read last

    def read(self, name: str) -> Batch | None:
        """Batch group ``name`` (None: missing or never completed)."""
        return read_batch(self._blobs, self._zarr_store(), f"batches/{name}")

    def get(self, name: str) -> Batch:
        """Batch group ``name``, which a run's row names (StoreError when it is not whole)."""
        if self._last is None or self._last[0] != name:
            batch = self.read(name)
            if batch is None:
                raise StoreError(
                    f"{self.url}: batch group batches/{name} is missing or incomplete; "
                    "allowed: a complete store: run Store.open(url, 'a').rebuild_index() to "
                    "re-index what is there"
                )
            self._last = (name, batch)
        return self._last[1]

    def complete(self) -> Iterator[tuple[str, Batch]]:
        """(name, batch) of every complete batch group, by name (one cut short is left out:
        its runs are in the log)."""
        for name in sorted(self._blobs.children("batches")):
            batch = self.read(name) if name != "zarr.json" else None
            if batch is not None:
                yield name, batch

    def write(
        self,
        base: str,
        runs: Sequence[tuple[dict[str, Any], list[Variable], dict[str, Any]]],
        written: list[str],
    ) -> dict[str, str]:
        """Write packed ``runs`` ((record, variables, attributes) each) as batch groups named
        ``base-<k>``, each name appended to ``written`` before its first file; returns run
        id -> batch name."""
        # batches/zarr.json exists: made with the store, or by the schema upgrade
        homes: dict[str, str] = {}
        for name, run_ids, items, group in batch_documents(base, runs):
            written.append(name)
            self._blobs.write_many({f"batches/{k}": v for k, v in items.items()}, atomic=False)
            self._blobs.write(f"batches/{name}/zarr.json", group)  # last: the batch exists
            homes.update(dict.fromkeys(run_ids, name))
        return homes
