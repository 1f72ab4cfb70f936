"""What bounds a store writer's memory (issue 17): it keeps only the rows it has not flushed
(sweep.store.run_keys for the status of the rest), merges segments a column at a time
(sweep.store.segment_merge) and never into one of more than sweep.store.merge-max-rows rows.
Each test checks the answers stay those of a reader of the same store."""

from __future__ import annotations

import json
from pathlib import Path

import dask.config
import numpy as np
import pytest
import xarray as xr
from store_data import provenance, result_like

import sweep
from sweep.errors import ConfigError, StoreError
from sweep.spec import run_id_of
from sweep.store import Store
from sweep.store.run_keys import MAX_CHUNK, RunKeys
from sweep.store.segments import merge_plan

P = {"Re": 100.0, "dt": 0.01, "T_final": 0.05, "grid": [8, 8, 8]}


def _params(i: int) -> dict:
    return {**P, "Re": 100.0 + i}


def _segments(url: Path) -> list[dict]:
    return json.loads((url / "index" / "zarr.json").read_text())["attributes"]["segments"]


def _view(st: Store) -> dict:
    """Every record of the store as plain values (the committed time stamp included)."""
    return {rid: rec.to_dict() for rid, rec in st.records().items()}


def test_run_keys_later_status_wins_and_chunks_stay_few() -> None:
    keys = RunKeys()
    assert keys.status("a") is None
    keys.add(["b", "a", "b"], ["failed", "done", "done"])  # a repeated id in one add: the last
    assert (keys.status("a"), keys.status("b"), keys.status("c")) == ("done", "done", None)
    keys.add(["a"], ["failed"])  # a later add replaces, in another chunk
    assert keys.status("a") == "failed"
    ids = [f"{i:016x}" for i in range(5000)]
    for k in range(0, 5000, 100):  # 50 flushes of 100 runs
        keys.add(ids[k : k + 100], ["done"] * 100)
        assert len(keys._chunks) <= 12  # merged like a binary counter: O(log n) chunks
    keys.add(["a-much-longer-run-id-than-the-rest"], ["done"])
    assert keys.status("a-much-longer-run-id-than-the-rest") == "done"
    assert keys.status("a-much-longer-run-id-than-the-rest-but-not-this") is None
    assert all(keys.status(r) == "done" for r in ids[::97]) and keys.status("a") == "failed"
    assert keys.nbytes < 30 * len(keys)  # bytes a run, not a row of Python values
    many = [f"{i:016x}" for i in range(5000, 5000 + 3 * MAX_CHUNK)]
    for k in range(0, len(many), 2000):
        keys.add(many[k : k + 2000], ["failed"] * len(many[k : k + 2000]))
    assert max(len(ids) for ids, _ in keys._chunks) <= MAX_CHUNK  # no merge copies more ids
    assert keys.status(many[-1]) == keys.status(many[0]) == "failed" and keys.status(ids[7]) == "done"


