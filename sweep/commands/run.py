"""`sweep run`: run a package directory's sweep on Dask into a zarr store (resumes by itself)."""

from __future__ import annotations

import argparse

HELP = "run a sweep (skips runs already done; resumes checkpointed ones)"
DESCRIPTION = (
    "Run every package of PACKAGES_DIR that is not done yet in STORE, on a local Dask cluster "
    "(--mode sequential|parallel), an HPC queue (--mode slurm|pbs|sge|lsf, through dask-jobqueue: "
    "jobs follow the work, runs checkpoint before a job's walltime and continue in the next) or "
    "a remote scheduler (--scheduler / --scheduler-file), committing each result as "
    "soon as it finishes. Run it again after any interruption: finished runs are skipped and "
    "checkpointed ones resume. Exit codes: 0 all done, 1 some run failed, 2 bad input, "
    "3 internal error, 124 a run timed out (and nothing else failed), 130 Ctrl-C (SIGINT), "
    "143 SIGTERM (a batch system's time limit), 129 SIGHUP: stopped cleanly (the commit under "
    "way finished, running runs checkpointed, the store's lock released); a second signal "
    "stops at once. Defaults come from dask.config (the packaged sweep.yaml, section 'sweep')."
)

# options whose destination is not a SweepOptions field (the rest are passed on by name)
_NOT_OPTIONS = ("packages_dir", "store", "dashboard", "command", "_main")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare `sweep run`'s options; each destination is the SweepOptions field it sets, which
    checks it (numbers are passed on as typed; the CLI shows the flag in the one-line error)."""
    from .. import config  # Dask's config and the engine load only when `sweep run` is the command
    from ..engine.cluster import MODES
    from ..spec import PRIORITY_CHOICES

    p.add_argument("packages_dir", metavar="PACKAGES_DIR", help="directory of package_*.json files")
    p.add_argument(
        "--store",
        required=True,
        metavar="STORE",
        help="result store: a directory path (created if missing) or an fsspec URL",
    )
    p.add_argument(
        "--priority",
        default="ALL",
        choices=PRIORITY_CHOICES,
        type=str.upper,
        help="run only packages of this priority (default: ALL)",
    )
    p.add_argument(
        "--package",
        action="append",
        dest="package_ids",
        metavar="ID",
        help="run only this package: its package_id or file name (package_0003.json); "
        "repeat for more (default: every package)",
    )
    where = p.add_argument_group("where it runs")
    where.add_argument(
        "--mode",
        choices=list(MODES),
        default=None,
        help=f"sequential: one local worker with one thread; parallel: --max-parallel local worker "
        f"processes; slurm, pbs, sge, lsf: jobs of that batch system (see 'HPC queue') "
        f"(default: {config.get('mode')})",
    )
    where.add_argument(
        "--max-parallel",
        default=None,
        metavar="N",
        help="parallel mode: worker processes, one thread each (default: the cores)",
    )
    where.add_argument(
        "--dashboard-address",
        default=None,
        metavar="HOST:PORT",
        help="local cluster or queue mode: where its Dask dashboard listens (default: 127.0.0.1 on a "
        "free port, this host only: the address printed at the start says how to reach it with "
        "ssh -L; 0.0.0.0:8787 exposes it to every host)",
    )
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="remote Dask scheduler, tcp://HOST:PORT or tls://HOST:PORT"
    )
    where.add_argument(
        "--scheduler-file",
        metavar="FILE",
        help="remote Dask scheduler from the file `dask scheduler --scheduler-file` wrote",
    )
    where.add_argument(
        "--worker-memory",
        default=None,
        metavar="SIZE",
        help="memory of one worker for the check that every run fits, e.g. 8GiB (default: this "
        "machine's memory shared by the local workers; a remote cluster's workers report their own)",
    )
    where.add_argument("--tls-ca", metavar="PEM", help="tls://: CA certificate file")
    where.add_argument("--tls-cert", metavar="PEM", help="tls://: this client's certificate file")
    where.add_argument("--tls-key", metavar="PEM", help="tls://: this client's private key file")
    hpc = p.add_argument_group(
        "HPC queue (--mode slurm, pbs, sge or lsf)",
        "Unset job settings come from your jobqueue.yaml (jobqueue.<mode>.*, dask-jobqueue's "
        "convention); options given here win over it.",
    )
    hpc.add_argument(
        "--jobs",
        default=None,
        metavar="N",
        help=f"jobs at once, at most; fewer while fewer runs are left, none at the end "
        f"(default: {config.get('jobqueue.jobs')})",
    )
    hpc.add_argument("--walltime", default=None, metavar="HH:MM:SS", help="walltime of each job")
    hpc.add_argument("--job-cores", default=None, metavar="C", help="cores of each job (one run per core)")
    hpc.add_argument("--job-memory", default=None, metavar="SIZE", help="memory of each job, e.g. 4GiB")
    hpc.add_argument("--queue", default=None, metavar="Q", help="queue (SLURM: partition) of the jobs")
    hpc.add_argument("--account", default=None, metavar="A", help="account (SGE, LSF: project) charged")
    hpc.add_argument(
        "--job-extra",
        action="append",
        default=None,
        metavar="'DIRECTIVES'",
        help="more job directives, e.g. '--exclusive --constraint=haswell' (added to jobqueue.yaml's)",
    )
    hpc.add_argument(
        "--walltime-margin",
        default=None,
        metavar="SECONDS",
        help=f"runs checkpoint and stop this long before a job's walltime, and continue in another "
        f"job (default: {config.get('jobqueue.walltime-margin')})",
    )
    how = p.add_argument_group("how it runs")
    how.add_argument(
        "--timeout",
        default=None,
        metavar="SECONDS",
        help=f"wall-time limit per package (default: {config.get('timeout')})",
    )
    how.add_argument(
        "--stop-on-error",
        action="store_true",
        help="on the first failed run, cancel what has not finished (default: continue)",
    )
    how.add_argument(
        "--retries",
        default=None,
        metavar="N",
        help=f"resubmissions after a lost worker, never for a diverged run "
        f"(default: {config.get('retries')})",
    )
    how.add_argument(
        "--checkpoint-every",
        dest="checkpoint_every_seconds",
        default=None,
        metavar="SECONDS",
        help=f"wall seconds between checkpoints of a running package "
        f"(default: {config.get('checkpoint.every-seconds')})",
    )
    how.add_argument(
        "--checkpoint-every-steps",
        default=None,
        metavar="N",
        help="solver steps between checkpoints (default: by time only)",
    )
    how.add_argument(
        "--break-lock",
        action="store_true",
        help="take over the store's write lock held by a process on another host (a shared file "
        "system); only when that process is gone: file systems whose flock does not reach across "
        "hosts need it (otherwise such a lock is taken over once it is "
        f"{config.get('store.lock-stale-after')} s old)",
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "--log-dir",
        metavar="DIR",
        help="main and per-package logs (default: STORE.logs/ beside a local store)",
    )
    out.add_argument(
        "--dry-run",
        action="store_true",
        help="list what would run and what is skipped, and why; start and write nothing",
    )
    out.add_argument(
        "--dashboard", action="store_true", help="also serve the live sweep dashboard and print its address"
    )
    out.add_argument(
        "--no-progress",
        dest="progress_bar",
        action="store_const",
        const=False,
        default=None,
        help="no progress bar (summary lines stay)",
    )


def main(args: argparse.Namespace) -> int:
    """Run the sweep; the exit code says how it went."""
    from ..engine import run_sweep

    options = {k: v for k, v in vars(args).items() if k not in _NOT_OPTIONS}
    on_start = None
    if args.dashboard:
        from ..monitor.dashboard import beside_sweep

        on_start = beside_sweep
    return run_sweep(args.packages_dir, args.store, on_start=on_start, **options).exit_code
