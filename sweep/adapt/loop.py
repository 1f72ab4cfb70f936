"""The adaptive loop: ask the learner for points, run them as packages on the engine, tell it
what the store holds, until a stop rule is reached.

Every point becomes a package file in the spec's sweep directory (tagged with the spec's name,
its coordinates and its round), so ``sweep explain``, ``status``, ``report`` and a plain
``sweep run`` see adaptive runs like any others, and they get everything grid runs have
(priorities, checkpoints, retries, provenance). The loop goes by rounds: it asks as many
points as the cluster has workers (or ``points_per_round``), runs them with ``run_sweep`` on
one cluster kept for the whole sweep, tells each result as soon as its round is committed,
then asks again. Rounds make the sampling deterministic: which points are asked depends on the
results only, never on which run finished first.

Resume for free: a new call replays the store into the learner (``tell_many``) before asking
anything; points written but not run yet (the round a crash or Ctrl-C cut) are run first,
as they would have been, so a resumed sweep asks the same points as an uninterrupted one.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..engine.jobqueue import QUEUES
from ..engine.options import SweepOptions
from ..errors import EXIT_FAILED, EXIT_OK, option_error
from ..spec import SUMMARY_FILE, append_packages, load_packages
from ..store import Store, is_local
from .learners import make_learner
from .spec import AdaptSpec, load_spec

__all__ = ["Point", "AdaptResult", "replay", "adapt"]


@dataclass
class Point:
    """One point the learner asked for, and what came of it."""

    x: tuple[float, ...]  # in the learner's coordinates
    package_id: str
    round: int
    run_id: str = ""
    state: str = "pending"  # pending (not run yet), done, diverged, or a failure class
    value: float | None = None  # what the learner was told (None: nothing)


@dataclass
class AdaptResult:
    """What ``adapt`` did: every point (replayed ones included), the learner, why it stopped."""

    spec: AdaptSpec
    points: list[Point]
    learner: Any
    stopped_by: str
    exit_code: int
    new_runs: int = 0
    rounds: list[list[str]] = field(default_factory=list)  # package ids of each round this call ran

    @property
    def failed(self) -> list[Point]:
        """Points whose run errored or timed out (reported, never told to the learner)."""
        return [p for p in self.points if p.state not in ("pending", "done", "diverged")]


def _learner_x(x: tuple[float, ...]) -> Any:
    return x[0] if len(x) == 1 else x


def replay(spec: AdaptSpec, store: str | None) -> tuple[Any, list[Point]]:
    """A learner told everything the store holds of the spec's points (written as package files
    in its sweep directory), and the points; those not run yet are pending in the learner."""
    learner = make_learner(spec.learner, spec.loss, spec.axes)
    points = _points(spec)
    if (
        points
        and store is not None
        and not (is_local(store) and not os.path.exists(store.removeprefix("file://")))
    ):
        with Store.open(store, mode="r") as st:
            _evaluate(spec, st, points)
    told = [p for p in points if p.value is not None]
    if told:
        learner.tell_many([_learner_x(p.x) for p in told], [p.value for p in told])
    for p in points:
        if p.value is None:  # pending, or failed without a value: never asked again
            learner.tell_pending(_learner_x(p.x))
    return learner, points


def _points(spec: AdaptSpec) -> list[Point]:
    """The spec's points, from the package files of its sweep directory, in the order asked."""
    if not (spec.packages / SUMMARY_FILE).exists():
        return []
    out = []
    for pkg in load_packages(spec.packages, check_memory=False):
        tags = pkg.tags
        if tags.get("adapt") == spec.name and isinstance(tags.get("adapt_point"), list):
            out.append(
                Point(
                    tuple(float(v) for v in tags["adapt_point"]),
                    pkg.package_id,
                    int(tags.get("adapt_round", 0)),
                    pkg.run_id,
                )
            )
    out.sort(key=lambda p: (p.round, p.package_id))
    return out


def _evaluate(spec: AdaptSpec, st: Store, points: Sequence[Point]) -> None:
    """Each point's state and value from the store (a point not in it stays pending)."""
    records = st.records()
    for p in points:
        rec = records.get(p.run_id)
        if rec is None:
            continue
        if rec.status == "done":
            p.state, p.value = "done", spec.objective.of_done(st.open_run(p.run_id), rec)
        elif rec.failure_class == "diverged":
            p.state, p.value = "diverged", spec.objective.of_diverged(rec)
        else:
            p.state, p.value = rec.failure_class or "error", None


def _stop_reason(spec: AdaptSpec, learner: Any, n_run: int, t0: float) -> str | None:
    stop = spec.stop
    if n_run >= stop.runs:
        return f"{n_run} runs (stop.runs)"
    if stop.seconds is not None and time.monotonic() - t0 >= stop.seconds:
        return f"{stop.seconds:g} s of wall time (stop.seconds)"
    if stop.loss is not None and n_run > len(spec.axes) + 1:
        loss = learner.loss()
        if loss <= stop.loss:
            return f"loss {loss:.3g} <= {stop.loss:g} (stop.loss)"
    return None


def _describe(spec: AdaptSpec, points: Sequence[Point]) -> str:
    values = []
    for p in points:
        coords = ", ".join(f"{a.name}={a.from_learner(x):.6g}" for a, x in zip(spec.axes, p.x, strict=True))
        got = p.state if p.value is None else f"{p.value:.6g}"
        values.append(f"{coords}: {got}")
    return "; ".join(values)