def test_store_writer_keeps_only_unflushed_rows_and_answers_as_a_reader(tmp_path: Path) -> None:
    url = tmp_path / "r.zarr"
    failed, fields = _params(99), _params(98)
    with dask.config.set({"sweep.store.compact-every": 3, "sweep.store.merge-fan-in": 2}):
        with Store.open(url, mode="a") as st:
            st.record_failure(run_id_of(failed), "diverged", "NaN", provenance(failed, "f"))
            st.record_failure(run_id_of(fields), "timeout", "slow", provenance(fields, "g"))
            for i in range(10):
                st.commit_run(run_id_of(_params(i)), result_like(_params(i), seed=i), provenance(_params(i)))
                assert st._index.table is not None and len(st._index.table) < 3  # flushed rows dropped
            # failures from the segments' columns alone (the end of a sweep lists them)
            assert st.failures() == {
                run_id_of(failed): ("diverged", "NaN"),
                run_id_of(fields): ("timeout", "slow"),
            }
            assert len(st._index.table) < 3
            # flushed runs: a done one is refused, failed ones are redone (one packed, one a group)
            with pytest.raises(StoreError, match="already done"):
                st.commit_run(run_id_of(_params(4)), result_like(_params(4)), provenance(_params(4)))
            st.commit_run(run_id_of(failed), result_like(failed), provenance(failed, "f"))
            st.commit_run(run_id_of(fields), result_like(fields, fields=True), provenance(fields, "g"))
            writer_view = _view(st)  # the whole table read again, the unflushed rows over it
            assert len(st._index.table) == 12  # whole until the next flush
            with Store.open(url) as reader:
                assert _view(reader) == writer_view
            more = _params(50)
            st.commit_run(run_id_of(more), result_like(more), provenance(more))
            st.commit_run(run_id_of(_params(51)), result_like(_params(51)), provenance(_params(51)))
            assert len(st._index.table) < 3  # the next flush dropped them again
            assert st.failures() == {} and len(st.done_run_ids()) == 14
    with Store.open(url) as reader:
        view = _view(reader)
        assert {rid: r["status"] for rid, r in view.items()} == dict.fromkeys(view, "done")
        assert view[run_id_of(failed)]["package_ids"] == ["f"] and len(view) == 14
        xr.testing.assert_identical(
            reader.open_run(run_id_of(fields)).drop_attrs(), result_like(fields, fields=True).drop_attrs()
        )


def test_store_merge_column_by_column_keeps_every_record(tmp_path: Path) -> None:
    """Segments whose columns differ (runs of two packages, provenance keys only some runs
    have, a failed run done in a later segment) merge into the rows a reader saw before."""
    url = tmp_path / "r.zarr"
    twice = _params(77)
    with dask.config.set({"sweep.store.compact-every": 4, "sweep.store.merge-fan-in": 100}):
        with Store.open(url, mode="a") as st:
            st.record_failure(run_id_of(twice), "diverged", "NaN", provenance(twice, "t"))
            for i in range(14):
                extra = {"note": f"n{i}", "tags": {"k": i}} if i % 5 else {}
                prov = provenance(_params(i), f"p{i}", **extra)
                if i == 6:
                    prov["package_ids"] = ["p6", "also-p6"]
                st.commit_run(run_id_of(_params(i)), result_like(_params(i), seed=i), prov)
            st.commit_run(run_id_of(twice), result_like(twice), provenance(twice, "t"))
    assert len(_segments(url)) == 4  # not merged yet
    with Store.open(url) as reader:
        before = _view(reader)
        series_before = reader.run_table().series()
    with dask.config.set({"sweep.store.compact-every": 4, "sweep.store.merge-fan-in": 4}):
        with Store.open(url, mode="a"):  # the open merges what is due: the four segments
            pass
    assert [s["rows"] for s in _segments(url)] == [15]  # a later row of a run replaced the earlier
    with Store.open(url) as reader:
        assert _view(reader) == before
        assert before[run_id_of(_params(6))]["package_ids"] == ["p6", "also-p6"]
        assert before[run_id_of(_params(3))]["provenance"]["note"] == "n3"
        series, lengths = reader.run_table().series()
        order = [list(before).index(rid) for rid in reader.run_table().ids]
        np.testing.assert_array_equal(lengths, series_before[1][order])
        np.testing.assert_array_equal(series["energy"], series_before[0]["energy"][order])
    ds = sweep.open_results(url)
    np.testing.assert_array_equal(
        ds.sel(run=run_id_of(_params(9))).energy.values, result_like(_params(9)).energy.values
    )


def test_store_merges_stop_at_merge_max_rows(tmp_path: Path) -> None:
    assert merge_plan([1, 1], 2, [6, 6], 12) == 0
    assert merge_plan([1, 1], 2, [6, 7], 12) is None  # 13 rows: too many for one merge
    url = tmp_path / "r.zarr"
    config = {"compact-every": 3, "merge-fan-in": 2, "merge-max-rows": 6}
    with dask.config.set({f"sweep.store.{k}": v for k, v in config.items()}):
        with Store.open(url, mode="a") as st:
            for i in range(30):
                st.commit_run(run_id_of(_params(i)), result_like(_params(i)), provenance(_params(i)))
                assert max([s["rows"] for s in _segments(url)] + [0]) <= 6
    segments = _segments(url)
    assert [s["rows"] for s in segments] == [6] * 5  # no merge of two of 6 rows
    with Store.open(url) as reader:
        assert reader.done_run_ids() == {run_id_of(_params(i)) for i in range(30)}


