"""The HPC queue modes: ``slurm``, ``pbs``, ``sge``, ``lsf``, each a dask-jobqueue cluster class.

``QUEUES`` is the registry (a mode name -> ``QueueSystem``: which cluster class, how the batch
system spells a walltime and an account, how to ask it whether it would take a job).
``prepare_queue`` turns a sweep's options into a ``QueueSpec`` before anything is started or
written (bad values and an unreachable queue are one-line ``ConfigError``s, exit 2);
``start_queue`` starts the cluster with walltime-safe workers (``sweep.engine.walltime``) that
adapt to the sweep's demand (``sweep.engine.scaling``).

Where each job setting comes from, the first that is set wins:

1. the option (``sweep run --job-cores 4`` / ``run_sweep(job_cores=4)``), or a ``sweep.jobqueue.*``
   setting (sweep.yaml: null by default, so it defers to the next);
2. the user's ``jobqueue.yaml`` (``jobqueue.slurm.cores``, ...: dask-jobqueue's own convention,
   ``DASK_JOBQUEUE__SLURM__CORES`` in the environment beats the file);
3. dask-jobqueue's packaged defaults (walltime 00:30:00; cores and memory have none).

Only what was given is passed to the cluster class, which fills the rest from jobqueue.yaml.
Lists are merged, not replaced: ``--job-extra`` adds to ``job-extra-directives``, the worker
lifetime adds to ``worker-extra-args``, ``NS_SOLVER_THREADS`` to ``job-script-prologue``.
Job logs always go to ``<log dir>/jobs`` (the sweep's log directory, which the user chose).
"""

from __future__ import annotations

import importlib
import math
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import config
from ..errors import ConfigError, option_error
from ..units import WALLTIME_FORMS, format_duration, format_walltime, parse_walltime
from .options import int_at_least

if TYPE_CHECKING:  # pragma: no cover
    from .options import SweepOptions

__all__ = [
    "QUEUES",
    "QueueSystem",
    "QueueSpec",
    "QueueUnavailable",
    "JOB_LOG_DIR",
    "queue_options_given",
    "prepare_queue",
    "start_queue",
    "preflight_sbatch",
]

JOB_LOG_DIR = "jobs"  # job logs: this directory inside the sweep's log directory

# the options that only a queue mode uses (SweepOptions names)
QUEUE_OPTIONS = ("jobs", "walltime", "job_cores", "job_memory", "queue", "account", "job_extra")


class QueueUnavailable(ConfigError):
    """The batch system cannot take the sweep's jobs (exit 2); one line saying why."""


def _hms(seconds: float) -> str:
    return format_walltime(seconds)


