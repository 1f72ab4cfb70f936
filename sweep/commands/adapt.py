"""`sweep adapt SPEC --store S`: an adaptive sweep, the runs chosen by a python-adaptive learner."""

from __future__ import annotations

import argparse

HELP = "run an adaptive sweep: a learner chooses the runs where the result changes (resumes by itself)"
DESCRIPTION = (
    "Read the adaptive-sweep spec SPEC (TOML or YAML: solver, fixed and varied parameters with "
    "bounds, the objective, the learner, the stop rule), then in rounds: ask the learner for as "
    "many points as the cluster has workers, write them as package files in the spec's sweep "
    "directory, run them like `sweep run` does, tell the learner the results. Run it again to "
    "resume: finished runs are replayed from the store, nothing is recomputed. Exit codes: 0 "
    "stopped by its rule, 1 some run errored or timed out, 2 bad input, 3 internal error."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `sweep adapt` (where and how the runs go: as for `sweep run`)."""
    from ..engine.cluster import MODES
    from ..engine.jobqueue import QUEUES

    p.add_argument("spec", metavar="SPEC", help="the adaptive-sweep spec (.toml or .yaml)")
    p.add_argument("--store", required=True, metavar="STORE", help="result store (path or fsspec URL)")
    where = p.add_argument_group("where it runs")
    # the HPC queue modes need the engine's own sweep (jobs, walltime guard): `sweep run` only
    local = [m for m in MODES if m not in QUEUES]
    where.add_argument("--mode", choices=local, default=None, help="local cluster (default: parallel)")
    where.add_argument("--max-parallel", default=None, metavar="N", help="parallel mode: worker processes")
    where.add_argument("--scheduler", metavar="ADDRESS", help="remote Dask scheduler, tcp:// or tls://")
    where.add_argument(
        "--scheduler-file", metavar="FILE", help="remote Dask scheduler from its scheduler file"
    )
    how = p.add_argument_group("how it runs")
    how.add_argument("--timeout", default=None, metavar="SECONDS", help="wall-time limit per run")
    how.add_argument(
        "--log-dir", metavar="DIR", help="main and per-package logs (default: STORE.logs/ beside the store)"
    )


def main(args: argparse.Namespace) -> int:
    """Run the adaptive sweep; the exit code says how it went."""
    from ..adapt import adapt

    options = {k: v for k, v in vars(args).items() if k not in ("spec", "store", "command", "_main")}
    return adapt(args.spec, args.store, **options).exit_code
