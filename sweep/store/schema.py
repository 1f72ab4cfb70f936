"""The store's root document: its schema version, checked by readers, created and raised by writers."""

from __future__ import annotations

import json
from typing import Any

from ..errors import StoreError
from ..provenance import ns_sweep_version, utc_now
from .index import empty_pointer
from .zarr_docs import group_document

__all__ = ["SCHEMA_VERSION", "ROOT_ATTR", "check_schema", "creation_cut_short", "initialise", "upgrade"]

# 3: index segments and batch groups of format 2 (records as compressed columns);
# 2: packed runs (batches/, log records with data); older stores are upgraded on write
SCHEMA_VERSION = 3
ROOT_ATTR = "ns_sweep"


def check_schema(url: str, root: bytes) -> None:
    """StoreError unless ``root`` (the store's zarr.json) is a result store this version reads."""
    try:
        attrs = json.loads(root).get("attributes", {})
    except ValueError:
        raise StoreError(
            f"{url}/zarr.json: unreadable JSON; allowed: a result store's root "
            "document (restore it from a backup)"
        ) from None
    meta = attrs.get(ROOT_ATTR)
    if not isinstance(meta, dict) or "schema_version" not in meta:
        raise StoreError(
            f"{url}: a zarr store but not an ns-sweep result store (no "
            f"'{ROOT_ATTR}' attribute); allowed: a store written by `sweep run`"
        )
    version = meta["schema_version"]
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise StoreError(
            f"{url}: schema_version: bad value {version!r}; allowed: at most "
            f"{SCHEMA_VERSION} (this ns-sweep {ns_sweep_version()}); the store was written "
            "by a newer ns-sweep: upgrade (pip install -U ns-sweep) to read it"
        )


# what a writer killed while it created a store may have left: its lock file, some of the
# groups (each its zarr.json alone), temporary files of atomic writes; never the root document
_CREATED_FIRST = ("runs", "batches", "checkpoints", "index")


def _partial(name: str, of: str = "zarr.json") -> bool:
    return name.startswith(of + ".") and name.endswith(".partial")


def creation_cut_short(blobs: Any) -> bool:
    """Whether a store location without a root document holds only what a writer killed while
    it created the store leaves behind (its next writer completes the creation); anything
    else there is not ours."""
    names = blobs.children("")
    if "lock.json" not in names:
        return False
    for name in names:
        if name in ("lock.json", "zarr.json") or _partial(name) or _partial(name, "lock.json"):
            continue
        if name not in _CREATED_FIRST:
            return False
        if any(n != "zarr.json" and not _partial(n) for n in blobs.children(name)):
            return False
    return True


def initialise(blobs: Any) -> None:
    """Write a new store's groups, then its root document (last: the store exists)."""
    blobs.write_many(
        {
            "runs/zarr.json": group_document({}),
            "batches/zarr.json": group_document({}),
            "checkpoints/zarr.json": group_document({}),
            "index/zarr.json": empty_pointer(),
        }
    )
    blobs.write(
        "zarr.json",
        group_document(
            {
                ROOT_ATTR: {
                    "schema_version": SCHEMA_VERSION,
                    "created": utc_now(),
                    "writer": f"ns-sweep {ns_sweep_version()}",
                }
            }
        ),
    )


def upgrade(blobs: Any, root: bytes) -> None:
    """A writer of this version may write what older readers do not know (packed runs, index
    segments, batch groups of format 2): raise the store's schema version so that they refuse
    it instead of misreading it. The data stay as they are: this version reads them (an index
    of format 1 becomes segments at the writer's first flush: ``sweep.store.index``)."""
    doc = json.loads(root)
    meta = doc["attributes"][ROOT_ATTR]
    if meta["schema_version"] >= SCHEMA_VERSION:
        return
    if not blobs.exists("batches/zarr.json"):
        blobs.write("batches/zarr.json", group_document({}))
    meta.update(schema_version=SCHEMA_VERSION, upgraded=utc_now())
    blobs.write("zarr.json", json.dumps(doc).encode())