def _hm(seconds: float) -> str:
    """LSF's ``-W HH:MM``, rounded up to the minute (a job never gets less than asked)."""
    minutes = int(math.ceil(seconds / 60))
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_hm(text: str) -> float:
    """LSF walltimes: ``HH:MM`` or minutes."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        return 60.0 * int(text)
    m = re.fullmatch(r"(\d+):(\d+)", text)
    if m is None:
        raise ValueError(f"bad walltime {text!r}; allowed: HH:MM or minutes (LSF)")
    return 60.0 * (int(m.group(1)) * 60 + int(m.group(2)))


def _slurm_alive(job_ids: list[str]) -> set[str] | None:
    """The SLURM jobs among ``job_ids`` still pending or running (None: squeue failed)."""
    from .walltime import jobs_time_left

    try:
        return set(jobs_time_left(job_ids))
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass(frozen=True)
class QueueSystem:
    """How one batch system is driven through dask-jobqueue."""

    name: str  # the mode name (sweep run --mode NAME) and dask-jobqueue's config name
    label: str  # what users call it
    cluster: str  # "module.Class" of the dask-jobqueue cluster
    account_keyword: str  # the cluster's keyword for --account (SLURM/PBS: account, SGE/LSF: project)
    status_command: tuple[str, ...]  # answers quickly when the batch system is reachable
    parse_walltime: Callable[[str], float] = parse_walltime
    format_walltime: Callable[[float], str] = _hms
    test_submit: bool = False  # `sbatch --test-only` can check a job script without submitting it
    submit_in_log_dir: bool = True  # submit from the log directory (see _job_class)
    # which of these job ids are still pending or running (None: this system cannot say)
    alive: Callable[[list[str]], set[str] | None] = lambda ids: None

    def cluster_class(self) -> Any:
        """The dask-jobqueue cluster class (imported on first use: it imports distributed)."""
        module, _, name = self.cluster.rpartition(".")
        return getattr(importlib.import_module(module), name)

    def setting(self, key: str) -> Any:
        """The user's jobqueue.yaml value (or dask-jobqueue's default) of ``jobqueue.<name>.<key>``."""
        import dask.config

        self.cluster_class()  # registers dask-jobqueue's packaged defaults
        return dask.config.get(f"jobqueue.{self.name}.{key}", None)


QUEUES: dict[str, QueueSystem] = {
    q.name: q
    for q in (
        QueueSystem(
            "slurm",
            "SLURM",
            "dask_jobqueue.SLURMCluster",
            "account",
            ("squeue", "-h", "-t", "R"),
            test_submit=True,
            alive=_slurm_alive,
        ),
        QueueSystem("pbs", "PBS", "dask_jobqueue.PBSCluster", "account", ("qstat",)),
        QueueSystem("sge", "Grid Engine", "dask_jobqueue.SGECluster", "project", ("qstat",)),
        QueueSystem(
            "lsf",
            "LSF",
            "dask_jobqueue.LSFCluster",
            "project",
            ("bqueues",),
            parse_walltime=_parse_hm,
            format_walltime=_hm,
            # bsub reads the script on stdin: its log paths are absolute in the header
            submit_in_log_dir=False,
        ),
    )
}


@dataclass
class QueueSpec:
    """A queue mode's cluster, resolved and checked (``prepare_queue``)."""

    system: QueueSystem
    kwargs: dict[str, Any]  # the job's, for the cluster class (log_directory, job_cls added at start)
    walltime: float  # seconds of each job
    margin: float  # seconds before the walltime at which runs checkpoint and stop
    stagger: float  # seconds the workers' ends are spread over
    cores: int
    processes: int  # worker processes per job (one thread each runs one run)
    memory: int  # bytes per job
    max_jobs: int
    job_start: float  # seconds a fresh job is assumed to take before its workers run
    scheduler_options: dict[str, Any] = field(default_factory=dict)
    preflight: str = ""  # what the batch system said about a test job
    warnings: list[str] = field(default_factory=list)

    @property
    def max_workers(self) -> int:
        """Worker processes at most (``max_jobs`` jobs)."""
        return self.max_jobs * self.processes

    @property
    def worker_memory(self) -> int:
        """Bytes each worker process has."""
        return self.memory // self.processes

    @property
    def fresh_life(self) -> float:
        """Seconds a fresh job's worker runs before its drain (the walltime less the margin and
        the job's start)."""
        return max(0.0, self.walltime - self.margin - self.job_start)

    def describe(self) -> str:
        """One line for the sweep's start."""
        return (
            f"{self.system.name}: {self.system.cluster.rpartition('.')[2]}, up to {self.max_jobs} job(s) of "
            f"{self.cores} core(s), {self.memory / 2**30:.3g} GiB, walltime {format_walltime(self.walltime)} "
            f"({self.processes} worker process(es) per job; runs checkpoint and stop "
            f"{self.margin:g} s before the walltime)"
        )


def queue_options_given(given: Mapping[str, Any]) -> list[str]:
    """The queue-only options among ``given`` (a sweep's arguments as given, before the
    sweep.* settings fill them in), to refuse them outside a queue mode."""
    return [name for name in QUEUE_OPTIONS if given.get(name) not in (None, (), [], "")]


