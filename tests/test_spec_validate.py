"""Package specs: loading, run identity, and every validation problem (library and CLI)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import TINY, run_cli, write_packages

from solver import SolverParams
from sweep.errors import ConfigError
from sweep.spec import (
    MAX_FILE_BYTES,
    PRIORITIES,
    check_directory,
    load_packages,
    memory_need,
    run_id_of,
    select_packages,
)

REPO_PACKAGES = Path(__file__).resolve().parent.parent / "packages"
WORKER = 4 << 30  # bytes: a generous worker for every test that is not about memory


def _pkgs(n: int = 3) -> list[dict]:
    return [
        {
            "package_id": f"p{i}",
            "priority": PRIORITIES[i % 3],
            "parameters": {**TINY, "Re": 100.0 * (i + 1)},
            "tags": {"i": i},
        }
        for i in range(n)
    ]


def _problems(directory: Path) -> list[str]:
    return check_directory(directory, worker_memory=WORKER)[1]


def _one(problems: list[str], pattern: str) -> str:
    hits = [p for p in problems if re.search(pattern, p)]
    assert len(hits) == 1, f"{pattern!r} should match exactly one of {problems}"
    return hits[0]


def test_spec_load_returns_typed_packages_sorted_by_priority(tmp_path: Path) -> None:
    d = write_packages(tmp_path / "pk", _pkgs(3))
    pkgs = load_packages(d, worker_memory=WORKER)
    assert [p.priority for p in pkgs] == ["HIGH", "MEDIUM", "LOW"]
    p0 = pkgs[0]
    assert p0.package_id == "p0" and isinstance(p0.params, SolverParams)
    assert p0.params.grid == (8, 8, 8) and p0.tags == {"i": 0}
    assert p0.path.endswith("package_0000.json")
    assert p0.run_id == run_id_of(p0.params) and re.fullmatch(r"[0-9a-f]{16}", p0.run_id)


def test_spec_run_id_follows_identity_parameters_only() -> None:
    base = SolverParams(TINY)
    assert run_id_of(base) == run_id_of(base.as_dict())
    assert run_id_of(base.replace(Re=101.0)) != run_id_of(base)
    assert run_id_of(base.replace(grid=(8, 8, 10))) != run_id_of(base)
    # execution-only choices do not make a new run
    assert run_id_of(base.replace(fft_backend="numpy", fft_threads=1)) == run_id_of(base)
    # 100 and 100.0 are the same physics
    assert run_id_of(base.replace(Re=100)) == run_id_of(base.replace(Re=100.0))


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"Re": 1e-5},
        {"Re": 1e20, "abc_A": -0.0},
        {"abc_A": 0.0},
        {"abc_B": -1.5, "abc_k": 3},
        {"initial_condition": "random", "random_seed": 7, "keep_fields": True},
        {"T_final": 0.2, "dt": 0.01, "output_interval": 0.1},
        {"precision": "float32", "grid": [4, 6, 8]},
    ],
)
def test_spec_canonical_json_is_the_sorted_compact_json(changes: dict) -> None:
    # memoised fragments must give exactly the text json.dumps gives (the run ids depend on it)
    for _ in range(2):  # the second pass reads the memo
        p = SolverParams({"Re": 400.0, "dt": 0.01, "T_final": 0.1, "grid": [8, 8, 8], **changes})
        assert p.canonical_json() == json.dumps(p.canonical(), sort_keys=True, separators=(",", ":"))


def test_spec_memoised_checks_tell_apart_equal_values_of_other_types() -> None:
    from solver.params import parameter_problems

    for _ in range(2):  # the second pass reads the memo
        assert parameter_problems({"grid": [16, 16, 16]}) == []
        assert parameter_problems({"grid": [16, 16.0, 16]})[0].field == "grid"  # == [16, 16, 16]
        assert parameter_problems({"keep_fields": 1})[0].field == "keep_fields"  # 1 == True
        assert str(SolverParams(abc_A=0.0).abc_A) == "0.0" and str(SolverParams(abc_A=-0.0).abc_A) == "-0.0"
        assert isinstance(SolverParams(Re=100).Re, float) and SolverParams(abc_k=2).abc_k == 2


def test_spec_identical_parameters_share_one_run(tmp_path: Path) -> None:
    pkgs = _pkgs(2)
    pkgs[1]["parameters"] = dict(pkgs[0]["parameters"])
    loaded = load_packages(write_packages(tmp_path / "pk", pkgs), worker_memory=WORKER)
    assert loaded[0].run_id == loaded[1].run_id and loaded[0].package_id != loaded[1].package_id


def test_spec_priority_taken_from_summary_when_file_has_none(tmp_path: Path) -> None:
    d = write_packages(tmp_path / "pk", _pkgs(1))
    f = d / "package_0000.json"
    doc = json.loads(f.read_text())
    del doc["priority"]
    f.write_text(json.dumps(doc))
    assert load_packages(d, worker_memory=WORKER)[0].priority == "HIGH"


def test_spec_json_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    d = write_packages(tmp_path / "pk", _pkgs(2))
    (d / "package_0001.json").write_text('{\n  "package_id": "p1",\n  "priority": "MEDIUM"\n  "x": 1}\n')
    line = _one(_problems(d), r"^package_0001\.json")
    assert "line 4 column 3" in line and "invalid JSON" in line


def test_spec_unknown_key_lists_valid_keys(tmp_path: Path) -> None:
    pkgs = _pkgs(1)
    pkgs[0]["tags"] = None
    d = write_packages(tmp_path / "pk", pkgs)
    f = d / "package_0000.json"
    doc = json.loads(f.read_text())
    doc["prio"] = "HIGH"
    f.write_text(json.dumps(doc))
    line = _one(_problems(d), r": prio:")
    assert "package_id, priority, parameters, tags" in line and line.startswith("package_0000.json: prio:")


@pytest.mark.parametrize(
    ("change", "field", "allowed"),
    [
        ({"Re": "high"}, "parameters.Re", "a finite number > 0"),
        ({"Re": -5}, "parameters.Re", "a finite number > 0"),
        ({"dt": 0}, "parameters.dt", "a finite number > 0"),
        ({"grid": [8, 8, 7]}, "parameters.grid", "three even integers"),
        ({"grid": "8x8x8"}, "parameters.grid", "three even integers"),
        ({"T_final": 0.045}, "parameters.T_final", "whole number of steps"),
        ({"initial_condition": "vortex"}, "parameters.initial_condition", "'taylor_green'"),
        ({"viscosity": 0.1}, "parameters.viscosity", "grid"),
        ({"grdi": [8, 8, 8]}, "parameters.grdi", "did you mean 'grid'?"),
    ],
)
def test_spec_bad_parameter_names_field_value_and_allowed(
    tmp_path: Path, change: dict, field: str, allowed: str
) -> None:
    pkgs = _pkgs(2)
    pkgs[1]["parameters"] = {**pkgs[1]["parameters"], **change}
    line = _one(_problems(write_packages(tmp_path / "pk", pkgs)), re.escape(f": {field}:"))
    assert line.startswith(f"package_0001.json: {field}: bad value ")
    assert allowed in line.split("; allowed: ", 1)[1]


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("parameters", [1, 2], "an object of solver parameters"),
        ("tags", "demo", "a JSON object"),
        ("priority", "URGENT", "one of HIGH, MEDIUM, LOW"),
        ("package_id", 17, "a plain name"),
    ],
)
def test_spec_wrong_types_are_reported(tmp_path: Path, key: str, value: object, allowed: str) -> None:
    d = write_packages(tmp_path / "pk", _pkgs(1))
    f = d / "package_0000.json"
    doc = json.loads(f.read_text())
    doc[key] = value
    f.write_text(json.dumps(doc))
    line = _one(_problems(d), re.escape(f"package_0000.json: {key}: bad value"))
    assert allowed in line


@pytest.mark.parametrize("bad_id", ["../etc", "a/b", "a\\b", "x" * 65, "has space", "..", "", "dots..in"])
def test_spec_unsafe_ids_are_refused(tmp_path: Path, bad_id: str) -> None:
    d = write_packages(tmp_path / "pk", _pkgs(1))
    f = d / "package_0000.json"
    doc = json.loads(f.read_text())
    doc["package_id"] = bad_id
    f.write_text(json.dumps(doc))
    line = _one(_problems(d), r"package_0000\.json: package_id: bad value")
    assert "at most 64 letters, digits" in line


def test_spec_duplicate_ids_name_both_files(tmp_path: Path) -> None:
    pkgs = _pkgs(3)
    pkgs[2]["package_id"] = "p0"
    d = write_packages(tmp_path / "pk", pkgs)
    line = _one(_problems(d), r"used by one file only")
    assert line.startswith('package_0002.json: package_id: bad value "p0"') and "package_0000.json" in line


def test_spec_summary_and_files_must_agree(tmp_path: Path) -> None:
    d = write_packages(tmp_path / "pk", _pkgs(3))
    summary = json.loads((d / "priority_summary.json").read_text())
    summary["LOW"] = ["ghost"]  # p2 (LOW) now in no priority; ghost has no file
    summary["HIGH"] = ["p0", "p1"]  # p1 says MEDIUM in its file
    summary["MEDIUM"] = []
    (d / "priority_summary.json").write_text(json.dumps(summary))
    problems = _problems(d)
    ghost = _one(problems, r"ghost")
    assert ghost.startswith('priority_summary.json: LOW: bad value "ghost"') and "existing" in ghost
    orphan = _one(problems, r"package_0002\.json")
    assert "listed under a priority" in orphan
    disagree = _one(problems, r"package_0001\.json: priority")
    assert '"MEDIUM"' in disagree and "'HIGH'" in disagree


def test_spec_summary_id_under_two_priorities(tmp_path: Path) -> None:
    d = write_packages(tmp_path / "pk", _pkgs(2))
    (d / "priority_summary.json").write_text(
        json.dumps({"HIGH": ["p0", "p1"], "MEDIUM": ["p1"], "URGENT": []})
    )
    problems = _problems(d)
    assert "in both HIGH and MEDIUM" in _one(problems, r"MEDIUM: bad value \"p1\"")
    assert "one of the keys HIGH, MEDIUM, LOW" in _one(problems, r"URGENT")


def test_spec_missing_summary_is_a_problem(tmp_path: Path) -> None:
    d = write_packages(tmp_path / "pk", _pkgs(1))
    (d / "priority_summary.json").unlink()
    assert "missing" in _one(_problems(d), r"^priority_summary\.json")


def test_spec_file_over_one_mib_is_refused_unread(tmp_path: Path) -> None:
    d = write_packages(tmp_path / "pk", _pkgs(2))
    f = d / "package_0001.json"
    doc = json.loads(f.read_text())
    doc["tags"] = {"blob": "x" * MAX_FILE_BYTES}
    f.write_text(json.dumps(doc))
    line = _one(_problems(d), r"^package_0001\.json")
    assert "(file size)" in line and "at most 1048576 bytes" in line


def test_spec_memory_need_over_worker_memory(tmp_path: Path) -> None:
    pkgs = _pkgs(2)
    pkgs[1]["parameters"] = {**pkgs[1]["parameters"], "grid": [64, 64, 64]}
    d = write_packages(tmp_path / "pk", pkgs)
    need = memory_need(SolverParams(grid=(64, 64, 64)))
    small = memory_need(SolverParams(grid=(8, 8, 8)))
    assert small < need
    _, problems = check_directory(d, worker_memory=(small + need) // 2)
    line = _one(problems, r"fits in one worker")
    assert line.startswith("package_0001.json: parameters.grid: bad value [64, 64, 64]")
    assert check_directory(d, worker_memory=need * 2)[1] == []


def test_spec_every_problem_reported_at_once(tmp_path: Path) -> None:
    pkgs = _pkgs(3)
    pkgs[0]["parameters"] = {**pkgs[0]["parameters"], "Re": -1, "dt": "x"}
    pkgs[1]["package_id"] = "../p1"
    d = write_packages(tmp_path / "pk", pkgs)
    (d / "package_0002.json").write_text("{")
    with pytest.raises(ConfigError, match=r"parameters\.Re") as info:
        load_packages(d, worker_memory=WORKER)
    problems = info.value.problems
    assert len(problems) >= 4
    assert all("\n" not in p for p in problems)
    assert str(info.value).splitlines() == problems


def test_spec_select_packages_by_priority_and_by_name(tmp_path: Path) -> None:
    pkgs = load_packages(write_packages(tmp_path / "pk", _pkgs(6)), worker_memory=WORKER)
    ids = [p.package_id for p in pkgs]  # sorted by priority, then id: p0 p3 p1 p4 p2 p5

    def chosen(priority: str = "ALL", names: list[str] | None = None) -> list[str]:
        return [p.package_id for p in select_packages(pkgs, priority, names)]

    assert chosen() == ids
    assert chosen("MEDIUM") == ["p1", "p4"]
    # by package_id, file name or file stem; the given order of the packages is kept, once each
    assert ids == ["p0", "p3", "p1", "p4", "p2", "p5"]
    assert chosen(names=["p4", "package_0000.json", "package_0005", "p0"]) == ["p0", "p4", "p5"]
    assert chosen("LOW", ["p2"]) == ["p2"]


@pytest.mark.parametrize(
    "priority, name, message",
    [
        (
            "ALL",
            "p00",
            r"package_ids: bad value 'p00': no package of .*pk has this package_id or file name "
            r"\(did you mean p0\?\); allowed: a package_id or a package_\*\.json file name",
        ),
        ("ALL", "package_0042.json", r"package_ids: bad value 'package_0042.json': no package of"),
        ("HIGH", "p1", r"package_ids: 'p1' has priority MEDIUM, not HIGH \(priority\); drop the priority"),
        ("URGENT", "p1", r"priority: bad value 'URGENT'; allowed: HIGH, MEDIUM, LOW, ALL"),
    ],
)
def test_spec_select_packages_refuses_unknown_names(
    tmp_path: Path, priority: str, name: str, message: str
) -> None:
    pkgs = load_packages(write_packages(tmp_path / "pk", _pkgs(3)), worker_memory=WORKER)
    with pytest.raises(ConfigError, match=message) as info:
        select_packages(pkgs, priority, ["p0", name])
    assert len(str(info.value).splitlines()) == 1


def test_spec_cli_validate_exit_2_one_line_per_problem(tmp_path: Path) -> None:
    pkgs = _pkgs(2)
    pkgs[0]["parameters"] = {**pkgs[0]["parameters"], "Re": -1, "grid": [8, 8]}
    d = write_packages(tmp_path / "pk", pkgs)
    (d / "package_0001.json").write_text('{"package_id": "p1",,}')
    proc = run_cli("validate", str(d), "--worker-memory", "4GiB")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines[:-1] == _problems(d) and len(lines) == 5
    assert "line 1 column 21" in lines[2] and "or fix package_0001.json" in lines[3]
    assert lines[-1].endswith("4 problem(s) in " + str(d))


def test_spec_cli_validate_ok_prints_one_summary_line() -> None:
    proc = run_cli("validate", str(REPO_PACKAGES), "--worker-memory", "4GiB")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("OK: ")


def test_spec_cli_validate_missing_directory_exit_2(tmp_path: Path) -> None:
    proc = run_cli("validate", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "not found" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_spec_example_sweep_is_valid_and_factorial() -> None:
    pkgs = load_packages(REPO_PACKAGES, worker_memory=WORKER)
    assert 10 <= len(pkgs) <= 16
    assert {p.priority for p in pkgs} == set(PRIORITIES)
    # Taylor-Green past its dissipation peak (t ~ 9 at Re = 1600): a factorial over Re x dt
    full = {
        (p.params.Re, p.params.dt) for p in pkgs if p.params.grid == (16, 16, 16) and p.params.T_final == 12
    }
    res = {x[0] for x in full}
    dts = {x[1] for x in full}
    assert len(res) >= 2 and len(dts) >= 2 and len(full) == len(res) * len(dts)
    assert all(p.params.initial_condition == "taylor_green" for p in pkgs)
    assert all(max(p.params.grid) <= 32 and p.params.T_final <= 12 for p in pkgs)


def test_spec_validation_cache_follows_file_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NS_SWEEP_CACHE_DIR", str(tmp_path / "cache"))
    d = write_packages(tmp_path / "pk", _pkgs(3))
    first = load_packages(d, worker_memory=WORKER)
    caches = [c for c in (tmp_path / "cache").iterdir() if c.suffix == ".sqlite"]
    assert len(caches) == 1 and len(_cached_verdicts(caches[0])) == 3
    second = load_packages(d, worker_memory=WORKER)  # from the cache: same packages, lazy params
    assert [(p.package_id, p.priority, p.run_id, p.tags) for p in second] == [
        (p.package_id, p.priority, p.run_id, p.tags) for p in first
    ]
    assert second[0].params == first[0].params
    f = d / "package_0001.json"
    doc = json.loads(f.read_text())
    doc["parameters"]["Re"] = -3
    f.write_text(json.dumps(doc))
    assert "parameters.Re: bad value -3" in _one(_problems(d), r"package_0001")
    doc["parameters"]["Re"] = 777.0
    f.write_text(json.dumps(doc))
    edited = {p.package_id: p for p in load_packages(d, worker_memory=WORKER)}
    assert edited["p1"].params.Re == 777.0 and edited["p1"].run_id == run_id_of(edited["p1"].params)
    # cross-file checks are never cached: a summary edit is seen at once
    (d / "priority_summary.json").write_text(json.dumps({"HIGH": ["p0"], "MEDIUM": ["p1"], "LOW": []}))
    assert "listed under a priority" in _one(_problems(d), r"package_0002")
    # the memory check uses the cached need against the worker memory given now
    assert any("fits in one worker" in p for p in check_directory(d, worker_memory=1000)[1])


def _cached_verdicts(path: Path) -> list[list]:
    import sqlite3

    with sqlite3.connect(path) as db:
        return [list(v) for v in db.execute("SELECT package_id, priority, vals FROM verdicts")]


def test_spec_validation_cache_skips_unchanged_old_files_by_stat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose stat key (size, mtime, ctime, inode) is what it was when its bytes were
    hashed is not read again; one changed within RACY_SECONDS of a pass is hashed again."""
    import sqlite3
    import time

    from sweep.spec.cache import RACY_SECONDS, ValidationCache, cache_file, stat_key

    monkeypatch.setenv("NS_SWEEP_CACHE_DIR", str(tmp_path / "cache"))
    d = write_packages(tmp_path / "pk", _pkgs(3))
    load_packages(d, worker_memory=WORKER)  # the files are new: no stat key kept (racy)
    path = cache_file(str(d))
    with sqlite3.connect(path) as db:
        assert [k for (k,) in db.execute("SELECT stat FROM files")] == [None] * 3
    time.sleep(RACY_SECONDS + 0.1)
    first = load_packages(d, worker_memory=WORKER)  # now old enough: their keys are kept
    f = d / "package_0001.json"
    cache = ValidationCache(path)
    hit = cache.known(f.name, stat_key(f.stat()))
    assert hit is not None and hit[1][0] == "p1"  # known without reading the file
    cache.close()
    again = load_packages(d, worker_memory=WORKER)
    assert [(p.package_id, p.run_id) for p in again] == [(p.package_id, p.run_id) for p in first]
    doc = json.loads(f.read_text())
    doc["parameters"]["Re"] = 901.0
    f.write_text(json.dumps(doc))  # a write changes the key (ctime): read again
    assert {p.package_id: p.params.Re for p in load_packages(d, worker_memory=WORKER)}["p1"] == 901.0


