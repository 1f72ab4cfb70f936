"""``run_sweep``: run a package directory's sweep on Dask into a zarr store.

Options are checked first (``SweepOptions``), then the packages (``sweep.spec``), then the
store is opened as its single writer and the plan made against it (``sweep.engine.plan``);
only when something is to run is a cluster started (``sweep.engine.cluster``) and the driver
loop run (``sweep.engine.driver``). Bad input is refused before anything is started or
written.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .. import config
from ..errors import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, ConfigError, SchedulerLostError
from ..faults import fault_point
from ..gc_pause import frozen_heap
from ..machine import memory_per_worker, usable_cores
from ..spec import PRIORITIES, Package, PackageTable, load_packages, select_packages, selection_label
from ..store import FAILURE_CLASSES, Store, is_local
from ..store.write_errors import writing
from .cluster import ClusterHandle, connect, dashboard_note, wrap_client
from .columns import (
    CANCELLED,
    PLANNED,
    SKIPPED,
    PriorityView,
    QueuedLines,
    RunEntries,
    SkippedView,
    StatusView,
)
from .connection import (
    quiet_connection_noise,
    quiet_distributed,
    quiet_lost_broadcasts,
    quiet_variable_timeouts,
    scheduler_lost,
)
from .interrupts import interruptible
from .jobqueue import QUEUES, QueueSpec, prepare_queue, walltime_warning
from .logs import SweepLogs, stamp_now
from .malloc import fix_trim_threshold
from .memory import check_cluster_memory
from .options import SweepOptions
from .plan import Plan, PlanEntry, explain_store, iter_explanation_lines, plan_sweep, store_state
from .predict import RuntimePredictor
from .progress import SweepProgress, failure_lines, final_summary, summary_rows

if TYPE_CHECKING:  # pragma: no cover
    from .driver import Driver

__all__ = ["SweepResult", "SweepStart", "run_sweep", "default_log_dir", "exit_code_of"]


@dataclass
class SweepResult:
    """The outcome of ``run_sweep``: exit code, per-package status and the counts."""

    exit_code: int
    # per package: columns read as a mapping / sequence (sweep.engine.columns), not a million entries
    status: Mapping[str, str] = field(default_factory=dict)  # package_id -> done/skipped/<class>
    priority: Mapping[str, str] = field(default_factory=dict)  # package_id -> priority
    skipped: Sequence[tuple[str, str]] = field(default_factory=list)  # (package_id, reason)
    plan: Sequence[PlanEntry] = field(default_factory=list)
    store: str = ""
    log_dir: Path | None = None
    dashboard_link: str | None = None
    elapsed: float = 0.0
    retries: int = 0

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


@dataclass(frozen=True)
class SweepStart:
    """What an ``on_start`` hook of ``run_sweep`` learns once the cluster is up and before the
    first run starts (e.g. to serve a live dashboard beside the sweep)."""

    store: str
    packages_dir: str
    n_workers: int | None
    say: Callable[[str], None]  # print a line the sweep's way (and it is logged)


# an on_start hook returns what stops what it started (or None)
StartHook = Callable[[SweepStart], Callable[[], None] | None]


def exit_code_of(statuses: Iterable[str]) -> int:
    """0 all done (or skipped as done); 124 only timeouts failed; 1 anything else failed."""
    bad = {s for s in statuses if s not in ("done", "skipped")}
    if not bad:
        return EXIT_OK
    if bad == {"timeout"}:
        return EXIT_TIMEOUT
    return EXIT_FAILED


def default_log_dir(store: str) -> Path:
    """A store's own logs: ``<store><suffix>`` beside a local store (``results/sweep.zarr`` ->
    ``results/sweep.zarr.logs/``), ``./<store name><suffix>`` for an fsspec URL (the store may
    be an object store: logs are plain files the driver appends to). One directory per store,
    so two sweeps never interleave their logs."""
    suffix = config.get("log-dir-suffix")
    text = str(store).removeprefix("file://").rstrip("/")
    if not is_local(text):
        return Path.cwd() / (text.rsplit("/", 1)[-1] + suffix)
    path = Path(text).resolve()
    return path.parent / (path.name + suffix)


# SIGINT, SIGTERM, SIGHUP: a clean stop (Interrupted); a second one forces it; one during an
# import is raised after it (the driver loop's check_stop)
@interruptible(hold_imports=True)
def run_sweep(
    packages_dir: str | os.PathLike[str],
    store: str | os.PathLike[str],
    options: SweepOptions | None = None,
    *,
    client: Any = None,
    out: IO[str] | None = None,
    on_start: StartHook | None = None,
    **option_values: Any,
) -> SweepResult:
    """Run every requested package of ``packages_dir`` not yet done in ``store`` and commit
    each result as soon as it finishes.

    ``options`` (a ``SweepOptions``) and/or its fields as keywords (``timeout=600``,
    ``mode="sequential"``, ``package_ids=[...]``, ...) say what runs where and how. Give
    ``client`` to run on an existing Dask client (left open); otherwise a cluster is started
    for ``mode`` or a remote scheduler is connected to. ``out`` receives the progress lines
    (default stdout); ``on_start`` is called once the cluster is up (see ``SweepStart``).
    Raises ``ConfigError`` for bad input before anything runs or any store changes.
    """
    opts = SweepOptions.from_kwargs(options, **option_values)
    out = out or sys.stdout
    t_start = time.monotonic()
    fix_trim_threshold()  # freed memory goes back to the system: the driver's RSS stays flat

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    if not Path(packages_dir).is_dir():
        raise ConfigError(
            f"{packages_dir}: no such packages directory; give the directory "
            "holding priority_summary.json and package_*.json"
        )
    # a cluster we start has known worker memory: check it with the package files
    own = client is None and not opts.remote
    n_local = 1 if opts.mode == "sequential" else opts.max_parallel or usable_cores()
    # --worker-memory (else this machine's share) on a local cluster; a queue's jobs have their own
    worker_memory = (opts.worker_memory or memory_per_worker(n_local)) if own else None
    queue_spec = None
    if own and opts.mode in QUEUES:
        # the batch system is asked before anything is read or written (a job it would refuse,
        # or a controller that does not answer, is one line and exit 2); a dry run asks nothing
        queue_spec = None if opts.dry_run else prepare_queue(opts)
        worker_memory = None if queue_spec is None else queue_spec.worker_memory
    packages = select_packages(
        load_packages(
            packages_dir, worker_memory=worker_memory, check_memory=own and worker_memory is not None
        ),
        opts.priority,
        opts.package_ids,
    )
    store_url = str(store)
    scope = selection_label(opts.priority, opts.package_ids)
    if opts.dry_run:
        return _dry_run(store_url, packages, say, scope)

    early = None  # a cluster we did not start: connected (and checked) before the store opens
    if not own:
        early = wrap_client(client) if client is not None else connect(opts)
    try:
        if early is not None:
            check_cluster_memory(early.client, packages, store_url, opts.worker_memory)
        sweep = _Sweep(
            opts,
            store_url,
            packages,
            scope,
            str(packages_dir),
            say,
            out,
            t_start,
            early,
            "client" if client is not None else "remote" if opts.remote else opts.mode,
            on_start,
            queue_spec,
        )
        return sweep.run()
    finally:
        if early is not None:
            with quiet_connection_noise():  # closing a client whose scheduler is gone
                early.close()


class _Sweep:
    """One call of ``run_sweep`` once its options and packages are checked: plan against the
    store, run what is left, summarise."""

    def __init__(
        self,
        opts: SweepOptions,
        store_url: str,
        packages: Sequence[Package],
        scope: str,
        packages_dir: str,
        say: Callable[[str], None],
        out: IO[str],
        t_start: float,
        early: ClusterHandle | None,
        cluster_kind: str,
        on_start: StartHook | None,
        queue_spec: QueueSpec | None = None,
    ) -> None:
        self.opts = opts
        self.store_url = store_url
        self.packages = packages
        self.scope = scope
        self.packages_dir = packages_dir
        self.say = say
        self.out = out
        self.t_start = t_start
        self.early = early
        self.cluster_kind = cluster_kind
        self.on_start = on_start
        self.queue_spec = queue_spec
        self.log_dir = opts.log_dir if opts.log_dir is not None else default_log_dir(store_url)

    def run(self) -> SweepResult:
        with Store.open(self.store_url, mode="a", break_lock=self.opts.break_lock) as st:
            state = store_state(st, by_package=False)
            ckpt_steps: dict[str, int] = {}
            if state.checkpoints:
                table = PackageTable.of(self.packages)
                here = set(state.checkpoints)
                ckpt_steps = {
                    rid: state.checkpoints[rid]
                    for rid in (table.run_id(i) for i in np.flatnonzero(table.run_id_mask(here)).tolist())
                }
            plan = plan_sweep(self.packages, state.done, state.failed, ckpt_steps, state.stale_checkpoints)
            # columns, not a dict entry per package (sweep.engine.columns)
            result = SweepResult(EXIT_OK, plan=plan, store=self.store_url, log_dir=self.log_dir)
            result.priority = PriorityView(plan.packages)
            result.skipped = SkippedView(plan)
            result.status = StatusView(plan.packages, np.full(len(plan), CANCELLED, dtype=np.uint8))
            to_run = plan.positions("run")
            is_done = plan.done_mask()
            n_done = int(is_done[plan.positions("skip")].sum())
            logs = SweepLogs(self.log_dir)
            try:
                self._announce(logs, len(to_run), n_done, plan)
                if len(to_run):
                    import dask.config
                    import distributed  # noqa: F401  (see below)

                    # distributed's defaults are loaded first: a dask.config.set of a key whose
                    # section Dask does not have yet deletes that whole section on exit, and
                    # every later use of distributed in the process failed (KeyError:
                    # 'distributed'; a stopped soak driver hung in it).
                    # Dask keeps its last messages for debugging (1,000 per connection by
                    # default): with batches of tiny packages they held ~100,000 packages' items
                    # in the scheduler of a local cluster (the driver's process) and its workers
                    keep = int(config.get("dask-log-length"))
                    with dask.config.set({"distributed.admin.low-level-log-length": keep}):
                        self._execute(st, logs, plan, to_run, ckpt_steps, result)
                self._summarise(logs, plan, is_done, n_done, result, st)
            finally:
                logs.close()
        return result

    def _announce(self, logs: SweepLogs, n_run: int, n_done: int, plan: Plan) -> None:
        n_skipped = len(plan) - n_run
        shared = n_skipped - n_done
        self.say(
            f"sweep: {len(self.packages)} package(s) requested ({self.scope}): {n_run} to run, "
            f"{n_done} skipped as already done in {self.store_url}"
            + (f", {shared} sharing another package's run" if shared else "")
        )
        logs.logger.info(
            "sweep of %s into %s: %d requested, %d to run, %d skipped",
            self.packages_dir,
            self.store_url,
            len(self.packages),
            n_run,
            n_skipped,
        )
        if shared:  # few, and each names the package it shares with
            for i in sorted(i for i in plan.notes if plan.action(i) == "skip"):
                logs.logger.info("%s: skipped: %s", plan.packages.package_id(i), plan.notes[i])
        if n_done:  # one line, not one per package (100,000 lines took 3 s to log)
            logs.logger.info(
                "skipped %d package(s) already done in the store (sweep explain lists each)", n_done
            )

    def _execute(
        self,
        st: Store,
        logs: SweepLogs,
        plan: Plan,
        to_run: np.ndarray,
        ckpt_steps: Mapping[str, int | None],
        result: SweepResult,
    ) -> None:
        """Start (or use) the cluster and drive the runs of ``to_run`` to their end."""
        from .driver import Driver  # imports Dask's worker side: only when something runs

        log = logs.logger
        had_checkpoint = set(ckpt_steps)
        predictor = RuntimePredictor.from_store(st)
        warned = self.queue_spec is not None and self._warn_long_runs(
            [plan[i] for i in to_run.tolist()], predictor, ckpt_steps, log
        )
        handle = self.early if self.early is not None else connect(self.opts, self.log_dir, self.queue_spec)
        if handle.queue is not None:
            handle.queue.warned = warned  # else once the runs' measured rates say so
        fault_point("cluster-started")
        stop_hook = None
        try:
            result.dashboard_link = handle.dashboard_link
            self.say(f"sweep: cluster: {handle.description or handle.client}")
            link = result.dashboard_link
            self.say(f"sweep: Dask dashboard: {link or 'not available'}{dashboard_note(link)}")
            if self.on_start is not None:

                def say_logged(line: str) -> None:
                    self.say(line)
                    log.info(line)

                n_workers = len(handle.client.scheduler_info(n_workers=-1).get("workers", {}))
                stop_hook = self.on_start(
                    SweepStart(self.store_url, self.packages_dir, n_workers or None, say_logged)
                )
            self.say(f"sweep: logs in {self.log_dir}")
            log.info("cluster: %s; dashboard %s", handle.description, result.dashboard_link)
            progress = SweepProgress(
                len(to_run),
                summary_every=self.opts.summary_every,
                bar=self.opts.progress_bar,
                out=self.out,
                echo=log.info,
            )
            resumes = self._resumes(st, had_checkpoint, log)
            # each run's "queued" line, written with its next lines (made then: a million)
            logs.defer_from(QueuedLines(plan, to_run, stamp_now()))
            driver = Driver(
                client=handle.client,
                store=st,
                logs=logs,
                entries=RunEntries(plan, to_run),
                duplicates=_shared_runs(plan),
                options=self.opts,
                progress=progress,
                cluster_kind=self.cluster_kind,
                had_checkpoint=had_checkpoint,
                queue=handle.queue,
                cluster=handle.cluster,
                predictor=predictor,
                description=handle.description,
                resume_steps={r: s for r, s in ckpt_steps.items() if s},
                dashboard=result.dashboard_link,
            )
            for rid in resumes:  # attempts of earlier (interrupted) sweeps this run carries on
                earlier = st.checkpoint_segments(rid)
                if earlier:
                    driver.segments[rid] = earlier
            try:
                self._drive(driver, handle, resumes)
            finally:
                progress.close()
            result.retries = driver.recovery.n_retries
            status = result.status
            assert isinstance(status, StatusView)
            ran = driver.status  # a code per run of to_run, in its order (0: never finished)
            to_code = [status.code("cancelled"), *(status.code(label) for label in ran.labels or ())]
            status.codes[to_run] = np.asarray(to_code, dtype=np.uint8)[ran.codes]
        finally:
            if stop_hook is not None:
                stop_hook()
            if handle is not self.early:  # run_sweep closes that one
                stopped = isinstance(sys.exc_info()[1], KeyboardInterrupt)
                # closing a client whose scheduler is gone; a stopped sweep's shutdown races
                with quiet_connection_noise(), quiet_distributed() if stopped else contextlib.nullcontext():
                    handle.close()

    def _warn_long_runs(
        self,
        to_run: list[PlanEntry],
        predictor: RuntimePredictor,
        ckpt_steps: Mapping[str, int | None],
        log: Any,
    ) -> bool:
        """Say before submission when runs are predicted to outlive a job (they continue from
        checkpoints in later jobs: how many jobs the longest takes); whether it said so."""
        assert self.queue_spec is not None
        life = self.queue_spec.fresh_life
        times = []
        for e in to_run:
            size_steps = getattr(e.package.params, "n_steps", None)
            left = None if size_steps is None else size_steps - (ckpt_steps.get(e.package.run_id) or 0)
            times.append((predictor.predict(e.package.params, left), e.package_id))
        longer = [t for t in times if t[0] > life]
        if longer:
            seconds, pid = max(longer)
            line = walltime_warning(self.queue_spec, seconds, pid, len(longer))
            if line:
                self.say(line)
                log.info(line)
                return True
        return False

    def _resumes(self, st: Store, had_checkpoint: set[str], log: Any) -> dict[str, dict[str, Any]]:
        """Encoded checkpoints of the runs that resume (those this solver version can resume)."""
        from ..codec import encode_arrays
        from .checkpoints import usable_checkpoint

        if not had_checkpoint:
            return {}
        table = PackageTable.of(self.packages)
        package_of = {
            table.run_id(i): table[i] for i in np.flatnonzero(table.run_id_mask(had_checkpoint)).tolist()
        }
        resumes = {}
        for rid in had_checkpoint:
            arrays = usable_checkpoint(st, rid, package_of[rid], log)
            if arrays is not None:
                resumes[rid] = encode_arrays(arrays)
        return resumes

    def _drive(self, driver: Driver, handle: ClusterHandle, resumes: dict[str, dict[str, Any]]) -> None:
        """Run the driver loop; a lost scheduler becomes one line (SchedulerLostError)."""
        quiet_lost_broadcasts()  # a worker that dies during a broadcast: its nanny restarts it
        quiet_variable_timeouts()  # a checkpoint asked for that is not there yet
        try:
            # a full disk or read-only file system under the logs, too, is one line
            with (
                quiet_connection_noise(),
                writing(self.store_url, "write the results or logs"),
                frozen_heap(),  # the packages, plan and index: not scanned at every collection
            ):
                driver.run(resumes)
                lost = scheduler_lost(handle.client, None)
            if lost:  # futures cancelled by the disconnection: not a run's failure
                raise SchedulerLostError(lost)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):  # stopped (Ctrl-C, SIGTERM, SIGHUP): save what runs
                from .stopping import wind_down

                with quiet_distributed():
                    wind_down(driver, handle.client, self.opts, self.say)
            pending = [f for f in driver.tasks.futures if not f.done()]
            if pending:
                try:
                    handle.client.cancel(pending)
                except Exception:  # the scheduler is gone: nothing left to cancel
                    pass
            n_done = driver.status.counts().get("done", 0)
            driver.log.error("sweep interrupted; %d finished run(s) are committed", n_done)
            what = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else type(exc).__name__
            for rid in driver.running:  # each run under way says in its log that it was cut
                driver.logs.package(
                    driver.entries[rid].package_id,
                    f"interrupted during attempt {driver.tasks.attempt.get(rid, 1)} ({what}); the next "
                    "sweep run resumes it from its last checkpoint, or starts it again",
                    stamped=True,
                )
                try:  # its time is kept with its checkpoint: the run's record will count it
                    driver.store.add_checkpoint_segment(rid, driver.interrupted_segment(rid, what))
                except OSError:  # a full or read-only disk: only this bookkeeping is lost
                    pass
            why = str(exc) if isinstance(exc, SchedulerLostError) else scheduler_lost(handle.client, exc)
            if why:
                raise SchedulerLostError(
                    f"lost the connection to the Dask scheduler ({handle.description}): {why}; {n_done} "
                    f"run(s) finished in this sweep are committed in {self.store_url}; start a scheduler "
                    "and run the same command again: done runs are skipped, unfinished ones resume from "
                    "their checkpoints"
                ) from None
            raise

    def _summarise(
        self,
        logs: SweepLogs,
        plan: Plan,
        is_done: np.ndarray,
        n_done: int,
        result: SweepResult,
        st: Store,
    ) -> None:
        """Statuses of the skipped packages, the exit code, the closing table."""
        status = result.status
        assert isinstance(status, StatusView)
        codes = status.codes
        skip = plan.actions == 1
        codes[skip & is_done] = SKIPPED
        shared = skip & ~is_done
        if shared.any():  # a package sharing another's run has that run's status (its first package's):
            # looked up only then (at 1M this np.unique holds 30 MiB, the closing peak of the driver)
            _, first_of, inverse = np.unique(plan.packages.run_keys(), return_index=True, return_inverse=True)
            codes[shared] = codes[first_of[inverse.reshape(-1)][shared]]
        present = status.present()
        result.exit_code = exit_code_of(present)
        result.elapsed = time.monotonic() - self.t_start
        rows = summary_rows(plan.packages.priority_codes(), codes, status.labels)
        lines = final_summary(rows, PRIORITIES, n_done, result.elapsed)
        failing = [status.code(c) for c in present if c in FAILURE_CLASSES]
        lines += failure_lines(
            [
                (plan.packages.package_id(i), plan.packages.run_id(i))
                for i in np.flatnonzero(np.isin(codes, failing)).tolist()
            ],
            st.failures() if failing else {},
            f"sweep status --store {self.store_url} --packages {self.packages_dir}",
        )
        for ln in lines:
            self.say(ln)
            logs.logger.info(ln)
        self.say(
            f"sweep: results in {self.store_url} (open with sweep.open_results); exit code {result.exit_code}"
        )
        logs.logger.info("exit code %d", result.exit_code)


def _dry_run(
    store_url: str, packages: Sequence[Package], say: Callable[[str], None], scope: str
) -> SweepResult:
    """List what would run and what would be skipped, and why (``sweep explain``'s lines);
    start nothing, write nothing."""
    entries, where = explain_store(packages, store_url)
    for line in iter_explanation_lines(entries, scope=scope, store=where, dry_run=True):
        say(line)
    plan = entries.plan
    res = SweepResult(EXIT_OK, store=store_url, plan=plan)
    res.skipped = SkippedView(plan)
    res.priority = PriorityView(plan.packages)
    res.status = StatusView(plan.packages, np.where(plan.actions == 1, SKIPPED, PLANNED).astype(np.uint8))
    return res


def _shared_runs(plan: Plan) -> dict[str, list[str]]:
    """run id -> the ids of its packages, of the runs two packages or more share (the rest
    have one: ``Driver.duplicates`` falls back to the package's own id)."""
    table = plan.packages
    _, inverse, counts = np.unique(table.run_keys(), return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    out: dict[str, list[str]] = {}
    for i in np.flatnonzero(counts[inverse] > 1).tolist():
        out.setdefault(table.run_id(i), []).append(table.package_id(i))
    return out