def _no_control_characters(option: str, value: str) -> str:
    # a newline in a queue name or directive would add lines to the job script
    if not value or any(ch in value for ch in "\r\n\x00") or value != value.strip():
        raise option_error(option, value, "a non-empty value on one line, without leading or trailing blanks")
    return value


def check_queue_values(
    walltime: Any, job_cores: Any, job_memory: Any, queue: Any, account: Any, job_extra: Any, jobs: Any
) -> dict[str, Any]:
    """Check the queue options' forms (the batch system is not asked): the values as the
    cluster wants them. ConfigError naming the option for a bad one."""
    from ..units import parse_size

    out: dict[str, Any] = {}
    if walltime is not None:
        try:
            out["walltime"] = parse_walltime(walltime)
        except ValueError:
            raise option_error("walltime", walltime, WALLTIME_FORMS) from None
        if out["walltime"] <= 0:
            raise option_error("walltime", walltime, "a walltime > 0: " + WALLTIME_FORMS)
    if job_cores is not None:
        out["job_cores"] = int_at_least("job_cores", job_cores, 1)
    if job_memory is not None:
        out["job_memory"] = parse_size(str(job_memory), "job_memory")
    if queue is not None:
        out["queue"] = _no_control_characters("queue", str(queue))
    if account is not None:
        out["account"] = _no_control_characters("account", str(account))
    extra: list[str] = []
    for item in [job_extra] if isinstance(job_extra, str) else list(job_extra or ()):
        try:
            words = shlex.split(str(item))
        except ValueError as exc:
            raise option_error("job_extra", item, f"directives in shell quoting ({exc})") from None
        extra += [_no_control_characters("job_extra", w) for w in words]
    out["job_extra"] = tuple(extra)
    out["jobs"] = int_at_least("jobs", jobs, 1)
    return out


