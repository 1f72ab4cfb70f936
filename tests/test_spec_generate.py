"""`sweep new`: a package directory from a grid (options or a TOML/YAML file), via the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from sweep.spec import load_packages

WORKER = 4 << 30


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_spec_new_writes_cartesian_product_from_options(tmp_path: Path) -> None:
    d = tmp_path / "sweep"
    proc = run_cli(
        "new",
        str(d),
        "--Re",
        "100",
        "400",
        "1600",
        "--dt",
        "0.01",
        "0.005",
        "--T-final",
        "0.5",
        "--grid",
        "16,16,16",
        "--priority",
        "HIGH",
        "--tag",
        "study=t",
    )
    assert proc.returncode == 0, proc.stderr
    pkgs = load_packages(d, worker_memory=WORKER)
    assert len(pkgs) == 6 and {p.priority for p in pkgs} == {"HIGH"}
    assert {(p.params.Re, p.params.dt) for p in pkgs} == {
        (r, t) for r in (100, 400, 1600) for t in (0.01, 0.005)
    }
    assert all(p.params.grid == (16, 16, 16) and p.params.T_final == 0.5 for p in pkgs)
    assert all(p.tags == {"study": "t"} for p in pkgs)
    assert "Re400-dt0.005" in {p.package_id for p in pkgs}


def test_spec_new_seeds_the_validation_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    d = tmp_path / "sweep"
    proc = run_cli(
        "new",
        str(d),
        "--Re",
        "100",
        "400",
        "--T-final",
        "0.1",
        "--grid",
        "8,8,8",
        env={"NS_SWEEP_CACHE_DIR": str(cache)},
    )
    assert proc.returncode == 0 and "(checked)" in proc.stdout, proc.stderr
    (cached,) = [c for c in cache.iterdir() if c.suffix == ".sqlite"]
    import sqlite3

    with sqlite3.connect(cached) as db:  # one verdict per written package file, keyed by its bytes
        entries = [list(v) for v in db.execute("SELECT package_id FROM verdicts")]
    assert sorted(e[0] for e in entries) == sorted(p.package_id for p in load_packages(d))


def test_spec_new_is_deterministic(tmp_path: Path) -> None:
    args = ["--Re", "100", "200", "--grid", "8,8,8", "12,12,12", "--T-final", "0.1"]
    assert run_cli("new", str(tmp_path / "a"), *args).returncode == 0
    assert run_cli("new", str(tmp_path / "b"), *args).returncode == 0
    assert _files(tmp_path / "a") == _files(tmp_path / "b") and len(_files(tmp_path / "a")) == 5


def test_spec_new_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    d = tmp_path / "sweep"
    assert run_cli("new", str(d), "--Re", "100", "200").returncode == 0
    before = _files(d)
    proc = run_cli("new", str(d), "--Re", "300")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--force" in proc.stderr and _files(d) == before
    proc = run_cli("new", str(d), "--Re", "300", "--force")
    assert proc.returncode == 0, proc.stderr
    pkgs = load_packages(d, worker_memory=WORKER)
    assert [p.params.Re for p in pkgs] == [300.0]  # the old grid's packages are gone


def test_spec_new_bad_value_writes_nothing(tmp_path: Path) -> None:
    d = tmp_path / "sweep"
    proc = run_cli("new", str(d), "--Re", "100", "-5", "--dt", "0.3", "--T-final", "0.5")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert any("parameters.Re: bad value -5" in x and "a finite number > 0" in x for x in lines)
    assert any("parameters.T_final: bad value 0.5" in x for x in lines)
    assert not d.exists()


def test_spec_new_from_toml_with_several_grids(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(
        '[[grids]]\npriority = "HIGH"\n[grids.parameters]\nRe = [100, 400]\ndt = 0.01\nT_final = 0.1\n'
        "grid = [[8, 8, 8], [12, 12, 12]]\n"
        '[[grids]]\npriority = "LOW"\ntags = {note = "short"}\n[grids.parameters]\nRe = 400\ndt = 0.01\n'
        "T_final = 0.05\ngrid = [8, 8, 8]\n"
    )
    d = tmp_path / "sweep"
    proc = run_cli("new", str(d), "--from", str(grid))
    assert proc.returncode == 0, proc.stderr
    pkgs = load_packages(d, worker_memory=WORKER)
    assert sorted(p.priority for p in pkgs) == ["HIGH"] * 4 + ["LOW"]
    low = next(p for p in pkgs if p.priority == "LOW")
    assert low.tags == {"note": "short"} and low.params.T_final == 0.05
    assert len({p.package_id for p in pkgs}) == 5


def test_spec_new_from_yaml_and_bad_key(tmp_path: Path) -> None:
    good = tmp_path / "grid.yaml"
    good.write_text("priority: MEDIUM\nparameters:\n  Re: [100, 200, 300]\n  grid: [8, 8, 8]\n")
    proc = run_cli("new", str(tmp_path / "s"), "--from", str(good))
    assert proc.returncode == 0, proc.stderr
    assert len(load_packages(tmp_path / "s", worker_memory=WORKER)) == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("priority: MEDIUM\nparams:\n  Re: [100]\n")
    proc = run_cli("new", str(tmp_path / "t"), "--from", str(bad))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "params: bad value 'params'; allowed: one of the keys priority, parameters, tags" in proc.stderr


def test_spec_new_summary_lists_every_package(tmp_path: Path) -> None:
    d = tmp_path / "s"
    assert run_cli("new", str(d), "--Re", "100", "200", "--priority", "LOW").returncode == 0
    summary = json.loads((d / "priority_summary.json").read_text())
    assert summary == {"HIGH": [], "MEDIUM": [], "LOW": ["Re100", "Re200"]}


# ------------------------------------------------------------------ bounded, and nothing written when refused


def _nothing_written(d: Path) -> bool:
    return not d.exists() or not any(d.iterdir())


def test_spec_new_counts_combinations_first_and_refuses_a_huge_grid(tmp_path: Path) -> None:
    import time

    d = tmp_path / "sweep"
    values = [str(v) for v in range(1, 13)]  # 12 values on each of 10 axes: 12^10 combinations
    axes = ["--Re", "--T-final", "--abc-A", "--abc-B", "--abc-C", "--abc-k", "--random-seed"]
    axes += ["--random-k-peak", "--random-energy", "--cfl-limit"]
    args = [a for axis in axes for a in (axis, *values)]
    t0 = time.monotonic()
    proc = run_cli("new", str(d), *args, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - t0 < 30
    (line,) = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert f"bad value {12**10} combinations; allowed: at most 1000000 packages" in line, line
    assert "--max-packages" in line
    assert _nothing_written(d)


def test_spec_new_max_packages_is_overridable(tmp_path: Path) -> None:
    args = ["--Re", "100", "200", "300", "--grid-size", "8,8,8", "12,12,12"]
    refused = run_cli("new", str(tmp_path / "a"), *args, "--max-packages", "5")
    assert (
        refused.returncode == 2 and "bad value 6 combinations; allowed: at most 5 packages" in refused.stderr
    )
    assert _nothing_written(tmp_path / "a")
    ok = run_cli("new", str(tmp_path / "b"), *args, "--max-packages", "6")
    assert ok.returncode == 0, ok.stderr
    assert len(load_packages(tmp_path / "b", worker_memory=WORKER)) == 6
    bad = run_cli("new", str(tmp_path / "c"), *args, "--max-packages", "0")
    assert bad.returncode == 2 and "--max-packages: bad value '0'; allowed: an integer >= 1" in bad.stderr


def test_spec_new_yaml_billion_laughs_in_tags_refused_nothing_written(tmp_path: Path) -> None:
    lol = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lol.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    grid = tmp_path / "laughs.yaml"
    grid.write_text(
        "priority: HIGH\nparameters:\n  Re: [100, 200]\ntags:\n" + "".join(f"  {x}\n" for x in lol)
    )
    d = tmp_path / "sweep"
    proc = run_cli("new", str(d), "--from", str(grid), timeout=60)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert line.startswith(f"sweep new: error: {grid}: tags: bad value: ") and "allowed: " in line, line
    assert _nothing_written(d)


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("deep.yaml", "parameters:\n  Re: " + "[" * 5000 + "1" + "]" * 5000 + "\n", "nested deeper than"),
        ("deep.toml", "[parameters]\nRe = " + "[" * 5000 + "1" + "]" * 5000 + "\n", "nested deeper than"),
        ("cycle.yaml", "parameters:\n  Re: [100]\ntags: &t\n  self: *t\n", "nested deeper than"),
        ("big.yaml", "parameters:\n  Re: [" + "1" * 5000 + "]\n", "bad value"),
        ("dup.yaml", "parameters:\n  Re: [100]\n  Re: [200]\n", 'the key "Re" twice'),
    ],
)
def test_spec_new_hostile_grid_file_one_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    grid = tmp_path / name
    grid.write_text(text)
    d = tmp_path / "sweep"
    proc = run_cli("new", str(d), "--from", str(grid), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert _nothing_written(d)


def test_spec_new_grid_file_that_is_a_fifo_does_not_hang(tmp_path: Path) -> None:
    import os

    grid = tmp_path / "grid.yaml"
    os.mkfifo(grid)
    proc = run_cli("new", str(tmp_path / "sweep"), "--from", str(grid), timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "grid.yaml: (file): bad value: a FIFO" in proc.stderr


def test_spec_new_never_writes_through_a_link(tmp_path: Path) -> None:
    d = tmp_path / "sweep"
    d.mkdir()
    victim = tmp_path / "victim.txt"
    (d / "package_0001.json").symlink_to(victim)  # dangling: a plain open() would create the victim
    proc = run_cli("new", str(d), "--Re", "100", "200", "--force")
    assert proc.returncode == 0, proc.stderr
    assert not victim.exists() and not (d / "package_0001.json").is_symlink()
