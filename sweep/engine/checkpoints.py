"""The checkpoint relay: workers announce a checkpoint (an event) and leave it in a scheduler
``Variable``; the driver fetches it and saves it in the store, and hands a stored checkpoint to
the next attempt of a run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from ..codec import decode_arrays
from ..faults import fault_point
from .logs import SweepLogs
from .worker import checkpoint_variable_name

__all__ = ["usable_checkpoint", "step_of", "CheckpointRelay"]


def usable_checkpoint(store: Any, run_id: str, package: Any, log: logging.Logger) -> dict[str, Any] | None:
    """The stored checkpoint of ``run_id`` if the solver of ``package`` can resume it, else None.

    A checkpoint of another solver version (or other parameters, or another template) would
    not end bit-identical to an uninterrupted run: it is ignored and the run starts over (the
    next checkpoint replaces it). Every solver's checkpoint carries its key
    (``sweep.solvers.protocol``).
    """
    from ..solvers.protocol import checkpoint_key_of

    arrays = store.load_checkpoint(run_id)
    if arrays is None:
        return None
    if checkpoint_key_of(arrays) != package.checkpoint_key():
        log.warning(
            "run %s: its checkpoint is of another solver version, parameters or template; it starts over",
            run_id,
        )
        return None
    return arrays


def step_of(arrays: dict[str, Any]) -> int:
    """The step of checkpoint arrays (solver.State.to_arrays keeps it as a 1-element array)."""
    step = arrays.get("step")
    return int(np.asarray(step).reshape(-1)[0]) if step is not None else -1


class CheckpointRelay:
    """Saves the checkpoints workers announce; remembers which runs have one in the store."""

    def __init__(
        self,
        client: Any,
        store: Any,
        channel: str,
        logs: SweepLogs,
        had: set[str],
        sync_store: Callable[[], None],
        connected: Callable[[], bool],
    ) -> None:
        self.client = client
        self.store = store
        self.channel = channel
        self.logs = logs
        self.had = had  # runs with a checkpoint in the store when the sweep started
        self.sent: set[str] = set()  # runs whose checkpoints this sweep saved
        self.step: dict[str, int] = {}  # run_id -> step of the checkpoint saved last
        self.sync_store = sync_store
        self.connected = connected

    def has_checkpoint(self, run_id: str) -> bool:
        """Whether the store may hold a checkpoint of ``run_id`` (to drop once it is done)."""
        return run_id in self.sent or run_id in self.had

    def save(self, run_id: str, package_id: str, step: Any) -> None:
        """Fetch the latest checkpoint a worker announced and save it in the store."""
        from distributed import Variable

        log = self.logs.logger
        if not self.connected():
            # reconnecting: a Variable.get would wait for distributed's connect timeout (30 s),
            # its own timeout notwithstanding; the sweep reports the lost scheduler
            log.warning(
                "%s: checkpoint at step %s not fetched: no connection to the scheduler", package_id, step
            )
            return
        self.sync_store()
        try:
            # callback_timeout: a scheduler lost during the call would hold it for 30 s
            payload = Variable(checkpoint_variable_name(self.channel, run_id), client=self.client).get(
                timeout=10, callback_timeout=10
            )
        except Exception as exc:  # the next checkpoint will do; the run itself is unaffected
            log.warning("%s: checkpoint at step %s not fetched: %s", package_id, step, exc)
            return
        # the variable holds the latest one, maybe newer than announced
        self.keep(run_id, package_id, decode_arrays(payload))

    def keep(self, run_id: str, package_id: str, arrays: dict[str, Any], what: str = "checkpoint") -> bool:
        """Save a run's checkpoint arrays in the store unless a later one is there already
        (the store's writer thread done first); whether it was saved."""
        got = step_of(arrays)
        if got <= self.step.get(run_id, -1):
            return False
        self.sync_store()
        self.store.save_checkpoint(run_id, arrays, step=got)
        self.step[run_id] = got
        self.sent.add(run_id)
        fault_point("after-checkpoint", run_id)
        self.logs.logger.info("%s: %s at step %s saved", package_id, what, got)
        self.logs.package(package_id, f"{what} at step {got} saved in the store", stamped=True)
        return True

    def forget(self, run_id: str) -> None:
        """Delete the run's scheduler-side variable (its outcome is in)."""
        if run_id in self.sent and self.connected():
            from distributed import Variable

            try:
                Variable(checkpoint_variable_name(self.channel, run_id), client=self.client).delete()
            except Exception:  # the scheduler may be gone: nothing to free then
                pass
