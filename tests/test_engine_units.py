"""The engine's pure parts: planning, exit codes, summaries, checkpoint encoding, defaults."""

from __future__ import annotations

import io
from pathlib import Path

import dask.config
import numpy as np
import pytest

from solver import SolverParams
from solver.errors import DivergedError, SolverTimeout
from sweep import config
from sweep.codec import decode_arrays, encode_arrays
from sweep.engine import default_log_dir, exit_code_of, plan_sweep
from sweep.engine.progress import SweepProgress, final_summary
from sweep.engine.worker import failure_class_of
from sweep.errors import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT
from sweep.spec import Package


def _pkg(pid: str, re: float, prio: str = "HIGH") -> Package:
    return Package(pid, prio, SolverParams({"Re": re, "grid": (8, 8, 8), "T_final": 0.04}))


def test_plan_skips_done_and_duplicates_and_says_why():
    a, b, c, d = _pkg("a", 100), _pkg("b", 200), _pkg("c", 100), _pkg("d", 300)
    plan = plan_sweep([a, b, c, d], done={b.run_id}, failed={d.run_id: "timeout"}, checkpoints={})
    actions = {e.package_id: (e.action, e.reason) for e in plan}
    assert actions["a"] == ("run", "new")
    assert actions["b"][0] == "skip" and "done" in actions["b"][1]
    assert actions["c"][0] == "skip" and "same parameters as a" in actions["c"][1]
    assert actions["d"][0] == "run" and "failed before (timeout)" in actions["d"][1]


def test_plan_resumes_from_checkpoint():
    a = _pkg("a", 100)
    (entry,) = plan_sweep([a], done=set(), checkpoints={a.run_id: 7})
    assert entry.action == "run" and "checkpoint at step 7" in entry.reason


def test_checkpoint_of_another_solver_version_is_not_resumed(tmp_path: Path):
    import json
    import logging

    from solver import State
    from sweep.engine.checkpoints import usable_checkpoint
    from sweep.store import Store

    a = _pkg("a", 100)
    key = State.params_key(a.params.canonical())
    old = json.dumps({**json.loads(key), "solver_version": "0.9.0"}, sort_keys=True)
    state = State(3, 0.03, np.ones((3, 6, 6, 3), np.complex128), State.empty_diagnostics(), key)
    log = logging.getLogger("test")
    with Store.open(tmp_path / "s.zarr", mode="a") as st:
        st.save_checkpoint(a.run_id, state.to_arrays())
        assert State.key_of_arrays(usable_checkpoint(st, a.run_id, a, log)) == key
        st.save_checkpoint(a.run_id, State(3, 0.03, state.u_hat, state.diagnostics, old).to_arrays())
        assert st.load_checkpoint(a.run_id) is not None
        assert usable_checkpoint(st, a.run_id, a, log) is None  # the run starts over
        assert usable_checkpoint(st, a.run_id, _pkg("a", 200), log) is None


def test_explain_says_which_checkpoints_resume_and_which_start_over(tmp_path: Path):
    import json

    from solver import SOLVER_VERSION, State
    from sweep.engine.plan import explain_packages
    from sweep.store import Store

    a, b = _pkg("a", 100), _pkg("b", 200)
    for p, version in ((a, SOLVER_VERSION), (b, "0.9.0")):
        key = json.dumps(
            {**json.loads(State.params_key(p.params.canonical())), "solver_version": version}, sort_keys=True
        )
        state = State(3, 0.03, np.ones((3, 6, 6, 3), np.complex128), State.empty_diagnostics(), key)
        with Store.open(tmp_path / "s.zarr", mode="a") as st:
            st.save_checkpoint(p.run_id, state.to_arrays(), step=3)
    # a checkpoint saved before pointers recorded the version: read from the state itself
    pointer = tmp_path / "s.zarr" / "checkpoints" / b.run_id / "zarr.json"
    doc = json.loads(pointer.read_text())
    del doc["attributes"]["solver_version"]
    pointer.write_text(json.dumps(doc))
    with Store.open(tmp_path / "s.zarr") as st:
        assert st.checkpoint_versions() == {a.run_id: SOLVER_VERSION, b.run_id: "0.9.0"}
        ex = {e.package_id: e for e in explain_packages([a, b], st)}
    assert ex["a"].action == "resume" and "checkpoint at step 3" in ex["a"].reason
    assert ex["b"].action == "run"
    assert (
        f"starts over: its checkpoint was written by solver 0.9.0, this is {SOLVER_VERSION}" in ex["b"].reason
    )


