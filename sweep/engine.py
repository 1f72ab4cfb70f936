"""Run a sweep on Dask: plan, submit one task per package with its priority, stream results
into the store as they finish.

The packages to run become a ``dask.bag`` with one partition per package, mapped over
``sweep.runner.run_package``; each partition becomes one delayed task named after its package
(``run-<package_id>-...``, so the Dask dashboard shows which packages run), computed as a future
with the package's priority. The driver (this process) is the store's only writer: it takes
each result from ``as_completed`` as soon as it exists and commits it, saves the checkpoints
workers announce, retries runs whose worker was lost (resuming from their last checkpoint), and
gives up on a run that stops answering past its deadline (restarting its worker).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import config
from .bulk import paused_gc
from .errors import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, ConfigError, SweepError
from .logs import SweepLogs
from .progress import SweepProgress, final_summary
from .runner import Outcome, WorkItem, checkpoint_variable_name, decode_arrays, run_package

__all__ = ["PRIORITY_CHOICES", "PlanEntry", "SweepResult", "SchedulerLostError", "plan_sweep",
           "run_sweep", "default_log_dir", "exit_code_of"]

_PRIORITIES = ("HIGH", "MEDIUM", "LOW")
PRIORITY_CHOICES = (*_PRIORITIES, "ALL")


@functools.lru_cache(maxsize=1)
def _engine_version() -> str:
    try:
        from importlib.metadata import version

        return version("ns-sweep")
    except Exception:
        return "unknown"


@dataclass(frozen=True)
class PlanEntry:
    """What a sweep does with one package: ``run`` it or ``skip`` it, and why."""

    package: Any  # sweep.spec.Package
    action: str  # "run" or "skip"
    reason: str

    @property
    def package_id(self) -> str:
        return self.package.package_id


@dataclass
class SweepResult:
    """The outcome of ``run_sweep``: exit code, per-package status and the counts."""

    exit_code: int
    status: dict[str, str] = field(default_factory=dict)  # package_id -> done/skipped/<class>
    priority: dict[str, str] = field(default_factory=dict)  # package_id -> priority
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (package_id, reason)
    plan: list[PlanEntry] = field(default_factory=list)
    store: str = ""
    log_dir: Path | None = None
    dashboard_link: str | None = None
    elapsed: float = 0.0
    retries: int = 0
    store_seconds: float = 0.0  # driver time spent committing results to the store

    @property
    def counts(self) -> Counter[str]:
        """Packages by status (``done``, ``skipped``, ``cancelled`` or a failure class)."""
        return Counter(self.status.values())

    @property
    def by_priority(self) -> dict[str, Counter[str]]:
        """Packages by priority, then by status."""
        out: dict[str, Counter[str]] = {}
        for pid, st in self.status.items():
            out.setdefault(self.priority.get(pid, "?"), Counter())[st] += 1
        return out


def exit_code_of(statuses: Iterable[str]) -> int:
    """0 all done (or skipped as done); 124 only timeouts failed; 1 anything else failed."""
    bad = {s for s in statuses if s not in ("done", "skipped")}
    if not bad:
        return EXIT_OK
    if bad == {"timeout"}:
        return EXIT_TIMEOUT
    return EXIT_FAILED


def default_log_dir(store: str) -> Path:
    """``logs/`` beside a local store; ``./logs`` for a remote (URL) store."""
    name = config.get("log-dir-name")
    if "://" in str(store) and not str(store).startswith("file://"):
        return Path.cwd() / name
    path = Path(str(store).removeprefix("file://"))
    return path.resolve().parent / name


def _select(packages: Sequence[Any], priority: str) -> list[Any]:
    if priority not in PRIORITY_CHOICES:
        raise ConfigError(f"--priority: bad value {priority!r}; allowed: {', '.join(PRIORITY_CHOICES)}")
    if priority == "ALL":
        return list(packages)
    return [p for p in packages if p.priority == priority]


@paused_gc()
def plan_sweep(packages: Sequence[Any], done: set[str], failed: dict[str, str] | None = None,
               checkpoints: dict[str, int] | None = None) -> list[PlanEntry]:
    """Decide for each package whether it runs, and why, given the store's state.

    ``done``: run ids committed as done; ``failed``: run id -> failure class of earlier
    attempts; ``checkpoints``: run id -> step of a saved checkpoint.
    """
    failed = failed or {}
    checkpoints = checkpoints or {}
    first: dict[str, str] = {}
    out = []
    for p in packages:
        rid = p.run_id
        if rid in done:
            out.append(PlanEntry(p, "skip", f"done: run {rid} is in the store"))
        elif rid in first:
            out.append(PlanEntry(p, "skip", f"same parameters as {first[rid]} (run {rid}): runs once"))
        else:
            first[rid] = p.package_id
            if rid in checkpoints:
                why = f"resumes from its checkpoint at step {checkpoints[rid]}"
            elif rid in failed:
                why = f"failed before ({failed[rid]}): runs again"
            else:
                why = "new"
            out.append(PlanEntry(p, "run", why))
    return out


def _named_tasks(delayeds: list[Any], keys: list[str]) -> list[Any]:
    """The same one-partition computations under the keys ``keys`` (what the dashboard shows).

    Each bag partition fuses into one task without dependencies; it is re-keyed as it is, so a
    package costs one task. Should dask's task spec change, a cheap naming task wraps it instead.
    """
    import dask
    from dask.delayed import Delayed

    try:
        from dask._task_spec import Alias, Task

        graph = dict(delayeds[0].__dask_graph__()) if delayeds else {}  # shared by all partitions
        out = []
        for d, key in zip(delayeds, keys):
            node = graph[d.key]
            while isinstance(node, Alias):
                node = graph[next(iter(node.dependencies))]
            if not isinstance(node, Task) or node.dependencies:
                raise TypeError("not a self-contained task")
            out.append(Delayed(key, {key: Task(key, node.func, *node.args, **node.kwargs)}))
        return out
    except Exception:
        return [dask.delayed(_first, name=key, pure=False)(d) for d, key in zip(delayeds, keys)]


def _first(partition: list[Any]) -> Any:
    return partition[0]


def _store_api():
    from .store import Store

    return Store


class SchedulerLostError(SweepError):
    """The connection to the Dask scheduler was lost mid-sweep (exit 1: runs did not finish;
    run again against a scheduler to resume)."""

    exit_code = EXIT_FAILED


# loggers of distributed that print a traceback when the scheduler goes away; the sweep
# reports that itself, in one line
_CONNECTION_LOGGERS = ("distributed.client", "distributed.batched", "distributed.core",
                       "distributed.comm", "distributed.utils")


def _connection_trouble(exc: BaseException | None) -> bool:
    import asyncio

    from distributed.comm.core import CommClosedError

    return isinstance(exc, (CommClosedError, ConnectionError, asyncio.CancelledError, TimeoutError))


class _DropConnectionTracebacks:
    """Logging filter: drop distributed's connection-error records (a lost scheduler)."""

    def filter(self, record: Any) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name == "distributed.client" and "reconnect" in str(record.msg):
            return False  # "Failed to reconnect to scheduler after ...": the sweep says it
        return not _connection_trouble(exc)


