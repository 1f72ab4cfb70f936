"""``SweepOptions``: every option of a sweep in one immutable object, defaults merged from
``dask.config`` (the packaged sweep.yaml, section ``sweep``) and validated once, before anything
is read, started or written.

Errors speak in these parameter names (``timeout: bad value -1; allowed: ...``); the ``sweep``
command shows its flags instead (``--timeout``): see ``sweep.cli``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import config
from ..errors import option_error
from ..spec import PRIORITIES, check_priority
from ..units import parse_size

__all__ = ["SweepOptions", "int_at_least"]


# Numbers may come as text (the command line passes them on as typed, so that a bad value is
# shown as the user wrote it); anything else that is not a number of the right kind is refused.


def _positive(name: str, value: Any, what: str = "seconds > 0") -> float:
    try:
        v = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        raise option_error(name, value, what) from None
    if not (v > 0 and math.isfinite(v)):
        raise option_error(name, value, what)
    return v


def int_at_least(name: str, value: Any, lo: int) -> int:
    """An option's integer (given as an int or its text) checked against its lower bound:
    a one-line error naming the option otherwise (``True`` is not a number here)."""
    v = value
    if isinstance(value, str):
        try:
            v = int(value)
        except ValueError:
            raise option_error(name, value, f"an integer >= {lo}") from None
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise option_error(name, value, f"an integer >= {lo}")
    return v


def _address(name: str, value: Any) -> str:
    """A ``HOST:PORT`` to listen on (port 0: any free one)."""
    host, _, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not host or not port.isdigit() or int(port) > 65535:
        raise option_error(
            name, value, "HOST:PORT, e.g. 127.0.0.1:8787 (this host only) or 0.0.0.0:8787 (every host)"
        )
    return str(value)


def _size(name: str, value: Any) -> int | None:
    """Bytes from a size (``4GiB``, ``500MB``) or a positive integer; None stays None."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if not isinstance(value, str):
        raise option_error(name, value, "a size such as 4GiB or 500MB")
    return parse_size(value, name)


def _setting(value: Any, key: str) -> Any:
    """``value``, or the ``sweep.<key>`` setting when it is None."""
    return config.get(key) if value is None else value


