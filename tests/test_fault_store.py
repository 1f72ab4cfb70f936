"""Faults around the store and the input: a full disk, a read-only store, malformed package
directories, and two sweeps started on one store. Each is refused or reported in one line,
with a nonzero exit, no traceback, and nothing half-committed."""

from __future__ import annotations

import io
import json
import os
import re
import socket
from pathlib import Path

import pytest
from conftest import TINY, tiny_sweep
from faults import (
    Driver,
    assert_results_equal,
    partial_files,
    pause_env,
    read_only,
    records,
    small_tmpfs,
    tree_digest,
    wait_for,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# 32^3 with its final fields: ~0.8 MB, more than the small file system below has left
BIG = {**TINY, "grid": [32, 32, 32], "keep_fields": True, "initial_condition": "random"}


def _clean_sweep(d: Path, store: Path, client) -> None:
    from sweep.engine import run_sweep

    res = run_sweep(
        d,
        store,
        client=client,
        progress_bar=False,
        out=io.StringIO(),
        log_dir=store.parent / f"{store.name}-logs",
    )
    assert res.exit_code == 0


def _one_error_line(drv: Driver) -> str:
    err = drv.stderr
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _disk_bytes(root: Path) -> int:
    """Bytes the files under ``root`` take in 4 KiB pages (as on tmpfs)."""
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in root.rglob("*") if p.is_file())


def test_fault_store_full_disk_reported_nothing_half_committed(tmp_path: Path, packages_dir, local_client):
    pkgs = tiny_sweep(2, priorities=("HIGH",), initial_condition="random")
    pkgs.append({"package_id": "big", "priority": "LOW", "parameters": BIG})
    d = packages_dir(pkgs)
    clean = tmp_path / "clean.zarr"
    _clean_sweep(d, clean, local_client)
    # what the two small runs need on disk: the room left on the disk below, with a margin
    # for logs and the index; the big run needs far more
    small = tmp_path / "small.zarr"
    _clean_sweep(packages_dir(pkgs[:2], name="small"), small, local_client)
    margin = 300 * 1024
    room = _disk_bytes(small) + margin
    assert _disk_bytes(clean) - _disk_bytes(small) > 2 * margin  # the big run cannot fit
    disk = tmp_path / "disk"
    with small_tmpfs(disk, "8m"):
        filler = disk / "other-data.bin"  # someone else's data fills the disk
        st = os.statvfs(disk)
        filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - room))
        store = disk / "r.zarr"
        drv = Driver(tmp_path, "run", str(d), "--store", str(store), "--mode", "sequential", "--no-progress")
        code = drv.wait()
        line = _one_error_line(drv)
        assert code == 2, drv.output()
        assert re.fullmatch(
            rf"sweep run: error: {re.escape(str(store))}: cannot commit run \w+: "
            r"no space left on the device.*; finished runs are kept",
            line,
        ), line
        # the runs that fitted are done; the one that did not left nothing behind
        from sweep.spec import load_packages

        big_id = next(p.run_id for p in load_packages(d) if p.package_id == "big")
        recs = records(store)
        assert {r.package_ids for r in recs.values()} == {("p000",), ("p001",)}
        assert {r.status for r in recs.values()} == {"done"}
        assert not (store / "runs" / big_id).exists()
        assert partial_files(store) == []
        # with space freed, the same command finishes the sweep
        filler.unlink()
        drv = Driver(tmp_path, "run", str(d), "--store", str(store), "--mode", "sequential", "--no-progress")
        assert drv.wait() == 0, drv.output()
        assert "1 to run, 2 skipped as already done" in drv.stdout
        assert_results_equal(clean, store)


def test_fault_store_read_only_reported_and_untouched(tmp_path: Path, packages_dir, local_client):
    pkgs = tiny_sweep(3)
    store = tmp_path / "ro" / "r.zarr"
    store.parent.mkdir()
    _clean_sweep(packages_dir(pkgs[:2], name="first"), store, local_client)
    d = packages_dir(pkgs, name="all")  # one more package to run
    before = tree_digest(store)
    with read_only(store):
        drv = Driver(tmp_path, "run", str(d), "--store", str(store), "--mode", "sequential", "--no-progress")
        code = drv.wait()
        line = _one_error_line(drv)
        assert code == 2, drv.output()
        assert line.startswith(
            f"sweep run: error: {store}: cannot open the store for writing: read-only file system"
        ), line
        assert "give another --store" in line
        assert tree_digest(store) == before
        # reading a read-only store still works
        assert len(records(store)) == 2
    assert tree_digest(store) == before