def test_spec_validation_cache_writes_rows_as_it_goes_in_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows learnt are written every FLUSH_ROWS (not held for the whole pass); the pass's
    transaction is committed by save only: a pass that stops before leaves the cache as it was."""
    import sqlite3

    from sweep.spec import cache as cache_mod

    monkeypatch.setenv("NS_SWEEP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache_mod, "FLUSH_ROWS", 2)
    d = write_packages(tmp_path / "pk", _pkgs(5))
    path = cache_mod.cache_file(str(d))
    assert path is not None
    c = cache_mod.ValidationCache(path)
    for i in range(4):
        c.record_file(f"package_000{i}.json", None, bytes([i]) * 20)
    assert not c._files  # written, not held
    with sqlite3.connect(path) as db:  # another connection sees nothing before save
        assert db.execute("SELECT count(*) FROM files").fetchone() == (0,)
    c.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM files").fetchone() == (0,)
    first = load_packages(d, worker_memory=WORKER)
    assert len(_cached_verdicts(Path(path))) == 5
    again = load_packages(d, worker_memory=WORKER)
    assert [(p.package_id, p.run_id, p.tags) for p in again] == [
        (p.package_id, p.run_id, p.tags) for p in first
    ]


def test_spec_validation_cache_can_be_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NS_SWEEP_CACHE_DIR", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    d = write_packages(tmp_path / "pk", _pkgs(2))
    assert len(load_packages(d, worker_memory=WORKER)) == 2
    assert not (tmp_path / "xdg").exists()


def test_spec_validation_cache_sees_edit_with_same_size_and_mtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setenv("NS_SWEEP_CACHE_DIR", str(tmp_path / "cache"))
    d = write_packages(tmp_path / "pk", _pkgs(2))
    old = 1_600_000_000
    for f in d.iterdir():
        os.utime(f, (old, old))
    assert {p.params.Re for p in load_packages(d, worker_memory=WORKER)} == {100.0, 200.0}
    f = d / "package_0001.json"
    text = f.read_text()
    f.write_text(text.replace('"Re": 200.0', '"Re": 900.0'))  # same size
    os.utime(f, (old, old))  # and the same mtime: the verdict follows the bytes, not the stat
    assert {p.params.Re for p in load_packages(d, worker_memory=WORKER)} == {100.0, 900.0}
    f.write_text(text.replace('"Re": 200.0', '"Re": -20.0'))
    os.utime(f, (old, old))
    assert "parameters.Re: bad value -20.0" in _one(_problems(d), r"package_0001")


def test_spec_summary_patterns_give_priorities_to_many_packages(tmp_path: Path) -> None:
    """A summary entry with *, ? or [...] is a pattern over package ids: an id listed by name
    wins, the patterns a package matches must be of one priority, a pattern matching nothing
    is a problem (issue 17: a summary of 1,000,000 ids would not fit any file cap)."""
    pkgs = [
        {
            "package_id": f"re{i}-s{j}",
            "priority": None,
            "parameters": {**TINY, "Re": 100.0 + i, "dt": 0.001 * (j + 1)},
        }
        for i in range(3)
        for j in range(2)
    ]
    d = tmp_path / "pk"
    write_packages(d, [{**p, "priority": "LOW"} for p in pkgs])
    for p in d.glob("package_*.json"):  # no priority in the files: the summary gives it
        doc = json.loads(p.read_text())
        del doc["priority"]
        p.write_text(json.dumps(doc))
    summary = {"HIGH": ["re0-s1", "re1-*"], "LOW": ["re0-*", "re2-?[0-9]"]}
    (d / "priority_summary.json").write_text(json.dumps(summary))
    got = {p.package_id: p.priority for p in load_packages(d, worker_memory=WORKER)}
    assert got == {
        "re0-s0": "LOW",
        "re0-s1": "HIGH",  # listed by its id: that wins over the LOW pattern it matches
        "re1-s0": "HIGH",
        "re1-s1": "HIGH",
        "re2-s0": "LOW",
        "re2-s1": "LOW",
    }
    (d / "priority_summary.json").write_text(
        json.dumps({"HIGH": ["re1-*"], "LOW": ["re[02]-s?", "nothing-*"]})
    )
    problems = _problems(d)
    assert _one(problems, r"nothing-\*").startswith('priority_summary.json: LOW: bad value "nothing-*"')
    assert not [p for p in problems if "re1-" in p or "re0-" in p]
    (d / "priority_summary.json").write_text(json.dumps({"HIGH": ["re1-*"], "LOW": ["*"]}))
    clash = _one(_problems(d), r"re1-s0")
    assert "'re1-*' under HIGH and '*' under LOW" in clash and "list the id under its priority" in clash


def test_spec_summary_cap_grows_with_the_package_files(tmp_path: Path) -> None:
    """The summary may hold SUMMARY_BYTES_PER_PACKAGE bytes per package file (at least 1 MiB):
    a directory of few files keeps the 1 MiB cap; sweep new lists ids up to IDS_UP_TO packages
    of one priority and writes a pattern above."""
    from sweep.spec.summary import IDS_UP_TO, SUMMARY_BYTES_PER_PACKAGE, read_summary, summary_document

    big = tmp_path / "summary.json"
    ids = [f"package-with-a-long-id-{i:08d}" for i in range(40_000)]  # ~1.4 MB
    big.write_text(json.dumps({"HIGH": ids}))
    problems: list[str] = []
    assert read_summary(str(big), 3, problems) is None
    assert "at most 1048576 bytes" in problems[0]
    problems = []
    summary = read_summary(str(big), 40_000, problems)
    assert problems == [] and summary is not None and len(summary.ids) == 40_000
    assert big.stat().st_size < SUMMARY_BYTES_PER_PACKAGE * 40_000
    docs = [{"package_id": f"p{i}", "priority": "MEDIUM"} for i in range(IDS_UP_TO + 1)]
    assert summary_document(docs) == {"HIGH": [], "MEDIUM": ["*"], "LOW": []}
    assert summary_document(docs[:-1])["MEDIUM"] == [d["package_id"] for d in docs[:-1]]
    mixed = [*docs, {"package_id": "x", "priority": "LOW"}]
    assert len(summary_document(mixed)["MEDIUM"]) == IDS_UP_TO + 1


def test_spec_validation_cache_of_other_code_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache written by other code (another fingerprint, another table layout) is dropped
    and rebuilt, not left failing quietly on every write."""
    import sqlite3

    from sweep.spec.cache import cache_file

    monkeypatch.setenv("NS_SWEEP_CACHE_DIR", str(tmp_path / "cache"))
    d = write_packages(tmp_path / "pk", _pkgs(3))
    path = cache_file(str(d))
    Path(path).parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('fingerprint', 'older code')")
        db.execute("CREATE TABLE verdicts (digest BLOB PRIMARY KEY, verdict TEXT)")
    assert len(load_packages(d, worker_memory=WORKER)) == 3
    assert sorted(v[0] for v in _cached_verdicts(Path(path))) == ["p0", "p1", "p2"]
    # this code's fingerprint over another layout (written by a development version)
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE verdicts")
        db.execute("CREATE TABLE verdicts (digest BLOB PRIMARY KEY, verdict TEXT)")
    assert len(load_packages(d, worker_memory=WORKER)) == 3
    assert sorted(v[0] for v in _cached_verdicts(Path(path))) == ["p0", "p1", "p2"]