class SweepOptions:
    """How a sweep runs. An argument left at ``None`` takes its ``sweep.*`` setting from
    dask.config; every value is checked here, once.

    What runs: ``priority`` (HIGH, MEDIUM, LOW or ALL), ``package_ids`` (package ids or file
    names; empty: every package). Where: ``mode`` (``sequential`` | ``parallel``) with
    ``max_parallel`` worker processes (its Dask dashboard on ``dashboard_address``), or a
    remote ``scheduler`` address (``tcp://``, or ``tls://`` with ``tls_ca``/``tls_cert``/
    ``tls_key`` or a ``security`` object) or ``scheduler_file`` (the TLS files are refused
    with anything but a ``tls://`` scheduler), or an HPC queue (``mode`` ``slurm`` | ``pbs`` |
    ``sge`` | ``lsf``, see ``sweep.engine.jobqueue``) with up to ``jobs`` jobs of ``walltime``
    (``HH:MM:SS``), ``job_cores`` cores and ``job_memory`` (``4GiB``) each, in ``queue``
    charged to ``account``, with ``job_extra`` directives; runs checkpoint and stop
    ``walltime_margin`` seconds before a job's walltime and continue in the next job. How:
    ``timeout`` seconds per package, ``retries`` after a lost worker, checkpoints every
    ``checkpoint_every_seconds`` / ``checkpoint_every_steps``, ``stop_on_error``,
    ``break_lock`` (take over the store's lock held by a process of another host: only when
    it is gone; see ``sweep.store.lock``); ``worker_memory`` (bytes or ``"4GiB"``): one
    worker's memory for the check that every run fits (default: this machine's memory shared
    by the local cluster's workers; a cluster we did not start reports its own, which wins
    when it has a limit). Output: ``log_dir`` (default: ``<store>.logs/`` beside a local store),
    ``progress_bar`` (None: on a terminal), ``dry_run``. The rest are the engine's tunables
    (documented in sweep.yaml).
    """

    _given: dict[str, Any]  # the arguments as given (what replace() starts from)
    priority: str
    package_ids: tuple[str, ...]
    mode: str
    max_parallel: int | None
    jobs: int
    walltime: float | None  # seconds
    job_cores: int | None
    job_memory: str | None  # as given (dask-jobqueue reads it), checked to be a size
    queue: str | None
    account: str | None
    job_extra: tuple[str, ...]
    walltime_margin: float
    dashboard_address: str
    scheduler: str | None
    scheduler_file: str | None
    tls_ca: str | None
    tls_cert: str | None
    tls_key: str | None
    security: Any  # a distributed.Security for a tls:// scheduler (built from tls_* when not given)
    timeout: float
    retries: int
    stop_on_error: bool
    break_lock: bool
    checkpoint_every_seconds: float | None
    checkpoint_every_steps: int | None
    dry_run: bool
    worker_memory: int | None
    log_dir: Path | None
    progress_bar: bool | None
    timeout_grace: float
    restart_timeout: float
    tick: float
    gather_every: float
    progress_every: float
    announce_after: float
    summary_every: int
    first_chunk: int
    in_flight: int
    min_in_flight: int
    batch_seconds: float
    max_batch: int
    max_pending_commits: int
    priority_values: dict[str, int]

    def __init__(
        self,
        *,
        priority: str = "ALL",
        package_ids: Sequence[str] | str | None = None,
        mode: str | None = None,
        max_parallel: int | None = None,
        jobs: int | None = None,
        walltime: str | None = None,
        job_cores: int | None = None,
        job_memory: str | None = None,
        queue: str | None = None,
        account: str | None = None,
        job_extra: Sequence[str] | str | None = None,
        walltime_margin: float | None = None,
        dashboard_address: str | None = None,
        scheduler: str | None = None,
        scheduler_file: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        security: Any = None,
        timeout: float | None = None,
        retries: int | None = None,
        stop_on_error: bool = False,
        break_lock: bool = False,
        checkpoint_every_seconds: float | None = None,
        checkpoint_every_steps: int | None = None,
        dry_run: bool = False,
        worker_memory: int | str | None = None,
        log_dir: str | Path | None = None,
        progress_bar: bool | None = None,
        timeout_grace: float | None = None,
        restart_timeout: float | None = None,
        tick: float | None = None,
        gather_every: float | None = None,
        progress_every: float | None = None,
        announce_after: float | None = None,
        summary_every: int | None = None,
        first_chunk: int | None = None,
        in_flight: int | None = None,
        min_in_flight: int | None = None,
        batch_seconds: float | None = None,
        max_batch: int | None = None,
        max_pending_commits: int | None = None,
        priority_values: Mapping[str, int] | None = None,
    ) -> None:
        given = dict(locals())
        del given["self"]
        self._set("_given", given)
        check_priority(priority)
        put = self._set
        put("priority", priority)
        put("package_ids", (package_ids,) if isinstance(package_ids, str) else tuple(package_ids or ()))
        put("scheduler", scheduler)
        put("scheduler_file", scheduler_file)
        put("tls_ca", tls_ca)
        put("tls_cert", tls_cert)
        put("tls_key", tls_key)
        from .cluster import MODES, check_remote, tls_files_refused
        from .jobqueue import QUEUES, check_queue_values, queue_options_given

        put("mode", _setting(mode, "mode"))
        if not self.remote and self.mode not in MODES:
            raise option_error("mode", self.mode, ", ".join(MODES))
        if self.remote and mode in QUEUES:
            raise option_error("mode", mode, "a queue mode or a remote scheduler, not both")
        n = _setting(max_parallel, "max-parallel")
        put("max_parallel", None if n is None else int_at_least("max_parallel", n, 1))
        queued = check_queue_values(
            _setting(walltime, "jobqueue.walltime"),
            _setting(job_cores, "jobqueue.job-cores"),
            _setting(job_memory, "jobqueue.job-memory"),
            _setting(queue, "jobqueue.queue"),
            _setting(account, "jobqueue.account"),
            _setting(job_extra, "jobqueue.job-extra"),
            _setting(jobs, "jobqueue.jobs"),
        )
        put("jobs", queued["jobs"])
        put("walltime", queued.get("walltime"))
        put("job_cores", queued.get("job_cores"))
        put(
            "job_memory",
            None if queued.get("job_memory") is None else str(_setting(job_memory, "jobqueue.job-memory")),
        )
        put("queue", queued.get("queue"))
        put("account", queued.get("account"))
        put("job_extra", queued["job_extra"])
        put(
            "walltime_margin",
            _positive("walltime_margin", _setting(walltime_margin, "jobqueue.walltime-margin")),
        )
        if self.mode not in QUEUES or self.remote:
            stray = queue_options_given(given)
            if stray:
                raise option_error(
                    stray[0],
                    given[stray[0]],
                    "only with a queue mode (mode " + ", ".join(QUEUES) + "): give the mode too",
                )
        put(
            "dashboard_address",
            _address("dashboard_address", _setting(dashboard_address, "dashboard-address")),
        )
        tls = (tls_ca, tls_cert, tls_key)
        if not self.remote and any(v is not None for v in tls):
            raise tls_files_refused(tls, f"mode {self.mode} starts its own cluster")
        put("security", check_remote(scheduler, scheduler_file, security, tls) if self.remote else security)
        put("timeout", _positive("timeout", _setting(timeout, "timeout")))
        put("retries", int_at_least("retries", _setting(retries, "retries"), 0))
        put("stop_on_error", bool(stop_on_error))
        put("break_lock", bool(break_lock))
        every_s = _setting(checkpoint_every_seconds, "checkpoint.every-seconds")
        put(
            "checkpoint_every_seconds",
            None if every_s is None else _positive("checkpoint_every_seconds", every_s),
        )
        every_n = _setting(checkpoint_every_steps, "checkpoint.every-steps")
        put(
            "checkpoint_every_steps",
            None if every_n is None else int_at_least("checkpoint_every_steps", every_n, 1),
        )
        put("dry_run", bool(dry_run))
        put("worker_memory", _size("worker_memory", worker_memory))
        put("log_dir", None if log_dir is None else Path(log_dir))
        put("progress_bar", progress_bar)
        for name, value in (
            ("timeout_grace", timeout_grace),
            ("restart_timeout", restart_timeout),
            ("tick", tick),
            ("gather_every", gather_every),
            ("progress_every", progress_every),
            ("announce_after", announce_after),
        ):
            put(name, _positive(name, _setting(value, name.replace("_", "-"))))
        for name, value, key in (
            ("summary_every", summary_every, "summary-every"),
            ("first_chunk", first_chunk, "submit.first-chunk"),
            ("in_flight", in_flight, "submit.in-flight"),
            ("min_in_flight", min_in_flight, "submit.min-in-flight"),
            ("max_batch", max_batch, "submit.max-batch"),
            ("max_pending_commits", max_pending_commits, "max-pending-commits"),
        ):
            put(name, int_at_least(name, _setting(value, key), 1))
        seconds = _setting(batch_seconds, "submit.batch-seconds")
        put(
            "batch_seconds",
            0.0
            if seconds == 0 and not isinstance(seconds, bool)
            else _positive("batch_seconds", seconds, "seconds >= 0 (0: every package a task of its own)"),
        )
        values = dict(_setting(priority_values, "priority-values"))
        if set(values) != set(PRIORITIES) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values.values()
        ):
            raise option_error("priority_values", values, "an integer for each of " + ", ".join(PRIORITIES))
        put("priority_values", values)

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("SweepOptions is immutable: use .replace(...)")

    def __repr__(self) -> str:
        given = {
            k: v
            for k, v in self._given.items()
            if v is not None and v is not False and not (k == "priority" and v == "ALL")
        }
        return "SweepOptions(" + ", ".join(f"{k}={v!r}" for k, v in given.items()) + ")"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SweepOptions) and self._given == other._given

    @property
    def remote(self) -> bool:
        """Whether the sweep runs on a remote scheduler (an address or a scheduler file)."""
        return self.scheduler is not None or self.scheduler_file is not None

    def replace(self, **changes: Any) -> SweepOptions:
        """A copy with ``changes`` to the arguments given (checked again)."""
        return SweepOptions.from_kwargs(None, **{**self._given, **changes})

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The names of every option."""
        return tuple(inspect.signature(cls.__init__).parameters)[1:]

    @classmethod
    def from_kwargs(cls, options: SweepOptions | None = None, **kwargs: Any) -> SweepOptions:
        """``options`` (default: all defaults) with ``kwargs`` on top; a name that is not an
        option is a TypeError listing the valid ones."""
        unknown = sorted(set(kwargs) - set(cls.names()))
        if unknown:
            raise TypeError(f"unexpected option {unknown[0]!r}; the options are: {', '.join(cls.names())}")
        if options is None:
            return cls(**kwargs)
        return options.replace(**kwargs) if kwargs else options
