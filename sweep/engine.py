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
from .errors import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, ConfigError, SweepError
from .logs import SweepLogs
from .plan import PlanEntry, plan_sweep
from .progress import SweepProgress, final_summary
from .runner import Outcome, WorkItem, checkpoint_variable_name, decode_arrays, run_package
from .spec import PRIORITIES, check_priority, select_packages

__all__ = ["PRIORITY_CHOICES", "PlanEntry", "SweepResult", "SchedulerLostError", "plan_sweep",
           "run_sweep", "default_log_dir", "exit_code_of"]

PRIORITY_CHOICES = (*PRIORITIES, "ALL")
# packages in the first submission (the workers start on them at once), then in each later one
_FIRST_CHUNK = 16
_CHUNK = 250
_RESTART_TIMEOUT = 60  # seconds a worker restart may take
_MAX_PENDING_COMMITS = 16  # results waiting for the store's writer thread
_GATHER_EVERY = 0.02  # seconds between two gathers of results (see _Driver._run)


@functools.lru_cache(maxsize=1)
def _engine_version() -> str:
    try:
        from importlib.metadata import version

        return version("ns-sweep")
    except Exception:
        return "unknown"


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


def usable_checkpoint(store: Any, run_id: str, params: Any, log: Any) -> dict[str, Any] | None:
    """The stored checkpoint of ``run_id`` if this solver can resume it, else None.

    A checkpoint of another solver version (or other parameters) would not end bit-identical
    to an uninterrupted run: it is ignored and the run starts over (the next checkpoint
    replaces it).
    """
    from solver import State

    arrays = store.load_checkpoint(run_id)
    if arrays is None:
        return None
    if "params_json" not in arrays or State.key_of_arrays(arrays) != State.params_key(params.canonical()):
        log.warning("run %s: its checkpoint was written by another solver version; it starts over", run_id)
        return None
    return arrays


def _named_tasks(bag: Any, keys: list[str]) -> dict[str, Any]:
    """The graph of the bag's one-item partitions under ``keys`` (what the dashboard shows),
    each one self-contained task: a package costs one task.

    Each partition's map task gets its item inlined (what ``bag.to_delayed()``'s graph
    optimisation does, without its cost: a third of a millisecond per package). Should the
    bag's graph not have that shape (a dask change), the optimised partitions are re-keyed, or
    wrapped in a cheap naming task.
    """
    try:
        from dask._task_spec import convert_legacy_task

        graph = bag.__dask_graph__()
        layers = dict(graph.layers)
        top = layers.pop(bag.name)
        data: dict[Any, Any] = {}
        for layer in layers.values():
            data.update(layer)

        def inline(x: Any) -> Any:
            if type(x) is tuple:
                if len(x) == 2 and type(x[0]) is str and x in data:
                    return data[x]
                return tuple(inline(a) for a in x)
            if type(x) is list:
                return [inline(a) for a in x]
            return x

        out = {}
        for n, key in enumerate(keys):
            spec = top[(bag.name, n)]
            if not (type(spec) is tuple and callable(spec[0])):
                raise TypeError("not a legacy task")
            task = convert_legacy_task(key, inline(spec), set())
            if task.dependencies:
                raise TypeError("not a self-contained task")
            out[key] = task
        return out
    except Exception:
        return _optimised_named_tasks(bag.to_delayed(), keys)


