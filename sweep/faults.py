"""The one fault-injection hook of the tests: pause the process at a named point.

With ``NS_SWEEP_TEST_PAUSE_AT=<point>:<flag file>:<seconds>`` (or ``<point>@<run_id>:...``
for one run only) in its environment, a process reaching that point writes its pid to the
flag file and sleeps, and the test SIGKILLs it there. Unset (always, outside tests), a
fault point costs one dictionary lookup.

Points: store ``store-create`` (a new store: its lock taken, nothing else written yet),
``before-marker`` (a run's data written, its done marker not; a packed run:
nothing written yet), ``before-log`` (marker written, log record not; a packed run: its
record is its marker, the run is done), ``checkpoint-before-pointer``, ``compact-before-index``
(batch groups written, the index pointing at them not), ``merge-before-list`` (a merged index
segment written, the index's list of segments not switched to it), ``merge-before-drop`` (the
list switched, the merged segments not deleted yet; both with ``@L<level>``: the merged
segment's level), ``index-read-before-log`` (a reader has the index's segments, not the log
after them); engine ``cluster-started`` (a local
cluster is up, nothing submitted), ``before-commit``, ``after-commit``, ``after-checkpoint``,
``stopping`` (a stop signal arrived; the running runs' checkpoints not asked for yet).

Slow steps: with ``NS_SWEEP_TEST_STEP_SECONDS=<seconds>`` in a worker's environment, every solver
step of a run on it lasts at least that long (a sleep after the step: the numbers are
untouched). The walltime tests use it for runs that outlive a job's walltime while costing the
machine next to nothing, so their timing does not depend on a shared machine's load.
"""

from __future__ import annotations

import os
import time

__all__ = ["FAULT_ENV", "STEP_ENV", "fault_point", "step_delay"]

FAULT_ENV = "NS_SWEEP_TEST_PAUSE_AT"
STEP_ENV = "NS_SWEEP_TEST_STEP_SECONDS"


def fault_point(name: str, run_id: str | None = None) -> None:
    """Pause here if the tests asked for it (see the module docstring); else do nothing."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, _, rest = spec.partition(":")
    if point not in (name, f"{name}@{run_id}"):
        return
    flag, _, seconds = rest.rpartition(":")
    with open(flag, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(float(seconds))


def step_delay() -> float:
    """Seconds each solver step must last on this worker (0 unless the tests ask for more)."""
    try:
        return max(0.0, float(os.environ.get(STEP_ENV) or 0.0))
    except ValueError:
        return 0.0
