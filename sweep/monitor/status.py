"""Sweep progress figures (``sweep status``) from the store's committed runs and the packages.

``pending`` is every unit that is neither done nor failed, so ``stale`` is a subset of it;
without packages nothing can be pending (see ``sweep.monitor.tables``). The ETA is the
predicted time of the pending runs (``sweep.engine.predict``: seconds per grid-point-step of the
finished runs, by solver, grid and precision; a first guess before any finished), shared by the
workers: those of the sweep running now (its status document in the store, the HPC jobs it has
running), else ``--workers``. Per priority it is the time until every run of that priority and
the ones before it is done (HIGH runs first), and never less than its longest pending run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..engine.predict import RuntimePredictor
from ..engine.progress import failure_lines, one_line
from ..errors import option_error
from ..store import FAILURE_CLASSES
from ..units import format_duration
from .live import LiveSweep, jobs_of_provenance, live_lines, live_sweep
from .tables import PRIORITY_ORDER, STATES, package_table, runs_table_of

__all__ = [
    "FAILURE_CLASSES",
    "PRIORITY_ORDER",
    "STATES",
    "Counts",
    "SweepStatus",
    "sweep_status",
    "progress_bar",
    "format_status",
    "SweepData",
    "read_runs",
    "read_packages",
    "check_workers",
    "load_sweep",
]


@dataclass(frozen=True)
class Counts:
    """Counts of one group of units (all of them, or one priority)."""

    total: int
    done: int
    failed: int
    failed_by_class: dict[str, int]
    stale: int
    pending: int  # neither done nor failed; includes the stale ones

    @property
    def new(self) -> int:
        """Pending units that never ran in any form."""
        return self.pending - self.stale

    @property
    def percent_complete(self) -> float:
        """Done units as a percentage of the total (0 for an empty group: nothing is done)."""
        return 100.0 * self.done / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "failed_by_class": dict(self.failed_by_class),
            "stale": self.stale,
            "pending": self.pending,
            "percent_complete": round(self.percent_complete, 2),
        }

    @classmethod
    def of(cls, units: pd.DataFrame) -> Counts:
        """Count the states of a ``package_table`` (or a slice of one)."""
        state = units["state"]
        failed = units[state == "failed"]
        by_class = {c: int((failed["failure_class"] == c).sum()) for c in FAILURE_CLASSES}
        for c in sorted(set(failed["failure_class"]) - set(FAILURE_CLASSES)):
            by_class[str(c) or "unknown"] = int((failed["failure_class"] == c).sum())
        stale = int((state == "stale").sum())
        return cls(
            total=len(units),
            done=int((state == "done").sum()),
            failed=len(failed),
            failed_by_class=by_class,
            stale=stale,
            pending=stale + int((state == "new").sum()),
        )


@dataclass(frozen=True)
class SweepStatus:
    """Every figure ``sweep status`` shows (``as_dict()`` is its ``--json`` output)."""

    unit: str  # "package" (packages given) or "run"
    overall: Counts
    by_priority: dict[str, Counts]
    runs_in_store: int
    compute_seconds: float  # wall time of every run in the store, done or failed
    mean_run_seconds: float | None  # mean wall time of the done runs
    eta_seconds: float | None  # None: no finished run to estimate from
    eta_method: str
    workers: int
    extra: dict[str, Any] = field(default_factory=dict)
    eta_by_priority: dict[str, float | None] = field(default_factory=dict)
    live: LiveSweep | None = None  # the sweep running now (or the last one), from its document
    jobs_in_records: dict[str, Any] = field(default_factory=dict)
    # one per failed unit: package (or run) id, run_id, failure_class, error (its first line)
    failures: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "eta_by_priority": {
                p: None if v is None else round(v, 3) for p, v in self.eta_by_priority.items()
            },
            "sweep": None if self.live is None else self.live.as_dict(),
            "jobs_in_records": self.jobs_in_records,
            "failures": self.failures,
            "unit": self.unit,
            "overall": self.overall.as_dict(),
            "by_priority": {p: c.as_dict() for p, c in self.by_priority.items()},
            "runs_in_store": self.runs_in_store,
            "compute_seconds": round(self.compute_seconds, 3),
            "mean_run_seconds": None if self.mean_run_seconds is None else round(self.mean_run_seconds, 3),
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 3),
            "eta_method": self.eta_method,
            "workers": self.workers,
            **self.extra,
        }


def _predictor_of_runs(runs: pd.DataFrame) -> RuntimePredictor:
    """A predictor from a runs table alone (grid, steps and wall time of the done runs)."""
    pred = RuntimePredictor()
    done = runs[(runs["status"] == "done") & np.isfinite(runs["wall_time"])]
    for nx, ny, nz, dt, t_final, wall in zip(
        done["nx"], done["ny"], done["nz"], done["dt"], done["T_final"], done["wall_time"], strict=True
    ):
        if all(np.isfinite(v) for v in (nx, ny, nz, dt, t_final)):
            pred.observe({"grid": [int(nx), int(ny), int(nz)], "dt": dt, "T_final": t_final}, float(wall))
    return pred


def _params_of(pkg: Any) -> Any:
    return pkg.params


def _eta(
    units: pd.DataFrame,
    packages: Sequence[Any] | None,
    workers: int,
    predictor: RuntimePredictor,
    live: LiveSweep | None,
) -> tuple[float | None, dict[str, float | None], str]:
    """(ETA of everything, ETA per priority, how) from the predicted time of each pending run.

    A run under way counts with what its driver predicts it still needs (the status document);
    priorities are done in order, so a priority's ETA includes the work of those before it.
    """
    pending = units[units["state"].isin(("stale", "new"))].drop_duplicates("run_id")
    if pending.empty:
        return 0.0, {}, "nothing pending"
    if packages is None:
        return None, {}, "needs --packages"
    wanted = set(pending["run_id"].tolist())  # only the pending runs' parameters are built
    params_of = {rid: _params_of(p) for p in packages if (rid := str(p.run_id)) in wanted}
    under_way = {}
    if live is not None and live.active:
        under_way = {str(r.get("run_id")): r.get("predicted_left") for r in live.running}
    work: dict[str, float] = {}
    longest: dict[str, float] = {}
    hows: set[str] = set()
    for rid, prio in zip(pending["run_id"].tolist(), pending["priority"].tolist(), strict=True):
        left = under_way.get(str(rid))
        if left is None:
            params = params_of.get(str(rid))
            if params is None:
                continue
            left = predictor.predict(params)
            hows.add(predictor.rate(params)[1])
        work[prio] = work.get(prio, 0.0) + float(left)
        longest[prio] = max(longest.get(prio, 0.0), float(left))
    by_priority: dict[str, float | None] = {}
    total = peak = 0.0
    for prio in _priority_order(work):
        total += work[prio]
        peak = max(peak, longest[prio])
        by_priority[prio] = max(total / workers, peak)
    how = "runtime prediction: seconds per grid-point-step of " + (
        "finished runs" if hows <= {"measured", "measured on runs under way"} else ", ".join(sorted(hows))
    )
    return max(total / workers, peak), by_priority, how


def _priority_order(values: Iterable[str]) -> list[str]:
    present = set(values)
    return [p for p in PRIORITY_ORDER if p in present] + sorted(present - set(PRIORITY_ORDER))


def sweep_status(
    runs: pd.DataFrame,
    packages: Sequence[Any] | None = None,
    *,
    workers: int | None = None,
    predictor: RuntimePredictor | None = None,
    live: LiveSweep | None = None,
    jobs_in_records: dict[str, Any] | None = None,
) -> SweepStatus:
    """All status figures from a runs table and (optionally) the current packages.

    ``workers``: how many runs proceed at once, for the ETA (default: the workers of the sweep
    running now, from ``live``, else 1). ``predictor``: run times learned from the store's
    records (default: from the runs table). ``live``: the store's status document, read.
    """
    if workers is None and live is not None and live.active:
        workers = live.workers  # the jobs actually running (0 while they wait in the queue)
    workers = max(1, int(workers or 1))
    units = package_table(runs, packages)
    by_priority = {
        p: Counts.of(units[units["priority"] == p])
        for p in _priority_order(units["priority"].unique().tolist())
    }
    if packages is not None:  # every priority level appears, even when empty
        by_priority = {
            p: by_priority.get(p, Counts.of(units.iloc[0:0])) for p in PRIORITY_ORDER
        } | by_priority
    walls = runs["wall_time"][np.isfinite(runs["wall_time"])]
    done_walls = runs.loc[(runs["status"] == "done") & np.isfinite(runs["wall_time"]), "wall_time"]
    eta, eta_by_priority, method = _eta(
        units, packages, workers, predictor if predictor is not None else _predictor_of_runs(runs), live
    )
    extra = {}
    if packages is not None:
        extra["runs_not_in_packages"] = int(len(set(runs.index.tolist()) - set(units["run_id"].tolist())))
    failed = units[units["state"] == "failed"]
    error_of = dict(zip(runs.index.tolist(), runs["error"].tolist(), strict=True))
    failures = [
        {
            "package": str(u),
            "run_id": str(r),
            "failure_class": str(c or "error"),
            "error": one_line(error_of.get(r, "")),
        }
        for u, r, c in zip(failed["unit"], failed["run_id"], failed["failure_class"], strict=True)
    ]
    return SweepStatus(
        failures=failures,
        unit="package" if packages is not None else "run",
        overall=Counts.of(units),
        by_priority=by_priority,
        runs_in_store=len(runs),
        compute_seconds=float(walls.sum()),
        mean_run_seconds=float(done_walls.mean()) if len(done_walls) else None,
        eta_seconds=eta,
        eta_method=method,
        workers=workers,
        extra=extra,
        eta_by_priority=eta_by_priority,
        live=live,
        jobs_in_records=dict(jobs_in_records or {}),
    )


_EIGHTHS = " ▏▎▍▌▋▊▉"


def progress_bar(counts: Counts, width: int = 40) -> str:
    """A bar of box characters: █ done (with eighth-cell precision), ▒ failed, ░ pending."""
    if counts.total == 0:
        return "▕" + "░" * width + "▏"
    cells_done = width * counts.done / counts.total
    full = int(cells_done)
    frac = int((cells_done - full) * 8)
    cells_failed = round(width * counts.failed / counts.total)
    bar = "█" * full
    if frac and full < width:
        bar += _EIGHTHS[frac]
    bar += "▒" * min(cells_failed, width - len(bar))
    bar += "░" * (width - len(bar))
    return "▕" + bar + "▏"


def format_status(status: SweepStatus, *, title: str = "", width: int = 40) -> str:
    """The human-readable ``sweep status`` text: a table per priority, a bar, time and ETA."""
    unit = status.unit + "s"
    head = f" {'':9}{'total':>7}{'done':>7}{'failed':>8}{'stale':>7}{'pending':>9}{'complete':>10}"
    lines = [title] if title else []
    lines += ["┌" + "─" * (len(head) + 1) + "┐", "│" + head + " │", "├" + "─" * (len(head) + 1) + "┤"]

    def row(name: str, c: Counts) -> str:
        pct = f"{c.percent_complete:>9.1f}%" if c.total else f"{'-':>10}"
        text = f" {name:<9}{c.total:>7}{c.done:>7}{c.failed:>8}{c.stale:>7}{c.pending:>9}{pct}"
        return "│" + text + " │"

    for name, c in status.by_priority.items():
        lines.append(row(name, c))
    if status.by_priority:
        lines.append("├" + "─" * (len(head) + 1) + "┤")
    lines.append(row("ALL", status.overall))
    lines.append("└" + "─" * (len(head) + 1) + "┘")
    o = status.overall
    lines.append(
        f"{progress_bar(o, width)} {o.percent_complete:5.1f}%  "
        f"{o.done}/{o.total} {unit} done  (█ done ▒ failed ░ pending)"
    )
    failed = ", ".join(f"{k} {v}" for k, v in o.failed_by_class.items() if v)
    if failed:
        lines.append(f"failed by class: {failed}")
        lines += failure_lines(
            [(f["package"], f["run_id"]) for f in status.failures],
            {f["run_id"]: (f["failure_class"], f["error"]) for f in status.failures},
            "sweep status --json lists them all",
        )
    if o.stale:
        lines.append(
            f"stale: {o.stale} package(s) whose parameters changed since their last run (counted as pending)"
        )
    lines.append(
        f"compute time spent: {format_duration(status.compute_seconds)} "
        f"over {status.runs_in_store} run(s) in the store"
    )
    if status.mean_run_seconds is not None:
        lines.append(f"mean wall time of a done run: {format_duration(status.mean_run_seconds)}")
    if status.unit == "run":
        lines.append("ETA: needs --packages (without them only the runs in the store are known)")
    else:
        workers = f"{status.workers} worker" + ("s" if status.workers != 1 else "")
        lines.append(
            f"ETA: {format_duration(status.eta_seconds)} for {o.pending} pending with "
            f"{workers} ({status.eta_method})"
        )
        if status.eta_by_priority:
            lines.append(
                "ETA by priority (done in order): "
                + ", ".join(f"{p} {format_duration(v)}" for p, v in status.eta_by_priority.items())
            )
    lines += live_lines(status.live, status.jobs_in_records)
    return "\n".join(lines)


@dataclass
class SweepData:
    """Everything the views need, read once from the store (and the package files)."""

    runs: pd.DataFrame  # sweep.monitor runs table
    results: Any  # open_results Dataset, or None when the store holds no run
    packages: Sequence[Any] | None = None
    source: str = ""
    workers: int | None = None
    packages_dir: str | None = None
    predictor: RuntimePredictor | None = None
    live: LiveSweep | None = None
    jobs_in_records: dict[str, Any] = field(default_factory=dict)
    references: Sequence[Any] = ()  # sweep.monitor.reference.Reference curves to overlay

    @property
    def units(self) -> pd.DataFrame:
        """The counted units (packages, or runs without packages) with their state."""
        return package_table(self.runs, self.packages)

    @property
    def status(self) -> SweepStatus:
        """The ``sweep status`` figures."""
        return sweep_status(
            self.runs,
            self.packages,
            workers=self.workers,
            predictor=self.predictor,
            live=self.live,
            jobs_in_records=self.jobs_in_records,
        )


def read_runs(store: str) -> pd.DataFrame:
    """The runs table of a store, from its committed records only (read-only, no lock)."""
    from ..store import Store

    with Store.open(str(store), mode="r") as st:
        return runs_table_of(st.run_table())


def read_packages(packages_dir: str | None) -> Sequence[Any] | None:
    """The current packages (None without a directory); bad files raise ConfigError."""
    if packages_dir is None:
        return None
    from ..spec import load_packages

    # memory is checked by `sweep run` against its workers; here it is irrelevant
    return load_packages(packages_dir, check_memory=False)


def check_workers(workers: int | None) -> None:
    """ConfigError unless ``workers`` (runs proceeding at once, for the ETA) is None or >= 1."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise option_error("workers", workers, "an integer >= 1")