def _optimised_named_tasks(delayeds: list[Any], keys: list[str]) -> dict[str, Any]:
    """``_named_tasks`` from the optimised partitions of ``bag.to_delayed()``."""
    import dask

    try:
        from dask._task_spec import Alias, Task

        graph = dict(delayeds[0].__dask_graph__()) if delayeds else {}  # shared by all partitions
        out = {}
        for d, key in zip(delayeds, keys):
            node = graph[d.key]
            while isinstance(node, Alias):
                node = graph[next(iter(node.dependencies))]
            if not isinstance(node, Task) or node.dependencies:
                raise TypeError("not a self-contained task")
            out[key] = Task(key, node.func, *node.args, **node.kwargs)
        return out
    except Exception:
        out = {}
        for d, key in zip(delayeds, keys):
            out.update(dask.delayed(_first, name=key, pure=False)(d).__dask_graph__())
        return out


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
        # packages not submitted yet, in priority order (see submit_next)
        rank = {p: i for i, p in enumerate(PRIORITIES)}
        self.backlog: collections.deque[str] = collections.deque(
            sorted(self.entries, key=lambda rid: rank.get(self.entries[rid].package.priority, len(rank))))
        self.first_chunk = _FIRST_CHUNK
        self.chunk = _CHUNK
        self.restarter: Any = None  # the thread restarting silent workers (see watchdog)
        self.committer: Any = None  # the store's writer thread (see commit)
        self.commits: collections.deque = collections.deque()  # (future, outcome, provenance)
        self.restarts: list[tuple[str, Any]] = []  # (worker, concurrent future of its restart)

    def _usable_checkpoint(self, run_id: str) -> dict[str, Any] | None:
        return usable_checkpoint(self.store, run_id, self.entries[run_id].package.params, self.log)

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
        from dask.highlevelgraph import HighLevelGraph

        by_prio: dict[str, list[WorkItem]] = {}
        for rid in run_ids:
            self.attempt[rid] = self.attempt.get(rid, 0) + 1
            item = self._item(rid, self.attempt[rid], resumes.get(rid))
            by_prio.setdefault(item.priority, []).append(item)
        out = []
        for prio in PRIORITIES:  # HIGH reaches the scheduler first, and outranks the rest
            items = by_prio.get(prio)
            if not items:
                continue
            # the bag db.from_sequence(items, npartitions=len(items)) makes, without hashing
            # every item for its name (a third of a millisecond per package)
            name = f"packages-{self.channel[6:]}-{uuid.uuid4().hex[:8]}"
            bag = db.Bag({(name, i): [it] for i, it in enumerate(items)}, name, len(items))
            bag = bag.map(self.run_function)
            keys = [f"run-{it.package_id}-{self.channel[6:14]}-{it.attempt}" for it in items]
            graph = HighLevelGraph({name: _named_tasks(bag, keys)}, {name: set()})
            # Client.get of a graph costs a tenth of Client.compute of as many Delayed
            # objects (no expression optimisation, no hashing of every task)
            futs = self.client.get(graph, keys, sync=False, priority=self.prio_values[prio])
            for item, f in zip(items, futs):
                self.futures[f] = (item.run_id, item.attempt)
                out.append(f)
        return out

    def submit_next(self, resumes: dict[str, dict]) -> list[Any]:
        """Submit the next chunk of the packages not submitted yet (in priority order).

        The first chunk is small, so the workers start at once; the rest follow while they
        run (submitting 1,000 packages at once kept them idle for most of a second)."""
        if not self.backlog:
            return []
        size = self.chunk if self.attempt else self.first_chunk
        run_ids = [self.backlog.popleft() for _ in range(min(size, len(self.backlog)))]
        return self.submit(run_ids, resumes)

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
            if kind == "start":  # sent by runs still running after runner.ANNOUNCE_AFTER s
                if msg.get("attempt") != self.attempt.get(rid):
                    continue
                # its start on this clock: the worker's may differ, its elapsed time does not
                start = time.time() - float(msg.get("elapsed") or 0.0)
                self.running[rid] = (msg.get("worker", "?"), start)
                self.log.info("%s: started on %s (attempt %s)", pid, msg.get("worker"), msg.get("attempt"))
                self.logs.package(pid, f"started on {msg.get('worker')} (attempt {msg.get('attempt')})",
                                  stamped=True, when=start)
            elif kind == "checkpoint":
                self.save_checkpoint(rid, pid, msg.get("step"))
            elif kind == "progress":
                self.logs.package(pid, f"step {msg.get('step')}/{msg.get('n_steps')} t={msg.get('t'):.6g}",
                                  stamped=True)

    def connected(self) -> bool:
        """Whether the client talks to its scheduler (not reconnecting after losing it)."""
        return getattr(self.client, "status", "running") == "running"

    def save_checkpoint(self, run_id: str, package_id: str, step: Any) -> None:
        """Fetch the latest checkpoint a worker announced and save it in the store."""
        from distributed import Variable

        if not self.connected():
            # reconnecting: a Variable.get would wait for distributed's connect timeout (30 s),
            # its own timeout notwithstanding; the sweep reports the lost scheduler
            self.log.warning("%s: checkpoint at step %s not fetched: no connection to the scheduler",
                             package_id, step)
            return
        self.sync_store()

        try:
            # callback_timeout: a scheduler lost during the call would hold it for 30 s
            payload = Variable(checkpoint_variable_name(self.channel, run_id),
                               client=self.client).get(timeout=10, callback_timeout=10)
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
        if run_id in self.ckpt_sent and self.connected():
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
        """Record a run's outcome: a result is committed by the store's writer thread (see
        ``commit``), a failure at once."""
        rid = outcome.run_id
        prov = self.provenance(rid, outcome)
        if outcome.status == "done":
            self.commit(outcome, prov)
            return
        self.sync_store()
        t0 = time.perf_counter()
        self.store.record_failure(rid, outcome.failure_class, outcome.error, prov)
        self.store_seconds += time.perf_counter() - t0
        self.log.warning("%s: failed (%s) on %s: %s", outcome.package_id, outcome.failure_class,
                         prov.get("worker", "?"), outcome.error)
        self.finished(outcome, prov, outcome.failure_class)

    def finished(self, outcome: Outcome, prov: dict[str, Any], status: str) -> None:
        """A run's outcome is in the store: log it and count it."""
        rid = outcome.run_id
        self.forget_checkpoint_variable(rid)
        lines = [*outcome.log, f"status: {status}"]
        if rid not in self.running:  # it ended before announcing its start: say it now
            lines.insert(0, f"{prov.get('start_time') or ''} started on {prov.get('worker', '?')} "
                            f"(attempt {self.attempt.get(rid, 1)})")
        self.finish(rid, status, lines)

    # -- the store's writer thread --------------------------------------------------------
    # Results are committed in a thread of their own, in order: a commit is mostly
    # file-system calls, which then overlap with this thread's work (gathering the next
    # results, logs) and the scheduler's, instead of adding to them. A run counts as done
    # (status, logs, progress) only once its commit returned; any other store access waits
    # for the pending commits first, so the store is used by one thread at a time.
    def commit(self, outcome: Outcome, prov: dict[str, Any]) -> None:
        import concurrent.futures

        if self.committer is None:
            self.committer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sweep-store")
        if len(self.commits) >= _MAX_PENDING_COMMITS:  # results wait in memory: bound them
            self.reap_commits(block=1)
        fut = self.committer.submit(self._commit, outcome.run_id, outcome.result, prov)
        self.commits.append((fut, outcome, prov))

    def _commit(self, run_id: str, result: Any, prov: dict[str, Any]) -> float:
        """Commit one result (in the writer thread); returns the seconds it took."""
        t0 = time.perf_counter()
        _fault_point("before-commit", run_id)
        self.store.commit_run(run_id, result, prov)
        _fault_point("after-commit", run_id)  # done, its checkpoint not yet dropped
        if run_id in self.ckpt_sent or run_id in self.had_checkpoint:
            self.store.drop_checkpoint(run_id)
        return time.perf_counter() - t0

    def reap_commits(self, block: int = 0) -> None:
        """Finish the runs whose commits returned, in order (waiting for the first ``block``
        of them); a commit's error (a full disk) is raised here."""
        while self.commits:
            fut, outcome, prov = self.commits[0]
            if block <= 0 and not fut.done():
                return
            self.store_seconds += fut.result()
            self.commits.popleft()
            block -= 1
            self.log.info("%s: done in %.3f s on %s (run %s)", outcome.package_id,
                          prov.get("wall_time", 0.0), prov.get("worker", "?"), outcome.run_id)
            self.finished(outcome, prov, "done")

    def sync_store(self) -> None:
        """Wait for every pending commit (before any other use of the store)."""
        self.reap_commits(block=len(self.commits))

    def close_store_thread(self) -> None:
        """Stop the writer thread: the commit under way ends, queued ones are dropped (their
        runs are not done: the next sweep runs them)."""
        if self.committer is None:
            return
        self.committer.shutdown(wait=True, cancel_futures=True)
        self.committer = None
        while self.commits:  # count those that made it (the sweep's summary says so)
            fut, outcome, prov = self.commits.popleft()
            if fut.cancelled() or fut.exception() is not None:
                continue
            self.store_seconds += fut.result()
            self.finished(outcome, prov, "done")

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
        self.sync_store()
        if attempt <= self.retries and not self.stopping:
            arrays = self._usable_checkpoint(run_id)
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
            self.restart_worker(worker)
            self.sync_store()
            self.store.record_failure(rid, "timeout", msg, self.provenance(rid, None))
            self.forget_checkpoint_variable(rid)
            self.finish(rid, "timeout", [f"failed (timeout): {msg}", "status: timeout"])

    def restart_worker(self, worker: str) -> None:
        """Restart a worker in the background: a restart takes up to a minute, during which
        the other runs' results are still committed as they come."""
        import concurrent.futures

        if self.restarter is None:
            self.restarter = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sweep-restart")
        self.restarts.append((worker, self.restarter.submit(
            self.client.restart_workers, [worker], timeout=_RESTART_TIMEOUT, raise_for_error=False)))

    def reap_restarts(self, wait: bool = False) -> None:
        """Log the restarts that finished (all of them, waiting, with ``wait``)."""
        for worker, fut in list(self.restarts):
            if not (wait or fut.done()):
                continue
            self.restarts.remove((worker, fut))
            try:
                self.log.info("restart of %s: %s", worker, fut.result())
            except Exception as exc:  # no nanny (remote worker): it stays busy; say so
                self.log.error("could not restart worker %s: %s", worker, exc)

    def stop(self, why: str) -> None:
        """Cancel what has not finished; what has finished is still committed."""
        self.stopping = True
        pending = [f for f in self.futures if f.status == "pending"]
        unsent = list(self.backlog)
        self.backlog.clear()
        n = len(pending) + len(unsent)
        self.progress.write(f"stopping: {why}; cancelling {n} unfinished package(s)")
        self.log.warning("stopping: %s; cancelling %d unfinished", why, n)
        for rid in unsent:
            self.status[rid] = "cancelled"
            self.logs.package(self.entries[rid].package_id, "cancelled (--stop-on-error)", stamped=True)
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

        from .runner import KernelWarmUp

        # every worker, and each one that joins later (a restart), loads the kernels before
        # its first run (once per worker process: the plugin is idempotent)
        self.client.register_plugin(KernelWarmUp())
        self.client.subscribe_topic(self.channel, self.on_event)
        try:
            self.ac = ac = as_completed(self.submit_next(resumes))
            last_tick = last_gather = 0.0
            while not ac.is_empty() or self.backlog:
                # results are gathered at most every _GATHER_EVERY s: one round trip to the
                # workers fetches several (each fetch costs the scheduler, the worker and us)
                batch = []
                if ac.has_ready() and time.monotonic() - last_gather >= _GATHER_EVERY:
                    batch = ac.next_batch(block=False)
                    last_gather = time.monotonic()
                if self.events:  # starts and checkpoints that arrived before these results
                    self.drain_events()
                if batch:
                    self.process(batch)
                if self.commits:
                    self.reap_commits()
                if self.backlog and not self.stopping:
                    ac.update(self.submit_next(resumes))
                now = time.monotonic()
                if now - last_tick >= self.tick:
                    last_tick = now
                    self.progress.set_running(len(self.running))
                    self.watchdog()
                    self.reap_restarts()
                    self.logs.flush_main()
                if not batch:
                    time.sleep(0.005)
            self.drain_events()
            self.sync_store()
            self.reap_restarts(wait=True)  # the cluster is whole again when the sweep ends
        finally:
            self.close_store_thread()  # before the store closes, whatever happened
            if self.restarter is not None:
                self.restarter.shutdown(wait=False, cancel_futures=True)
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


