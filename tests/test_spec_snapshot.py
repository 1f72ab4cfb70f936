"""The package table kept whole (``sweep.spec.snapshot``, issue 17): a directory whose files
did not change gives back the table of its last full pass without a check, and any change
(a file edited, added or removed, the summary edited, a smaller worker) is seen.

A pass that used the snapshot reads no verdict: the validation cache's SQLite file, removed
before it, is not made again. That is how these tests tell a snapshot's answer from a pass's.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import pytest
from conftest import TINY, write_packages

from sweep.errors import ConfigError
from sweep.spec import PRIORITIES, load_packages
from sweep.spec import snapshot as snapshot_mod
from sweep.spec.cache import RACY_SECONDS, cache_file, snapshot_file
from sweep.spec.table import PackageTable

WORKER = 4 << 30


def _pkgs(n: int) -> list[dict]:
    return [
        {
            "package_id": f"p{i}",
            "priority": PRIORITIES[i % 3],
            "parameters": {**TINY, "Re": 100.0 * (i + 1)},
            "tags": {"i": i} if i % 2 else {},
        }
        for i in range(n)
    ]


def _seen(packages: PackageTable) -> list[tuple]:
    """What a caller sees of each package, in order."""
    return [(p.package_id, p.priority, p.run_id, p.tags, p.path, p.params.Re) for p in packages]


def _paths(d: Path) -> tuple[Path, Path]:
    """(validation cache, snapshot) files of directory ``d``."""
    cache = Path(cache_file(str(d)) or "")
    return cache, Path(snapshot_file(str(cache)))


def _full_pass(d: Path, monkeypatch: pytest.MonkeyPatch, **kw) -> list[tuple]:
    """The packages as a pass with no cache at all gives them."""
    with monkeypatch.context() as m:
        m.setenv("NS_SWEEP_CACHE_DIR", "off")
        return _seen(load_packages(d, **kw))


def _from_snapshot(d: Path, **kw) -> PackageTable:
    """load_packages, asserting that it read no verdict (the snapshot answered)."""
    cache, _ = _paths(d)
    cache.unlink()
    packages = load_packages(d, **kw)
    assert not cache.exists(), "the files were checked again: the snapshot was not used"
    return packages


@pytest.fixture
def trusted_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache directory of its own; files written just now are trusted (RACY_SECONDS 0;
    ``test_snapshot_not_kept_for_files_just_written`` keeps the real one)."""
    monkeypatch.setenv("NS_SWEEP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(snapshot_mod, "RACY_SECONDS", 0.0)
    return tmp_path


def test_snapshot_gives_the_table_of_the_full_pass(
    trusted_now: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = write_packages(trusted_now / "pk", _pkgs(7))
    first = load_packages(d, worker_memory=WORKER)
    assert _paths(d)[1].exists()
    again = _from_snapshot(d, worker_memory=WORKER)
    assert _seen(again) == _seen(first) == _full_pass(d, monkeypatch, worker_memory=WORKER)
    assert [p.package_id for p in again] == ["p0", "p3", "p6", "p1", "p4", "p2", "p5"]  # by priority
    assert again.position_of("p4") == 4 and again.position_of("nope") is None
    assert _seen(again[2:5]) == _seen(first)[2:5]


def test_snapshot_sees_every_change_to_the_directory(
    trusted_now: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = write_packages(trusted_now / "pk", _pkgs(5))

    def check_again() -> None:
        load_packages(d, worker_memory=WORKER)  # a full pass: the change is seen, a new snapshot kept
        assert _seen(_from_snapshot(d, worker_memory=WORKER)) == _full_pass(
            d, monkeypatch, worker_memory=WORKER
        )

    check_again()
    f = d / "package_0002.json"
    doc = json.loads(f.read_text())
    doc["parameters"]["Re"] = 777.0
    f.write_text(json.dumps(doc))  # its change time and so its stat key change
    assert {p.package_id: p.params.Re for p in load_packages(d, worker_memory=WORKER)}["p2"] == 777.0
    check_again()
    summary = json.loads((d / "priority_summary.json").read_text())
    doc["priority"] = "HIGH"  # was LOW
    f.write_text(json.dumps(doc))
    summary["LOW"].remove("p2")
    summary["HIGH"].append("p2")
    (d / "priority_summary.json").write_text(json.dumps(summary))
    assert {p.package_id: p.priority for p in load_packages(d, worker_memory=WORKER)}["p2"] == "HIGH"
    check_again()
    (d / "package_0004.json").unlink()
    summary["MEDIUM"].remove("p4")
    (d / "priority_summary.json").write_text(json.dumps(summary))
    assert "p4" not in {p.package_id for p in load_packages(d, worker_memory=WORKER)}
    check_again()
    (d / "package_0009.json").write_text(
        json.dumps({"package_id": "new", "priority": "HIGH", "parameters": {**TINY, "Re": 9.0}})
    )
    summary["HIGH"].append("new")
    (d / "priority_summary.json").write_text(json.dumps(summary))
    assert "new" in {p.package_id for p in load_packages(d, worker_memory=WORKER)}
    check_again()
    summary["HIGH"].remove("new")  # the summary alone: a problem, not the kept table
    (d / "priority_summary.json").write_text(json.dumps(summary))
    with pytest.raises(ConfigError, match="new"):
        load_packages(d, worker_memory=WORKER)


def test_snapshot_checks_memory_against_the_worker_given_now(trusted_now: Path) -> None:
    d = write_packages(trusted_now / "pk", _pkgs(3))
    load_packages(d, check_memory=False)  # kept with the largest need of its packages
    assert len(_from_snapshot(d, worker_memory=WORKER)) == 3  # every package fits: the kept table
    with pytest.raises(ConfigError, match=r"package_0000\.json: parameters\.grid: .*fits in one worker"):
        load_packages(d, worker_memory=1000)  # one does not: the files are checked, the problem said


def test_snapshot_not_kept_for_files_just_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file changed within RACY_SECONDS of a pass may change again within the same clock
    tick of its change time: no snapshot is kept until every file is older."""
    monkeypatch.setenv("NS_SWEEP_CACHE_DIR", str(tmp_path / "cache"))
    d = write_packages(tmp_path / "pk", _pkgs(3))
    load_packages(d, worker_memory=WORKER)
    assert not _paths(d)[1].exists()
    time.sleep(RACY_SECONDS + 0.1)
    first = load_packages(d, worker_memory=WORKER)
    assert _paths(d)[1].exists()
    assert _seen(_from_snapshot(d, worker_memory=WORKER)) == _seen(first)


def test_snapshot_unreadable_is_a_full_pass(trusted_now: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = write_packages(trusted_now / "pk", _pkgs(4))
    load_packages(d, worker_memory=WORKER)
    _, snap = _paths(d)
    for broken in (b"", b"PK\x03\x04 not a zip", snap.read_bytes()[:100]):
        snap.write_bytes(broken)
        assert _seen(load_packages(d, worker_memory=WORKER)) == _full_pass(
            d, monkeypatch, worker_memory=WORKER
        )
        assert len(_from_snapshot(d, worker_memory=WORKER)) == 4  # written again, whole


def test_snapshot_not_kept_when_a_pass_warns(trusted_now: Path) -> None:
    """A deprecated parameter name is said on every pass, so such a directory keeps no snapshot."""
    old = {"Re": 400, "dt": 0.005, "T_final": 0.5, "grid_size": [8, 8, 8]}
    d = write_packages(trusted_now / "pk", [{"package_id": "a", "priority": "HIGH", "parameters": old}])
    for _ in range(2):
        with pytest.warns(FutureWarning, match="grid_size"):
            load_packages(d, check_memory=False)
    assert not _paths(d)[1].exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert PackageTable.of([]).to_arrays() is None  # objects: nothing to keep as arrays


def test_snapshot_pruned_with_its_cache(trusted_now: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache keeps CACHE_KEEP directories; a directory's snapshot goes with its cache file."""
    import os

    from sweep.spec import cache as cache_mod

    monkeypatch.setattr(cache_mod, "CACHE_KEEP", 1)
    first = write_packages(trusted_now / "a", _pkgs(2))
    load_packages(first, worker_memory=WORKER)
    assert all(p.exists() for p in _paths(first))
    os.utime(_paths(first)[0], (1_600_000_000, 1_600_000_000))  # the least recently used
    second = write_packages(trusted_now / "b", _pkgs(2))
    load_packages(second, worker_memory=WORKER)
    assert not any(p.exists() for p in _paths(first))
    assert all(p.exists() for p in _paths(second))