def _base_docs() -> tuple[list[dict], dict[str, list[str]]]:
    docs = [
        {"package_id": f"p{i:03d}", "priority": "HIGH", "parameters": dict(TINY, Re=100.0 + i)}
        for i in range(3)
    ]
    return docs, {"HIGH": [d["package_id"] for d in docs], "MEDIUM": [], "LOW": []}


def _write_raw(directory: Path, docs: list, summary: dict, raw: dict[int, str] | None = None) -> Path:
    directory.mkdir(parents=True)
    for i, doc in enumerate(docs):
        text = (raw or {}).get(i, json.dumps(doc))
        (directory / f"package_{i:04d}.json").write_text(text)
    (directory / "priority_summary.json").write_text(json.dumps(summary))
    return directory


def _json_syntax(docs, summary):
    return docs, summary, {1: json.dumps(docs[1])[:-8]}  # cut off: unterminated


def _unknown_key(docs, summary):
    docs[1]["prio"] = "HIGH"
    return docs, summary, None


def _bad_value(docs, summary):
    docs[1]["parameters"]["Re"] = -5
    return docs, summary, None


def _duplicate_ids(docs, summary):
    docs[2]["package_id"] = "p001"
    summary["HIGH"].remove("p002")
    return docs, summary, None


def _summary_mismatch(docs, summary):
    summary["LOW"].append("ghost")
    return docs, summary, None


def _unsafe_id(docs, summary):
    docs[1]["package_id"] = "../p001"
    summary["HIGH"].remove("p001")
    return docs, summary, None


# kind -> (how to break the directory, the one line expected after "sweep run: error: ")
# (an unreadable file also leaves its id in the summary without a file: that second line
# says so and points back at the file to fix)
MALFORMED = {
    "json-syntax": (
        _json_syntax,
        r"package_0001\.json: line 1 column \d+: invalid JSON: .+\n"
        r'priority_summary\.json: HIGH: bad value "p001"; allowed: ids of '
        r"existing package_\*\.json files \(.*or fix package_0001\.json\)",
    ),
    "unknown-key": (
        _unknown_key,
        r'package_0001\.json: prio: bad value "prio"; allowed: one of the '
        r"keys package_id, priority, parameters, tags, solver, case \(did you mean 'priority'\?\)",
    ),
    "bad-value": (_bad_value, r"package_0001\.json: parameters\.Re: bad value -5; allowed: .+"),
    "duplicate-ids": (
        _duplicate_ids,
        r'package_0002\.json: package_id: bad value "p001"; allowed: an id '
        r"used by one file only \(also in package_0001\.json\)",
    ),
    "summary-mismatch": (
        _summary_mismatch,
        r'priority_summary\.json: LOW: bad value "ghost"; allowed: '
        r"ids of existing package_\*\.json files.*",
    ),
    "unsafe-id": (
        _unsafe_id,
        r'package_0001\.json: package_id: bad value "\.\./p001"; allowed: a plain '
        r"name .*no path separators.*",
    ),
}


@pytest.fixture(scope="module")
def populated_store(tmp_path_factory, local_client) -> Path:
    """A store holding a finished sweep of the valid directory (the malformed ones share it)."""
    tmp = tmp_path_factory.mktemp("malformed")
    docs, summary = _base_docs()
    d = _write_raw(tmp / "valid", docs, summary)
    store = tmp / "r.zarr"
    _clean_sweep(d, store, local_client)
    return store


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_fault_malformed_packages_refused_store_unchanged(
    tmp_path: Path, populated_store: Path, sweep_cli, kind: str
):
    breaker, expected = MALFORMED[kind]
    docs, summary = _base_docs()
    d = _write_raw(tmp_path / kind, *breaker(docs, summary))
    before = tree_digest(populated_store.parent)
    res = sweep_cli(
        "run", str(d), "--store", str(populated_store), "--no-progress", env={"NS_SWEEP_CACHE_DIR": "off"}
    )
    assert res.returncode == 2, res.stderr + res.stdout
    assert "Traceback" not in res.stderr
    assert re.fullmatch("sweep run: error: " + expected, res.stderr.strip()), res.stderr
    assert "Dask dashboard" not in res.stdout  # refused before any cluster started
    assert tree_digest(populated_store.parent) == before  # store (and logs) byte for byte