@contextlib.contextmanager
def _quiet_connection_noise():
    """While the sweep runs, distributed's tracebacks of a lost connection are not printed."""
    import logging

    filt = _DropConnectionTracebacks()
    loggers = [logging.getLogger(n) for n in _CONNECTION_LOGGERS]
    for lg in loggers:
        lg.addFilter(filt)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(filt)


def _scheduler_lost(client: Any, exc: BaseException | None) -> str | None:
    """Why the client lost its scheduler (one line), or None when it did not."""
    status = getattr(client, "status", "running")
    if exc is not None and _connection_trouble(exc):
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    if status not in ("running", "newly-created"):
        return f"it stopped answering (client {status})"
    return None


def _fault_point(name: str, run_id: str) -> None:
    """Fault-injection hook of the tests (does nothing unless NS_SWEEP_TEST_PAUSE_AT names it)."""
    from .store import fault_point

    fault_point(name, run_id)


class _Driver:
    """The driver's state during one sweep (one instance per ``run_sweep`` call)."""

    def __init__(self, *, client: Any, store: Any, logs: SweepLogs, entries: list[PlanEntry],
                 duplicates: dict[str, list[str]], timeout: float, grace: float, retries: int,
                 stop_on_error: bool, ckpt_seconds: float | None, ckpt_steps: int | None,
                 progress: SweepProgress, mode: str, tick: float, run_function: Callable,
                 progress_every: float) -> None:
        self.client = client
        self.store = store
        self.logs = logs
        self.log = logs.logger
        self.entries = {e.package.run_id: e for e in entries}
        self.duplicates = duplicates
        self.timeout = timeout
        self.grace = grace
        self.retries = retries
        self.stop_on_error = stop_on_error
        self.ckpt_seconds = ckpt_seconds
        self.ckpt_steps = ckpt_steps
        self.progress = progress
        self.mode = mode
        self.tick = tick
        self.run_function = run_function
        self.progress_every = progress_every
        self.channel = f"sweep-{uuid.uuid4().hex[:12]}"
        self.prio_values = config.get("priority-values")
        self.futures: dict[Any, tuple[str, int]] = {}  # future -> (run_id, attempt)
        self.attempt: dict[str, int] = {}
        self.running: dict[str, tuple[str, float]] = {}  # run_id -> (worker, driver start time)
        self.ckpt_sent: set[str] = set()  # runs whose checkpoints this sweep saved
        self.had_checkpoint: set[str] = set()  # runs with a checkpoint in the store at the start
        self.ckpt_step: dict[str, int] = {}  # run_id -> step of the checkpoint saved last
        self.status: dict[str, str] = {}  # run_id -> final status
        self.events: collections.deque = collections.deque()
        self.n_retries = 0
        self.store_seconds = 0.0  # time spent in store writes of results (the benchmark reports it)
        self.stopping = False
        self.ac = None

    # -- submission -------------------------------------------------------------------
    def _item(self, run_id: str, attempt: int, resume: dict | None) -> WorkItem:
        p = self.entries[run_id].package
        return WorkItem(
            package_id=p.package_id, run_id=run_id, priority=p.priority,
            params=p.params.as_dict(), timeout=self.timeout, attempt=attempt,
            checkpoint_every_seconds=self.ckpt_seconds, checkpoint_every_steps=self.ckpt_steps,
            resume=resume, channel=self.channel, progress_every=self.progress_every)

    def submit(self, run_ids: list[str], resumes: dict[str, dict]) -> list[Any]:
        """One bag partition per package, computed as futures with each package's priority."""
        import dask.bag as db

        if not run_ids:
            return []
        items = []
        for rid in run_ids:
            self.attempt[rid] = self.attempt.get(rid, 0) + 1
            items.append(self._item(rid, self.attempt[rid], resumes.get(rid)))
        bag = db.from_sequence(items, npartitions=len(items)).map(self.run_function)
        keys = [f"run-{it.package_id}-{self.channel[6:14]}-{it.attempt}" for it in items]
        parts = _named_tasks(bag.to_delayed(), keys)
        by_prio: dict[str, list[tuple[str, Any]]] = {}
        for item, part in zip(items, parts):
            by_prio.setdefault(item.priority, []).append((item.run_id, part))
        out = []
        for prio in _PRIORITIES:  # HIGH reaches the scheduler first, and outranks the rest
            group = by_prio.get(prio, [])
            if not group:
                continue
            futs = self.client.compute([d for _, d in group], priority=self.prio_values[prio])
            for (rid, _), f in zip(group, futs):
                self.futures[f] = (rid, self.attempt[rid])
                out.append(f)
        return out

    # -- events from workers ------------------------------------------------------------
    def on_event(self, event: Any) -> None:
        """Called in the client's event loop: queue it for the main thread."""
        self.events.append(event[1] if isinstance(event, tuple) else event)

    def drain_events(self) -> None:
        while self.events:
            msg = self.events.popleft()
            rid = msg.get("run_id")
            if rid not in self.entries or rid in self.status:
                continue
            pid = self.entries[rid].package_id
            kind = msg.get("event")
            if kind == "start":
                if msg.get("attempt") != self.attempt.get(rid):
                    continue
                self.running[rid] = (msg.get("worker", "?"), time.time())
                self.log.info("%s: started on %s (attempt %s)", pid, msg.get("worker"), msg.get("attempt"))
                self.logs.package(pid, f"started on {msg.get('worker')} (attempt {msg.get('attempt')})",
                                  stamped=True)
            elif kind == "checkpoint":
                self.save_checkpoint(rid, pid, msg.get("step"))
            elif kind == "progress":
                self.logs.package(pid, f"step {msg.get('step')}/{msg.get('n_steps')} t={msg.get('t'):.6g}",
                                  stamped=True)

    def save_checkpoint(self, run_id: str, package_id: str, step: Any) -> None:
        """Fetch the latest checkpoint a worker announced and save it in the store."""
        from distributed import Variable

        try:
            payload = Variable(checkpoint_variable_name(self.channel, run_id),
                               client=self.client).get(timeout=10)
        except Exception as exc:  # the next checkpoint will do; the run itself is unaffected
            self.log.warning("%s: checkpoint at step %s not fetched: %s", package_id, step, exc)
            return
        arrays = decode_arrays(payload)
        got = _step_of(arrays)  # the variable holds the latest one, maybe newer than announced
        if got <= self.ckpt_step.get(run_id, -1):
            return
        self.store.save_checkpoint(run_id, arrays, step=got)
        self.ckpt_step[run_id] = got
        self.ckpt_sent.add(run_id)
        _fault_point("after-checkpoint", run_id)
        self.log.info("%s: checkpoint at step %s saved", package_id, got)
        self.logs.package(package_id, f"checkpoint at step {got} saved in the store", stamped=True)

    def forget_checkpoint_variable(self, run_id: str) -> None:
        if run_id in self.ckpt_sent:
            from distributed import Variable

            try:
                Variable(checkpoint_variable_name(self.channel, run_id), client=self.client).delete()
            except Exception:
                pass

    # -- results ------------------------------------------------------------------------
    def provenance(self, run_id: str, outcome: Outcome | None) -> dict[str, Any]:
        e = self.entries[run_id]
        p = e.package
        prov = dict(outcome.provenance) if outcome is not None else {}
        prov.update(
            params=p.params,
            package_id=p.package_id,
            package_ids=self.duplicates.get(run_id, [p.package_id]),
            priority=p.priority,
            tags=dict(getattr(p, "tags", {}) or {}),
            attempts=self.attempt.get(run_id, 1),
            resumed=prov.get("resumed_from_step") is not None,
            mode=self.mode,
            engine_version=_engine_version(),
        )
        return prov

    def finish(self, run_id: str, status: str, lines: Iterable[str]) -> None:
        pid = self.entries[run_id].package_id
        self.status[run_id] = status
        self.running.pop(run_id, None)
        self.logs.package(pid, lines)
        self.progress.running = len(self.running)
        self.progress.package_finished(status)
        if status != "done" and self.stop_on_error and not self.stopping:
            self.stop(f"{pid} failed ({status}) and --stop-on-error is set")

    def handle_outcome(self, outcome: Outcome) -> None:
        rid = outcome.run_id
        pid = outcome.package_id
        prov = self.provenance(rid, outcome)
        t0 = time.perf_counter()
        if outcome.status == "done":
            _fault_point("before-commit", rid)
            self.store.commit_run(rid, outcome.dataset, prov)
            _fault_point("after-commit", rid)  # done, its checkpoint not yet dropped
            if rid in self.ckpt_sent or rid in self.had_checkpoint:
                self.store.drop_checkpoint(rid)
            self.store_seconds += time.perf_counter() - t0
            self.log.info("%s: done in %.3f s (run %s)", pid, prov.get("wall_time", 0.0), rid)
            status = "done"
        else:
            self.store.record_failure(rid, outcome.failure_class, outcome.error, prov)
            self.store_seconds += time.perf_counter() - t0
            self.log.warning("%s: failed (%s): %s", pid, outcome.failure_class, outcome.error)
            status = outcome.failure_class
        self.forget_checkpoint_variable(rid)
        self.finish(rid, status, [*outcome.log, f"status: {status}"])

    def handle_lost(self, future: Any, run_id: str) -> list[Any]:
        """A task error means the infrastructure failed: retry, resuming from the checkpoint."""
        pid = self.entries[run_id].package_id
        try:
            exc = future.exception(timeout=5)
            text = f"{type(exc).__name__}: {exc}".splitlines()[0]
        except Exception as e2:
            text = f"{type(e2).__name__}: {e2}".splitlines()[0]
        self.running.pop(run_id, None)
        attempt = self.attempt.get(run_id, 1)
        if attempt <= self.retries and not self.stopping:
            arrays = self.store.load_checkpoint(run_id)
            resume = None
            where = "from the start"
            if arrays is not None:
                from .runner import encode_arrays

                resume = encode_arrays(arrays)
                where = f"from its checkpoint (step {_step_of(arrays)})"
            self.log.warning("%s: worker lost (%s); retry %d of %d %s", pid, text, attempt,
                             self.retries, where)
            self.logs.package(pid, f"worker lost ({text}); retrying {where}", stamped=True)
            self.n_retries += 1
            return self.submit([run_id], {run_id: resume} if resume else {})
        prov = self.provenance(run_id, None)
        msg = f"worker lost {attempt} time(s), retries exhausted: {text}"
        self.store.record_failure(run_id, "worker-lost", msg, prov)
        self.log.error("%s: %s", pid, msg)
        self.forget_checkpoint_variable(run_id)
        self.finish(run_id, "worker-lost", [f"failed (worker-lost): {msg}", "status: worker-lost"])
        return []

    def watchdog(self) -> None:
        """Give up on runs past deadline + grace whose worker no longer answers."""
        now = time.time()
        limit = self.timeout + self.grace
        for rid, (worker, t0) in list(self.running.items()):
            if now - t0 <= limit or rid in self.status:
                continue
            futs = [f for f, (r, a) in self.futures.items() if r == rid and a == self.attempt[rid]]
            if not futs or futs[0].done():
                continue
            pid = self.entries[rid].package_id
            self.client.cancel(futs, force=True)
            for f in futs:
                self.futures.pop(f, None)
            msg = (f"no result {limit:.0f} s after the start (timeout {self.timeout:g} s + grace "
                   f"{self.grace:g} s); its worker {worker} was restarted")
            self.log.error("%s: %s", pid, msg)
            try:
                res = self.client.restart_workers([worker], timeout=60, raise_for_error=False)
                self.log.info("restart of %s: %s", worker, res)
            except Exception as exc:  # no nanny (remote worker): it stays busy; say so
                self.log.error("could not restart worker %s: %s", worker, exc)
            self.store.record_failure(rid, "timeout", msg, self.provenance(rid, None))
            self.forget_checkpoint_variable(rid)
            self.finish(rid, "timeout", [f"failed (timeout): {msg}", "status: timeout"])

    def stop(self, why: str) -> None:
        """Cancel what has not finished; what has finished is still committed."""
        self.stopping = True
        pending = [f for f in self.futures if f.status == "pending"]
        self.progress.write(f"stopping: {why}; cancelling {len(pending)} unfinished package(s)")
        self.log.warning("stopping: %s; cancelling %d unfinished", why, len(pending))
        if pending:
            self.client.cancel(pending)
        for f in pending:
            rid, _ = self.futures.pop(f)
            if rid not in self.status:
                self.status[rid] = "cancelled"
                self.running.pop(rid, None)
                self.logs.package(self.entries[rid].package_id, "cancelled (--stop-on-error)",
                                  stamped=True)

    # -- main loop ----------------------------------------------------------------------
    def run(self, resumes: dict[str, dict]) -> None:
        """Submit everything, then commit results as they come until none is left."""
        import dask.config

        own_cluster = self.mode in ("sequential", "parallel")
        # On a LocalCluster we started, never let it drop a nanny whose worker is briefly
        # absent (its default 15 s lost-worker timeout can fire during a later restart).
        with dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"} if own_cluster else {}):
            self._run(resumes)

    def _run(self, resumes: dict[str, dict]) -> None:
        from distributed import as_completed

        self.client.subscribe_topic(self.channel, self.on_event)
        try:
            first = self.submit(list(self.entries), resumes)
            self.ac = ac = as_completed(first)
            last_tick = 0.0
            while not ac.is_empty():
                batch = ac.next_batch(block=False) if ac.has_ready() else []
                if self.events:  # starts and checkpoints that arrived before these results
                    self.drain_events()
                if batch:
                    self.process(batch)
                now = time.monotonic()
                if now - last_tick >= self.tick:
                    last_tick = now
                    self.progress.set_running(len(self.running))
                    self.watchdog()
                if not batch:
                    time.sleep(0.005)
            self.drain_events()
        finally:
            try:
                self.client.unsubscribe_topic(self.channel)
            except Exception:
                pass

    def process(self, batch: list[Any]) -> None:
        ok, lost = [], []
        for f in batch:
            key = self.futures.pop(f, None)
            if key is None:  # cancelled by the watchdog or stop()
                continue
            rid, attempt = key
            if rid in self.status or attempt != self.attempt.get(rid):
                continue
            (ok if f.status == "finished" else lost).append((f, rid))
        if ok:
            results = self.client.gather([f for f, _ in ok])  # one round trip per batch
            for (f, rid), part in zip(ok, results):
                f.release()
                if rid not in self.status:
                    self.handle_outcome(part[0] if isinstance(part, list) else part)
        for f, rid in lost:
            if f.status == "cancelled" or self.stopping:
                if rid not in self.status:
                    self.status[rid] = "cancelled"
                continue
            new = self.handle_lost(f, rid)
            if new:
                self.ac.update(new)


