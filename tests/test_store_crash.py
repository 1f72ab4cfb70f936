"""Crash safety and the single-writer lock, with real processes killed by SIGKILL."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from store_data import provenance, result_like

from sweep.errors import StoreError, StoreLockedError
from sweep.spec import run_id_of
from sweep.store import Store

HERE = Path(__file__).resolve().parent
A = {"Re": 100.0, "dt": 0.01, "T_final": 0.1, "grid": [8, 8, 8]}
B = {"Re": 200.0, "dt": 0.01, "T_final": 0.1, "grid": [8, 8, 8]}

# A writer process: commit the runs named in argv[2] (json list of params), then hold the
# store open (and its lock) until killed, touching argv[3] when it gets there. Each run gets
# its group runs/<run_id>/ unless PACK_BYTES is set (packed runs: tests/test_store_packed.py).
WRITER = """
import json, os, sys, time
sys.path.insert(0, {here!r})
from store_data import provenance, result_like
from sweep.spec import run_id_of
from sweep.store import Store
st = Store.open(sys.argv[1], mode="a", pack_bytes=int(os.environ.get("PACK_BYTES", "0")))
for i, p in enumerate(json.loads(sys.argv[2])):
    st.commit_run(run_id_of(p), result_like(p), provenance(p, "pkg%d" % i))