@pytest.mark.parametrize(
    "statuses, code",
    [
        (["done", "skipped"], EXIT_OK),
        ([], EXIT_OK),
        (["done", "timeout"], EXIT_TIMEOUT),
        (["timeout", "diverged"], EXIT_FAILED),
        (["done", "error"], EXIT_FAILED),
        (["done", "cancelled"], EXIT_FAILED),
        (["worker-lost"], EXIT_FAILED),
    ],
)
def test_exit_code_of_statuses(statuses, code):
    assert exit_code_of(statuses) == code


def test_failure_class_of_solver_errors():
    assert failure_class_of(DivergedError(3, 0.03, 2.5, "CFL above the limit")) == "diverged"
    assert failure_class_of(SolverTimeout(3, 0.03, 0.0)) == "timeout"
    assert failure_class_of(MemoryError("no memory")) == "error"
    assert failure_class_of(ValueError("x")) == "error"


def test_encode_arrays_round_trip_is_lossless():
    rng = np.random.default_rng(1)
    arrays = {
        "u_hat": rng.standard_normal((3, 4, 4, 3)) + 1j * rng.standard_normal((3, 4, 4, 3)),
        "step": np.array(12),
        "f32": rng.standard_normal(5).astype(np.float32),
    }
    back = decode_arrays(encode_arrays(arrays))
    assert set(back) == set(arrays)
    for k, a in arrays.items():
        assert back[k].dtype == a.dtype and back[k].shape == a.shape
        assert back[k].tobytes() == a.tobytes()


def test_default_log_dir_beside_local_store(tmp_path: Path):
    assert default_log_dir(str(tmp_path / "out" / "r.zarr")) == (tmp_path / "out" / "r.zarr.logs").resolve()
    assert (
        default_log_dir(str(tmp_path / "out" / "r.zarr") + "/")
        == (tmp_path / "out" / "r.zarr.logs").resolve()
    )
    assert default_log_dir("s3://bucket/r.zarr") == Path.cwd() / "r.zarr.logs"


def test_config_defaults_come_from_packaged_yaml_and_can_be_overridden():
    assert config.get("timeout") == 86400
    assert (
        config.get("priority-values")["HIGH"]
        > config.get("priority-values")["MEDIUM"]
        > config.get("priority-values")["LOW"]
    )
    with dask.config.set({"sweep.timeout": 12}):
        assert config.get("timeout") == 12
        assert config.get("timeout", 5) == 5


def test_progress_summary_line_every_n_packages():
    out = io.StringIO()
    prog = SweepProgress(7, summary_every=5, bar=False, out=out)
    for status in ["done", "done", "diverged", "done", "done", "done", "timeout"]:
        prog.package_finished(status)
    prog.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # after 5 and at the end (7)
    assert lines[0].startswith("[5/7] done 4, failed 1 (diverged 1)")
    assert lines[1].startswith("[7/7] done 5, failed 2 (diverged 1, timeout 1)")


def test_final_summary_counts_by_status_and_priority():
    rows = [("HIGH", "done", 1), ("HIGH", "diverged", 1), ("LOW", "skipped", 1), ("LOW", "done", 1)]
    rows.append(("HIGH", "done", 2))  # a pair in two rows: they add up
    lines = final_summary(rows, ("HIGH", "MEDIUM", "LOW"), skipped=1, elapsed=61)
    assert lines[0] == "summary: 6 packages in 1m 01s (1 skipped as already done)"
    head = lines[1].split()
    assert head == ["priority", "done", "skipped", "diverged", "total"]
    assert lines[2].split() == ["HIGH", "3", "0", "1", "4"]
    assert lines[3].split() == ["LOW", "1", "1", "0", "2"]
    assert lines[4].split() == ["ALL", "4", "1", "1", "6"]


def test_summary_rows_count_each_package_once_from_codes():
    from collections import Counter

    from sweep.engine.progress import summary_rows

    rng = np.random.default_rng(3)
    prios = rng.integers(0, 3, 5000).astype(np.uint8)
    codes = rng.integers(0, 5, 5000).astype(np.uint8)
    labels = ["done", "skipped", "cancelled", "planned", "diverged"]
    prio_names = ("HIGH", "MEDIUM", "LOW")
    pairs = zip(prios.tolist(), codes.tolist(), strict=True)
    expected = Counter((prio_names[p], labels[c]) for p, c in pairs)
    got = list(summary_rows(prios, codes, labels))
    assert len(got) == len(expected) and {(p, s): n for p, s, n in got} == expected
    lines = final_summary(summary_rows(prios, codes, labels), prio_names, skipped=0, elapsed=1)
    assert lines[-1].split()[-1] == "5000"