def _load(packages_dir: str | os.PathLike, worker_memory: int | None, check_memory: bool) -> list[Any]:
    from .spec import load_packages

    return load_packages(packages_dir, worker_memory=worker_memory, check_memory=check_memory)


def _local_worker_memory(n_workers: int) -> int | None:
    """What a LocalCluster of ``n_workers`` gives each worker (memory_limit='auto')."""
    try:
        import psutil

        return int(psutil.virtual_memory().total // max(1, n_workers))
    except Exception:
        return None


def _check_remote_memory(client: Any, packages: Sequence[Any]) -> None:
    """Refuse runs that fit in no worker of a cluster we did not start."""
    from .spec import config_error, memory_need

    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info().get("workers", {}).values()]
    limits = [m for m in limits if m]
    if not limits:
        return
    biggest = max(limits)
    problems = []
    for p in packages:
        need = memory_need(p.params)
        if need > biggest:
            problems.append(
                f"{p.path}: parameters.grid_size: bad value {list(p.params.grid)}; allowed: a grid "
                f"whose run fits in a worker's memory (it needs {need / 2**30:.2f} GiB, the largest "
                f"worker has {biggest / 2**30:.2f} GiB); use a smaller grid or bigger workers")
    if problems:
        raise config_error(problems)


def _step_of(arrays: dict[str, Any]) -> int:
    """The step of checkpoint arrays (solver.State.to_arrays keeps it as a 1-element array)."""
    import numpy as np

    step = arrays.get("step")
    return int(np.asarray(step).reshape(-1)[0]) if step is not None else -1