def test_fault_second_sweep_on_one_store_refused_naming_holder(tmp_path: Path, packages_dir):
    d = packages_dir(tiny_sweep(2))
    store = tmp_path / "r.zarr"
    env, flag = pause_env(tmp_path, "before-commit")
    first = Driver(
        tmp_path,
        "run",
        str(d),
        "--store",
        str(store),
        "--mode",
        "sequential",
        "--no-progress",
        env=env,
        name="first",
    )
    try:  # the first sweep holds the store's lock, paused before its first commit
        wait_for(
            lambda: flag.exists() and flag.read_text().strip(),
            proc=first,
            what="the first sweep to reach its first commit",
        )
        before = tree_digest(store)
        second = Driver(
            tmp_path,
            "run",
            str(d),
            "--store",
            str(store),
            "--mode",
            "sequential",
            "--no-progress",
            name="second",
        )
        assert second.wait() == 2, second.output()
        line = _one_error_line(second)
        assert re.fullmatch(
            rf"sweep run: error: store {re.escape(str(store))} is open for writing by pid "
            rf"{first.pid} on host {re.escape(socket.gethostname())} since \d{{4}}-\d\d-\d\dT[\d:]+"
            r"\+00:00; wait for it to finish or stop it.*",
            line,
        ), line
        assert "Dask dashboard" not in second.stdout
        assert tree_digest(store) == before
        assert first.popen.poll() is None  # the first sweep is unaffected
    finally:
        first.kill()
    assert os.path.exists(store / "zarr.json")


def test_fault_store_creation_killed_is_completed_and_second_writer_told_who(tmp_path: Path, packages_dir):
    d = packages_dir(tiny_sweep(2))
    store = tmp_path / "r.zarr"
    args = ("run", str(d), "--store", str(store), "--mode", "sequential", "--no-progress")
    env, flag = pause_env(tmp_path, "store-create")
    creator = Driver(tmp_path, *args, env=env, name="creator")
    try:  # the first sweep holds the new store's lock, nothing else of it is written
        wait_for(
            lambda: flag.exists() and flag.read_text().strip(), proc=creator, what="the store's creation"
        )
        second = Driver(tmp_path, *args, name="second")
        assert second.wait() == 2, second.output()
        line = _one_error_line(second)
        assert re.fullmatch(
            rf"sweep run: error: store {re.escape(str(store))} is open for writing by pid {creator.pid} "
            rf"on host {re.escape(socket.gethostname())} since .*",
            line,
        ), line
    finally:
        assert creator.kill() == -9
    assert not (store / "zarr.json").exists() and (store / "lock.json").exists()
    again = Driver(tmp_path, *args, name="again")
    assert again.wait() == 0, again.output()
    assert "2 to run, 0 skipped" in again.stdout
    assert f"taking over the write lock left by pid {creator.pid}" in again.stderr
    assert {r.status for r in records(store).values()} == {"done"} and len(records(store)) == 2


def test_fault_store_lock_of_another_host_refused_then_broken(tmp_path: Path, packages_dir, sweep_cli):
    import time

    d = packages_dir(tiny_sweep(1))
    store = tmp_path / "r.zarr"
    from sweep.store import Store

    Store.open(store, mode="a").close()
    holder = {"host": "far-away-node", "pid": 4242, "since": "2026-01-01T00:00:00+00:00", "token": "theirs"}
    (store / "lock.json").write_text(json.dumps(holder))
    refused = sweep_cli("run", str(d), "--store", str(store), "--mode", "sequential", "--no-progress")
    assert refused.returncode == 2, refused.stderr + refused.stdout
    (line,) = refused.stderr.strip().splitlines()
    assert "open for writing by pid 4242 on host far-away-node" in line and "--break-lock" in line, line
    assert json.loads((store / "lock.json").read_text()) == holder
    old = time.time() - 3600 * 24
    os.utime(store / "lock.json", (old, old))  # and refreshed a day ago: stale, taken over
    stale = sweep_cli("run", str(d), "--store", str(store), "--mode", "sequential", "--no-progress")
    assert stale.returncode == 0, stale.stderr + stale.stdout
    assert "not refreshed for" in stale.stderr
    (store / "lock.json").write_text(json.dumps(holder))
    broken = sweep_cli(
        "run", str(d), "--store", str(store), "--mode", "sequential", "--no-progress", "--break-lock"
    )
    assert broken.returncode == 0, broken.stderr + broken.stdout
    assert "breaking the write lock of pid 4242 on host far-away-node" in broken.stderr
