"""Checkpoints of unfinished runs: ``checkpoints/<run_id>/<gen>/`` holds the arrays of one saved
solver state, and ``checkpoints/<run_id>/zarr.json`` points at the latest complete one (written
after it: a checkpoint is old or new, never half). The driver writes them; a run resumes from
its checkpoint only when the same solver version wrote it (another version rounds differently)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..faults import fault_point
from ..provenance import utc_now
from .write_errors import writing
from .zarr_docs import encode_small, group_document, is_small, read_array, write_large

__all__ = ["Checkpoints"]


class Checkpoints:
    """The checkpoints of one store (saving needs the store's writer lock: see ``Store``)."""

    def __init__(self, blobs: Any, url: str, zarr_store: Callable[[], Any]) -> None:
        self._blobs = blobs
        self._url = url
        self._zarr_store = zarr_store

    def save(self, run_id: str, arrays: Mapping[str, np.ndarray], step: int | None = None) -> None:
        """Save a run's latest state (``solver.State.to_arrays()``); atomic: old or new, never half."""
        gen = f"s{int(step) if step is not None else 0:012d}-{int(time.time() * 1000):x}"
        base = f"checkpoints/{run_id}"
        items = {f"{base}/{gen}/zarr.json": group_document({"step": step})}
        large = []
        for name, a in arrays.items():
            a = np.asarray(a)
            if is_small(a):
                items.update(encode_small(f"{base}/{gen}/{name}", a, (), {}))
            else:
                large.append((name, a))
        # a failed write drops the new generation only: the pointer still names the old one
        with writing(
            self._url, f"save a checkpoint of run {run_id}", lambda: self._blobs.delete_tree(f"{base}/{gen}")
        ):
            self._blobs.delete_tree(f"{base}/{gen}")  # new: zarr's writes below follow no stray link
            self._blobs.write_many(items)
            for name, a in large:
                write_large(self._zarr_store(), f"{base}/{gen}/{name}", a, (), {})
            fault_point("checkpoint-before-pointer", run_id)
            old = self._pointer(run_id)
            self._blobs.write(
                f"{base}/zarr.json",
                group_document(
                    {
                        "current": gen,
                        "step": step,
                        "names": sorted(arrays),
                        "saved": utc_now(),
                        "solver_version": _state_solver_version(arrays.get("params_json")),
                        # the attempts of earlier sweeps this state carries on (interrupted)
                        "segments": (old or {}).get("segments") or [],
                    }
                ),
            )
        if old and old.get("current") and old["current"] != gen:
            self._blobs.delete_tree(f"{base}/{old['current']}")

    def add_segment(self, run_id: str, segment: Mapping[str, Any]) -> bool:
        """Keep an attempt of the run that ended without a result (a sweep interrupted) with
        its checkpoint, so the run's record counts its time when it is done; False when the run
        has no checkpoint (it starts over: nothing of that attempt is carried on)."""
        ptr = self._pointer(run_id)
        if not ptr or not ptr.get("current"):
            return False
        ptr = {**ptr, "segments": [*(ptr.get("segments") or []), dict(segment)]}
        self._blobs.write(f"checkpoints/{run_id}/zarr.json", group_document(ptr))
        return True

    def segments(self, run_id: str) -> list[dict[str, Any]]:
        """The attempts of earlier sweeps the run's checkpoint carries on (oldest first)."""
        ptr = self._pointer(run_id)
        return [dict(s) for s in (ptr or {}).get("segments") or [] if isinstance(s, Mapping)]

    def _pointer(self, run_id: str) -> dict[str, Any] | None:
        raw = self._blobs.read(f"checkpoints/{run_id}/zarr.json")
        return json.loads(raw).get("attributes") if raw else None

    def load(self, run_id: str) -> dict[str, np.ndarray] | None:
        """The arrays of a run's latest complete checkpoint, None when it has none."""
        import zarr

        ptr = self._pointer(run_id)
        if not ptr or not ptr.get("current"):
            return None
        grp = zarr.open_group(
            self._zarr_store(), path=f"checkpoints/{run_id}/{ptr['current']}", mode="r", zarr_format=3
        )
        return {name: read_array(grp, name) for name in ptr.get("names", grp.array_keys())}

    def drop(self, run_id: str) -> None:
        """Forget a run's checkpoint (after its result is committed)."""
        self._blobs.delete(f"checkpoints/{run_id}/zarr.json")  # the pointer first: never half-visible
        self._blobs.delete_tree(f"checkpoints/{run_id}")

    def run_ids(self) -> set[str]:
        """Runs that have a saved checkpoint."""
        return {
            n
            for n in self._blobs.children("checkpoints")
            if n != "zarr.json" and self._blobs.exists(f"checkpoints/{n}/zarr.json")
        }

    def steps_and_versions(self) -> dict[str, tuple[int | None, str | None]]:
        """run id -> (step, solver version) of each saved checkpoint, from one read of its
        pointer (None: saved without a step / version not known)."""
        out = {}
        for rid in self.run_ids():
            ptr = self._pointer(rid) or {}
            version = ptr.get("solver_version")
            if version is None and ptr.get("current"):  # a pointer written before it said so
                version = self._state_version(rid, ptr["current"])
            out[rid] = (ptr.get("step"), version)
        return out

    def _state_version(self, run_id: str, gen: str) -> str | None:
        import zarr

        try:
            arr = zarr.open_array(
                self._zarr_store(), path=f"checkpoints/{run_id}/{gen}/params_json", mode="r", zarr_format=3
            )
            return _state_solver_version(arr[...])
        except (KeyError, FileNotFoundError, ValueError):
            return None


def _state_solver_version(params_json: Any) -> str | None:
    """The solver version inside a ``solver.State``'s ``params_json`` array (None if absent)."""
    from solver import State

    if params_json is None:
        return None
    try:
        version = json.loads(State.key_of_arrays({"params_json": params_json})).get("solver_version")
    except (ValueError, AttributeError):
        return None
    return str(version) if version is not None else None