def _store_state(store: Any, run_ids: set[str]) -> tuple[set[str], dict[str, str], dict[str, int]]:
    """(done run ids, failed run id -> class, run id -> checkpoint step) of the store."""
    from .plan import store_state

    done, failed, steps, _ = store_state(store)
    return done, failed, {r: s for r, s in steps.items() if r in run_ids}


def run_sweep(
    packages_dir: str | os.PathLike,
    store: str | os.PathLike,
    *,
    priority: str = "ALL",
    client: Any = None,
    mode: str | None = None,
    max_parallel: int | None = None,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    security: Any = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    timeout: float | None = None,
    stop_on_error: bool = False,
    dry_run: bool = False,
    log_dir: str | os.PathLike | None = None,
    retries: int | None = None,
    checkpoint_every_seconds: float | None = None,
    checkpoint_every_steps: int | None = None,
    progress_bar: bool | None = None,
    dashboard: bool = False,
    out: IO[str] | None = None,
) -> SweepResult:
    """Run every requested package not yet done in ``store`` and commit each result.

    Give ``client`` to run on an existing Dask client (left open), else a cluster is started
    for ``mode`` (``sequential`` or ``parallel``) or a remote ``scheduler`` address /
    ``scheduler_file`` is connected to. Options left at None take their ``sweep.*`` value
    from dask.config (the packaged sweep.yaml). Raises ``ConfigError`` for bad input before
    anything runs or any store changes.
    """
    from .cluster import MODES, check_remote, connect, usable_cores, wrap_client

    out = out or sys.stdout
    t_start = time.monotonic()

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    # -- options (all checked before anything is read or started) --
    mode = config.get("mode", mode)
    remote = scheduler is not None or scheduler_file is not None
    if client is None and not remote and mode not in MODES:
        raise ConfigError(f"--mode: bad value {mode!r}; allowed: {', '.join(MODES)}")
    if client is None and remote:
        security = check_remote(scheduler, scheduler_file, security, (tls_ca, tls_cert, tls_key))
    if priority not in PRIORITY_CHOICES:
        raise ConfigError(f"--priority: bad value {priority!r}; allowed: {', '.join(PRIORITY_CHOICES)}")
    timeout = float(config.get("timeout", timeout))
    if not timeout > 0:
        raise ConfigError(f"--timeout: bad value {timeout:g}; allowed: seconds > 0")
    retries = int(config.get("retries", retries))
    if retries < 0:
        raise ConfigError(f"--retries: bad value {retries}; allowed: an integer >= 0")
    max_parallel = config.get("max-parallel", max_parallel)
    if max_parallel is not None and int(max_parallel) < 1:
        raise ConfigError(f"--max-parallel: bad value {max_parallel}; allowed: an integer >= 1")
    ckpt_s = checkpoint_every_seconds if checkpoint_every_seconds is not None else \
        config.get("checkpoint.every-seconds")
    ckpt_n = checkpoint_every_steps if checkpoint_every_steps is not None else \
        config.get("checkpoint.every-steps")
    if ckpt_s is not None and not float(ckpt_s) > 0:
        raise ConfigError(f"--checkpoint-every: bad value {ckpt_s}; allowed: seconds > 0")
    if ckpt_n is not None and int(ckpt_n) < 1:
        raise ConfigError(f"--checkpoint-every-steps: bad value {ckpt_n}; allowed: an integer >= 1")
    if not Path(packages_dir).is_dir():
        raise ConfigError(f"{packages_dir}: no such packages directory; give the directory "
                          "holding priority_summary.json and package_*.json")

    # -- packages (refused before anything runs) --
    n_local = 1 if mode == "sequential" else int(max_parallel or usable_cores())
    known = client is None and not remote  # we start the cluster: we know its worker memory
    packages = _select(_load(packages_dir, _local_worker_memory(n_local) if known else None,
                             check_memory=known), priority)
    store_url = str(store)

    Store = _store_api()
    if dry_run:
        return _dry_run(Store, store_url, packages, say, priority)

    log_dir = Path(log_dir) if log_dir is not None else default_log_dir(store_url)
    with Store.open(store_url, mode="a") as st:
        run_ids = {p.run_id for p in packages}
        done, failed, ckpt_steps = _store_state(st, run_ids)
        plan = plan_sweep(packages, done, failed, ckpt_steps)
        result = SweepResult(EXIT_OK, plan=plan, store=store_url, log_dir=log_dir)
        for e in plan:
            result.priority[e.package_id] = e.package.priority
        to_run = [e for e in plan if e.action == "run"]
        skipped_done = [e for e in plan if e.action == "skip" and e.package.run_id in done]
        result.skipped = [(e.package_id, e.reason) for e in plan if e.action == "skip"]
        duplicates: dict[str, list[str]] = {}
        for e in plan:
            duplicates.setdefault(e.package.run_id, []).append(e.package_id)

        logs = SweepLogs(log_dir)
        log = logs.logger
        handle = None
        stop_dashboard = None
        try:
            say(f"sweep: {len(packages)} package(s) requested (priority {priority}): "
                f"{len(to_run)} to run, {len(skipped_done)} skipped as already done in {store_url}"
                + (f", {len(result.skipped) - len(skipped_done)} sharing another package's run"
                   if len(result.skipped) > len(skipped_done) else ""))
            log.info("sweep of %s into %s: %d requested, %d to run, %d skipped", packages_dir,
                     store_url, len(packages), len(to_run), len(result.skipped))
            for pid, why in result.skipped:
                log.info("%s: skipped: %s", pid, why)
            if to_run:
                handle = wrap_client(client) if client is not None else connect(
                    mode, max_parallel=max_parallel, scheduler=scheduler,
                    scheduler_file=scheduler_file, security=security, tls_ca=tls_ca,
                    tls_cert=tls_cert, tls_key=tls_key)
                if remote or client is not None:
                    _check_remote_memory(handle.client, [e.package for e in to_run])
                result.dashboard_link = handle.dashboard_link
                say(f"sweep: cluster: {handle.description or handle.client}")
                say(f"sweep: Dask dashboard: {result.dashboard_link or 'not available'}")
                if dashboard:
                    n_workers = len(handle.client.scheduler_info(n_workers=-1).get("workers", {}))
                    stop_dashboard = _start_sweep_dashboard(store_url, packages_dir, say, log,
                                                            n_workers or None)
                say(f"sweep: logs in {log_dir}")
                log.info("cluster: %s; dashboard %s", handle.description, result.dashboard_link)
                progress = SweepProgress(len(to_run), summary_every=config.get("summary-every"),
                                         bar=progress_bar, out=out, echo=log.info)
                from .runner import encode_arrays

                resumes = {}
                for rid in ckpt_steps:
                    arrays = st.load_checkpoint(rid)
                    if arrays is not None:
                        resumes[rid] = encode_arrays(arrays)
                for e in to_run:
                    logs.package(e.package_id, f"queued: {e.reason} (run {e.package.run_id})",
                                 stamped=True)
                driver = _Driver(
                    client=handle.client, store=st, logs=logs, entries=to_run,
                    duplicates=duplicates, timeout=timeout,
                    grace=float(config.get("timeout-grace")), retries=retries,
                    stop_on_error=stop_on_error, ckpt_seconds=ckpt_s, ckpt_steps=ckpt_n,
                    progress=progress, mode="remote" if remote else ("client" if client else mode),
                    tick=float(config.get("tick")), run_function=run_package,
                    progress_every=float(config.get("progress-every")))
                driver.had_checkpoint = set(ckpt_steps)
                try:
                    from .store import _writing

                    # a full disk or read-only file system under the logs, too, is one line
                    with _quiet_connection_noise(), _writing(store_url, "write the results or logs"):
                        driver.run(resumes)
                        lost = _scheduler_lost(handle.client, None)
                    if lost:  # futures cancelled by the disconnection: not a run's failure
                        raise SchedulerLostError(lost)
                except BaseException as exc:
                    pending = [f for f in driver.futures if not f.done()]
                    if pending:
                        try:
                            handle.client.cancel(pending)
                        except Exception:  # the scheduler is gone: nothing left to cancel
                            pass
                    n_done = sum(1 for s in driver.status.values() if s == "done")
                    log.error("sweep interrupted; %d finished run(s) are committed", n_done)
                    lost = None if isinstance(exc, SchedulerLostError) else \
                        _scheduler_lost(handle.client, exc)
                    if isinstance(exc, SchedulerLostError) or lost:
                        raise SchedulerLostError(
                            f"lost the connection to the Dask scheduler ({handle.description}): "
                            f"{lost or exc}; {n_done} run(s) finished in this sweep are "
                            f"committed in {store_url}; start a scheduler and run the same "
                            "command again: done runs are skipped, unfinished ones resume from "
                            "their checkpoints") from None
                    raise
                finally:
                    progress.close()
                result.retries = driver.n_retries
                result.store_seconds = driver.store_seconds
                for e in to_run:
                    result.status[e.package_id] = driver.status.get(e.package.run_id, "cancelled")
            for e in plan:
                if e.action == "skip":
                    rid = e.package.run_id
                    first = next(x for x in plan if x.package.run_id == rid and x.action == "run") \
                        if rid not in done else None
                    result.status[e.package_id] = "skipped" if first is None else \
                        result.status.get(first.package_id, "cancelled")
            result.exit_code = exit_code_of(result.status.values())
            result.elapsed = time.monotonic() - t_start
            lines = final_summary(((result.priority[p], s) for p, s in result.status.items()),
                                  _PRIORITIES, len(skipped_done), result.elapsed)
            for ln in lines:
                say(ln)
                log.info(ln)
            say(f"sweep: results in {store_url} (open with sweep.open_results); exit code "
                f"{result.exit_code}")
            log.info("exit code %d", result.exit_code)
        finally:
            if stop_dashboard is not None:
                stop_dashboard()
            if handle is not None:
                with _quiet_connection_noise():  # closing a client whose scheduler is gone
                    handle.close()
            logs.close()
    return result