open(sys.argv[3], "w").write("ready")
time.sleep(120)
"""


def _writer(
    tmp_path: Path, store: Path, runs: list[dict], env: dict | None = None
) -> tuple[subprocess.Popen, Path]:
    flag = tmp_path / f"flag-{time.monotonic_ns()}"
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(here=str(HERE)))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(store), json.dumps(runs), str(flag)],
        env={**os.environ, **(env or {})},
        stderr=subprocess.PIPE,
    )
    return proc, flag


def _wait(flag: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not flag.exists():
        if proc.poll() is not None:
            raise AssertionError(f"writer exited early: {proc.stderr.read().decode()}")
        assert time.time() < deadline, "writer never got ready"
        time.sleep(0.05)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _snapshot(store: Path) -> dict[str, bytes]:
    run = store / "runs"
    return {str(p.relative_to(store)): p.read_bytes() for p in run.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_store_sigkill_between_data_and_marker_redoes_only_that_run(tmp_path: Path) -> None:
    store = tmp_path / "r.zarr"
    proc, flag = _writer(tmp_path, store, [A])
    _wait(flag, proc)
    _kill(proc)
    a_files = _snapshot(store)
    # second writer: dies after writing B's data, before B's marker
    proc, flag = _writer(
        tmp_path, store, [B], env={"NS_SWEEP_TEST_PAUSE_AT": f"before-marker:{tmp_path / 'paused'}:120"}
    )
    _wait(tmp_path / "paused", proc)
    assert (store / "runs" / run_id_of(B) / "energy" / "zarr.json").exists()  # B's data is there
    _kill(proc)
    with Store.open(store) as st:  # opens; A done and unchanged, B not done
        assert st.done_run_ids() == {run_id_of(A)}
        assert run_id_of(B) not in st.records()
        np.testing.assert_array_equal(st.open_run(run_id_of(A)).energy.values, result_like(A).energy.values)
    assert {k: v for k, v in _snapshot(store).items() if k in a_files} == a_files
    from solver import SolverParams
    from sweep.engine.plan import explain_packages
    from sweep.spec import Package

    pkgs = [Package("a", "HIGH", SolverParams(A)), Package("b", "HIGH", SolverParams(B))]
    with Store.open(store) as st:
        assert [e.action for e in explain_packages(pkgs, st)] == ["skip", "run"]
    with Store.open(store, mode="a", pack_bytes=0) as st:  # the stale lock of the killed writer is taken over
        st.commit_run(run_id_of(B), result_like(B), provenance(B, "b"))
    with Store.open(store) as st:
        assert st.done_run_ids() == {run_id_of(A), run_id_of(B)}
        np.testing.assert_array_equal(st.open_run(run_id_of(B)).energy.values, result_like(B).energy.values)
    assert {k: v for k, v in _snapshot(store).items() if k in a_files} == a_files


def test_store_marker_without_log_record_is_recovered(tmp_path: Path) -> None:
    # the state a crash between a run's marker and its log record leaves behind
    store = tmp_path / "r.zarr"
    with Store.open(store, mode="a", pack_bytes=0) as st:
        st.commit_run(run_id_of(A), result_like(A), provenance(A, "a"))
    st = Store.open(store, mode="a", pack_bytes=0)
    st.commit_run(run_id_of(B), result_like(B), provenance(B, "b"))
    st._lock.release()  # as if the process died: no close, no compaction
    for f in (store / "log").iterdir():
        f.unlink()
    with Store.open(store) as reader:
        assert reader.done_run_ids() == {run_id_of(A), run_id_of(B)}
    with Store.open(store, mode="a") as writer:
        assert writer.done_run_ids() == {run_id_of(A), run_id_of(B)}
    with Store.open(store) as reader:
        table = reader.run_table()
        series, _ = table.series()
        assert set(table.ids) == {run_id_of(A), run_id_of(B)}
        row = table.ids.index(run_id_of(B))
        np.testing.assert_array_equal(series["energy"][row], result_like(B).energy.values)


@pytest.mark.slow
def test_store_lock_refuses_second_writer_naming_holder(tmp_path: Path) -> None:
    store = tmp_path / "r.zarr"
    proc, flag = _writer(tmp_path, store, [A])
    try:
        _wait(flag, proc)
        with pytest.raises(
            StoreLockedError, match=rf"pid {proc.pid} on host {socket.gethostname()} since 20"
        ):
            Store.open(store, mode="a")
        with Store.open(store) as reader:  # reading is always allowed
            assert reader.done_run_ids() == {run_id_of(A)}
    finally:
        _kill(proc)


@pytest.mark.slow
def test_store_lock_of_killed_writer_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "r.zarr"
    proc, flag = _writer(tmp_path, store, [])
    _wait(flag, proc)
    _kill(proc)
    assert json.loads((store / "lock.json").read_text())["pid"] == proc.pid
    with caplog.at_level(logging.WARNING, logger="sweep.store"):
        with Store.open(store, mode="a"):
            assert json.loads((store / "lock.json").read_text())["pid"] == os.getpid()
    assert f"left by pid {proc.pid}" in caplog.text
    assert (store / "lock.json").read_bytes() == b""  # released cleanly


def test_store_lock_same_process_second_writer_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.zarr", mode="a"):
        with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
            Store.open(tmp_path / "r.zarr", mode="a")
    with Store.open(tmp_path / "r.zarr", mode="a"):  # free again after close
        pass


def test_store_object_store_lock_stale_and_live(tmp_path: Path) -> None:
    import psutil

    url = f"memory://lock-test-{os.getpid()}-{time.monotonic_ns()}/r.zarr"
    Store.open(url, mode="a").close()
    from sweep.store.blobs import open_blobs

    blobs = open_blobs(url)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = {
        "host": socket.gethostname(),
        "pid": int(dead.stdout),
        "since": "2026-01-01T00:00:00+00:00",
        "token": "old",
    }
    blobs.write("lock.json", json.dumps(stale).encode())
    with Store.open(url, mode="a"):
        assert json.loads(blobs.read("lock.json"))["pid"] == os.getpid()
    live = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": "2026-01-01T00:00:00+00:00",
        "pid_started": psutil.Process().create_time(),
        "token": "other",
    }
    blobs.write("lock.json", json.dumps(live).encode())
    with pytest.raises(StoreLockedError, match=f"pid {os.getpid()} on host"):
        Store.open(url, mode="a")
    elsewhere = {**live, "host": "far-away-node"}
    blobs.write("lock.json", json.dumps(elsewhere).encode())
    with pytest.raises(StoreLockedError, match="far-away-node.*--break-lock"):
        Store.open(url, mode="a")


def test_store_torn_log_record_falls_back_to_marker(tmp_path: Path) -> None:
    store = tmp_path / "r.zarr"
    st = Store.open(store, mode="a", pack_bytes=0)
    st.commit_run(run_id_of(A), result_like(A), provenance(A, "a"))
    st._lock.release()  # as if killed while the log record was half written
    (record,) = (store / "log").iterdir()
    record.write_bytes(record.read_bytes()[: record.stat().st_size // 2])
    with Store.open(store) as reader:
        assert reader.done_run_ids() == {run_id_of(A)}
        assert reader.records()[run_id_of(A)].package_ids == ("a",)
    with Store.open(store, mode="a"):
        pass  # the writer re-logs the run and folds it into the index
    with Store.open(store) as reader:
        assert reader.done_run_ids() == {run_id_of(A)} and not list((store / "log").iterdir())


def test_store_killed_writer_with_torn_log_tail_keeps_every_run(tmp_path: Path) -> None:
    store = tmp_path / "r.zarr"
    runs = [{**A, "Re": 100.0 + i} for i in range(4)]
    proc, flag = _writer(tmp_path, store, runs[:3])
    _wait(flag, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (segment,) = (store / "log").iterdir()  # the killed session's records, one line each
    data = segment.read_bytes()
    assert data.count(b"\n") == 3
    segment.write_bytes(data[: len(data) - 40])  # the last record torn, as a crash mid-write leaves it
    with Store.open(store) as reader:  # the torn run is known by its marker
        assert reader.done_run_ids() == {run_id_of(p) for p in runs[:3]}
    with Store.open(store, mode="a", pack_bytes=0) as st:  # a new session appends to a new file
        st.commit_run(run_id_of(runs[3]), result_like(runs[3]), provenance(runs[3], "pkg3"))
        assert len(list((store / "log").iterdir())) == 2
        assert st.records()[run_id_of(runs[2])].package_ids == ("pkg2",)
    with Store.open(store) as reader:
        assert reader.done_run_ids() == {run_id_of(p) for p in runs}
        assert not list((store / "log").iterdir())
        for p in runs:  # the torn record's data came back from the run group
            np.testing.assert_array_equal(
                reader.open_run(run_id_of(p))["energy"].values, result_like(p)["energy"].values
            )


def test_store_killed_writer_with_torn_packed_record_redoes_only_that_run(tmp_path: Path) -> None:
    """A packed run's log record is its marker: torn by a crash, the run is redone."""
    store = tmp_path / "r.zarr"
    runs = [{**A, "Re": 100.0 + i} for i in range(4)]
    proc, flag = _writer(tmp_path, store, runs[:3], env={"PACK_BYTES": "32768"})
    _wait(flag, proc)
    _kill(proc)
    assert sorted(p.name for p in (store / "runs").iterdir()) == ["zarr.json"]  # packed: no groups
    (segment,) = (store / "log").iterdir()
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) - 40])
    with Store.open(store) as reader:
        assert reader.done_run_ids() == {run_id_of(p) for p in runs[:2]}
    with Store.open(store, mode="a") as st:
        for i in (2, 3):
            st.commit_run(run_id_of(runs[i]), result_like(runs[i]), provenance(runs[i], f"pkg{i}"))
    with Store.open(store) as reader:
        assert reader.done_run_ids() == {run_id_of(p) for p in runs}
        for p in runs:
            np.testing.assert_array_equal(
                reader.open_run(run_id_of(p))["energy"].values, result_like(p)["energy"].values
            )


