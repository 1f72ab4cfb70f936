"""Tiny packages in batches, a bounded window of tasks, and package logs by id (issue 17)."""

from __future__ import annotations

import io
from pathlib import Path

from conftest import run_cli, store_records, tiny_sweep, write_packages


def test_submitter_batches_tiny_packages_and_keeps_a_window(tmp_path: Path, local_client):
    """Packages predicted far below batch_seconds share a task (one outcome each, in order);
    only `window` tasks are out at once; a package predicted long, or of another priority,
    is not put in a batch with the others."""
    from sweep.engine.options import SweepOptions
    from sweep.engine.plan import PlanEntry
    from sweep.engine.submit import Submitter
    from sweep.spec import load_packages

    pkgs = load_packages(write_packages(tmp_path / "pk", tiny_sweep(41, priorities=("HIGH",))))
    entries = {p.run_id: PlanEntry(p, "run", "new") for p in pkgs}
    long_one = pkgs[40].run_id
    options = SweepOptions(batch_seconds=0.01, max_batch=10, in_flight=1, min_in_flight=2, first_chunk=4)
    sub = Submitter(
        local_client,
        "sweep-abcdef123456",
        entries,
        options,
        predict=lambda rid: 1.0 if rid == long_one else 0.001,
    )
    sub.workers = 2
    first = sub.submit_next({})  # the first tasks: first_chunk / workers packages each
    assert len(first) == 2 == len(sub.futures)  # the window: max(2, 1 * 2 workers)
    assert [len(sub.futures[f]) for f in first] == [2, 2]
    assert sub.submit_next({}) == []  # the window is full
    done: dict[str, str] = {}
    sizes = []
    while sub.futures:
        f = next(iter(sub.futures))
        members = sub.futures.pop(f)
        sizes.append(len(members))
        outcomes = f.result()
        outcomes = outcomes if isinstance(outcomes, list) else [outcomes]
        assert [o.run_id for o in outcomes] == [rid for rid, _ in members]
        assert (len(members) > 1) == f.key.startswith("runs-")
        done.update({o.run_id: o.status for o in outcomes})
        sub.submit_next({})
        assert len(sub.futures) <= sub.window
    assert set(done) == set(entries) and set(done.values()) == {"done"}
    assert sizes[:2] == [2, 2] and 10 in sizes and sizes.count(1) >= 1  # the long one alone
    assert max(sizes) == 10


def test_run_sweep_commits_each_package_of_a_batch_and_logs_it_by_id(tmp_path: Path, local_client):
    """A sweep whose tiny packages ran in batches commits every package as its own run, and
    `sweep logs ID` prints that package's lines from the one log file of the sweep."""
    from sweep import run_sweep
    from sweep.engine.logs import log_segments

    d = write_packages(tmp_path / "pk", tiny_sweep(30))
    store = tmp_path / "r.zarr"
    logs = tmp_path / "r.zarr-logs"
    res = run_sweep(
        d,
        store,
        client=local_client,
        progress_bar=False,
        out=io.StringIO(),
        log_dir=logs,
        batch_seconds=5.0,
        first_chunk=2,
    )
    assert res.exit_code == 0 and res.counts["done"] == 30
    recs = store_records(store)
    assert len(recs) == 30 and {r.status for r in recs.values()} == {"done"}
    assert len(log_segments(logs)) == 1 and [p.name for p in logs.iterdir() if p.name.startswith("p0")] == []
    out = run_cli("logs", "p007", "--store", str(store), "--log-dir", str(logs))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any("queued: new" in ln for ln in lines) and lines[-1] == "status: done"
    assert "p008" not in out.stdout
    bad = run_cli("logs", "nope", "--store", str(store), "--log-dir", str(logs))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nope" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_progress_summary_lines_every_few_packages_then_at_most_one_a_second():
    """The first 20 summary lines come every `summary_every` packages; after them at most one
    a second (and the last): 100,000 tiny packages no longer print 20,000 lines."""
    from sweep.engine.progress import SweepProgress

    out = io.StringIO()
    progress = SweepProgress(10_000, summary_every=5, bar=False, out=out)
    for _ in range(10_000):
        progress.package_finished("done")
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[    5/10000]") and lines[19].startswith("[  100/10000]")
    assert lines[-1].startswith("[10000/10000] done 10000")
    assert 21 <= len(lines) <= 25, len(lines)
