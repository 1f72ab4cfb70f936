"""The worker side of a sweep: run one package and hand back its outcome.

``run_package`` executes on a Dask worker that may share no disk with the driver, so it touches
no file: the result Dataset, the provenance and the package's log lines travel back as the task
result, and checkpoints travel to the driver through the scheduler (a ``distributed.Variable``
holding the latest one, announced by a worker event), where the driver saves them in the store.
Solver errors become failure classes here, so a failed run is an ordinary result, not a task
error: task errors mean the infrastructure failed (a lost worker), which the driver retries.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

__all__ = [
    "WorkItem",
    "Outcome",
    "FAILURE_CLASSES",
    "failure_class_of",
    "run_package",
    "run_partition",
    "encode_arrays",
    "decode_arrays",
    "checkpoint_variable_name",
]


@dataclass(frozen=True)
class WorkItem:
    """Everything a worker needs to run one package (sent with the task)."""

    package_id: str
    run_id: str
    priority: str
    params: dict[str, Any]
    timeout: float  # seconds from the start of this attempt
    attempt: int = 1
    checkpoint_every_seconds: float | None = None
    checkpoint_every_steps: int | None = None
    resume: dict[str, Any] | None = None  # encoded State arrays (see encode_arrays)
    channel: str | None = None  # event topic / variable prefix of this sweep; None: no messages
    progress_every: float = 5.0


@dataclass
class Outcome:
    """What came of one attempt at a package: a Dataset, or a failure class and its error."""

    package_id: str
    run_id: str
    status: str  # "done" or "failed"
    failure_class: str | None = None  # diverged, timeout, error (worker-lost is the driver's)
    error: str | None = None
    dataset: Any = None
    provenance: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


def _failure_registry() -> dict[type, str]:
    from solver.errors import DivergedError, SolverTimeout

    return {DivergedError: "diverged", SolverTimeout: "timeout"}


# exception class -> failure class; anything else is "error"
FAILURE_CLASSES: dict[type, str] = _failure_registry()


def failure_class_of(exc: BaseException) -> str:
    """The failure class of a solver exception (the most specific registered class wins)."""
    for cls in type(exc).__mro__:
        if cls in FAILURE_CLASSES:
            return FAILURE_CLASSES[cls]
    return "error"


def encode_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """State arrays as msgpack-friendly values (dtype, shape, raw bytes): lossless."""
    out = {}
    for name, a in arrays.items():
        a = np.asarray(a)  # tobytes() is C order whatever the layout; keep 0-d shapes
        out[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}
    return out


def decode_arrays(encoded: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The inverse of ``encode_arrays`` (plain arrays pass through unchanged)."""
    out = {}
    for name, v in encoded.items():
        if isinstance(v, np.ndarray):
            out[name] = v
        else:
            out[name] = np.frombuffer(v["data"], dtype=np.dtype(v["dtype"])).reshape(tuple(v["shape"])).copy()
    return out


def checkpoint_variable_name(channel: str, run_id: str) -> str:
    """Name of the scheduler-side variable holding a run's latest checkpoint."""
    return f"{channel}-ckpt-{run_id}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class _Messenger:
    """Sends small events (start, progress, checkpoint announcements) to the driver."""

    def __init__(self, channel: str | None) -> None:
        self.channel = channel
        self.worker = None
        self.address = "local"
        if channel is not None:
            try:
                from distributed import get_worker

                self.worker = get_worker()
                self.address = self.worker.address
            except ValueError:  # called outside a worker (a plain function call)
                self.worker = None

    def event(self, msg: dict[str, Any]) -> None:
        if self.worker is not None:
            self.worker.log_event(self.channel, msg)

    def publish_checkpoint(self, run_id: str, payload: dict[str, Any]) -> bool:
        """Put the latest checkpoint where the driver can fetch it; False outside Dask."""
        if self.worker is None:
            return False
        from distributed import Variable, get_client

        Variable(checkpoint_variable_name(self.channel, run_id), client=get_client()).set(payload)
        return True


def run_package(item: WorkItem) -> Outcome:
    """Run one package's simulation on this worker; never raises for a solver failure."""
    import solver
    from solver import SolverParams

    t0 = time.time()
    started = _now()
    messenger = _Messenger(item.channel)
    log: list[str] = []

    def note(line: str) -> None:
        log.append(f"{_now()} {line}")

    prov: dict[str, Any] = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "worker": messenger.address,
        "attempt": item.attempt,
        "start_time": started,
        "resumed_from_step": None,
        "checkpoints_sent": 0,
    }
    messenger.event({"event": "start", "run_id": item.run_id, "package_id": item.package_id,
                     "worker": messenger.address, "time": t0, "attempt": item.attempt})
    note(f"started attempt {item.attempt} on {prov['host']} ({messenger.address}), "
         f"timeout {item.timeout:g} s")

    last_progress = [t0]

    def progress(step: int, n_steps: int, t: float) -> None:
        now = time.time()
        if now - last_progress[0] >= item.progress_every:
            last_progress[0] = now
            messenger.event({"event": "progress", "run_id": item.run_id,
                             "package_id": item.package_id, "step": step, "n_steps": n_steps,
                             "t": t})

    def checkpoint(state: Any) -> None:
        payload = encode_arrays(state.to_arrays())
        step = int(getattr(state, "step", -1))
        if messenger.publish_checkpoint(item.run_id, payload):
            prov["checkpoints_sent"] += 1
            messenger.event({"event": "checkpoint", "run_id": item.run_id,
                             "package_id": item.package_id, "step": step})
            note(f"checkpoint at step {step} sent to the driver")

    resume = None
    try:
        params = SolverParams(item.params)
        if item.resume is not None:
            resume = solver.State.from_arrays(decode_arrays(item.resume))
            prov["resumed_from_step"] = int(resume.step)
            note(f"resuming from the checkpoint at step {resume.step} (t={resume.time:.6g})")
        want_ckpt = item.channel is not None and (
            item.checkpoint_every_seconds is not None or item.checkpoint_every_steps is not None)
        ds = solver.simulate(
            params,
            deadline=t0 + item.timeout,
            progress=progress,
            checkpoint=checkpoint if want_ckpt else None,
            checkpoint_every_steps=item.checkpoint_every_steps if want_ckpt else None,
            checkpoint_every_seconds=item.checkpoint_every_seconds if want_ckpt else None,
            resume=resume,
        )
    except Exception as exc:  # every solver failure is a result; the class says which
        cls = failure_class_of(exc)
        text = f"{type(exc).__name__}: {exc}".splitlines()[0]
        note(f"failed ({cls}): {text}")
        if cls == "error":
            log.extend(traceback.format_exc().rstrip().splitlines())
        t1 = time.time()
        prov.update(end_time=_now(), wall_time=t1 - t0)
        return Outcome(item.package_id, item.run_id, "failed", cls, text, None, prov, log)
    t1 = time.time()
    prov.update(end_time=_now(), wall_time=t1 - t0)
    note(f"finished in {t1 - t0:.3f} s")
    return Outcome(item.package_id, item.run_id, "done", None, None, ds, prov, log)


def run_partition(items: list[WorkItem]) -> list[Outcome]:
    """``run_package`` over one bag partition (one package per partition in a sweep)."""
    return [run_package(it) for it in items]


RunFunction = Callable[[WorkItem], Outcome]
