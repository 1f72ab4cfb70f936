"""A queue-mode sweep's jobs as the driver sees and steers them: the walltime guard on every
worker, the demand that ``SweepAdaptive`` scales to, where a run that was handed back should go,
the jobs for the status document, and submissions that failed.

The lifetime-vs-prediction policy (``sweep.engine.walltime.declines``, on the worker): a worker
does not start a run when its time left is under ``lifetime-fit`` (a quarter) of both the run's
predicted time and a fresh job's life; the run goes back to the scheduler for the next free
worker, and the declining worker retires at once when no waiting run is predicted to fit in its
time left, so that a fresh job with a full walltime takes its slot. Otherwise a run starts
wherever the scheduler puts it: with forced checkpoints a short stay costs only the hand-over.
(Workers refresh a run's prediction from the driver's latest rates, published in a scheduler
``Variable``, only in the last ``lifetime-fit`` of their life, where a decline is possible.)
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any

from .. import config
from ..errors import EXIT_BAD_INPUT, SweepError
from .scaling import wanted_workers
from .walltime import WalltimeGuard, drain_worker

if TYPE_CHECKING:  # pragma: no cover
    from .driver import Driver
    from .jobqueue import QueueSpec

__all__ = ["QueueRuntime", "QueueSubmitError"]


class QueueSubmitError(SweepError):
    """The batch system refused the sweep's jobs during the sweep (exit 2: fix the settings)."""

    exit_code = EXIT_BAD_INPUT


