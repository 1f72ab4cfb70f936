"""What a stopped sweep does before it closes its cluster (Ctrl-C, SIGTERM, SIGHUP:
``sweep.engine.interrupts``): the running runs are asked for a checkpoint at their next step
and those arriving within ``sweep.interrupt-grace`` seconds are saved in the store; then the
queued tasks are cancelled and the running ones end at their next step (a cancelled running
task would keep its worker busy until the cluster kills it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .. import config
from ..faults import fault_point
from .driver import Driver
from .options import SweepOptions
from .worker import request_checkpoints, stop_runs

__all__ = ["wind_down", "checkpoint_running", "stop_running"]


def wind_down(driver: Driver, client: Any, options: SweepOptions, say: Callable[[str], None]) -> None:
    """Save the running runs' checkpoints (if there is time), then end every task. The driver
    still listens to the runs' events (``Driver.run`` left it so when it was stopped)."""
    try:
        checkpoint_running(driver, client, options, say)
    finally:
        driver.stop_listening()
    stop_running(driver, client)


def checkpoint_running(
    driver: Driver, client: Any, options: SweepOptions, say: Callable[[str], None]
) -> None:
    """Ask the running runs for a checkpoint now; save those that arrive within
    ``sweep.interrupt-grace`` seconds (a second signal stops the process at once)."""
    fault_point("stopping")
    running = {
        rid
        for f, members in driver.tasks.futures.items()
        if not f.done()
        for rid, _ in members
        if rid in driver.running
    }
    grace = float(config.get("interrupt-grace"))
    every = (options.checkpoint_every_seconds, options.checkpoint_every_steps)
    if not running or grace <= 0 or every == (None, None) or not driver.connected():
        return
    say(
        f"sweep: stopping: saving checkpoints of {len(running)} running run(s), at most {grace:g} s "
        "(interrupt again to stop at once)"
    )
    before = {rid: driver.relay.step.get(rid, -1) for rid in running}
    try:
        client.run(request_checkpoints, driver.channel, on_error="ignore")
    except Exception as exc:  # the checkpoints saved so far will do
        driver.log.warning("cannot ask the running runs for checkpoints: %s", exc)
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        driver.drain_events()  # saves each checkpoint as it is announced
        if all(driver.relay.step.get(r, -1) > before[r] for r in running):
            break
        time.sleep(0.05)
    saved = sum(1 for r in running if driver.relay.step.get(r, -1) > before[r])
    driver.log.warning("stopping: %d of %d running run(s) checkpointed", saved, len(running))


def stop_running(driver: Driver, client: Any) -> None:
    """Cancel the queued tasks before they start, and end the running ones at their next step;
    wait a moment for them (what is left is cancelled by the caller)."""
    import distributed

    if not driver.connected():
        return
    futures = driver.tasks.futures
    running = [  # a task (a package, or a batch) with a run under way
        f
        for f, members in futures.items()
        if not f.done() and any(rid in driver.running for rid, _ in members)
    ]
    queued = [f for f in futures if not f.done() and f not in running]
    try:
        if queued:
            client.cancel(queued)
        if running:
            client.run(stop_runs, driver.channel, on_error="ignore")
            distributed.wait(running, timeout=2)
    except Exception:  # (distributed's TimeoutError too) cancelled next, whatever they do
        pass
