"""The driver's per-run state as columns (issue 17): what a million-package sweep keeps per run."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_sweep, write_packages


def _entries(tmp_path: Path, n: int, columnar: bool):
    """The runs of a plan of ``n`` tiny packages: a RunEntries over a loaded directory's
    columns, or a dict of PlanEntry (the driver's other form)."""
    from sweep.engine.columns import RunEntries
    from sweep.engine.plan import plan_sweep
    from sweep.spec import load_packages

    pkgs = load_packages(write_packages(tmp_path / "pk", tiny_sweep(n)))
    plan = plan_sweep(pkgs, set())
    runs = RunEntries(plan, plan.positions("run"))
    return runs if columnar else dict(runs.items())


@pytest.mark.parametrize("columnar", [True, False])
def test_run_column_behaves_as_a_dict_of_the_same_operations(tmp_path: Path, columnar: bool):
    """Random sets, deletes and reads give what a dict gives (labels and integers), and
    ``counts`` is the Counter of the values."""
    from collections import Counter

    from sweep.engine.columns import RunColumn

    entries = _entries(tmp_path, 40, columnar)
    ids = list(entries)
    rng = random.Random(7)
    status, attempts = RunColumn(entries, labels=()), RunColumn(entries)
    want_s: dict[str, str] = {}
    want_a: dict[str, int] = {}
    for _ in range(400):
        rid = rng.choice(ids)
        op = rng.random()
        if op < 0.5:
            label = rng.choice(["done", "diverged", "cancelled", "timeout"])
            status[rid] = want_s[rid] = label
            attempts[rid] = want_a[rid] = want_a.get(rid, 0) + 1
        elif op < 0.7 and rid in want_s:
            del status[rid], want_s[rid]
        assert (rid in status) == (rid in want_s) and status.get(rid) == want_s.get(rid)
        assert attempts.get(rid) == want_a.get(rid)
    assert dict(status) == want_s and dict(attempts) == want_a
    assert len(status) == len(want_s) and bool(attempts) == bool(want_a)
    assert status.counts() == dict(Counter(want_s.values()))
    assert "not-a-run" not in status and status.get("not-a-run") is None
    status["not-a-run"] = "done"  # an id outside the plan is kept beside the codes
    assert status["not-a-run"] == "done" and status.counts()["done"] == Counter(want_s.values())["done"] + 1
    with pytest.raises(KeyError):
        _ = attempts["nope"]
    with pytest.raises(ValueError, match="cannot be kept"):
        attempts[ids[0]] = 70_000


def test_run_column_is_a_few_bytes_a_run_where_a_dict_was_a_hundred(tmp_path: Path):
    """Every run of the plan finished: the column's size does not change with how many runs
    have a value (one uint8 code each), while the dict it replaced grew by ~100 bytes a run."""
    import sys

    from sweep.engine.columns import RunColumn

    entries = _entries(tmp_path, 300, True)
    col = RunColumn(entries, labels=())
    before = col.codes.nbytes
    as_dict = {}
    for rid in entries:
        col[rid] = "done"
        as_dict[str(rid)] = "done"
    assert col.codes.nbytes == before == len(entries) and col.codes.dtype == np.uint8
    dict_bytes = sys.getsizeof(as_dict) + sum(sys.getsizeof(k) for k in as_dict)
    assert dict_bytes / len(entries) > 50 * col.codes.nbytes / len(entries)


@pytest.mark.parametrize("columnar", [True, False])
def test_work_left_counts_in_slices_and_takes_off_finished_runs(tmp_path: Path, columnar: bool):
    """``WorkLeft`` answers only once every run is counted; runs finished before the scan
    reached them are skipped, those finished after are taken off: the sum is that of the runs
    not finished, whatever the order."""
    from sweep.engine.columns import RunColumn
    from sweep.engine.predict import run_size
    from sweep.engine.work_left import WorkLeft

    entries = _entries(tmp_path, 60, columnar)
    ids = list(entries)
    finished = RunColumn(entries, labels=())

    def size_of(rid: str):
        return run_size(entries[rid].package.build_params())

    work = WorkLeft(entries, finished, size_of)
    finished[ids[-1]] = "done"  # finished before the scan reaches it
    work.scan(0.0)  # a slice: at least the first 16 runs, then the budget is spent
    assert not work.complete and work.groups() is None
    finished[ids[0]] = "done"  # counted already: taken off when it finishes
    work.finish(ids[0], size_of(ids[0]))
    work.finish(ids[-1], size_of(ids[-1]))  # never counted: nothing to take off
    while not work.complete:
        work.scan(0.0)
    groups = work.groups()
    assert groups is not None
    left = [size_of(r) for r in ids if r not in finished]
    assert sum(g[1] for g in groups.values()) == pytest.approx(sum(s.point_steps for s in left))
    assert {k[0] for k in groups} == {entries[r].package.priority for r in ids if r not in finished}