class QueueRuntime:
    """The jobs of one queue-mode sweep (one per cluster the sweep started)."""

    def __init__(self, spec: QueueSpec, cluster: Any, adaptive: Any, failures: list[str]) -> None:
        self.spec = spec
        self.cluster = cluster
        self.adaptive = adaptive
        self.failures = failures  # first lines of failed submissions (appended on the loop)
        self.wanted = 0
        self.fit = float(config.get("jobqueue.lifetime-fit"))
        self.drain_at: dict[str, float] = {}  # worker -> when its guard drains it (driver clock)
        self.job_end: dict[str, float] = {}  # job id -> end of its walltime (driver clock)
        self.job_of: dict[str, str] = {}  # worker -> job id
        self.history: dict[str, dict[str, Any]] = {}  # job id -> first/last seen, how it ended
        self.events: collections.deque[dict[str, Any]] = collections.deque()
        self.drains = 0
        self.retired: list[str] = []  # workers let go early by the lifetime-vs-prediction policy
        self._last_demand = 0.0
        self._last_alive = time.monotonic()
        self.ever_connected = False
        self.warned = False  # the note that runs outlive a job was given (sweep.engine.sweep)
        self._last_warn_check = time.monotonic()
        self.vanished: list[str] = []  # job ids that ended before any worker of theirs connected

    def dashboard_link(self, link: str) -> str:
        """The dashboard's address as it listens: Dask names the scheduler's host in the link,
        but a dashboard kept on this host (the default) answers on 127.0.0.1 only."""
        address = str(self.spec.scheduler_options.get("dashboard_address") or "")
        if address.startswith(("127.0.0.1:", "localhost:")):
            scheme, _, rest = link.partition("://")
            port_path = rest.partition(":")[2]
            return f"{scheme}://127.0.0.1:{port_path}" if port_path else link
        return link

    # -- set-up --------------------------------------------------------------------------
    def run_config(self) -> dict[str, Any]:
        """Dask settings held while the sweep runs: a worker whose job ended is forgotten at
        once, so a fresh job may take its place (distributed's default waits 15 s)."""
        return {
            "distributed.deploy.lost-worker-timeout": f"{float(config.get('jobqueue.lost-worker-timeout'))}s"
        }

    def attach(self, driver: Driver) -> None:
        """Guard every worker (and each that joins later), listen to the guards, scale."""
        driver.client.register_plugin(WalltimeGuard(margin=self.spec.margin, walltime=self.spec.walltime))
        driver.client.subscribe_topic(WalltimeGuard.topic, self._on_event)
        self.adaptive.demand = lambda: self.wanted

    def detach(self, driver: Driver) -> None:
        """Stop listening (the cluster is closed by its handle, which cancels its jobs)."""
        self.wanted = 0
        self._track_jobs()
        for h in self.history.values():
            if h.get("state") != "ended":
                h["state"] = "ended"
                h.setdefault("ended", "cancelled at the end of the sweep")
        try:
            driver.client.unsubscribe_topic(WalltimeGuard.topic)
        except Exception:  # the scheduler may be gone
            pass

    def _on_event(self, event: Any) -> None:
        # the client's event loop: only queue it; the driver acts on it in tick()
        self.events.append(event[1] if isinstance(event, tuple) else event)

    # -- every tick ----------------------------------------------------------------------
    def tick(self, driver: Driver) -> None:
        """Act on the guards' events, update the demand, refuse to wait for jobs that cannot
        be submitted."""
        while self.events:
            self._guard_event(driver, self.events.popleft())
        now = time.monotonic()
        if now - self._last_demand >= 0.5:
            self._last_demand = now
            runs_left = len(driver.entries) - len(driver.status)
            # the work cap only once a rate is measured: a first guess may be far off, and
            # holding jobs back on it would serialise long runs (too many jobs for short runs
            # are let go as soon as their rate is known)
            self.wanted = wanted_workers(
                runs_left, driver.work_left(guess_too=False), self.spec.max_workers, self.spec.job_start
            )
            self._track_jobs()
        if not self.warned and now - self._last_warn_check >= 5:
            self._last_warn_check = now
            self._warn_once_measured(driver)
        if now - self._last_alive >= 10:
            self._last_alive = now
            self._check_vanished(driver)
        # dask-jobqueue submits again at each scaling step: a few failures with no worker at
        # all is a batch system that will not take these jobs, not a hiccup
        if len(self.failures) >= 3 and not self._connected():
            raise QueueSubmitError(
                f"{self.spec.system.label} did not take the sweep's jobs: {self.failures[-1]}; runs "
                "finished so far are committed: fix the job settings (or the batch system) and run "
                "the same command again"
            )

    def _warn_once_measured(self, driver: Driver) -> None:
        """The note of ``walltime_warning``, once measured rates show a run will outlive a job
        when the first guess at the start did not (a run's steps may be far slower than guessed)."""
        from .jobqueue import walltime_warning

        longer = []
        for rid in driver.entries:
            if rid in driver.status:
                continue
            if driver.predictor.rate_of(driver.size_of(rid))[1] == "first guess":
                return  # not measured yet: wait
            left = driver.predicted_left(rid)
            if left > self.spec.fresh_life:
                longer.append((left, driver.entries[rid].package_id))
        self.warned = True
        if longer:
            seconds, pid = max(longer)
            line = walltime_warning(self.spec, seconds, pid, len(longer))
            if line:
                driver.progress.write(line.replace("sweep: note:", "sweep: note (measured rates):", 1))

    def _check_vanished(self, driver: Driver) -> None:
        """Jobs that left the queue before any worker of theirs connected: a job that cannot
        start a worker (Python or the project not found on the compute nodes, no route to this
        scheduler) would otherwise be resubmitted for ever."""
        if self._connected():
            self.ever_connected = True
        now = time.time()
        waiting = [jid for _n, jid, state, _w in self.adaptive.jobs if jid and state == "queued"]
        old = [
            j
            for j in waiting
            if now - self.history.get(j, {}).get("first_seen", now) > 10
            and "running_since" not in self.history.get(j, {})  # its worker left: not this case
        ]
        if not old:
            return
        alive = self.spec.system.alive(old)
        if alive is None:
            return
        from .jobqueue import job_log_tail

        log_dir = getattr(next(iter(self.cluster.workers.values()), None), "log_directory", None)
        for jid in old:
            if jid not in alive and jid not in self.vanished:
                self.vanished.append(jid)
                self.history.setdefault(jid, {})["ended"] = "ended before its worker connected"
                driver.log.warning(
                    "job %s ended before its worker connected to the scheduler; %s",
                    jid,
                    job_log_tail(log_dir, jid) or "no job log",
                )
        if len(self.vanished) >= 2 and not self.ever_connected:
            jid = self.vanished[-1]
            raise QueueSubmitError(
                f"{self.spec.system.label} jobs end before their Dask worker connects (jobs "
                f"{', '.join(self.vanished)}); {job_log_tail(log_dir, jid) or 'their logs are empty'}; "
                "check that the compute nodes see this Python environment and can reach this host"
            )

    def _connected(self) -> int:
        try:
            return len(self.cluster.scheduler_info.get("workers", {}))
        except Exception:
            return 0

    def _guard_event(self, driver: Driver, msg: dict[str, Any]) -> None:
        worker, action = str(msg.get("worker", "?")), msg.get("action")
        jid = msg.get("job_id")
        now = time.time()
        if jid:
            self.job_of[worker] = str(jid)
        if action == "watch":
            if msg.get("drain_in") is not None:
                self.drain_at[worker] = now + float(msg["drain_in"])
            if jid and msg.get("job_end_in") is not None:
                self.job_end[str(jid)] = now + float(msg["job_end_in"])
            driver.log.info(
                "worker %s (job %s): runs checkpoint and stop in %.0f s (%s)",
                worker,
                jid or "-",
                float(msg.get("drain_in") or 0.0),
                msg.get("source"),
            )
        elif action == "drain":
            self.drains += 1
            early = msg.get("source") not in ("job-end", "lifetime")
            driver.log.info(
                "worker %s (job %s): %s: draining (%s run(s) checkpoint and stop)",
                worker,
                jid or "-",
                msg.get("source") if early else "walltime near",
                msg.get("running"),
            )
            if jid:
                self.history.setdefault(str(jid), {}).setdefault("ended", "walltime margin")
        elif action == "close":
            driver.log.info(
                "worker %s (job %s): closed %.1f s after its drain%s",
                worker,
                jid or "-",
                float(msg.get("waited") or 0.0),
                f", {msg['cut_off']} run(s) cut off" if msg.get("cut_off") else "",
            )
            self.drain_at.pop(worker, None)
        else:
            driver.log.warning("worker %s (job %s): %s", worker, jid or "-", action)

    def _track_jobs(self) -> None:
        now = time.time()
        seen = set()
        for _name, jid, state, _n in self.adaptive.jobs:
            if jid is None:
                continue
            seen.add(jid)
            h = self.history.setdefault(jid, {})
            h.setdefault("first_seen", now)
            h["last_seen"] = now
            if state == "running":
                h.setdefault("running_since", now)
            h["state"] = state
        for jid, h in self.history.items():
            if jid not in seen and h.get("state") not in (None, "ended"):
                h["state"] = "ended"
                h.setdefault("ended", "scaled down")

    # -- placement -----------------------------------------------------------------------
    def fresh_life(self) -> float:
        """Seconds of life a fresh job's worker has before its drain (the policy's yardstick)."""
        return self.spec.fresh_life

    def time_left(self, worker: str) -> float | None:
        """Seconds until a worker drains (None: unknown)."""
        at = self.drain_at.get(worker)
        return None if at is None else at - time.time()

    def declined(self, driver: Driver, worker: str, left_fits: bool) -> None:
        """A worker declined a run: retire it at once when no waiting run fits its time left
        (``left_fits`` False), so that a fresh job with a full walltime takes its slot."""
        if left_fits or worker in self.retired:
            return
        self.retired.append(worker)
        driver.log.info(
            "worker %s: no waiting run fits in its time left: retired early for a fresh job", worker
        )
        jid = self.job_of.get(worker)
        if jid:
            self.history.setdefault(jid, {})["ended"] = "retired early (lifetime-vs-prediction)"
        # drained by its guard before the run goes back to the scheduler: it takes no task any
        # more (the scheduler would hand the run straight back to this idle worker), leaves once
        # its results are fetched, and its job ends (a retirement from here would be refused
        # while the scheduler still counts the declined outcome as held there)
        try:
            driver.client.run(drain_worker, "retired early (lifetime-vs-prediction)", workers=[worker])
        except Exception as exc:  # gone already, or the scheduler is: nothing to retire
            driver.log.info("worker %s: not retired: %s", worker, exc)

    # -- the status document -------------------------------------------------------------
    def document(self, ended: bool = False) -> dict[str, Any]:
        """The jobs part of the running sweep's status document (``ended``: the last one, when
        the sweep's jobs are being cancelled: none is current)."""
        now = time.time()
        current = []
        for name, jid, state, n in () if ended else self.adaptive.jobs:
            end = self.job_end.get(jid) if jid else None
            current.append(
                {
                    "job_id": jid,
                    "name": name,
                    "state": state,
                    "workers": n,
                    "walltime_left": None if end is None else round(end - now, 1),
                }
            )
        return {
            "system": self.spec.system.name,
            "max_jobs": self.spec.max_jobs,
            "walltime": self.spec.walltime,
            "margin": self.spec.margin,
            "wanted_workers": self.wanted,
            "current": current,
            "history": {
                jid: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in h.items()}
                for jid, h in self.history.items()
            },
            "drains": self.drains,
            "retired_early": len(self.retired),
        }
