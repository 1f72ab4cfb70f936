"""Packed runs (sweep.packed): small runs kept in the log, then in batch groups, and read back
exactly as a run group of their own would be."""

from __future__ import annotations

from pathlib import Path

import dask.config
import numpy as np
import pytest
import xarray as xr
from store_data import provenance, result_like

from sweep.errors import ConfigError
from sweep.spec import run_id_of
from sweep.store import MARKER_ATTR, Store

P = {"Re": 400.0, "dt": 0.01, "T_final": 0.05, "grid": [8, 8, 8]}


def _without_marker(ds: xr.Dataset) -> tuple[xr.Dataset, dict]:
    """The Dataset without its store record, and the record without its commit time."""
    ds = ds.copy()
    record = dict(ds.attrs.pop(MARKER_ATTR))
    record.pop("committed")
    return ds, record


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_store_packed_run_opens_as_its_own_group_would(tmp_path: Path, precision: str) -> None:
    from solver.simulate import run_simulation

    params = {**P, "precision": precision}
    result, rid = run_simulation(params), run_id_of(params)
    with Store.open(tmp_path / "group.zarr", mode="a", pack_bytes=0) as st:
        st.commit_run(rid, result, provenance(params))
    with Store.open(tmp_path / "group.zarr") as st:
        assert st.run_table().home_of(rid) is None
        want, want_record = _without_marker(st.open_run(rid).load())

    url = tmp_path / "packed.zarr"
    seen = {}
    with Store.open(url, mode="a") as st:
        st.commit_run(rid, result, provenance(params))
        assert not (url / "runs" / rid).exists()
        seen["writer, from the log"] = st.open_run(rid)
        with Store.open(url) as reader:
            seen["live reader, from the log"] = reader.open_run(rid)
    with Store.open(url) as st:
        home = st.run_table().home_of(rid)
        assert home and (url / "batches" / home / "zarr.json").exists()
        seen["from the batch group"] = st.open_run(rid)
    with Store.open(url, mode="a") as st:
        assert st.rebuild_index() == 1
    with Store.open(url) as st:
        seen["after rebuild_index"] = st.open_run(rid)
    for where, ds in seen.items():
        got, record = _without_marker(ds)
        xr.testing.assert_identical(got, want)
        for name in want.variables:  # identical bits and dtypes, not just equal values
            assert got[name].values.tobytes() == want[name].values.tobytes(), (where, name)
        assert {k: v for k, v in record.items() if k != "seq"} == {
            k: v for k, v in want_record.items() if k != "seq"
        }, where


def test_store_packed_runs_have_no_files_of_their_own(tmp_path: Path) -> None:
    url = tmp_path / "r.zarr"
    runs = [{**P, "Re": 100.0 + i} for i in range(30)]
    big = {**P, "Re": 7.0}
    with Store.open(url, mode="a") as st:
        for i, p in enumerate(runs):
            st.commit_run(run_id_of(p), result_like(p), provenance(p, f"p{i}"))
        st.commit_run(run_id_of(big), result_like(big, fields=True), provenance(big, "big"))
        # 30 runs committed: one log file, and the one run with final fields has its group
        others = [f for f in _files(url) if not f.startswith(f"runs/{run_id_of(big)}/")]
        assert len([f for f in others if f.startswith("log/")]) == 1
        assert len(others) == 7  # that log file, lock.json and 5 groups' zarr.json
        assert sorted(p.name for p in (url / "runs").iterdir()) == sorted(["zarr.json", run_id_of(big)])
    (batch,) = [p for p in (url / "batches").iterdir() if p.is_dir()]
    # one batch group: its zarr.json and, per array (9), its zarr.json and one chunk; the runs'
    # records as columns in records/: a file count that does not grow with the runs
    files = _files(batch)
    assert len([f for f in files if not f.startswith("records/")]) == 1 + 2 * 9
    columns = [f for f in files if f.startswith("records/")]
    assert 0 < len(columns) < 30 * 3
    plain = xr.open_zarr(url, group=f"batches/{batch.name}", consolidated=False)
    assert plain.sizes["run"] == 30
    assert plain.attrs["ns_sweep_batch"]["rows"] == 30
    from sweep.store.packed import read_batch

    with Store.open(url) as st:
        read = read_batch(st._blobs, st.zarr_store, f"batches/{batch.name}")
    assert read is not None
    assert [read.record(i)["package_ids"] for i in range(30)] == [[f"p{i}"] for i in range(30)]
    for p in runs:
        row = read.row[run_id_of(p)]
        n = len(read.run(run_id_of(p))[0][0].values)
        np.testing.assert_array_equal(plain.energy.values[row, :n], result_like(p).energy.values)
    with Store.open(url) as st:
        assert st.done_run_ids() == {run_id_of(p) for p in runs + [big]}
        xr.testing.assert_identical(
            st.open_run(run_id_of(runs[7])).drop_attrs(), result_like(runs[7]).drop_attrs()
        )