def prepare_queue(options: SweepOptions) -> QueueSpec:
    """Resolve a queue mode's job settings (options > jobqueue.yaml > dask-jobqueue defaults),
    check them, and ask the batch system whether it would run such a job, submitting nothing.

    Raises ConfigError (one line, naming the option and what is allowed) for a bad or missing
    setting, and QueueUnavailable when the batch system's commands are missing, its server does
    not answer within ``sweep.jobqueue.queue-timeout`` seconds, or it refuses the job.
    """
    assert options.mode is not None
    system = QUEUES[options.mode]
    kwargs: dict[str, Any] = {}
    cores = options.job_cores if options.job_cores is not None else system.setting("cores")
    memory = options.job_memory if options.job_memory is not None else system.setting("memory")
    if cores is None or memory is None:
        option, key, example = (
            ("job_cores", "cores", "4") if cores is None else ("job_memory", "memory", "4GiB")
        )
        raise ConfigError(
            f"{option}: missing; allowed: the {key} of each job: give {option} (e.g. {example}) or set "
            f"jobqueue.{system.name}.{key} in your jobqueue.yaml (~/.config/dask/jobqueue.yaml)",
            option=option,
        )
    cores = int_at_least("job_cores", cores, 1)
    from dask.utils import parse_bytes

    try:
        memory_bytes = int(parse_bytes(memory)) if isinstance(memory, str) else int(memory)
    except (TypeError, ValueError):
        raise ConfigError(
            f"job_memory: jobqueue.{system.name}.memory in your jobqueue.yaml: bad value {memory!r}; "
            "allowed: a size such as 4GiB or 500MB",
            option="job_memory",
        ) from None
    kwargs["cores"] = cores
    kwargs["memory"] = memory
    processes = system.setting("processes")
    if processes is None:
        # one single-threaded worker process per core, as in parallel mode: the solver holds the
        # GIL between its FFT calls, so threads of one process would not run runs side by side
        processes = cores
        kwargs["processes"] = processes
    processes = int_at_least(f"jobqueue.{system.name}.processes", processes, 1)
    if options.walltime is not None:
        walltime = float(options.walltime)
        kwargs["walltime"] = system.format_walltime(walltime)
    else:
        text = system.setting("walltime")
        try:
            walltime = system.parse_walltime(str(text))
        except ValueError as exc:
            raise ConfigError(
                f"walltime: jobqueue.{system.name}.walltime in your jobqueue.yaml: {exc}; give --walltime",
                option="walltime",
            ) from None
    if options.queue is not None:
        kwargs["queue"] = options.queue
    if options.account is not None:
        kwargs[system.account_keyword] = options.account
    if options.job_extra:
        kwargs["job_extra_directives"] = list(system.setting("job-extra-directives") or []) + list(
            options.job_extra
        )
    margin = float(options.walltime_margin)
    stagger = float(config.get("jobqueue.lifetime-stagger")) * walltime
    job_start = float(config.get("jobqueue.job-start-seconds"))
    if margin >= walltime - 10:
        raise option_error(
            "walltime_margin",
            options.walltime_margin,
            f"seconds > 0 and at least 10 s less than the walltime ({format_walltime(walltime)}): "
            "runs need time to run between their job's start and its drain",
        )
    from .walltime import lifetime_args

    extra_args = list(system.setting("worker-extra-args") or [])
    if "--lifetime" not in extra_args:  # a lifetime of the user's own stays
        try:
            extra_args += lifetime_args(walltime, margin, stagger)
        except ValueError as exc:
            raise option_error("walltime_margin", options.walltime_margin, str(exc)) from None
    kwargs["worker_extra_args"] = extra_args
    # each run gets one thread (one run per core), unless the user's environment says otherwise
    prologue = list(system.setting("job-script-prologue") or [])
    kwargs["job_script_prologue"] = prologue + ["export NS_SOLVER_THREADS=${NS_SOLVER_THREADS:-1}"]
    scheduler_options = dict(system.setting("scheduler-options") or {})
    # the dashboard where --dashboard-address says (default: this host only, a free port, as
    # several sweeps may run; reach it over SSH: ssh -L 8787:127.0.0.1:PORT login-node) unless
    # the user's jobqueue.yaml says otherwise
    scheduler_options.setdefault("dashboard_address", options.dashboard_address)
    spec = QueueSpec(
        system=system,
        kwargs=kwargs,
        walltime=walltime,
        margin=margin,
        stagger=stagger,
        cores=cores,
        processes=processes,
        memory=memory_bytes,
        max_jobs=int(options.jobs),
        job_start=job_start,
        scheduler_options=scheduler_options,
    )
    spec.preflight = _preflight(spec)
    return spec


def _job_script(spec: QueueSpec) -> str:
    """The job script the cluster would submit (built without starting a scheduler)."""
    cls = spec.system.cluster_class()
    try:
        job = cls.job_cls("tcp://127.0.0.1:8786", name="preflight", **spec.kwargs)
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"mode: dask-jobqueue refused the {spec.system.label} job settings: {first}; "
            f"check the options and jobqueue.{spec.system.name} in your jobqueue.yaml",
            option="mode",
        ) from None
    return str(job.job_script())


def _preflight(spec: QueueSpec) -> str:
    """Ask the batch system whether it would run the sweep's jobs; its answer (one line)."""
    timeout = float(config.get("jobqueue.queue-timeout"))
    script = _job_script(spec)
    system = spec.system
    if system.test_submit:
        return preflight_sbatch(script, timeout=timeout)
    submit = system.cluster_class().job_cls.submit_command.split()[0]
    if shutil.which(submit) is None:
        raise QueueUnavailable(
            f"mode: no `{submit}` on PATH: {system.label}'s commands are not installed or not loaded "
            f"here (module load ...?); allowed: a host that can submit {system.label} jobs",
            option="mode",
        )
    return _ask(system.status_command, system.label, timeout)