# A writer that commits packed runs and closes the store: its compaction is where it is killed
COMPACTOR = """
import json, sys
sys.path.insert(0, {here!r})
from store_data import provenance, result_like
from sweep.spec import run_id_of
from sweep.store import Store
with Store.open(sys.argv[1], mode="a") as st:
    for p in json.loads(sys.argv[2]):
        st.commit_run(run_id_of(p), result_like(p), provenance(p, "pkg%g" % p["Re"]))
"""


@pytest.mark.slow
def test_store_sigkill_during_compaction_keeps_every_packed_run_once(tmp_path: Path) -> None:
    store = tmp_path / "r.zarr"
    runs = [{**A, "Re": 100.0 + i} for i in range(3)]
    with Store.open(store, mode="a") as st:
        st.commit_run(run_id_of(runs[0]), result_like(runs[0]), provenance(runs[0], "first"))
    (first,) = [p.name for p in (store / "batches").iterdir() if p.is_dir()]
    script = tmp_path / "compactor.py"
    script.write_text(COMPACTOR.format(here=str(HERE)))
    flag = tmp_path / "at-compaction"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(store), json.dumps(runs[1:])],
        env={**os.environ, "NS_SWEEP_TEST_PAUSE_AT": f"compact-before-index:{flag}:120"},
        stderr=subprocess.PIPE,
    )
    _wait(flag, proc)
    _kill(proc)
    batches = sorted(p.name for p in (store / "batches").iterdir() if p.is_dir())
    assert len(batches) == 2 and first in batches  # the new batch is complete, but not indexed
    with Store.open(store) as reader:  # the killed session's runs come from its log
        assert reader.done_run_ids() == {run_id_of(p) for p in runs}
        assert reader.run_table().home_of(run_id_of(runs[2])) == "log"
    with Store.open(store, mode="a") as st:  # the unindexed batch goes; the log is batched again
        assert sorted(p.name for p in (store / "batches").iterdir() if p.is_dir()) == [first]
    batches = sorted(p.name for p in (store / "batches").iterdir() if p.is_dir())
    assert len(batches) == 2 and not list((store / "log").iterdir())
    with Store.open(store) as reader:
        homes = [reader.run_table().home_of(run_id_of(p)) for p in runs]
        assert homes[0] == first and homes[1] == homes[2] != first
        for p in runs:
            np.testing.assert_array_equal(
                reader.open_run(run_id_of(p))["energy"].values, result_like(p)["energy"].values
            )
    with Store.open(store, mode="a") as st:
        assert st.rebuild_index() == 3  # each run once, from the batch groups alone


