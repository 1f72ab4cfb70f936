"""The result store: round trips, records, failures, schema, index rebuild, checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from store_data import provenance, result_like

from solver import SolverParams
from sweep.errors import ConfigError, StoreError
from sweep.spec import run_id_of
from sweep.store import SCHEMA_VERSION, Store

P = {"Re": 400.0, "dt": 0.01, "T_final": 0.1, "grid": [8, 8, 8]}


def _commit(st: Store, params: dict, package_id: str = "pkg", **kw) -> str:
    rid = run_id_of(params)
    st.commit_run(rid, result_like(params, **kw), provenance(params, package_id))
    return rid


def _assert_same(stored: xr.Dataset, ds: xr.Dataset) -> None:
    assert set(stored.variables) == set(ds.variables)
    for name in ds.variables:
        a, b = stored[name].values, ds[name].values
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), name
        assert stored[name].dims == ds[name].dims


@pytest.mark.parametrize("fields", [False, True])
def test_store_commit_round_trip_bit_identical(tmp_path: Path, fields: bool) -> None:
    ds = result_like(P, fields=fields)
    rid = run_id_of(P)
    with Store.open(tmp_path / "r.zarr", mode="a") as st:
        rec = st.commit_run(rid, ds, provenance(P, "p1", wall_time=2.5, resumed_from_step=3, host="node7"))
        assert rec.status == "done"
    with Store.open(tmp_path / "r.zarr") as st:
        _assert_same(st.open_run(rid).load(), ds)
        rec = st.records()[rid]
        assert rec.package_ids == ("p1",) and rec.priority == "HIGH" and rec.wall_time == 2.5
        assert rec.params == SolverParams(P).as_dict() and rec.host == "node7"
        assert rec.resumed_from_checkpoint and rec.resumed_from_step == 3 and rec.attempts == 1
        assert rec.start_time and rec.end_time and rec.solver_version
        assert st.done_run_ids() == {rid}
        attrs = st.open_run(rid).attrs
        assert attrs["ns_sweep_run"]["status"] == "done" and attrs["title"] == "test result"
        home = st.run_table().home_of(rid)
    # the run is an ordinary zarr group that plain xarray reads: its own (final fields), or
    # a packed run's batch group, one row per run
    if fields:
        assert home is None
        plain = xr.open_zarr(tmp_path / "r.zarr", group=f"runs/{rid}", consolidated=False)
        np.testing.assert_array_equal(plain.energy.values, ds.energy.values)
    else:
        assert home is not None and not (tmp_path / "r.zarr" / "runs" / rid).exists()
        plain = xr.open_zarr(tmp_path / "r.zarr", group=f"batches/{home}", consolidated=False)
        np.testing.assert_array_equal(plain.energy.values, ds.energy.values[None, :])


def test_store_real_simulate_result_round_trip(tmp_path: Path) -> None:
    import solver

    params = {"Re": 100.0, "dt": 0.01, "T_final": 0.02, "grid": [8, 8, 8], "keep_fields": True}
    ds = solver.simulate(params)
    rid = run_id_of(params)
    with Store.open(tmp_path / "r.zarr", mode="a") as st:
        st.commit_run(rid, ds, provenance(params))
    with Store.open(tmp_path / "r.zarr") as st:
        back = st.open_run(rid).load()
    for name in ds.data_vars:
        assert back[name].values.tobytes() == ds[name].values.tobytes(), name
    np.testing.assert_array_equal(back.time.values, ds.time.values)


def test_store_fsspec_url_round_trip() -> None:
    url = f"memory://ns-sweep-test-{np.random.default_rng().integers(1 << 30)}/r.zarr"
    ds = result_like(P)
    rid = run_id_of(P)
    other = {**P, "Re": 401.0}
    with Store.open(url, mode="a") as st:
        st.commit_run(rid, ds, provenance(P))
        st.record_failure(run_id_of(other), "diverged", "NaN", provenance(other))
        # object storage cannot append: one log object per record, read back by a live reader
        assert sorted(k.rsplit("-", 1)[1] for k in st._blobs.children("log")) == sorted(
            [f"{rid}.json", f"{run_id_of(other)}.json"]
        )
        with Store.open(url) as reader:
            assert reader.done_run_ids() == {rid} and set(reader.failures()) == {run_id_of(other)}
    with Store.open(url) as st:
        assert st.done_run_ids() == {rid} and not st._blobs.children("log")
        _assert_same(st.open_run(rid).load(), ds)


def test_store_refuses_result_under_wrong_run_id(tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.zarr", mode="a") as st:
        other = run_id_of({**P, "Re": 401.0})
        with pytest.raises(StoreError, match=f"parameters hash to run {run_id_of(P)}"):
            st.commit_run(other, result_like(P), provenance(P))
        assert st.records() == {}


def test_store_failure_record_then_success_replaces_it(tmp_path: Path) -> None:
    rid = run_id_of(P)
    with Store.open(tmp_path / "r.zarr", mode="a") as st:
        st.record_failure(rid, "diverged", "diverged at step 3 (t=0.03): NaN", provenance(P))
        with pytest.raises(ConfigError, match="failure_class: bad value 'boom'; allowed: one of diverged"):
            st.record_failure(rid, "boom", "x", provenance(P))
    with Store.open(tmp_path / "r.zarr") as st:
        rec = st.records()[rid]
        assert rec.status == "failed" and rec.failure_class == "diverged" and "NaN" in rec.error
        assert st.done_run_ids() == set()
        with pytest.raises(StoreError, match="failed"):
            st.open_run(rid)
    with Store.open(tmp_path / "r.zarr", mode="a") as st:
        _commit(st, P)
    with Store.open(tmp_path / "r.zarr") as st:
        assert st.records()[rid].status == "done" and st.done_run_ids() == {rid}


@pytest.mark.parametrize("failure_class", ["timeout", "error", "worker-lost"])
def test_store_failure_classes_round_trip(tmp_path: Path, failure_class: str) -> None:
    rid = run_id_of(P)
    with Store.open(tmp_path / "r.zarr", mode="a") as st:
        st.record_failure(rid, failure_class, "text", provenance(P))
    with Store.open(tmp_path / "r.zarr") as st:
        assert st.records()[rid].failure_class == failure_class


def test_store_done_run_is_never_replaced(tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.zarr", mode="a") as st:
        rid = _commit(st, P)
        with pytest.raises(StoreError, match="already done"):
            st.commit_run(rid, result_like(P, seed=5), provenance(P))
        with pytest.raises(StoreError, match="already done"):
            st.record_failure(rid, "error", "late", provenance(P))
    with Store.open(tmp_path / "r.zarr") as st:
        _assert_same(st.open_run(rid).load(), result_like(P))


def test_store_read_only_cannot_write(tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.zarr", mode="a"):
        pass
    with Store.open(tmp_path / "r.zarr") as st, pytest.raises(StoreError, match="read-only"):
        _commit(st, P)


def test_store_missing_and_foreign_locations_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no result store here"):
        Store.open(tmp_path / "nothing.zarr")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty and not a result store"):
        Store.open(tmp_path / "other", mode="a")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="mode: bad value 'w'"):
        Store.open(tmp_path / "x.zarr", mode="w")


def test_store_newer_schema_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.zarr", mode="a") as st:
        _commit(st, P)
    root = tmp_path / "r.zarr" / "zarr.json"
    doc = json.loads(root.read_text())
    assert doc["attributes"]["ns_sweep"]["schema_version"] == SCHEMA_VERSION
    doc["attributes"]["ns_sweep"]["schema_version"] = SCHEMA_VERSION + 1
    root.write_text(json.dumps(doc))
    for mode in ("r", "a"):
        with pytest.raises(
            StoreError, match=f"schema_version: bad value {SCHEMA_VERSION + 1}; allowed: at most"
        ):
            Store.open(tmp_path / "r.zarr", mode=mode)
    assert not (tmp_path / "r.zarr" / "lock.json").read_bytes()  # refused before taking the lock


def test_store_plain_zarr_group_is_not_a_result_store(tmp_path: Path) -> None:
    import zarr

    zarr.open_group(tmp_path / "z.zarr", mode="w")
    with pytest.raises(StoreError, match="not an ns-sweep result store"):
        Store.open(tmp_path / "z.zarr")


def test_store_index_compacted_on_close_and_rebuilt_from_runs(tmp_path: Path) -> None:
    url = tmp_path / "r.zarr"
    with Store.open(url, mode="a") as st:
        ids = [_commit(st, {**P, "Re": 100.0 + i}, f"p{i}") for i in range(4)]
        st.record_failure(run_id_of({**P, "Re": 999.0}), "timeout", "slow", provenance({**P, "Re": 999.0}))
        (segment,) = (url / "log").iterdir()  # the session's records, one line each
        assert segment.suffix == ".jsonl" and len(segment.read_bytes().splitlines()) == 5
        with Store.open(url) as reader:  # a reader of the live store sees every record
            assert set(reader.records()) == {*ids, run_id_of({**P, "Re": 999.0})}
    assert list((url / "log").iterdir()) == []  # folded into the index at close
    with Store.open(url) as st:
        before = {k: r.to_dict() for k, r in st.records().items()}
        series_before = _series_by_run(st)
    assert len(before) == 5
    shutil.rmtree(url / "index")
    (url / "index").mkdir()
    with Store.open(url) as st:  # a reader recovers the records from the run markers
        assert {k: r.to_dict() for k, r in st.records().items()} == before
    with Store.open(url, mode="a") as st:
        assert st.rebuild_index() == 5
    assert list((url / "log").iterdir()) == [] and len(list((url / "index").iterdir())) == 2
    with Store.open(url) as st:
        assert {k: r.to_dict() for k, r in st.records().items()} == before
        series_after = _series_by_run(st)
        assert st.done_run_ids() == set(ids)
    assert series_before.keys() == series_after.keys() == set(before)
    for rid, s in series_before.items():
        assert s.keys() == series_after[rid].keys()
        for name, values in s.items():
            np.testing.assert_array_equal(values, series_after[rid][name])


def _series_by_run(st: Store) -> dict[str, dict[str, np.ndarray]]:
    table = st.run_table()
    series, lengths = table.series()
    return {rid: {k: v[i, : lengths[i]] for k, v in series.items()} for i, rid in enumerate(table.ids)}


def test_store_log_and_index_combine_across_sessions(tmp_path: Path) -> None:
    url = tmp_path / "r.zarr"
    with Store.open(url, mode="a") as st:
        a = _commit(st, P, "a")
    st = Store.open(url, mode="a")
    b = _commit(st, {**P, "Re": 500.0}, "b")
    # a reader sees the compacted run and the one still in the log
    with Store.open(url) as reader:
        assert reader.done_run_ids() == {a, b}
    st.close()
    with Store.open(url) as reader:
        assert reader.done_run_ids() == {a, b}


def test_store_checkpoint_save_load_drop(tmp_path: Path) -> None:
    rid = run_id_of(P)
    arrays = {
        "step": np.array([7]),
        "time": np.array(0.07),
        "u_hat": (np.arange(3 * 8 * 8 * 5) * (1 + 1j)).reshape(3, 8, 8, 5),
        "energy": np.linspace(0, 1, 8),
    }
    big = {"u_hat": np.random.default_rng(0).random((3, 64, 64, 33)) + 0j}  # > 1 MiB: through zarr
    with Store.open(tmp_path / "r.zarr", mode="a") as st:
        assert st.load_checkpoint(rid) is None
        st.save_checkpoint(rid, arrays, step=7)
        st.save_checkpoint(rid, {**arrays, **big, "step": np.array([9])}, step=9)
        assert st.checkpoint_steps() == {rid: 9}
    with Store.open(tmp_path / "r.zarr") as st:
        back = st.load_checkpoint(rid)
    assert back["step"].tolist() == [9] and back["u_hat"].dtype == np.complex128
    np.testing.assert_array_equal(back["u_hat"], big["u_hat"])
    assert back["time"].shape == () and float(back["time"]) == 0.07
    gens = [p for p in (tmp_path / "r.zarr" / "checkpoints" / rid).iterdir() if p.is_dir()]
    assert len(gens) == 1  # the older checkpoint is gone
    with Store.open(tmp_path / "r.zarr", mode="a") as st:
        st.drop_checkpoint(rid)
        assert st.load_checkpoint(rid) is None and st.checkpoint_run_ids() == set()


def test_store_provenance_requires_params(tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.zarr", mode="a") as st:
        with pytest.raises(ConfigError, match="provenance: params: missing"):
            st.commit_run(run_id_of(P), result_like(P), {"package_ids": ["x"]})


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_store_commit_of_plain_arrays_writes_the_dataset_bytes(tmp_path: Path) -> None:
    """A RunResult (what the workers send) and its Dataset store the same files and bytes."""
    from solver.simulate import run_simulation

    params = {"Re": 100.0, "dt": 0.01, "T_final": 0.03, "grid": [8, 8, 8], "keep_fields": True}
    result, rid = run_simulation(params), run_id_of(params)
    trees = []
    for name, data in (("arrays", result), ("dataset", result.to_dataset())):
        with Store.open(tmp_path / f"{name}.zarr", mode="a") as st:
            st.commit_run(rid, data, provenance(params))
        run_dir = tmp_path / f"{name}.zarr" / "runs" / rid
        tree = _tree(run_dir)
        marker = json.loads(tree.pop("zarr.json"))["attributes"]
        marker["ns_sweep_run"].pop("committed")
        trees.append((tree, marker))
    assert trees[0] == trees[1]
    assert len(trees[0][0]) == 2 * (9 + 3 + 3)  # zarr.json and one chunk per array
    with Store.open(tmp_path / "arrays.zarr") as st:
        xr.testing.assert_identical(st.open_run(rid).load().drop_attrs(), result.to_dataset().drop_attrs())
        (rec,) = st.records().values()
        assert rec.status == "done" and rec.params == SolverParams(params).as_dict()


def test_store_commit_replaces_a_partial_run_left_by_a_crash(tmp_path: Path) -> None:
    rid = run_id_of(P)
    partial = tmp_path / "r.zarr" / "runs" / rid
    with Store.open(tmp_path / "r.zarr", mode="a") as st:
        partial.mkdir(parents=True)  # a crash before the marker: data, no group document
        (partial / "stale").mkdir()
        (partial / "stale" / "zarr.json").write_text("{}")
        (partial / "energy" / "c").mkdir(parents=True)
        (partial / "energy" / "c" / "0").write_bytes(b"torn")
        st.commit_run(rid, result_like(P), provenance(P))
    assert not (partial / "stale").exists()
    assert not list((tmp_path / "r.zarr").rglob("*.partial"))
    with Store.open(tmp_path / "r.zarr") as st:
        _assert_same(st.open_run(rid).load(), result_like(P))