def _memory_problems(client: Any, packages: Sequence[Any]) -> list[tuple[Any, str]]:
    """(package, one-line problem) of the packages whose run fits in no worker of ``client``."""
    from .spec import memory_need

    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info().get("workers", {}).values()]
    limits = [m for m in limits if m]
    if not limits:
        return []
    biggest = max(limits)
    problems = []
    for p in packages:
        need = memory_need(p.params)  # memoised by solver.memory
        if need > biggest:
            problems.append((p, (
                f"{p.path}: parameters.grid_size: bad value {list(p.params.grid)}; allowed: a grid "
                f"whose run fits in a worker's memory (it needs {need / 2**30:.2f} GiB, the largest "
                f"worker has {biggest / 2**30:.2f} GiB); use a smaller grid or bigger workers")))
    return problems


def _check_remote_memory(client: Any, packages: Sequence[Any], Store: Any, store_url: str) -> None:
    """Refuse runs that fit in no worker of a cluster we did not start, before anything is
    created: runs already done in the store (read, never created, here) do not count."""
    from .errors import StoreError
    from .spec import config_error

    problems = _memory_problems(client, packages)
    if not problems:
        return
    done: set[str] = set()
    try:
        with Store.open(store_url, mode="r") as st:
            done = st.done_run_ids()
    except StoreError:  # no store yet (or an unreadable one: opening it for writing says why)
        pass
    lines = [line for p, line in problems if p.run_id not in done]
    if lines:
        raise config_error(lines)


