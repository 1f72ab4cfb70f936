"""Shared fixtures: package directories, a real LocalCluster, and the `sweep` CLI in a subprocess.

Other test modules may add fixtures here; keep each one small and documented.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from slurm import slurm  # noqa: F401  (a real one-node SLURM: the session fixture of the HPC tests)

# The tests that press Ctrl-C on a sweep (SIGINT to a `sweep` subprocess) need one that does not
# inherit an ignored SIGINT: a suite started in the background by a non-interactive shell has
# SIGINT ignored, the children keep it ignored through exec, and `sweep` keeps an ignored signal
# ignored (as nohup expects). A handler here makes the children start with the default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# A tiny run: 8^3 points, 4 steps; about a few milliseconds of solver time.
TINY = {"Re": 100.0, "dt": 0.01, "T_final": 0.04, "grid": [8, 8, 8]}


def write_packages(directory: Path, packages: Iterable[Mapping[str, Any]]) -> Path:
    """Write a package directory: ``packages`` holds dicts with ``package_id``, ``priority``,
    ``parameters`` (by name, e.g. ``grid``) and optional ``tags``, ``solver`` and
    ``case``. Returns the directory.
    """
    from sweep.spec import SUMMARY_FILE

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    summary: dict[str, list[str]] = {"HIGH": [], "MEDIUM": [], "LOW": []}
    for i, pkg in enumerate(packages):
        doc = {
            "package_id": pkg["package_id"],
            "priority": pkg["priority"],
            "parameters": dict(pkg.get("parameters", TINY)),
        }
        if pkg.get("tags"):
            doc["tags"] = dict(pkg["tags"])
        for key in ("solver", "case"):
            if key in pkg:
                doc[key] = pkg[key]
        summary[pkg["priority"]].append(pkg["package_id"])
        (directory / f"package_{i:04d}.json").write_text(json.dumps(doc, indent=1))
    (directory / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    return directory


def tiny_sweep(
    n: int, *, priorities: tuple[str, ...] = ("HIGH", "MEDIUM", "LOW"), **overrides: Any
) -> list[dict[str, Any]]:
    """``n`` tiny packages with distinct Reynolds numbers, priorities cycling over ``priorities``."""
    return [
        {
            "package_id": f"p{i:03d}",
            "priority": priorities[i % len(priorities)],
            "parameters": {**TINY, "Re": 100.0 + 10 * i, **overrides},
        }
        for i in range(n)
    ]


@pytest.fixture(autouse=True, scope="session")
def _validation_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the package validation cache of the tests (and their subprocesses) out of ~/.cache."""
    os.environ.setdefault("NS_SWEEP_CACHE_DIR", str(tmp_path_factory.mktemp("ns-sweep-cache")))


@pytest.fixture
def packages_dir(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``packages_dir(list_of_package_dicts, name="packages") -> Path``."""

    def make(packages: Iterable[Mapping[str, Any]], name: str = "packages") -> Path:
        return write_packages(tmp_path / name, packages)

    return make


@pytest.fixture(scope="module")
def local_client():
    """A real LocalCluster of 2 single-threaded worker processes, shared by a test module."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        yield client


def run_cli(
    *args: str, timeout: float = 240, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m sweep.cli ARGS`` in a subprocess; returns the completed process."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "sweep.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=full_env,
    )


@pytest.fixture
def sweep_cli() -> Callable[..., subprocess.CompletedProcess]:
    """The `sweep` command in a subprocess: ``sweep_cli("run", dir, "--store", s)``."""
    return run_cli


def store_records(store: Path | str) -> dict[str, Any]:
    """run_id -> RunRecord of a store (read-only)."""
    from sweep.store import Store

    with Store.open(str(store), mode="r") as st:
        return dict(st.records())


def run_data(store: Path | str) -> dict[str, Any]:
    """run_id -> that run's Dataset, loaded into memory (read-only)."""
    from sweep.store import Store

    with Store.open(str(store), mode="r") as st:
        return {rid: st.open_run(rid).load() for rid in st.done_run_ids()}


def assert_stores_identical(a: Path | str, b: Path | str) -> None:
    """Same runs, same statuses, and every data variable of every run equal bit for bit."""
    import numpy as np

    ra, rb = store_records(a), store_records(b)
    assert set(ra) == set(rb)
    assert {k: r.status for k, r in ra.items()} == {k: r.status for k, r in rb.items()}
    da, dbs = run_data(a), run_data(b)
    assert set(da) == set(dbs) and da
    for rid, ds in da.items():
        other = dbs[rid]
        assert set(ds.data_vars) == set(other.data_vars), rid
        for name in ds.data_vars:
            x, y = ds[name].values, other[name].values
            assert x.dtype == y.dtype and x.shape == y.shape, (rid, name)
            assert x.tobytes() == y.tobytes(), f"run {rid} variable {name} differs"
        for name in ds.coords:
            assert np.array_equal(ds[name].values, other[name].values), (rid, name)


class PackageLog:
    """A package's log lines in a logs directory (they live in one file per sweep, with every
    package's lines: ``sweep.engine.logs``), read like the file of one package."""

    def __init__(self, directory: Path | str, package_id: str) -> None:
        self.directory = Path(directory)
        self.stem = package_id

    def lines(self) -> list[str]:
        from sweep.engine.logs import package_log_lines

        return package_log_lines(self.directory, self.stem)

    def exists(self) -> bool:
        return bool(self.lines())

    def read_text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines())