def _ask(command: Sequence[str], label: str, timeout: float, env: Mapping[str, str] | None = None) -> str:
    """Run a status command of the batch system: its last line, or QueueUnavailable."""
    if shutil.which(command[0]) is None:
        raise QueueUnavailable(
            f"mode: no `{command[0]}` on PATH: {label}'s commands are not installed or not loaded here "
            f"(module load ...?); allowed: a host that can submit {label} jobs",
            option="mode",
        )
    try:
        out = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=None if env is None else dict(env),
        )
    except subprocess.TimeoutExpired:
        raise QueueUnavailable(
            f"mode: `{' '.join(command)}`: no answer from the {label} server within {timeout:g} s; is it "
            "running, and is this host configured for it? (sweep.jobqueue.queue-timeout sets the wait)",
            option="mode",
        ) from None
    lines = [ln.strip() for ln in (out.stderr + out.stdout).splitlines() if ln.strip()]
    if out.returncode != 0:
        raise QueueUnavailable(
            f"mode: `{' '.join(command)}` failed: {lines[0] if lines else f'exit code {out.returncode}'}",
            option="mode",
        )
    return lines[-1] if lines else ""


def preflight_sbatch(
    job_script: str, *, sbatch: str = "sbatch", timeout: float = 15.0, env: Mapping[str, str] | None = None
) -> str:
    """Ask SLURM whether it would run ``job_script`` without submitting it (``sbatch
    --test-only``, ~10 ms): returns SLURM's answer ("Job N to start at ... in partition P") or
    raises ``QueueUnavailable`` with one line.

    Why: dask-jobqueue calls ``sbatch`` only inside ``scale``/``adapt``, on its event loop,
    where a failure is only logged and the cluster waits for workers forever; a controller
    that is down makes every SLURM command retry for ~9 s before failing. This turns a missing
    ``sbatch``, a silent controller (cut at ``timeout``), a bad partition, walltime or memory
    into an error before any job exists.
    """
    path = shutil.which(sbatch)
    if path is None:
        raise QueueUnavailable(
            f"mode: no `{sbatch}` on PATH: SLURM's commands are not installed or not loaded here "
            "(module load slurm?); allowed: a host that can submit SLURM jobs",
            option="mode",
        )
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="ns-sweep-preflight-") as f:
        f.write(job_script)
        f.flush()
        try:
            out = subprocess.run(
                [path, "--test-only", f.name],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=None if env is None else dict(env),
            )
        except subprocess.TimeoutExpired:
            raise QueueUnavailable(
                f"mode: sbatch --test-only: no answer from the SLURM controller within {timeout:g} s; is "
                "slurmctld running, and does SLURM_CONF name the right cluster? "
                "(sweep.jobqueue.queue-timeout sets the wait)",
                option="mode",
            ) from None
    lines = [ln.strip() for ln in out.stderr.splitlines() if ln.strip()]
    if out.returncode != 0:
        # the most telling line: a fatal one, else the first error, else the last line
        fatal = [ln for ln in lines if ln.startswith("sbatch: fatal:")]
        errors = [ln for ln in lines if ln.startswith("sbatch: error:")]
        if fatal:
            line = fatal[-1]
        elif errors:
            line = errors[0]
        else:
            line = lines[-1] if lines else f"exit code {out.returncode}"
        raise QueueUnavailable(
            "mode: sbatch --test-only: "
            + re.sub(r"^sbatch: (error|fatal): ", "", line)
            + " (check --queue, --walltime, --job-cores and --job-memory against the cluster's limits)",
            option="mode",
        )
    return lines[-1] if lines else ""