def test_store_bad_merge_max_rows_says_what_is_allowed(tmp_path: Path) -> None:
    with dask.config.set({"sweep.store.merge-max-rows": 0}):
        with pytest.raises(ConfigError, match=r"merge-max-rows: bad value 0; allowed: an integer >= 1"):
            Store.open(tmp_path / "r.zarr", mode="a")
    assert not (tmp_path / "r.zarr").exists()


def test_store_writer_opens_with_run_keys_only_and_answers_as_a_reader(tmp_path: Path) -> None:
    """A writer opening a store keeps of its segments' rows only their ids and status (a
    million rows were 1.8 GB): a failure whose log record was lost is taken from its marker,
    one already in a segment is not, and every question of a sweep's start (done runs,
    failures, the last done runs of each size and their records, the batch groups in use)
    is answered as a reader of the whole table answers it, without reading that table."""
    url = tmp_path / "r.zarr"
    again, kept = _params(90), _params(91)
    sizes = [{**_params(i), "grid": [8, 8, 8] if i % 3 else [4, 4, 4]} for i in range(10)]
    with dask.config.set({"sweep.store.compact-every": 4}):
        with Store.open(url, mode="a") as st:
            st.record_failure(run_id_of(again), "diverged", "NaN", provenance(again, "a"))
            st.record_failure(run_id_of(kept), "timeout", "slow", provenance(kept, "k"))
            for i, p in enumerate(sizes):
                st.commit_run(run_id_of(p), result_like(p, seed=i), provenance(p, f"p{i}", note=f"n{i}"))
    assert len(_segments(url)) >= 2 and (url / "runs" / run_id_of(kept)).is_dir()
    with Store.open(url, mode="a") as st:  # checkpoints a crash after their commit left behind
        for p in (sizes[4], kept):
            st.save_checkpoint(run_id_of(p), {"step": np.array([3]), "energy": np.zeros(3)}, step=3)
    # a second failure of `again` whose log record was lost to a crash: only its marker has it
    st = Store.open(url, mode="a")
    st.record_failure(run_id_of(again), "worker-lost", "second", provenance(again, "a"))
    assert st._lock is not None
    st._lock.release()
    for f in (url / "log").iterdir():
        f.unlink()
    orphan = url / "batches" / "b-orphan"  # a batch group of a flush cut short: no row names it
    orphan.mkdir()
    (orphan / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    with Store.open(url) as reader:
        view, failures, done = _view(reader), reader.failures(), reader.done_run_ids()
        recent = [r.to_dict() for r in reader.last_done_records(3, ["grid"])]
    assert failures[run_id_of(again)] == ("worker-lost", "second") and len(recent) == 6
    with Store.open(url, mode="a") as st:
        index = st._index
        assert index.flushed is not None and index.table is not None
        assert index.table.ids == [run_id_of(again)]  # the marker newer than its row, alone
        assert not orphan.exists() and len(list((url / "batches").iterdir())) > 1
        assert st.checkpoint_run_ids() == {run_id_of(kept)}  # the done run's checkpoint dropped
        assert st.failures() == failures and st.done_run_ids() == done
        assert st.done_run_id_array().tolist() == sorted(r.encode() for r in done)
        assert [r.to_dict() for r in st.last_done_records(3, ["grid"])] == recent
        assert {rid: r.to_dict() for rid, r in st.records_of(view).items()} == view
        assert index.flushed is not None and index.table.ids == [run_id_of(again)]  # no table read
    with Store.open(url) as reader:
        assert _view(reader) == view