def _step_of(arrays: dict[str, Any]) -> int:
    """The step of checkpoint arrays (solver.State.to_arrays keeps it as a 1-element array)."""
    import numpy as np

    step = arrays.get("step")
    return int(np.asarray(step).reshape(-1)[0]) if step is not None else -1


def _store_state(store: Any, run_ids: set[str]) -> Any:
    """The store's ``StoreState`` with checkpoints limited to the runs of this sweep."""
    from .plan import store_state

    state = store_state(store)
    return state._replace(checkpoints={r: s for r, s in state.checkpoints.items() if r in run_ids})


def run_sweep(
    packages_dir: str | os.PathLike,
    store: str | os.PathLike,
    *,
    priority: str = "ALL",
    package_ids: Sequence[str] | None = None,
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

    ``priority`` and ``package_ids`` (package_ids or package file names) narrow the packages
    of ``packages_dir`` that are run (``sweep.spec.select_packages``).
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
    check_priority(priority)
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
    packages = select_packages(_load(packages_dir, _local_worker_memory(n_local) if known else None,
                                     check_memory=known), priority, package_ids)
    store_url = str(store)
    scope = f"priority {priority}" + (f", {len(set(package_ids))} named" if package_ids else "")

    Store = _store_api()
    if dry_run:
        return _dry_run(Store, store_url, packages, say, scope)

    log_dir = Path(log_dir) if log_dir is not None else default_log_dir(store_url)
    early = None  # a cluster we did not start: connected (and checked) before the store opens
    if client is not None or remote:
        early = wrap_client(client) if client is not None else connect(
            mode, max_parallel=max_parallel, scheduler=scheduler, scheduler_file=scheduler_file,
            security=security, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
    try:
        if early is not None:
            _check_remote_memory(early.client, packages, Store, store_url)
        return _sweep_into_store(
            Store, store_url, packages, scope, packages_dir, log_dir, say, t_start, early,
            lambda: connect(mode, max_parallel=max_parallel), remote=remote, client=client,
            mode=mode, timeout=timeout, retries=retries, stop_on_error=stop_on_error,
            ckpt_s=ckpt_s, ckpt_n=ckpt_n, progress_bar=progress_bar, dashboard=dashboard, out=out)
    finally:
        if early is not None:
            with _quiet_connection_noise():  # closing a client whose scheduler is gone
                early.close()


def _sweep_into_store(Store: Any, store_url: str, packages: list[Any], scope: str,
                      packages_dir: Any, log_dir: Path, say: Callable[[str], None], t_start: float,
                      early: Any, start_cluster: Callable[[], Any], *, remote: bool, client: Any,
                      mode: str, timeout: float, retries: int, stop_on_error: bool, ckpt_s: Any,
                      ckpt_n: Any, progress_bar: bool | None, dashboard: bool,
                      out: IO[str]) -> SweepResult:
    """``run_sweep`` once its options are checked: plan against the store, run, summarise.
    ``early`` is the (already checked) cluster we did not start, else ``start_cluster()``
    starts one when something is to run."""
    with Store.open(store_url, mode="a") as st:
        run_ids = {p.run_id for p in packages}
        state = _store_state(st, run_ids)
        done, ckpt_steps = state.done, state.checkpoints
        plan = plan_sweep(packages, done, state.failed, ckpt_steps, state.stale_checkpoints)
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
            say(f"sweep: {len(packages)} package(s) requested ({scope}): "
                f"{len(to_run)} to run, {len(skipped_done)} skipped as already done in {store_url}"
                + (f", {len(result.skipped) - len(skipped_done)} sharing another package's run"
                   if len(result.skipped) > len(skipped_done) else ""))
            log.info("sweep of %s into %s: %d requested, %d to run, %d skipped", packages_dir,
                     store_url, len(packages), len(to_run), len(result.skipped))
            for pid, why in result.skipped:
                log.info("%s: skipped: %s", pid, why)
            if to_run:
                handle = early if early is not None else start_cluster()
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
                params_of = {p.run_id: p.params for p in packages}
                for rid in ckpt_steps:
                    arrays = usable_checkpoint(st, rid, params_of[rid], log)
                    if arrays is not None:
                        resumes[rid] = encode_arrays(arrays)
                for e in to_run:
                    logs.package(e.package_id, f"queued: {e.reason} (run {e.package.run_id})",
                                 stamped=True, defer=True)  # written with its next lines
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
                                  PRIORITIES, len(skipped_done), result.elapsed)
            for ln in lines:
                say(ln)
                log.info(ln)
            say(f"sweep: results in {store_url} (open with sweep.open_results); exit code "
                f"{result.exit_code}")
            log.info("exit code %d", result.exit_code)
        finally:
            if stop_dashboard is not None:
                stop_dashboard()
            if handle is not None and handle is not early:  # run_sweep closes that one
                with _quiet_connection_noise():  # closing a client whose scheduler is gone
                    handle.close()
            logs.close()
    return result


def _dry_run(Store: Any, store_url: str, packages: list[Any], say: Callable[[str], None],
             scope: str) -> SweepResult:
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
        f"checkpoint), {counts['skip']} skipped ({scope}); nothing was started or written")
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