# ------------------------------------------------------------------ store creation cut short (issue 18, 12)


def _creation_leftover(store: Path, holder: dict | None, *, groups: bool) -> None:
    """What a writer killed while creating the store leaves: its lock file (with or without its
    record), maybe some of the groups, never the root document."""
    store.mkdir()
    (store / "lock.json").write_text(json.dumps(holder) if holder else "")
    if groups:
        for name in ("runs", "batches"):
            (store / name).mkdir()
            (store / name / "zarr.json").write_text(
                '{"zarr_format": 3, "node_type": "group", "attributes": {}}'
            )
        (store / "checkpoints").mkdir()
        (store / "checkpoints" / "zarr.json.1a2b3c4d.partial").write_text('{"zarr_fo')


@pytest.mark.parametrize("groups", [False, True])
@pytest.mark.parametrize("recorded", [False, True])
def test_store_creation_cut_short_is_completed(tmp_path: Path, groups: bool, recorded: bool) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    holder = {"host": socket.gethostname(), "pid": int(dead.stdout), "since": "2026-01-01T00:00:00+00:00"}
    store = tmp_path / "r.zarr"
    _creation_leftover(store, holder if recorded else None, groups=groups)
    with Store.open(store, mode="a") as st:
        st.commit_run(run_id_of(A), result_like(A), provenance(A, "a"))
    with Store.open(store) as st:
        assert st.done_run_ids() == {run_id_of(A)}


def test_store_directory_of_other_files_is_still_refused(tmp_path: Path) -> None:
    store = tmp_path / "r.zarr"
    store.mkdir()
    (store / "lock.json").write_text("")
    (store / "runs").mkdir()
    (store / "runs" / "my-notes.txt").write_text("mine")  # not a store's: never adopted
    with pytest.raises(StoreError, match="not empty and not a result store"):
        Store.open(store, mode="a")
    assert (store / "runs" / "my-notes.txt").read_text() == "mine"


# ------------------------------------------------------------------ locks of other hosts (issue 18, 17)


def _other_host_lock(store: Path, age: float) -> dict:
    holder = {
        "host": "far-away-node",
        "pid": 4242,
        "since": "2026-01-01T00:00:00+00:00",
        "pid_started": 1.0,
        "token": "theirs",
    }
    (store / "lock.json").write_text(json.dumps(holder))
    t = time.time() - age
    os.utime(store / "lock.json", (t, t))
    return holder


def test_store_lock_of_another_host_refused_unless_stale_or_broken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import dask.config

    store = tmp_path / "r.zarr"
    Store.open(store, mode="a").close()
    stale = dask.config.get("sweep.store.lock-stale-after")
    assert stale >= 300  # the holder refreshes it every sweep.store.lock-refresh-every seconds
    _other_host_lock(store, age=5)
    with pytest.raises(StoreLockedError) as err:
        Store.open(store, mode="a")
    line = str(err.value)
    assert "pid 4242 on host far-away-node" in line and "--break-lock" in line and "\n" not in line, line
    assert json.loads((store / "lock.json").read_text())["token"] == "theirs"  # untouched
    with caplog.at_level(logging.WARNING, logger="sweep.store"):
        with Store.open(store, mode="a", break_lock=True):
            assert json.loads((store / "lock.json").read_text())["pid"] == os.getpid()
    assert "breaking the write lock of pid 4242 on host far-away-node" in caplog.text
    caplog.clear()
    _other_host_lock(store, age=stale + 60)  # not refreshed for longer than the stale age
    with caplog.at_level(logging.WARNING, logger="sweep.store"):
        with Store.open(store, mode="a"):
            pass
    assert "not refreshed for" in caplog.text and "far-away-node" in caplog.text