def test_spec_duplicate_ids_said_in_file_order_with_each_files_other_problems(tmp_path: Path) -> None:
    # ids repeated by valid files and by files with problems, beside summary problems: every
    # line where the pass over the files says it (found after the pass, by sorting the ids)
    pkgs = _pkgs(7)
    pkgs[1]["package_id"] = "p0"
    pkgs[3]["package_id"] = "p0"
    pkgs[3]["parameters"]["Re"] = -1.0
    pkgs[4]["package_id"] = "p2"
    pkgs[4]["priority"] = "LOW"
    pkgs[6]["package_id"] = "p5"
    pkgs[6]["parameters"]["grid"] = [8, 8]
    d = write_packages(tmp_path / "pk", pkgs)
    summary = {"HIGH": ["p0", "p3", "ghost"], "MEDIUM": ["p2"], "LOW": ["p5", "p7*"]}
    (d / "priority_summary.json").write_text(json.dumps(summary))
    got = [_dup_short(p) for p in _problems(d)]
    assert got == [
        'package_0001.json: package_id: "p0" dup of package_0000.json',
        'package_0001.json: priority: "MEDIUM"',
        'package_0002.json: priority: "LOW"',
        "package_0003.json: parameters.Re: -1.0",
        'package_0003.json: package_id: "p0" dup of package_0000.json',
        'package_0004.json: package_id: "p2" dup of package_0002.json',
        'package_0004.json: priority: "LOW"',
        "package_0006.json: parameters.grid: [8, 8]",
        'package_0006.json: package_id: "p5" dup of package_0005.json',
        'package_0006.json: priority: "HIGH"',
        'priority_summary.json: LOW: "p7*"',
        'priority_summary.json: HIGH: "p3"',
        'priority_summary.json: HIGH: "ghost"',
    ]


def _dup_short(line: str) -> str:
    """``file: field: value``, with `` dup of FILE`` for a repeated id."""
    m = re.fullmatch(r"(.+?): (.+?): bad value (.+?); allowed: (.*)", line)
    assert m is not None, line
    also = re.search(r"also in (\S+)\)$", m[4])
    return f"{m[1]}: {m[2]}: {m[3]}" + (f" dup of {also[1]}" if also else "")


def test_spec_table_values_compressed_by_blocks_read_in_any_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweep.spec import table as table_mod

    monkeypatch.setattr(table_mod, "VALUE_BLOCK", 4)  # 11 packages: blocks of 4, 4 and 3
    pkgs = _pkgs(11)
    pkgs[5]["parameters"]["Re"] = -1.0  # a file with a problem: a row with no values
    d = write_packages(tmp_path / "pk", pkgs)
    table, problems = check_directory(d, worker_memory=WORKER)
    assert len(problems) == 1 and len(table) == 10
    for i in (9, 0, 5, 4, 3, 8, 1):
        p = table[i]
        doc = json.loads(Path(p.path).read_text())
        assert p.package_id == doc["package_id"] and p.params.Re == doc["parameters"]["Re"]