def adapt(
    spec: str | os.PathLike[str] | AdaptSpec,
    store: str | os.PathLike[str],
    options: SweepOptions | None = None,
    *,
    client: Any = None,
    out: IO[str] | None = None,
    **option_values: Any,
) -> AdaptResult:
    """Run the adaptive sweep of ``spec`` (a spec file or a loaded spec) into ``store``, on
    ``client`` or on a cluster started from the options (as ``run_sweep`` takes them); resumes
    from what the store holds. ``out`` receives one line per round (default stdout)."""
    from ..engine.cluster import connect, wrap_client
    from ..engine.connection import quiet_connection_noise
    from ..engine.sweep import run_sweep

    spec = spec if isinstance(spec, AdaptSpec) else load_spec(spec)
    opts = SweepOptions.from_kwargs(options, **option_values)
    if client is None and not opts.remote and opts.mode in QUEUES:
        # each round is a run_sweep on one shared client: the jobs, their scaling and walltime
        # guard belong to run_sweep's own cluster, which a round does not start
        raise option_error(
            "mode",
            opts.mode,
            "sequential or parallel, or a remote scheduler (sweep adapt does not start HPC queue jobs; "
            "the scheduler of a dask-jobqueue cluster of your own works)",
        )
    out = out or sys.stdout
    store_url = os.fspath(store)
    t0 = time.monotonic()

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    learner, points = replay(spec, store_url)
    n_run = sum(p.state != "pending" for p in points)
    say(
        f"adapt: {spec.name}: {spec.learner} over {', '.join(a.name for a in spec.axes)}, objective "
        f"{spec.objective.text}; {n_run} point(s) from the store, sweep directory {spec.packages}"
    )
    _keep_spec_beside_packages(spec)
    handle = wrap_client(client) if client is not None else connect(opts)
    result = AdaptResult(spec, points, learner, "", EXIT_OK)
    try:
        per_round = spec.points_per_round or max(
            1, len(handle.client.scheduler_info(n_workers=-1).get("workers", {}))
        )
        next_round = max((p.round for p in points), default=-1) + 1
        todo = [p for p in points if p.state == "pending"]  # the round a crash cut short
        while True:
            if not todo:
                reason = _stop_reason(spec, learner, n_run, t0)
                if reason is not None:
                    result.stopped_by = reason
                    break
                xs, _ = learner.ask(min(per_round, spec.stop.runs - n_run))
                todo = [Point(tuple(x) if isinstance(x, tuple) else (float(x),), "", next_round) for x in xs]
                docs = []
                for p in todo:
                    doc = spec.document(p.x, p.round)
                    p.package_id = doc["package_id"]
                    docs.append(doc)
                append_packages(str(spec.packages), docs)
                points.extend(todo)
                next_round += 1
            _run_round(spec, store_url, opts, handle.client, todo, run_sweep)
            with Store.open(store_url, mode="r") as st:
                _evaluate(spec, st, todo)
            for p in todo:
                if p.value is not None:
                    learner.tell(_learner_x(p.x), p.value)
            n_run += len(todo)
            result.new_runs += len(todo)
            result.rounds.append([p.package_id for p in todo])
            say(f"adapt: round {todo[0].round}: {_describe(spec, todo)}; {n_run}/{spec.stop.runs} runs")
            todo = []
    finally:
        if client is None:
            with quiet_connection_noise():
                handle.close()
    if result.failed:
        result.exit_code = EXIT_FAILED
    say(_summary(result))
    return result


def _run_round(
    spec: AdaptSpec,
    store_url: str,
    opts: SweepOptions,
    client: Any,
    todo: Sequence[Point],
    run_sweep: Callable[..., Any],
) -> None:
    """Run one round's packages (the engine's summary lines go to the main log only)."""
    if any(not p.run_id for p in todo):  # the run ids of new points, as the engine computes them
        run_ids = {q.package_id: q.run_id for q in load_packages(spec.packages, check_memory=False)}
        for p in todo:
            p.run_id = run_ids[p.package_id]
    run_sweep(
        spec.packages,
        store_url,
        opts.replace(package_ids=[p.package_id for p in todo], progress_bar=False),
        client=client,
        out=io.StringIO(),
    )


def _keep_spec_beside_packages(spec: AdaptSpec) -> None:
    """A copy of the spec in the sweep directory, so the report can show the learner's view."""
    spec.packages.mkdir(parents=True, exist_ok=True)
    target = spec.packages / f"adapt-{spec.name}{Path(spec.path).suffix}"
    if Path(spec.path).resolve() != target.resolve():
        shutil.copyfile(spec.path, target)


def _summary(result: AdaptResult) -> str:
    spec, points = result.spec, result.points
    told = [p for p in points if p.value is not None]
    line = (
        f"adapt: {spec.name}: stopped after {result.stopped_by}; {len(told)} point(s) told, "
        f"{sum(p.state == 'diverged' for p in points)} diverged, {len(result.failed)} failed "
        f"(not told); learner loss {result.learner.loss():.3g}"
    )
    if spec.objective.kind == "diverged" and len(spec.axes) == 1:
        axis = spec.axes[0]
        stable = [axis.from_learner(p.x[0]) for p in told if p.value == 0]
        unstable = [axis.from_learner(p.x[0]) for p in told if p.value == 1]
        if stable and unstable:
            line += f"; largest stable {axis.name} {max(stable):.6g}, smallest diverged {min(unstable):.6g}"
    for p in result.failed:
        line += f"\nadapt: failed ({p.state}), not told: {p.package_id} (run {p.run_id})"
    return line