def test_store_packed_runs_of_other_layouts_go_to_their_own_batches(tmp_path: Path) -> None:
    url = tmp_path / "r.zarr"
    longer = {**P, "T_final": 0.2}  # longer series: same layout, padded in the batch
    single = {**P, "Re": 300.0}  # float32 arrays: another layout
    ds32 = result_like(single).astype("float32")
    with Store.open(url, mode="a") as st:
        st.commit_run(run_id_of(P), result_like(P), provenance(P))
        st.commit_run(run_id_of(longer), result_like(longer), provenance(longer))
        st.commit_run(run_id_of(single), ds32, provenance(single))
    with Store.open(url) as st:
        homes = {rid: st.run_table().home_of(rid) for rid in st.done_run_ids()}
        assert homes[run_id_of(P)] == homes[run_id_of(longer)] != homes[run_id_of(single)]
        for p, ds in ((P, result_like(P)), (longer, result_like(longer)), (single, ds32)):
            got = st.open_run(run_id_of(p))
            xr.testing.assert_identical(got.drop_attrs(), ds.drop_attrs())
            assert got.energy.dtype == ds.energy.dtype


def test_store_packed_run_replaces_an_earlier_failure(tmp_path: Path) -> None:
    url = tmp_path / "r.zarr"
    rid = run_id_of(P)
    with Store.open(url, mode="a") as st:
        st.record_failure(rid, "diverged", "NaN at step 3", provenance(P))
    assert (url / "runs" / rid / "zarr.json").exists()
    with Store.open(url, mode="a") as st:
        st.commit_run(rid, result_like(P), provenance(P))
        assert not (url / "runs" / rid).exists()  # the failure's marker goes once the run is done
    with Store.open(url, mode="a") as st:
        assert st.rebuild_index() == 1
        assert st.done_run_ids() == {rid} and st.failures() == {}


def test_store_pack_bytes_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sweep.store.pack-bytes: bad value -1; allowed: an integer >= 0"):
        Store.open(tmp_path / "a.zarr", mode="a", pack_bytes=-1)
    assert not (tmp_path / "a.zarr").exists()
    with dask.config.set({"sweep.store.pack-bytes": "lots"}):
        with pytest.raises(ConfigError, match="bad value 'lots'"):
            Store.open(tmp_path / "a.zarr", mode="a")
    # a run above the limit gets its own group; 0 turns packing off
    for limit, packed in ((100, False), (1 << 20, True)):
        with dask.config.set({"sweep.store.pack-bytes": limit}):
            with Store.open(tmp_path / f"{limit}.zarr", mode="a") as st:
                st.commit_run(run_id_of(P), result_like(P), provenance(P))
                assert (st.run_table().home_of(run_id_of(P)) is not None) is packed
                assert (tmp_path / f"{limit}.zarr" / "runs" / run_id_of(P)).exists() is not packed


def test_store_schema_1_store_is_upgraded_by_its_first_writer(tmp_path: Path) -> None:
    import json

    from sweep.store import SCHEMA_VERSION

    url = tmp_path / "r.zarr"
    with Store.open(url, mode="a", pack_bytes=0) as st:  # a store as schema 1 wrote it
        st.commit_run(run_id_of(P), result_like(P), provenance(P))
    (url / "batches" / "zarr.json").unlink()
    (url / "batches").rmdir()
    root = url / "zarr.json"
    doc = json.loads(root.read_text())
    doc["attributes"]["ns_sweep"]["schema_version"] = 1
    root.write_text(json.dumps(doc))
    with Store.open(url) as st:  # read as it is
        assert st.done_run_ids() == {run_id_of(P)}
    assert json.loads(root.read_text())["attributes"]["ns_sweep"]["schema_version"] == 1
    other = {**P, "Re": 500.0}
    with Store.open(url, mode="a") as st:  # a writer marks it as holding packed runs
        st.commit_run(run_id_of(other), result_like(other), provenance(other))
    meta = json.loads(root.read_text())["attributes"]["ns_sweep"]
    assert meta["schema_version"] == SCHEMA_VERSION == 3 and meta["upgraded"]
    with Store.open(url) as st:
        assert st.run_table().home_of(run_id_of(P)) is None and st.run_table().home_of(run_id_of(other))
        for p in (P, other):
            xr.testing.assert_identical(st.open_run(run_id_of(p)).drop_attrs(), result_like(p).drop_attrs())
