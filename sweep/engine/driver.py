"""The driver loop of one sweep: submit the packages, take each result as soon as it exists,
commit it (the driver is the store's only writer), relay checkpoints, recover from failures.

Collaborators, one job each: ``Submitter`` (packages -> tasks), ``CommitWriter`` (the store's
writer thread), ``CheckpointRelay`` (checkpoints from workers into the store), ``Recovery``
(retries, watchdog, restarts, runs handed back by leaving workers), ``RuntimePredictor`` (how
long each run will take), ``LiveStatus`` (the status document ``sweep status`` reads), in queue
modes ``QueueRuntime`` (walltime guard, scaling, jobs), ``SweepLogs`` and ``SweepProgress``
(what the user sees).
"""

from __future__ import annotations

import collections
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import dask.config

from .. import config
from ..codec import decode_arrays
from ..provenance import ns_sweep_version
from ..units import format_duration
from .checkpoints import CheckpointRelay, step_of
from .columns import RunColumn
from .commits import CommitWriter
from .connection import connection_trouble
from .interrupts import check_stop
from .live import LiveStatus
from .logs import SweepLogs
from .options import SweepOptions
from .plan import PlanEntry
from .predict import RunSize, RuntimePredictor, run_size
from .progress import SweepProgress
from .recovery import Recovery
from .segments import segment_of, segments_provenance
from .submit import Members, Submitter
from .work_left import WorkLeft
from .worker import KernelWarmUp, Outcome, rates_variable_name

__all__ = ["Driver", "LOCAL_CLUSTERS"]

LOCAL_CLUSTERS = ("sequential", "parallel")  # cluster kinds the sweep started itself
_LOST = object()  # a finished task's result that could not be fetched (Driver._gather)