def test_store_lock_is_refreshed_and_a_takeover_stops_the_writer(tmp_path: Path) -> None:
    import dask.config

    store = tmp_path / "r.zarr"
    with dask.config.set({"sweep.store.lock-refresh-every": 0.1}):
        st = Store.open(store, mode="a")
    try:
        old = time.time() - 1000
        os.utime(store / "lock.json", (old, old))
        deadline = time.time() + 10
        while (store / "lock.json").stat().st_mtime < time.time() - 100:
            assert time.time() < deadline, "the holder never refreshed its lock"
            time.sleep(0.05)
        # another host broke the lock (a shared file system without flock across hosts)
        (store / "lock.json").write_text(json.dumps({"host": "far-away-node", "pid": 7, "token": "x"}))
        time.sleep(0.5)
        with pytest.raises(StoreLockedError, match="taken over by pid 7 on host far-away-node"):
            st.commit_run(run_id_of(A), result_like(A), provenance(A, "a"))
    finally:
        st._lock.release()


def test_store_writer_removes_the_temporary_files_of_writes_cut_short(tmp_path: Path) -> None:
    """A writer killed inside an atomic replacement (the soak test's SIGKILL landed in one of
    status.json) leaves `<name>.<8 hex>.partial`; the next writer removes those beside the
    store's documents and the index pointer, and nothing else."""
    store = tmp_path / "s.zarr"
    with Store.open(store, mode="a") as st:
        st.commit_run(run_id_of(A), result_like(A), provenance(A, "pkg0"))
        st.write_status({"state": "running"})
    left = [store / "status.json.3e797863.partial", store / "index" / "zarr.json.0badcafe.partial"]
    for path in left:
        path.write_text('{"state": "runn')  # torn
    other = store / "index" / "notes.partial"  # not the pattern of a write of ours: kept
    other.write_text("x")
    with Store.open(store, mode="r") as st:  # a reader changes nothing
        assert st.status_document() == {"state": "running"}
    assert all(p.exists() for p in left)
    with Store.open(store, mode="a") as st:
        assert st.done_run_ids() == {run_id_of(A)}
        assert st.status_document() == {"state": "running"}
    assert not any(p.exists() for p in left) and other.exists()


# A writer that commits the runs of argv[2], touches argv[3], waits for the file argv[4], then
# closes the store: its close folds the log into a new index segment and drops the log.
CLOSING_WRITER = """
import json, os, sys, time
sys.path.insert(0, {here!r})
from store_data import provenance, result_like
from sweep.spec import run_id_of
from sweep.store import Store
st = Store.open(sys.argv[1], mode="a")
for i, p in enumerate(json.loads(sys.argv[2])):
    st.commit_run(run_id_of(p), result_like(p), provenance(p, "pkg%d" % i))
open(sys.argv[3], "w").write("ready")
while not os.path.exists(sys.argv[4]):
    time.sleep(0.02)
st.close()
"""

READER = """
import sys
from sweep.store import Store
with Store.open(sys.argv[1], mode="r") as st:
    print(" ".join(sorted(st.done_run_ids())))
"""


def test_store_reader_racing_a_flush_of_the_log_still_sees_every_done_run(tmp_path: Path) -> None:
    """A reader that read the index's segments just before a writer folded the log into a new
    segment, and the log just after the writer dropped it, saw neither: a done run gone (the
    soak test caught it). The reader reads again when the index changed under it."""
    from faults import pause_env

    store = tmp_path / "s.zarr"
    with Store.open(store, mode="a") as st:  # run A: in the index's segments
        st.commit_run(run_id_of(A), result_like(A), provenance(A, "pkg0"))
    script = tmp_path / "closing_writer.py"
    script.write_text(CLOSING_WRITER.format(here=str(HERE)))
    ready, go = tmp_path / "ready", tmp_path / "go"
    writer = subprocess.Popen([sys.executable, str(script), str(store), json.dumps([B]), str(ready), str(go)])
    try:
        _wait(ready, writer)  # run B: only in the writer's log
        env, paused = pause_env(tmp_path, "index-read-before-log", seconds=3)
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(store)],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait(paused, reader)  # the reader has the segments (run A), not the log yet
        go.write_text("go")
        assert writer.wait(timeout=60) == 0  # B folded into a new segment, the log dropped
        assert not list((store / "log").glob("*.jsonl"))
        out, err = reader.communicate(timeout=60)
    finally:
        writer.kill()
    assert reader.returncode == 0, err
    assert out.split() == sorted([run_id_of(A), run_id_of(B)]), err
