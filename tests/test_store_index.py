"""The index of segments (sweep.store.index, sweep.store.segments): flushes, merges by size
tiers, readers of every state, old stores, and a writer killed during a merge at 100k runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.config
import numpy as np
import pytest
import xarray as xr
from store_data import provenance, result_like

import sweep
from sweep.spec import run_id_of
from sweep.store import SCHEMA_VERSION, Store
from sweep.store.lazy_columns import LazyColumns, materialized
from sweep.store.records import RECORD_COLUMNS
from sweep.store.segments import merge_plan
from sweep.store.table import RunTable

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE.parent / "scripts"
P = {"Re": 100.0, "dt": 0.01, "T_final": 0.05, "grid": [8, 8, 8]}


def _params(i: int) -> dict:
    return {**P, "Re": 100.0 + i}


def _pointer(url: Path) -> dict:
    return json.loads((url / "index" / "zarr.json").read_text())["attributes"]


def _on_disk_segments(url: Path) -> set[str]:
    return {p.name for p in (url / "index").iterdir() if p.is_dir()}


def test_store_index_merge_plan_is_a_counter_in_base_fan_in() -> None:
    levels: list[int] = []
    rewrites = 0
    for _ in range(4**3):  # 64 flushes of fan-in 4: one segment of level 3
        levels.append(0)
        while (start := merge_plan(levels, 4)) is not None:
            rewrites += len(levels) - start
            levels[start:] = [levels[start] + 1]
        assert levels == sorted(levels, reverse=True) and all(levels.count(v) < 4 for v in set(levels))
    assert levels == [3]
    assert rewrites == 16 * 4 + 4 * 4 + 4  # each flush's rows rewritten once per level
    assert merge_plan([1, 0, 0], 4) is None and merge_plan([1, 1, 1, 1], 4) == 0


def test_store_index_flushes_merge_by_tiers_and_keep_every_row(tmp_path: Path) -> None:
    url = tmp_path / "r.zarr"
    failed = _params(999)
    with dask.config.set({"sweep.store.compact-every": 3, "sweep.store.merge-fan-in": 2}):
        with Store.open(url, mode="a") as st:
            st.record_failure(run_id_of(failed), "diverged", "NaN", provenance(failed, "f"))
            for i in range(20):
                st.commit_run(
                    run_id_of(_params(i)), result_like(_params(i), seed=i), provenance(_params(i), f"p{i}")
                )
                levels = [e["level"] for e in _pointer(url)["segments"]]
                assert levels == sorted(levels, reverse=True)  # never two of one level (fan-in 2)
                assert len(levels) == len(set(levels))
                assert _on_disk_segments(url) == {e["name"] for e in _pointer(url)["segments"]}
                if i == 10:  # a failed run done later: its newer row wins in every reader
                    st.commit_run(run_id_of(failed), result_like(failed), provenance(failed, "f"))
                    with Store.open(url) as reader:
                        assert reader.failures() == {} and run_id_of(failed) in reader.done_run_ids()
    ptr = _pointer(url)
    assert sum(e["rows"] for e in ptr["segments"]) >= 21 and ptr["upto_seq"] == 22
    with Store.open(url) as st:
        table = st.run_table()
        assert sorted(table.ids) == sorted({run_id_of(_params(i)) for i in range(20)} | {run_id_of(failed)})
        assert st.done_run_ids() == set(table.ids) and st.failures() == {}
        recs = st.records()
        assert recs[run_id_of(_params(7))].package_ids == ("p7",)
        assert recs[run_id_of(_params(7))].provenance["attempt"] == 1
    ds = sweep.open_results(url)
    for i in (0, 7, 19):
        row = ds.sel(run=run_id_of(_params(i)))
        np.testing.assert_array_equal(row.energy.values, result_like(_params(i)).energy.values)
        with Store.open(url) as st:
            xr.testing.assert_identical(
                st.open_run(run_id_of(_params(i))).drop_attrs(), result_like(_params(i), seed=i).drop_attrs()
            )
    with Store.open(url, mode="a") as st:  # a rebuild gives one segment of the same rows
        assert st.rebuild_index() == 21
    assert len(_pointer(url)["segments"]) == 1 and len(_on_disk_segments(url)) == 1
    xr.testing.assert_identical(sweep.open_results(url).drop_vars("wall_time"), ds.drop_vars("wall_time"))


def test_store_index_reader_sees_segments_and_log_of_a_live_writer(tmp_path: Path) -> None:
    url = tmp_path / "r.zarr"
    with dask.config.set({"sweep.store.compact-every": 2}):
        with Store.open(url, mode="a") as st:
            for i in range(5):
                st.commit_run(run_id_of(_params(i)), result_like(_params(i)), provenance(_params(i), f"p{i}"))
            with Store.open(url) as reader:  # two segments and one record in the log
                assert len(_pointer(url)["segments"]) >= 1 and list((url / "log").iterdir())
                assert reader.done_run_ids() == {run_id_of(_params(i)) for i in range(5)}
                series, lengths = reader.run_table().series()
                assert (lengths == len(result_like(P).time)).all()


def test_store_index_schema_2_store_is_read_and_converted(tmp_path: Path) -> None:
    """tests/data/store_schema2 was written by the code before index segments (commit e6ad577,
    a compacted generation, a batch group of format 1, and a log its writer never folded in):
    its runs (three packed, one with fields, a failure done later, one in the log)."""
    url = tmp_path / "old.zarr"
    shutil.copytree(HERE / "data" / "store_schema2", url)
    runs = {f"packed{i}": {**P, "Re": 100.0 + i} for i in range(3)}
    runs.update(fields={**P, "Re": 200.0}, failed={**P, "Re": 300.0})
    runs["in-log"] = {**P, "Re": 400.0}
    seeds = {"packed0": 0, "packed1": 1, "packed2": 2, "fields": 7, "failed": 3, "in-log": 4}
    old_gen = _pointer(url)["current"]

    def check(st: Store) -> None:
        recs = st.records()
        assert {r.package_ids[0]: r.status for r in recs.values()} == dict.fromkeys(runs, "done")
        for name, p in runs.items():
            expected = result_like(p, fields=name == "fields", seed=seeds[name])
            # the fixture's values came from np.exp on another machine: its SIMD path may
            # round one value to the next float (1.4e-17 in energy seen): read exactly, compared to
            # within an ulp
            got = st.open_run(run_id_of(p)).drop_attrs()
            xr.testing.assert_allclose(got, expected.drop_attrs(), rtol=4e-16, atol=0)
            assert got.sizes == expected.sizes and set(got.variables) == set(expected.variables)
        ds = sweep.open_results(st)
        assert ds.sizes["run"] == len(runs) and set(ds.package_id.values) == set(runs)

    with Store.open(url) as st:  # read as it is, nothing written
        check(st)
    assert _pointer(url)["current"] == old_gen
    assert json.loads((url / "zarr.json").read_text())["attributes"]["ns_sweep"]["schema_version"] == 2
    with Store.open(url, mode="a") as st:  # the first writer converts the index
        check(st)
        extra = {**P, "Re": 500.0}
        st.commit_run(run_id_of(extra), result_like(extra), provenance(extra, "new"))
    runs["new"], seeds["new"] = extra, 0
    ptr = _pointer(url)
    assert "current" not in ptr and ptr["format"] == 2
    assert _on_disk_segments(url) == {e["name"] for e in ptr["segments"]}  # the old generation is gone
    assert not list((url / "log").iterdir())
    assert (
        json.loads((url / "zarr.json").read_text())["attributes"]["ns_sweep"]["schema_version"]
        == SCHEMA_VERSION
    )
    with Store.open(url) as st:
        check(st)
    with Store.open(url, mode="a") as st:
        assert st.rebuild_index() == 7  # old batch groups (format 1) and new ones alike
    with Store.open(url) as st:
        check(st)


# ------------------------------------------------------------------ 100k runs, a merge killed

FILL_EVERY = 400  # 255 flushes of 400 runs: levels 3,3,3,2,2,2,1,1,1,0,0,0 (base 4: 3333)
FILL_RUNS = 255 * FILL_EVERY  # 102,000 runs
# the merge of every row (to level 4) is the one killed: above the default merge-max-rows
FILL_CONFIG = {"sweep.store.compact-every": FILL_EVERY, "sweep.store.merge-max-rows": 2 * FILL_RUNS}

# A writer that commits N runs through commit_run: its first flush makes four level-0
# segments, and the merges cascade up to one segment of every row (level 4)
COMMITTER = """
import json, sys
sys.path.insert(0, {here!r})
from store_data import provenance, result_like
from sweep.spec import run_id_of
from sweep.store import Store
with Store.open(sys.argv[1], mode="a") as st:
    for p in json.loads(sys.argv[2]):
        st.commit_run(run_id_of(p), result_like(p), provenance(p, "late%g" % p["Re"]))