class Driver:
    """The driver's state during one sweep (one instance per ``run_sweep`` call).

    ``entries``: the plan's runs to do (run id -> entry), ``duplicates``: run id -> every package
    sharing it (runs of one package need no entry);
    ``cluster_kind``: ``sequential``, ``parallel``, a queue mode, ``remote`` or ``client``
    (recorded with each run); ``had_checkpoint``: runs with a checkpoint in the store at the
    start; ``queue``: a queue mode's ``QueueRuntime``; ``cluster``: the cluster the sweep
    started (None for a remote one); ``predictor``: what the store's finished
    runs taught about run times; ``description``: the cluster, for the status document.
    """

    def __init__(
        self,
        *,
        client: Any,
        store: Any,
        logs: SweepLogs,
        entries: Mapping[str, PlanEntry] | list[PlanEntry],
        duplicates: dict[str, list[str]],
        options: SweepOptions,
        progress: SweepProgress,
        cluster_kind: str,
        had_checkpoint: set[str],
        queue: Any = None,
        cluster: Any = None,
        predictor: RuntimePredictor | None = None,
        description: str = "",
        resume_steps: dict[str, int] | None = None,
        dashboard: str | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.logs = logs
        self.log = logs.logger
        # run id -> its entry: a RunEntries (columns) from run_sweep, or a list's entries
        self.entries: Mapping[str, PlanEntry] = (
            entries if isinstance(entries, Mapping) else {e.package.run_id: e for e in entries}
        )
        self.duplicates = duplicates
        self.options = options
        self.progress = progress
        self.cluster_kind = cluster_kind
        self.channel = f"sweep-{uuid.uuid4().hex[:12]}"
        self.running: dict[str, tuple[str, float]] = {}  # run_id -> (worker, driver start time)
        self.status = RunColumn(self.entries, labels=())  # run_id -> final status (a code per run)
        self.events: collections.deque[dict[str, Any]] = collections.deque()
        self.stopping = False
        self.queue = queue
        self.cluster = cluster  # the cluster this sweep started (None: a remote one or a client's)
        self.predictor = predictor if predictor is not None else RuntimePredictor()
        self.resume_steps: dict[str, int] = dict(resume_steps or {})  # run_id -> checkpoint step
        self.steps_done: dict[str, int] = dict(resume_steps or {})  # run_id -> steps known done
        self.segments: dict[str, list[dict[str, Any]]] = {}  # run_id -> its attempts that ran
        self._sizes: dict[str, RunSize] = {}
        self._size_objects: dict[RunSize, RunSize] = {}  # one object per distinct size
        self._params: dict[str, Any] = {}  # run_id -> parameters, while the run is under way
        self.work = WorkLeft(self.entries, self.status, lambda rid: self.size_of(rid, keep=False))
        self._published: dict[str, float] = {}
        self._last_progress: dict[str, tuple[Any, int, float]] = {}  # run -> (attempt, step, elapsed)
        self.live = LiveStatus(float(config.get("status-every")), description, dashboard)
        self.tasks = Submitter(
            client,
            self.channel,
            self.entries,
            options,
            extras=self._item_extras,
            predict=self.predicted_left,
            params_of=self.params_of,
        )
        self.commits = CommitWriter(
            store, options.max_pending_commits, self._committed, lambda rid: self.relay.has_checkpoint(rid)
        )
        self.relay = CheckpointRelay(
            client, store, self.channel, logs, had_checkpoint, self.commits.sync, self.connected
        )
        self.recovery = Recovery(self)

    # -- predictions ----------------------------------------------------------------------
    def size_of(self, run_id: str, keep: bool = True) -> RunSize:
        """What the run's cost scales with (computed once per run); ``keep``: keep it, and the
        run's parameters (it is about to be submitted); else computed and let go (the sum of
        the work left over a million packages must not keep a million entries)."""
        size = self._sizes.get(run_id)
        if size is None:
            params = self.params_of(run_id) if keep else self._params.get(run_id) or self._build(run_id)
            size = run_size(params)
            size = self._size_objects.setdefault(size, size)
            if keep:
                self._sizes[run_id] = size
        return size

    def _build(self, run_id: str) -> Any:
        return self.entries[run_id].package.build_params()

    def params_of(self, run_id: str) -> Any:
        """The run's parameters, kept while it runs (built once per run, dropped when it ends:
        the packages of a sweep keep their validated values only)."""
        params = self._params.get(run_id)
        if params is None:
            params = self._params[run_id] = self._build(run_id)
        return params

    def predicted_left(self, run_id: str) -> float:
        """Predicted seconds the run still needs (from the steps known done)."""
        size = self.size_of(run_id)
        return self.predictor.seconds(size, size.steps - self.steps_done.get(run_id, 0))

    def _forget_run(self, run_id: str) -> None:
        """A run is finished: drop what the driver kept for it while it ran (memory follows
        what runs, not the sweep), and take it from the work left."""
        if run_id in self.entries:
            self.work.finish(run_id, self.size_of(run_id))
        self.steps_done.pop(run_id, None)
        self.segments.pop(run_id, None)
        self._params.pop(run_id, None)
        self._sizes.pop(run_id, None)
        self._last_progress.pop(run_id, None)

    def work_left_by_priority(self, guess_too: bool = True) -> dict[str, float] | None:
        """Predicted seconds of the runs not finished, by priority (one rate per solver, grid,
        precision); None when a rate is only the first guess and ``guess_too`` is False, or
        while the runs are still being counted (``WorkLeft``, in the loop's idle moments)."""
        groups = self.work.groups()
        if groups is None:
            return None
        out: dict[str, float] = collections.defaultdict(float)
        for (prio, _), (size, point_steps) in groups.items():
            rate, how = self.predictor.rate_of(size)
            if how == "first guess" and not guess_too:
                return None
            out[prio] += rate * point_steps
        for rid, done in self.steps_done.items():  # runs under way: the steps they did
            e = self.entries.get(rid)
            if e is not None and rid not in self.status and done > 0:
                size = self.size_of(rid)
                out[e.package.priority] -= self.predictor.rate_of(size)[0] * size.points * done
        return {p: max(0.0, v) for p, v in out.items()}

    def work_left(self, guess_too: bool = True) -> float | None:
        """Predicted seconds of every run not finished; None when a rate is only the first
        guess and ``guess_too`` is False."""
        left = self.work_left_by_priority(guess_too)
        return None if left is None else sum(left.values())

    def _item_extras(self, run_id: str, resume: dict[str, Any] | None) -> dict[str, Any]:
        """The WorkItem fields of an attempt that depend on predictions and on the cluster."""
        size = self.size_of(run_id)
        start = step_of(decode_arrays({"step": resume["step"]})) if resume and "step" in resume else 0
        left = size.steps - max(0, start)
        predicted = self.predictor.seconds(size, left)
        o = self.options
        # a rerun by the scheduler looks for the relay's newest checkpoint only when the run
        # may live long enough to have one (tiny runs must not pay a scheduler round trip);
        # a first guess may be far off: it must be far below a checkpoint's interval to skip
        odds = 100 if self.predictor.rate_of(size)[1] == "first guess" else 10
        relay = (o.checkpoint_every_steps is not None and o.checkpoint_every_steps < left) or (
            o.checkpoint_every_seconds is not None and predicted >= o.checkpoint_every_seconds / odds
        )
        out: dict[str, Any] = {"predicted_seconds": predicted, "relay_resume": relay}
        if self.queue is not None and self.recovery.declines.get(run_id, 0) < 3:
            out.update(
                fresh_life=self.queue.fresh_life(),
                lifetime_fit=self.queue.fit,
                rate_key=size.label,
                point_steps=float(size.points) * left,
            )
        return out

    def publish_rates(self) -> None:
        """Put the latest measured rates where workers can read them (queue modes: a worker
        near its end refreshes a run's prediction before starting it)."""
        from distributed import Variable

        rates = self.predictor.published()
        if rates and rates != self._published:
            try:
                Variable(rates_variable_name(self.channel), client=self.client).set(rates)
                self._published = rates
            except Exception:  # the scheduler may be gone: the sweep reports that itself
                pass

    def worker_addresses(self) -> set[str]:
        """The workers now (their addresses): those the cluster we started lists, else the
        scheduler's (empty when it does not answer)."""
        try:
            if self.cluster is not None:
                return set(self.cluster.scheduler_info.get("workers", {}))
            return set(self.client.nthreads())
        except Exception:  # a closing cluster, a scheduler gone
            return set()

    def n_workers(self) -> int:
        """Workers now (for the status document), without a call to the scheduler (one that
        is gone would hold it for distributed's connect timeout): those of the cluster we
        started, else the workers running runs."""
        try:
            if self.cluster is not None:
                return len(self.cluster.scheduler_info.get("workers", {}))
        except Exception:  # a closing cluster: count as below
            pass
        return len({worker for worker, _ in self.running.values()})

    def in_flight(self) -> int:
        """Packages on the workers now: those that announced their start, or (a tiny run ends
        before it announces) the tasks submitted and not finished, at most one per worker."""
        return max(len(self.running), min(len(self.tasks.futures), self.n_workers()))

    def connected(self) -> bool:
        """Whether the client talks to its scheduler (not reconnecting after losing it)."""
        return getattr(self.client, "status", "running") == "running"

    # -- events from workers ------------------------------------------------------------
    def on_event(self, event: Any) -> None:
        """Called in the client's event loop: queue it for the main thread."""
        self.events.append(event[1] if isinstance(event, tuple) else event)

    def drain_events(self) -> None:
        """Act on the queued events: starts, checkpoints, progress."""
        while self.events:
            msg = self.events.popleft()
            rid = msg.get("run_id")
            if not isinstance(rid, str) or rid not in self.entries or rid in self.status:
                continue
            pid = self.entries[rid].package_id
            kind = msg.get("event")
            if kind == "start":  # sent by runs still running after WorkItem.announce_after s
                if msg.get("attempt") != self.tasks.attempt.get(rid):
                    continue
                # its start on this clock: the worker's may differ, its elapsed time does not
                start = time.time() - float(msg.get("elapsed") or 0.0)
                self.running[rid] = (msg.get("worker", "?"), start)
                self.log.info("%s: started on %s (attempt %s)", pid, msg.get("worker"), msg.get("attempt"))
                self.logs.package(
                    pid,
                    f"started on {msg.get('worker')} (attempt {msg.get('attempt')})",
                    stamped=True,
                    when=start,
                )
            elif kind == "checkpoint":
                self.relay.save(rid, pid, msg.get("step"))
            elif kind == "progress":
                step, took = msg.get("step"), msg.get("elapsed")
                if isinstance(step, int):
                    self.steps_done[rid] = step
                    if isinstance(took, (int, float)):
                        self._progress_rate(rid, msg.get("attempt"), step, float(took))
                self.logs.package(
                    pid, f"step {msg.get('step')}/{msg.get('n_steps')} t={msg.get('t'):.6g}", stamped=True
                )

    # -- results ------------------------------------------------------------------------
    def provenance(self, run_id: str, outcome: Outcome | None) -> dict[str, Any]:
        """What is recorded with a run's result or failure besides the worker's own provenance."""
        p = self.entries[run_id].package
        prov = dict(outcome.provenance) if outcome is not None else {}
        prov.update(
            params=self.params_of(run_id),
            package_id=p.package_id,
            package_ids=self.duplicates.get(run_id, [p.package_id]),
            priority=p.priority,
            tags=dict(getattr(p, "tags", {}) or {}),
            attempts=self.tasks.attempt.get(run_id, 1),
            resumed=prov.get("resumed_from_step") is not None,
            mode=self.cluster_kind,  # stored as "mode" since the first store schema
            engine_version=ns_sweep_version(),
        )
        segments = self.segments.get(run_id)
        if segments:
            prov.update(segments_provenance(segments))
        return prov

    def _progress_rate(self, run_id: str, attempt: Any, step: int, elapsed: float) -> None:
        """A run under way tells its rate before any run finished: steps over seconds between
        two of its progress messages (the run's start-up, which a whole run's time includes
        once, would weigh on the first few seconds far more)."""
        last = self._last_progress.get(run_id)
        self._last_progress[run_id] = (attempt, step, elapsed)
        if last is not None and last[0] == attempt and step > last[1] and elapsed > last[2]:
            self.predictor.observe_progress(self.size_of(run_id), elapsed - last[2], step - last[1])

    def add_segment(self, outcome: Outcome) -> None:
        """Remember an attempt that ran (for the run's provenance and the predictions)."""
        seg = segment_of(outcome.provenance or {}, outcome.status)
        if seg is None:
            return
        start, end, seconds = seg["from_step"], seg["to_step"], seg["seconds"]
        self.segments.setdefault(outcome.run_id, []).append(seg)
        self.steps_done[outcome.run_id] = end
        if outcome.status in ("done", "preempted") and end > start:
            self.predictor.observe(self.size_of(outcome.run_id), seconds, end - start)

    def interrupted_segment(self, run_id: str, why: str) -> dict[str, Any]:
        """The attempt of a run under way when the sweep is interrupted, as a segment of its
        provenance (its time counts in the run's wall time once it is done)."""
        worker, since = self.running[run_id]
        earlier = self.segments.get(run_id) or []
        start = int(earlier[-1]["to_step"]) if earlier else int(self.resume_steps.get(run_id, 0))
        return {
            "attempt": self.tasks.attempt.get(run_id, 1),
            "worker": worker,
            "from_step": start,
            "to_step": int(self.steps_done.get(run_id, start)),
            "seconds": round(time.time() - since, 3),
            "ended": "interrupted",
            "why": why,
        }

    def finish(self, run_id: str, status: str, lines: Iterable[str]) -> None:
        """A run's final status: logged, counted, and with --stop-on-error maybe the end."""
        pid = self.entries[run_id].package_id
        self._forget_run(run_id)
        self.status[run_id] = status
        self.running.pop(run_id, None)
        self.logs.package(pid, lines)
        self.progress.running = self.in_flight()
        self.progress.package_finished(status)
        if status != "done" and self.options.stop_on_error and not self.stopping:
            self.stop(f"{pid} failed ({status}) and --stop-on-error is set")

    def handle_outcome(self, outcome: Outcome) -> list[Any]:
        """Record a run's outcome: a result is committed by the writer thread, a failure at once,
        a run handed back (preempted, declined) is resubmitted; returns new futures."""
        rid = outcome.run_id
        if outcome.status != "declined":
            self.add_segment(outcome)
        if outcome.status in ("preempted", "declined"):
            return self.recovery.handle_moved(outcome)
        prov = self.provenance(rid, outcome)
        if outcome.status == "done":
            self.commits.commit(outcome, prov)
            return []
        self.commits.sync()
        self.store.record_failure(rid, outcome.failure_class or "error", outcome.error or "", prov)
        self.log.warning(
            "%s: failed (%s) on %s: %s",
            outcome.package_id,
            outcome.failure_class,
            prov.get("worker", "?"),
            outcome.error,
        )
        self.finished(outcome, prov, outcome.failure_class or "error")
        return []

    def _committed(self, outcome: Outcome, prov: dict[str, Any]) -> None:
        self.log.info(
            "%s: done in %.3f s on %s (run %s)",
            outcome.package_id,
            prov.get("wall_time", 0.0),
            prov.get("worker", "?"),
            outcome.run_id,
        )
        self.finished(outcome, prov, "done")

    def finished(self, outcome: Outcome, prov: dict[str, Any], status: str) -> None:
        """A run's outcome is in the store: log it and count it."""
        rid = outcome.run_id
        self.relay.forget(rid)
        lines = [*outcome.log, f"status: {status}"]
        if rid not in self.running:  # it ended before announcing its start: say it now
            lines.insert(
                0,
                f"{prov.get('start_time') or ''} started on {prov.get('worker', '?')} "
                f"(attempt {self.tasks.attempt.get(rid, 1)})",
            )
        self.finish(rid, status, lines)

    def stop(self, why: str) -> None:
        """Cancel what has not finished; what has finished is still committed."""
        self.stopping = True
        pending = [f for f in self.tasks.futures if f.status == "pending"]
        unsent = list(self.tasks.backlog) + list(self.recovery.parked)
        self.tasks.backlog.clear()
        self.recovery.parked.clear()
        in_tasks = [rid for f in pending for rid, _ in self.tasks.futures[f] if rid not in self.status]
        n = len(in_tasks) + len(unsent)
        self.progress.write(f"stopping: {why}; cancelling {n} unfinished package(s)")
        self.log.warning("stopping: %s; cancelling %d unfinished", why, n)
        if pending:
            self.client.cancel(pending)
        for f in pending:
            self.tasks.futures.pop(f)
        cancelled = unsent + in_tasks
        for rid in cancelled:
            if rid not in self.status:
                self.status[rid] = "cancelled"
                self.running.pop(rid, None)
                self.logs.package(self.entries[rid].package_id, "cancelled (--stop-on-error)", stamped=True)

    # -- main loop ----------------------------------------------------------------------
    def run(self, resumes: dict[str, dict[str, Any]]) -> None:
        """Submit everything, then commit results as they come until none is left."""
        # On a LocalCluster we started, never let it drop a nanny whose worker is briefly
        # absent (its default 15 s lost-worker timeout can fire during a later restart).
        local = self.cluster_kind in LOCAL_CLUSTERS
        held = {"distributed.deploy.lost-worker-timeout": "1h"} if local else {}
        if self.queue is not None:  # a queue mode: a worker whose job ended is replaced at once
            held = self.queue.run_config()
        with dask.config.set(held):
            self._run(resumes)

    def _run(self, resumes: dict[str, dict[str, Any]]) -> None:
        from distributed import as_completed

        # every worker, and each one that joins later (a restart), loads the kernels before
        # its first run (once per worker process: the plugin is idempotent)
        # (this waits for the workers there: on a first start numba compiles its kernels, ~20 s;
        # a queue's workers arrive later, each loading them as it joins)
        waits = self.queue is None
        if waits:
            self.progress.write(
                "sweep: preparing the workers: loading the solver's compiled kernels (numba; the "
                "first start after an install compiles them, ~20 s, then they are cached)"
            )
        t0 = time.monotonic()
        try:
            self.client.register_plugin(KernelWarmUp())
        except Exception as exc:
            # a worker that died meanwhile (its nanny restarts it) fails the broadcast; the
            # scheduler keeps the plugin for the workers that join: only a lost scheduler counts
            if not connection_trouble(exc) or not self.connected():
                raise
            self.log.warning(
                "a worker left while the kernel warm-up was installed (%s); it gets it on restart", exc
            )
        if waits:
            self.progress.write(f"sweep: workers ready in {format_duration(time.monotonic() - t0)}")
        self.progress.restart_clock()  # the ETA counts the packages' time, not the start-up
        self.client.subscribe_topic(self.channel, self.on_event)
        if self.queue is not None:
            self.queue.attach(self)
        stopped = False
        try:
            ac = as_completed(self.tasks.submit_next(resumes))
            last_tick = last_gather = 0.0
            while not ac.is_empty() or self.tasks.backlog or self.recovery.parked:
                check_stop()  # a stop whose Interrupted Python swallowed (sweep.engine.interrupts)
                # results are gathered at most every gather_every s: one round trip to the
                # workers fetches several (each fetch costs the scheduler, the worker and us)
                batch = []
                if ac.has_ready() and time.monotonic() - last_gather >= self.options.gather_every:
                    batch = ac.next_batch(block=False)
                    last_gather = time.monotonic()
                if self.events:  # starts and checkpoints that arrived before these results
                    self.drain_events()
                if batch:
                    ac.update(self.process(batch))
                if self.commits.pending:
                    self.commits.reap()
                if self.tasks.backlog and not self.stopping:
                    ac.update(self.tasks.submit_next(resumes))
                now = time.monotonic()
                if now - last_tick >= self.options.tick:
                    last_tick = now
                    self.tasks.workers = self.n_workers() or self.tasks.workers
                    self.progress.set_running(self.in_flight())
                    ac.update(self.recovery.watchdog())
                    ac.update(self.recovery.unpark())
                    self.recovery.reap_restarts()
                    if self.queue is not None:
                        self.queue.tick(self)
                        self.publish_rates()
                    self.live.maybe_write(self)
                    self.logs.flush_main()
                if not batch:  # idle: count the work left (a slice), or wait a little
                    if self.work.complete:
                        time.sleep(0.005)
                    else:
                        self.work.scan(0.005)
            self.drain_events()
            self.commits.sync()
            self.recovery.reap_restarts(wait=True)  # the cluster is whole again when the sweep ends
        except KeyboardInterrupt:
            # stopped: the wind-down (stopping.py) listens on for the checkpoints it asks for
            # and then stops listening. Subscribing again there lost the checkpoint events that
            # overtook the new subscription (the request to the workers is another message).
            stopped = True
            raise
        finally:
            if self.queue is not None:
                self.queue.detach(self)
            self.commits.close()  # before the store closes, whatever happened
            self.live.write(self, "ended")
            self.recovery.close()
            if not stopped:
                self.stop_listening()

    def stop_listening(self) -> None:
        """Stop receiving the runs' events (starts, checkpoints, progress)."""
        try:
            self.client.unsubscribe_topic(self.channel)
        except Exception:  # the scheduler may be gone
            pass

    def _gather(self, futures: list[Any]) -> list[Any]:
        """The results of finished tasks in one round trip. A result lost since (its worker
        died after the task ended, and the scheduler's recomputation died too: KilledWorker)
        is ``_LOST``: the run counts as lost, retried by the sweep's own rules."""
        try:
            return list(self.client.gather(futures))
        except Exception:
            if not self.connected():  # the scheduler is gone: the sweep says so
                raise
        out = []
        for f in futures:
            try:
                out.append(self.client.gather(f))
            except Exception:
                if not self.connected():
                    raise
                out.append(_LOST)
        return out

    def process(self, batch: list[Any]) -> list[Any]:
        """Handle a batch of finished futures (each a package or a batch of packages); returns
        the futures of resubmitted runs."""
        ok: list[tuple[Any, Members]] = []
        lost: list[tuple[Any, Members]] = []
        for f in batch:
            members = self.tasks.futures.pop(f, None)
            if members is None:  # cancelled by the watchdog or stop()
                continue
            if not any(rid not in self.status and a == self.tasks.attempt.get(rid) for rid, a in members):
                continue
            (ok if f.status == "finished" else lost).append((f, members))
        new: list[Any] = []
        if ok:
            results = self._gather([f for f, _ in ok])  # one round trip per batch
            for (f, members), result in zip(ok, results, strict=True):
                if result is _LOST:
                    lost.append((f, members))
                    continue
                f.release()  # at once: a draining worker waits for its results to be fetched
                outcomes = result if isinstance(result, list) else [result]
                for (rid, attempt), outcome in zip(members, outcomes, strict=True):
                    if rid not in self.status and attempt == self.tasks.attempt.get(rid):
                        new += self.handle_outcome(outcome)
        for f, members in lost:
            for rid, attempt in members:
                if rid in self.status or attempt != self.tasks.attempt.get(rid):
                    continue
                if f.status == "cancelled" or self.stopping:
                    self.status[rid] = "cancelled"
                    continue
                new += self.recovery.handle_lost(f, rid)
        return new
