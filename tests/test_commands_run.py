"""`sweep run` end to end: the real CLI in a subprocess on a real LocalCluster, real zarr stores."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY, PackageLog, assert_stores_identical, store_records, tiny_sweep

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_cli_run_sweeps_logs_and_resumes(tmp_path: Path, packages_dir, sweep_cli):
    pkgs = packages_dir(tiny_sweep(6))
    store = tmp_path / "out" / "r.zarr"
    first = sweep_cli("run", str(pkgs), "--store", str(store), "--mode", "parallel", "--max-parallel", "2")
    assert first.returncode == 0, first.stderr + first.stdout
    assert "Dask dashboard: http" in first.stdout
    assert "6 to run, 0 skipped" in first.stdout
    assert "[5/6] done 5, failed 0" in first.stdout and "[6/6] done 6" in first.stdout
    assert any(ln.split()[:2] == ["ALL", "6"] for ln in first.stdout.splitlines())
    records = store_records(store)
    assert len(records) == 6 and {r.status for r in records.values()} == {"done"}
    logs = tmp_path / "out" / "r.zarr.logs"  # the store's own logs, beside it
    assert "exit code 0" in (logs / "sweep.log").read_text()
    for i in range(6):
        text = PackageLog(logs, f"p{i:03d}").read_text()
        assert "started attempt 1" in text and "status: done" in text

    import sweep

    ds = sweep.open_results(str(store))
    assert ds.sizes["run"] == 6
    assert sorted(ds["Re"].values.tolist()) == [100.0 + 10 * i for i in range(6)]

    second = sweep_cli("run", str(pkgs), "--store", str(store), "--mode", "sequential")
    assert second.returncode == 0, second.stderr
    assert "0 to run, 6 skipped as already done" in second.stdout
    assert "Dask dashboard" not in second.stdout  # nothing computed: no cluster started
    assert store_records(store).keys() == records.keys()
    again = sweep.open_results(str(store))
    assert again["wall_time"].values.tolist() == ds["wall_time"].values.tolist()


def test_cli_run_sequential_and_parallel_stores_identical(tmp_path: Path, packages_dir, sweep_cli):
    pkgs = packages_dir(tiny_sweep(4, initial_condition="random", grid=[8, 8, 12]))
    seq, par = tmp_path / "seq.zarr", tmp_path / "par.zarr"
    r1 = sweep_cli("run", str(pkgs), "--store", str(seq), "--mode", "sequential")
    r2 = sweep_cli("run", str(pkgs), "--store", str(par), "--mode", "parallel", "--max-parallel", "2")
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    assert_stores_identical(seq, par)

    import sweep

    a, b = sweep.open_results(str(seq)), sweep.open_results(str(par))
    a, b = a.sortby("package_id"), b.sortby("package_id")
    for name in ("energy", "dissipation"):
        assert a[name].values.tobytes() == b[name].values.tobytes()


def test_cli_run_diverged_package_reported_while_others_finish(tmp_path: Path, packages_dir, sweep_cli):
    pkgs = tiny_sweep(4)
    pkgs[1]["parameters"] = {**TINY, "cfl_limit": 0.001}  # stops at its first CFL check
    d = packages_dir(pkgs)
    store = tmp_path / "r.zarr"
    res = sweep_cli("run", str(d), "--store", str(store), "--max-parallel", "2", "--dashboard")
    assert res.returncode == 1, res.stderr + res.stdout
    assert "sweep dashboard: http://127.0.0.1:" in res.stdout
    recs = store_records(store).values()
    assert sorted(r.status for r in recs) == ["done", "done", "done", "failed"]
    (bad,) = [r for r in recs if r.status == "failed"]
    assert bad.failure_class == "diverged" and "CFL" in bad.error
    assert "diverged" in res.stdout
    log = PackageLog(tmp_path / "r.zarr.logs", "p001").read_text()
    assert "failed (diverged)" in log and "attempt 2" not in log  # never retried


def test_cli_run_timeout_exits_124(tmp_path: Path, packages_dir, sweep_cli):
    pkgs = tiny_sweep(3)
    pkgs[2]["parameters"] = {**TINY, "grid": [16, 16, 16], "dt": 0.001, "T_final": 200.0}
    d = packages_dir(pkgs)
    store = tmp_path / "r.zarr"
    # generous for the tiny runs even on a cold, busy worker; far too short for the long one
    res = sweep_cli("run", str(d), "--store", str(store), "--max-parallel", "2", "--timeout", "8")
    assert res.returncode == 124, res.stderr + res.stdout
    recs = store_records(store)
    assert sorted(r.status for r in recs.values()) == ["done", "done", "failed"]
    (late,) = [r for r in recs.values() if r.status == "failed"]
    assert late.failure_class == "timeout"


def test_cli_run_bad_packages_refused_before_anything_runs(tmp_path: Path, packages_dir, sweep_cli):
    pkgs = tiny_sweep(3)
    pkgs[1]["parameters"] = {**TINY, "Re": -5}
    d = packages_dir(pkgs)
    store = tmp_path / "r.zarr"
    res = sweep_cli("run", str(d), "--store", str(store))
    assert res.returncode == 2
    assert "package_0001.json" in res.stderr and "Re" in res.stderr and "-5" in res.stderr
    assert "Traceback" not in res.stderr
    assert not store.exists() and not (tmp_path / "logs").exists()
    assert "Dask dashboard" not in res.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--timeout", "0"], "--timeout: bad value '0'"),
        (["--priority", "URGENT"], "--priority: invalid choice: 'URGENT'"),
        (["--scheduler", "http://x:1"], "--scheduler: bad value 'http://x:1'"),
    ],
)
def test_cli_run_bad_options_exit_2(tmp_path: Path, packages_dir, sweep_cli, args, message):
    d = packages_dir(tiny_sweep(1))
    res = sweep_cli("run", str(d), "--store", str(tmp_path / "r.zarr"), *args)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "r.zarr").exists()


def test_cli_run_only_the_named_packages(tmp_path: Path, packages_dir, sweep_cli):
    d = packages_dir(tiny_sweep(4))
    store = tmp_path / "r.zarr"
    res = sweep_cli(
        "run",
        str(d),
        "--store",
        str(store),
        "--mode",
        "sequential",
        "--no-progress",
        "--package",
        "p002",
        "--package",
        "package_0000.json",
    )
    assert res.returncode == 0, res.stderr + res.stdout
    assert "2 package(s) requested (priority ALL, 2 named)" in res.stdout
    records = store_records(store)
    assert sorted(pid for r in records.values() for pid in r.package_ids) == ["p000", "p002"]

    explained = sweep_cli("explain", str(d), "--store", str(store), "--package", "p001", "--package", "p002")
    assert explained.returncode == 0, explained.stderr
    lines = explained.stdout.splitlines()
    assert [ln.split()[:2] for ln in lines[:-1]] == [["run", "p001"], ["skip", "p002"]]

    bad = sweep_cli("run", str(d), "--store", str(store), "--package", "p007")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        f"sweep run: error: --package: bad value 'p007': no package of {d} has this package_id or file name "
        "(did you mean p003, p002, p001?); allowed: a package_id or a package_*.json file name "
        "(sweep explain lists them)"
    ]
    assert store_records(store) == records


def test_cli_run_dry_run_lists_what_would_run_and_why(tmp_path: Path, packages_dir, sweep_cli):
    pkgs = tiny_sweep(3)
    pkgs.append({"package_id": "twin", "priority": "LOW", "parameters": pkgs[0]["parameters"]})
    d = packages_dir(pkgs)
    store = tmp_path / "r.zarr"
    res = sweep_cli("run", str(d), "--store", str(store), "--dry-run")
    assert res.returncode == 0, res.stderr
    lines = {ln.split()[1]: ln for ln in res.stdout.splitlines() if ln.startswith(("run ", "skip "))}
    assert lines["p000"].startswith("run") and "new" in lines["p000"]
    assert lines["twin"].startswith("skip") and "same parameters as p000" in lines["twin"]
    assert "dry run: 3 would run (0 resuming from a checkpoint), 1 skipped" in res.stdout
    assert not store.exists()
    # after a HIGH-only run, the dry run says p000 is done
    assert (
        sweep_cli(
            "run", str(d), "--store", str(store), "--priority", "HIGH", "--mode", "sequential"
        ).returncode
        == 0
    )
    res2 = sweep_cli("run", str(d), "--store", str(store), "--dry-run")
    lines = {ln.split()[1]: ln for ln in res2.stdout.splitlines() if ln.startswith(("run ", "skip "))}
    assert lines["p000"].startswith("skip") and "done" in lines["p000"]
    assert lines["p001"].startswith("run")


def _plant(store: Path, victim: Path, where: str) -> None:
    """Issue 18 items 1-3: lock.json a link to a file, batches/ or log/ a link to a directory."""
    import shutil

    if where == "lock.json":
        (store / "lock.json").unlink(missing_ok=True)
        (store / "lock.json").symlink_to(victim / "notes.txt")
        return
    if where == "batches":
        (victim / "b000000000001-abc-0").mkdir()  # subdirectories a repair would remove
        (victim / "b000000000001-abc-0" / "zarr.json").write_text("{}")
    else:  # the log's own file names, so that a compaction following the link finds them
        for f in (store / "log").iterdir():
            shutil.copy(f, victim / f.name)
    shutil.rmtree(store / where)
    (store / where).symlink_to(victim, target_is_directory=True)


@pytest.mark.parametrize("where", ["lock.json", "batches", "log"])
def test_cli_run_store_with_symlink_refused_outside_untouched(
    tmp_path: Path, packages_dir, sweep_cli, where: str
):
    from faults import tree_digest
    from store_data import provenance, result_like

    from sweep.spec import run_id_of
    from sweep.store import Store

    store = tmp_path / "r.zarr"
    p = dict(TINY)
    st = Store.open(store, mode="a")
    st.commit_run(run_id_of(p), result_like(p), provenance(p))
    st._index.log.close_segment()
    st._lock.release()  # as a killed writer leaves it: records in the log, to be compacted
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("precious\n")
    (victim / "keep").mkdir()
    (victim / "keep" / "a.json").write_text("{}")
    _plant(store, victim, where)
    before = tree_digest(victim)
    res = sweep_cli("run", str(packages_dir(tiny_sweep(2))), "--store", str(store), "--no-progress")
    assert res.returncode == 2, res.stderr + res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith(f"sweep run: error: store {store}: {where} is "), lines[0]
    assert "Dask dashboard" not in res.stdout
    assert tree_digest(victim) == before


def test_run_keeps_distributed_config_for_the_rest_of_the_process(tmp_path: Path, packages_dir):
    """A `sweep run` in a fresh process (distributed not imported before it) leaves Dask's
    distributed configuration whole: a dask.config.set made before distributed's defaults were
    loaded used to delete the whole section on exit, and every later use of distributed in the
    process failed with KeyError: 'distributed' (a second sweep, a notebook, the shutdown)."""
    import subprocess
    import sys

    d = packages_dir(tiny_sweep(2))
    code = (
        "import dask.config, sys\n"
        "from sweep.cli import main\n"
        "assert 'distributed' not in sys.modules\n"
        f"code = main(['run', {str(d)!r}, '--store', {str(tmp_path / 'r.zarr')!r}, '--no-progress',"
        " '--mode', 'sequential'])\n"
        "print('exit', code)\n"
        "print('tcp timeout', dask.config.get('distributed.comm.timeouts.tcp'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exit 0" in proc.stdout and "tcp timeout 30s" in proc.stdout, proc.stdout[-2000:]


def test_cli_run_twin_package_has_its_runs_status_in_the_closing_table(
    tmp_path: Path, packages_dir, sweep_cli
):
    pkgs = tiny_sweep(2)
    pkgs.append({"package_id": "twin", "priority": "LOW", "parameters": pkgs[0]["parameters"]})
    store = tmp_path / "r.zarr"
    res = sweep_cli("run", str(packages_dir(pkgs)), "--store", str(store), "--mode", "sequential")
    assert res.returncode == 0, res.stderr
    table = {
        ln.split()[0]: ln.split()[1:]
        for ln in res.stdout.splitlines()
        if ln.startswith(("HIGH", "LOW", "ALL"))
    }
    head = next(ln.split()[1:] for ln in res.stdout.splitlines() if ln.startswith("priority "))
    assert head == ["done", "total"]  # the twin is done with p000's run: no other status
    assert table["LOW"] == ["1", "1"] and table["ALL"] == ["3", "3"]