def _job_class(system: QueueSystem, failures: list[str]) -> Any:
    """The cluster's Job class, submitting from the job's log directory and keeping the first
    line of every failed submission in ``failures`` (one class per cluster).

    Why the log directory: qsub wrappers (Debian's torque wrappers over SLURM, some PBS and SGE
    set-ups) put the job's output files relative to the submission directory, whatever the
    script's ``-e``/``-o`` directives say: submitting from there keeps them inside the sweep's
    log directory. Why the failures: dask-jobqueue submits on its event loop, where an error is
    only logged and the cluster would wait for workers forever; the driver reports it instead.
    """
    base = system.cluster_class().job_cls

    async def _submit_job(self: Any, script_filename: str) -> str:
        try:
            if system.submit_in_log_dir and self.log_directory:
                return str(
                    await self._call(
                        shlex.split(self.submit_command) + [script_filename], cwd=self.log_directory
                    )
                )
            return str(await base._submit_job(self, script_filename))
        except Exception as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            said = [ln for ln in lines if not ln.startswith(("Command", "Exit code", "stdout:", "stderr:"))]
            failures.append((said or lines or [type(exc).__name__])[-1])
            raise

    return type(f"Sweep{base.__name__}", (base,), {"_submit_job": _submit_job})


def start_queue(spec: QueueSpec, log_dir: Path) -> tuple[Any, Any, list[str]]:
    """Start the queue mode's cluster (no job yet: the driver's demand starts them); returns
    ``(cluster, adaptive, submission failures)``.

    The scheduler runs in this process: lost workers fail their task at once
    (``allowed-failures`` 0: the engine retries from the run's checkpoint, not the scheduler
    from its arguments), and a run waits at the scheduler for a free worker rather than in a
    busy worker's queue (``worker-saturation`` 1.0), so a fresh job takes it.
    """
    import dask.config

    from .scaling import SweepAdaptive, job_key

    failures: list[str] = []
    cls = spec.system.cluster_class()
    with dask.config.set(
        {"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.worker-saturation": 1.0}
    ):
        cluster = cls(
            **spec.kwargs,
            scheduler_options=spec.scheduler_options,
            # absolute: a job's directives are read relative to its own working directory
            log_directory=str((Path(log_dir) / JOB_LOG_DIR).resolve()),
            job_cls=_job_class(spec.system, failures),
        )
    try:
        adaptive = cluster.adapt(
            Adaptive=SweepAdaptive,
            minimum=0,
            maximum=spec.max_workers,
            interval=f"{float(config.get('jobqueue.adapt-interval'))}s",
            wait_count=int(config.get("jobqueue.adapt-wait-count")),
            worker_key=job_key(spec.processes > 1),
        )
    except BaseException:
        cluster.close()
        raise
    return cluster, adaptive, failures


def job_log_tail(log_dir: str | Path | None, job_id: str) -> str:
    """The last line of a job's error log (dask-jobqueue names it ``<name>-<job id>.err``, or
    ``<name>.e<job id>`` through qsub), or '' when there is none."""
    if not log_dir:
        return ""
    root = Path(log_dir)
    for path in sorted(root.glob(f"*{job_id}*")):
        if path.is_file() and (path.suffix == ".err" or f".e{job_id}" in path.name):
            try:
                lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
            except OSError:
                continue
            if lines:
                return f"{path}: {lines[-1]}"
    return ""


def jobs_needed(seconds: float, life: float) -> int:
    """Jobs one run of ``seconds`` uses when each job gives it ``life`` seconds."""
    return max(1, math.ceil(seconds / life)) if life > 0 else 1


def walltime_warning(spec: QueueSpec, longest: float, package_id: str, n_longer: int) -> str | None:
    """The note before submission when a run is predicted to outlive a job (fine: it continues
    from checkpoints in later jobs), else None."""
    life = spec.fresh_life
    if longest <= life:
        return None
    return (
        f"sweep: note: {n_longer} run(s) are predicted to take longer than a job gives them "
        f"(walltime {format_walltime(spec.walltime)} less a {spec.margin:g} s margin and the job's start): "
        f"the longest, {package_id}, about {format_duration(longest)}, continues from checkpoints over "
        f"about {jobs_needed(longest, life)} jobs"
    )