def test_config_survives_a_set_made_before_import():
    import subprocess
    import sys

    code = (
        "import dask.config\n"
        "with dask.config.set({'sweep.retries': 7}):\n"
        "    from sweep import config\n"
        "    assert config.get('retries') == 7 and config.get('timeout') == 86400\n"
        "assert config.get('retries') == 2, config.get('retries')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.cluster
def test_submitter_one_named_task_per_package_with_its_priority(packages_dir, local_client):
    """Each package is one task of Dask's public API, keyed by its package id (what the
    dashboard shows) and carrying its package's priority, never retried by the scheduler."""
    from conftest import tiny_sweep

    from sweep.engine.options import SweepOptions
    from sweep.engine.plan import PlanEntry
    from sweep.engine.submit import Submitter
    from sweep.spec import load_packages

    pkgs = load_packages(packages_dir(tiny_sweep(3)))  # HIGH, MEDIUM, LOW
    entries = {p.run_id: PlanEntry(p, "run", "new") for p in pkgs}
    options = SweepOptions()
    sub = Submitter(local_client, "sweep-abcdef123456", entries, options)
    futures = sub.submit(list(entries), {})
    outcomes = local_client.gather(futures)
    assert sorted(o.package_id for o in outcomes) == ["p000", "p001", "p002"]
    assert all(o.status == "done" for o in outcomes)
    keys = {f.key: sub.futures[f] for f in futures}
    assert set(keys) == {f"run-{p.package_id}-abcdef12-1" for p in pkgs}

    def task_states(dask_scheduler, keys=tuple(keys)):
        return {k: (dask_scheduler.tasks[k].priority[0], dask_scheduler.tasks[k].retries) for k in keys}

    states = local_client.run_on_scheduler(task_states)
    for p in pkgs:
        priority, retries = states[f"run-{p.package_id}-abcdef12-1"]
        assert priority == -options.priority_values[p.priority] and retries == 0


def test_sweep_logs_defer_package_lines_and_buffer_main_info(tmp_path: Path):
    from sweep.engine.logs import SweepLogs, package_log_lines

    d = tmp_path / "logs"
    logs = SweepLogs(d, logger_name="sweep.test-logs")
    try:
        logs.package("a", "queued", stamped=True, defer=True)
        logs.package("b", "queued too", defer=True)
        logs.flush_main()
        assert package_log_lines(d, "a") == []  # deferred: still in memory
        logs.package("a", ["started", "status: done"])
        logs.flush_main()
        assert package_log_lines(d, "a")[1:] == ["started", "status: done"]
        assert package_log_lines(d, "a")[0].split(" ", 1)[1] == "queued"
        logs.logger.warning("a warning")  # written at once
        assert "a warning" in logs.main_log.read_text()
        logs.logger.info("an info line")
        logs.flush_main()
        assert "an info line" in logs.main_log.read_text()
    finally:
        logs.close()
    assert package_log_lines(d, "b") == ["queued too"]  # written at close


def test_sweep_logs_one_file_per_sweep_for_every_package(tmp_path: Path):
    """Package lines go to one segment file per sweep (no file per package); a package's lines
    are had by id across the sweeps, after those of a per-package file of earlier versions."""
    from sweep.engine.logs import SweepLogs, log_segments, package_log_lines

    d = tmp_path / "logs"
    d.mkdir()
    (d / "p1.log").write_text("old line\n")  # an earlier version's per-package log
    for sweep in ("first", "second"):
        logs = SweepLogs(d, logger_name=f"sweep.test-seg-{sweep}")
        for i in range(1000):
            logs.package(f"p{i}", [f"{sweep} run", "multi\nline"])
        logs.close()
    names = sorted(p.name for p in d.iterdir())
    assert len(names) == 4 and names[:2] == ["p1.log", "packages-" + names[1].split("-", 1)[1]]
    assert len(log_segments(d)) == 2
    assert package_log_lines(d, "p1") == ["old line", "first run", "multi line", "second run", "multi line"]
    assert package_log_lines(d, "p10") == ["first run", "multi line", "second run", "multi line"]
    assert package_log_lines(d, "p") == [] and package_log_lines(d, "p1.") == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_sweep_logs_on_a_full_disk_warn_once_and_go_on(tmp_path: Path, capsys):
    from sweep.engine.logs import SweepLogs

    d = tmp_path / "logs"
    d.mkdir()
    (d / "sweep.log").symlink_to("/dev/full")  # every write to /dev/full fails with ENOSPC
    logs = SweepLogs(d, logger_name="sweep.test-full-logs")
    logs.segment.symlink_to("/dev/full")
    try:
        logs.logger.warning("a warning")  # written at once: fails
        logs.logger.error("an error")
        logs.package("a", "started")
        logs.package("b", "started")  # the directory is known to be unwritable: not tried
    finally:
        logs.close()
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Logging error" not in err
    assert err.count("\n") == 1 and f"cannot write the log {d / 'sweep.log'}: No space left" in err, err


def test_frozen_heap_hides_the_heap_from_the_collector_and_restores_it():
    import gc

    from sweep.gc_pause import frozen_heap

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    heap = [{"package": i} for i in range(1000)]  # built before the loop
    with frozen_heap(young=5000):
        assert gc.get_freeze_count() >= frozen + len(heap)
        assert gc.get_threshold() == (5000, before[1] * 2, before[2] * 10)
        cycle: list = []
        cycle.append(cycle)  # a cycle made in the loop is still collected
        del cycle
        assert gc.collect() >= 1
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen


@pytest.mark.parametrize("skip", [True, False])
def test_no_collection_at_exit_leaves_the_last_heap_to_the_process_end(tmp_path: Path, skip: bool):
    """After ``no_collection_at_exit()``, the interpreter's exit does not collect the objects
    alive then (a cycle's finaliser does not run), while the atexit handlers still do (a
    log line written at exit is there); nothing is frozen before the exit. Without it, the
    exit collects the cycle (the control)."""
    import subprocess
    import sys

    code = (
        "import atexit, gc, sys\n"
        "from sweep.gc_pause import no_collection_at_exit\n"
        "class Node:\n"
        "    def __del__(self):\n"
        "        print('collected', flush=True)\n"
        "a, b = Node(), Node()\n"
        "a.other, b.other = b, a\n"
        "del a, b\n"
        "gc.disable()  # the cycle is left for the exit's collection\n"
        f"atexit.register(lambda: open({str(tmp_path / 'at_exit.txt')!r}, 'w').write('flushed'))\n"
        f"if {skip}:\n"
        "    no_collection_at_exit()\n"
        "    assert gc.get_freeze_count() == 0  # only at exit\n"
        "print('done', flush=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == (["done"] if skip else ["done", "collected", "collected"])
    assert (tmp_path / "at_exit.txt").read_text() == "flushed"


def test_quiet_variable_timeouts_drops_only_the_schedulers_variable_get_tracebacks():
    """A scheduler in this process logs a traceback for every Variable.get that times out (the
    engine's own asks for a checkpoint that may not exist); the filter drops those, nothing else."""
    import logging

    from sweep.engine.connection import _VARIABLE_TIMEOUTS, quiet_variable_timeouts

    def record(msg: str, exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except type(exc):
            import sys

            return logging.LogRecord(
                "distributed.core", logging.ERROR, __file__, 1, msg, ("variable_get",), sys.exc_info()
            )

    core = logging.getLogger("distributed.core")
    had = _VARIABLE_TIMEOUTS in core.filters
    quiet_variable_timeouts()
    quiet_variable_timeouts()  # idempotent
    try:
        assert core.filters.count(_VARIABLE_TIMEOUTS) == 1
        assert not core.filter(record("Exception while handling op %s", TimeoutError()))
        assert core.filter(record("Exception while handling op %s", ValueError("x")))  # a real error
        other = record("Exception while handling op %s", TimeoutError())
        other.args = ("gather",)
        assert core.filter(other)  # another op's timeout is not ours
    finally:
        if not had:
            core.removeFilter(_VARIABLE_TIMEOUTS)


def test_a_missing_variable_get_is_logged_by_an_in_process_scheduler_then_quieted(caplog):
    """The record the filter drops is what distributed really logs (checked on a real
    in-process scheduler), so the filter cannot go stale silently."""
    import logging

    from distributed import Client, LocalCluster, Variable

    from sweep.engine.connection import _VARIABLE_TIMEOUTS

    core = logging.getLogger("distributed.core")
    core.removeFilter(_VARIABLE_TIMEOUTS)
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster, Client(cluster) as c:
        with caplog.at_level(logging.ERROR, logger="distributed.core"):
            with pytest.raises(TimeoutError):
                Variable("not-there", client=c).get(timeout=0)
        seen = [r for r in caplog.records if "variable_get" in r.getMessage()]
        assert seen and isinstance(seen[0].exc_info[1], TimeoutError), caplog.records
        assert not _VARIABLE_TIMEOUTS.filter(seen[0])


def _sigterm_inside_a_gc_callback() -> bool:
    """Run a collection whose callback sends this process SIGTERM: the handler runs inside the
    callback, where Python swallows what it raises. Whether the signal was sent."""
    import gc
    import os
    import signal

    fired: list[int] = []

    def kill_in_callback(phase: str, info: dict) -> None:
        if phase == "start" and not fired:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs here, between bytecodes, and raises
                pass

    gc.callbacks.append(kill_in_callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(kill_in_callback)
    return bool(fired)


def test_a_stop_signal_swallowed_in_a_gc_callback_is_not_lost(capsys):
    """A SIGTERM whose handler runs inside a gc callback (distributed installs one): Python
    swallows the Interrupted there and prints "Exception ignored"; the stop must still happen
    (check_stop, or the end of the block) and print nothing."""
    from sweep.engine.interrupts import Interrupted, check_stop, interruptible

    with pytest.raises(Interrupted) as got:
        with interruptible():
            assert _sigterm_inside_a_gc_callback()  # the block goes on: Python swallowed it
            check_stop()
            raise AssertionError("check_stop did not raise")
    assert got.value.exit_code == 143
    assert "Exception ignored" not in capsys.readouterr().err
    check_stop()  # outside the block: nothing pending


def test_a_swallowed_stop_signal_is_raised_at_the_end_of_the_block():
    from sweep.engine.interrupts import Interrupted, interruptible

    fired = False
    with pytest.raises(Interrupted):
        with interruptible():
            fired = _sigterm_inside_a_gc_callback()
    assert fired


def test_a_stop_signal_during_an_import_waits_for_the_import_to_end(tmp_path: Path, monkeypatch):
    """A SIGTERM that comes while a module is being imported (the soak test saw one inside the
    wind-down's first `import zarr`): the import completes, whole, and the stop is raised
    after it (check_stop), not in the middle (a package half imported fails every later use)."""
    import importlib
    import sys

    from sweep.engine.interrupts import Interrupted, check_stop, interruptible

    (tmp_path / "slow_import_pkg").mkdir()
    (tmp_path / "slow_import_pkg" / "__init__.py").write_text(
        "import os, signal\n"
        "from . import part\n"
        "os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, inside the import\n"
        "for _ in range(1000):\n"
        "    pass\n"
        "LAST = part.VALUE\n"
    )
    (tmp_path / "slow_import_pkg" / "part.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(Interrupted) as got:
            with interruptible(hold_imports=True):
                mod = importlib.import_module("slow_import_pkg")
                assert mod.LAST == 42 and mod.part.VALUE == 42  # imported whole
                check_stop()
                raise AssertionError("check_stop did not raise")
        assert got.value.exit_code == 143
        assert sys.modules["slow_import_pkg"].LAST == 42
        check_stop()  # nothing pending any more
    finally:
        for name in ("slow_import_pkg", "slow_import_pkg.part"):
            sys.modules.pop(name, None)


def test_a_stop_signal_during_an_import_stops_at_once_where_imports_are_not_held(tmp_path: Path, monkeypatch):
    """Outside a block that holds imports (every command but a sweep, whose loop polls
    check_stop), a stop during an import is raised there and then: nothing would raise it later."""
    import importlib
    import sys

    from sweep.engine.interrupts import Interrupted, check_stop, interruptible

    (tmp_path / "cut_import_mod.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\nfor _ in range(1000):\n    pass\nLAST = 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(Interrupted):
            with interruptible():
                importlib.import_module("cut_import_mod")
                raise AssertionError("the import went on")
        check_stop()  # nothing held back
    finally:
        sys.modules.pop("cut_import_mod", None)