"""


@pytest.fixture(scope="module")
def store_100k(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    sys.path.insert(0, str(SCRIPTS))
    from bulk_store import bulk_fill

    url = tmp_path_factory.mktemp("bulk") / "r.zarr"
    with dask.config.set(FILL_CONFIG):
        ids = bulk_fill(str(url), FILL_RUNS)
    assert [e["level"] for e in _pointer(url)["segments"]] == [3, 3, 3, 2, 2, 2, 1, 1, 1, 0, 0, 0]
    return url, ids


@pytest.mark.slow
@pytest.mark.parametrize("point", ["merge-before-list", "merge-before-drop"])
def test_store_sigkill_during_a_merge_at_100k_runs_loses_nothing(
    tmp_path: Path, store_100k: tuple[Path, list[str]], point: str
) -> None:
    filled, ids = store_100k
    url = tmp_path / "r.zarr"
    shutil.copytree(filled, url)
    late = [{**P, "Re": 1000.0 + i} for i in range(FILL_EVERY)]
    script = tmp_path / "committer.py"
    script.write_text(COMMITTER.format(here=str(HERE)))
    flag = tmp_path / "at-merge"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(url), json.dumps(late)],
        env={
            **os.environ,
            "DASK_SWEEP__STORE__COMPACT_EVERY": str(FILL_EVERY),
            "DASK_SWEEP__STORE__MERGE_MAX_ROWS": str(2 * FILL_RUNS),
            "NS_SWEEP_TEST_PAUSE_AT": f"{point}@L4:{flag}:300",
        },
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 600
    while not (flag.exists() and flag.read_text().strip()):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the writer never reached the merge"
        time.sleep(0.1)
    merged = {p.name for p in (url / "index").iterdir() if p.is_dir() and p.name.endswith("-L4")}
    assert len(merged) == 1  # the merge of every row is written, at the kill
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    ptr = _pointer(url)
    listed = {e["name"] for e in ptr["segments"]}
    assert (merged <= listed) == (point == "merge-before-drop")
    assert _on_disk_segments(url) > listed  # the merge's inputs, or its output, not listed
    every = set(ids) | {run_id_of(p) for p in late}
    with Store.open(url) as reader:  # nothing lost: every run once, done, from the listed segments
        table = reader.run_table()
        assert len(table) == len(every) == FILL_RUNS + FILL_EVERY
        assert set(table.ids) == every and reader.failures() == {}
        assert reader.records()[run_id_of(late[7])].package_ids == ("late1007",)
        np.testing.assert_array_equal(
            reader.open_run(run_id_of(late[7])).energy.values, result_like(late[7]).energy.values
        )
        first = reader.open_run(ids[0])
        last = reader.open_run(ids[-1])
        assert first.energy.values[-1] != last.energy.values[-1]  # each run its own values
    with dask.config.set(FILL_CONFIG):
        with Store.open(url, mode="a") as st:  # the next writer repairs, then continues
            assert _on_disk_segments(url) == {e["name"] for e in _pointer(url)["segments"]}
            more = {**P, "Re": 5000.0}
            st.commit_run(run_id_of(more), result_like(more), provenance(more, "more"))
    assert _on_disk_segments(url) == {e["name"] for e in _pointer(url)["segments"]}
    ds = sweep.open_results(url)
    assert ds.sizes["run"] == len(every) + 1 and len(set(ds.run.values.tolist())) == len(every) + 1
    row = ds.sel(run=run_id_of(late[3]))
    np.testing.assert_array_equal(
        row.energy.values[: len(result_like(late[3]).time)], result_like(late[3]).energy.values
    )


def test_store_lazy_columns_decode_once_keep_writes_as_edits_and_hand_over() -> None:
    calls: list[str] = []

    def maker(name: str) -> Callable[[], list[Any]]:
        def make() -> list[Any]:
            calls.append(name)
            return [name] * 2

        return make

    cols = LazyColumns({n: maker(n) for n in "abc"}, 2)
    assert list(cols) == ["a", "b", "c"] and "b" in cols and len(cols) == 3 and calls == []
    assert cols["b"] == ["b", "b"] and cols["b"] is cols["b"] and calls == ["b"]
    assert cols.pop("a", None) == ["a", "a"] and "a" not in cols and calls == ["b", "a"]
    assert cols.pop("zz", None) is None
    # a row added and written: the decoded column gets it, the others keep it as an edit
    cols.grow(4)
    cols.put_row(3, {"b": 1, "c": 2, "new": 3}, new_columns=False)
    cols.put_row(2, {"c": 4}, new_columns=True)
    assert cols.rows_of("c", [3, 2]) == [2, 4] and calls == ["b", "a"]  # from the edits
    assert cols["b"] == ["b", "b", None, 1] and list(cols) == ["b", "c"]
    assert cols.rows_of("c", [0, 3]) == ["c", 2] and calls == ["b", "a", "c"]  # row 0 decodes it
    assert cols["c"] == ["c", "c", 4, 2] and cols.decoded() == ["b", "c"]
    cols.put_row(1, {"x": 5}, new_columns=True)
    assert cols.whole() == {"b": ["b", None, None, 1], "c": ["c", None, 4, 2], "x": [None, 5, None, None]}
    plain = {"x": [1]}
    assert materialized(plain) == plain and materialized(plain) is not plain


def test_store_index_reader_decodes_a_column_when_it_is_used(tmp_path: Path) -> None:
    """A reader's table holds the segments' packed columns and decodes a column on first use
    (a resume uses a few of ~40): what it decodes is what was written, over several segments,
    with a run's newer row from a later segment; a writer's first row decodes them all."""
    url = tmp_path / "r.zarr"
    failed, twin = _params(99), _params(50)
    runs = {run_id_of(_params(i)): (_params(i), (f"p{i}",), "HIGH") for i in range(7)}
    runs[run_id_of(twin)] = (twin, ("t1", "t2"), "HIGH")
    runs[run_id_of(failed)] = (failed, ("f",), "LOW")
    with dask.config.set({"sweep.store.compact-every": 3, "sweep.store.merge-fan-in": 8}):
        with Store.open(url, mode="a") as st:
            st.record_failure(run_id_of(failed), "diverged", "NaN", provenance(failed, "f"))
            st.commit_run(run_id_of(twin), result_like(twin), provenance(twin, package_ids=["t1", "t2"]))
            for i in range(7):
                st.commit_run(run_id_of(_params(i)), result_like(_params(i)), provenance(_params(i), f"p{i}"))
            st.commit_run(run_id_of(failed), result_like(failed), provenance(failed, "f", priority="LOW"))
    assert len(_pointer(url)["segments"]) >= 2 and not list((url / "log").iterdir())

    def check(table: RunTable) -> None:
        assert sorted(table.ids) == sorted(runs)
        for rid, (params, pids, priority) in runs.items():
            i = table.pos[rid]
            assert table.cols["status"][i] == "done" and table.cols["failure_class"][i] is None
            assert table.cols["package_ids"][i] == pids and table.cols["priority"][i] == priority
            assert table.params["Re"][i] == params["Re"] and table.params["grid"][i] == [8, 8, 8]

    with Store.open(url) as st:
        table = st.run_table()
        assert isinstance(table.cols, LazyColumns) and isinstance(table.params, LazyColumns)
        assert list(table.cols) == [c for c in RECORD_COLUMNS if c != "run_id"]
        assert table.cols.decoded() == [] and table.params.decoded() == []
        assert table.status(run_id_of(failed)) == "done" and table.cols.decoded() == ["status"]
        check(table)
        assert table.cols.decoded() == ["status", "failure_class", "package_ids", "priority"]
        assert table.params.decoded() == ["Re", "grid"]
    with Store.open(url, mode="a") as st:  # a writer keeps the segments' run ids and status only
        assert st.failures() == {} and run_id_of(failed) in st.done_run_ids()
        st.commit_run(run_id_of(_params(7)), result_like(_params(7)), provenance(_params(7), "p7"))
        runs[run_id_of(_params(7))] = (_params(7), ("p7",), "HIGH")
        assert st._index.flushed is not None and st._index.table is not None
        assert st._index.table.ids == [run_id_of(_params(7))]
        table = st.run_table()  # the whole table on request: its commit written over, as edits
        assert table.cols.decoded() == [] and table.params.decoded() == []
        check(table)
    with Store.open(url) as st:
        check(st.run_table())
    ds = sweep.open_results(url).sel(run=run_id_of(twin))
    assert ds.package_id.item() == "t1" and ds.package_ids.item() == "t1,t2"