def _dry_run(Store: Any, store_url: str, packages: list[Any], say: Callable[[str], None],
             priority: str) -> SweepResult:
    """List what would run and what would be skipped, and why (``sweep explain``'s lines);
    start nothing, write nothing."""
    from .plan import explain_packages

    local = "://" not in store_url or store_url.startswith("file://")
    if local and not Path(store_url.removeprefix("file://")).exists():
        entries = explain_packages(packages, None)
    else:
        with Store.open(store_url, mode="r") as st:
            entries = explain_packages(packages, st)
    width = max((len(e.package_id) for e in entries), default=10)
    for e in entries:
        say(e.line(width))
    counts = Counter(e.action for e in entries)
    say(f"dry run: {counts['run'] + counts['resume']} would run ({counts['resume']} resuming from a "
        f"checkpoint), {counts['skip']} skipped (priority {priority}); nothing was started or written")
    res = SweepResult(EXIT_OK, store=store_url)
    res.plan = [PlanEntry(e.package, "skip" if e.action == "skip" else "run", e.reason) for e in entries]
    res.skipped = [(e.package_id, e.reason) for e in entries if e.action == "skip"]
    for e in entries:
        res.priority[e.package_id] = e.package.priority
        res.status[e.package_id] = "skipped" if e.action == "skip" else "planned"
    return res


def _start_sweep_dashboard(store_url: str, packages_dir: Any, say: Callable[[str], None],
                           log: Any, workers: int | None) -> Callable[[], None] | None:
    """Serve the live sweep dashboard (sweep.dashboard) beside the run; returns its stop()."""
    try:
        from .dashboard import start_dashboard
    except ImportError:
        say("sweep: --dashboard: the sweep dashboard is not available in this installation")
        return None
    try:
        url, stop = start_dashboard(store_url, str(packages_dir), workers=workers)
    except Exception as exc:  # the sweep matters more than its dashboard
        say(f"sweep: --dashboard: could not start the sweep dashboard: {exc}")
        log.warning("sweep dashboard failed: %s", exc)
        return None
    say(f"sweep: sweep dashboard: {url}")
    log.info("sweep dashboard at %s", url)
    return stop