def load_sweep(
    store: str,
    packages_dir: str | None = None,
    *,
    workers: int | None = None,
    with_results: bool = True,
    reference_files: Sequence[str] | None = None,
) -> SweepData:
    """Read everything the status, report and dashboard need from a store (and packages);
    ``workers``: runs proceeding at once, for the ETA; ``reference_files``: published curves
    to overlay (default: those placed in ``sweep/monitor/reference_data``)."""
    from ..store import Store
    from .reference import load_references

    check_workers(workers)
    references = load_references(list(reference_files or ())) if with_results else []
    packages = read_packages(packages_dir)
    with Store.open(str(store), mode="r") as st:  # one open: records and series agree
        runs = runs_table_of(st.run_table())
        predictor = RuntimePredictor.from_store(st)
        jobs = st.provenance_values(["jobs", "preemptions"])
        results = None
        if with_results and len(runs):
            from ..store.results import open_results  # xarray: not imported for the text status

            results = open_results(st)
        document = st.status_document()
    return SweepData(
        runs=runs,
        results=results,
        packages=packages,
        source=str(store),
        workers=workers,
        packages_dir=packages_dir,
        predictor=predictor,
        live=live_sweep(document),
        jobs_in_records=jobs_of_provenance(jobs["jobs"], jobs["preemptions"]),
        references=references,
    )
