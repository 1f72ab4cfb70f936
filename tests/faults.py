"""Fault injection for the fault-tolerance tests: real processes killed with real signals,
a really full file system, a really read-only mount, a scheduler that really goes away.

Nothing here imitates our own code: the driver is the `sweep run` command in a subprocess,
the store is a zarr directory on disk, the workers are Dask worker processes. The engine and
store have one named hook for tests, ``NS_SWEEP_TEST_PAUSE_AT=<point>:<flag>:<seconds>``
(``sweep.store.fault_point``): at that point the process writes its pid to <flag> and sleeps,
so a test can SIGKILL it exactly there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

PAUSE_ENV = "NS_SWEEP_TEST_PAUSE_AT"


def wait_for(
    condition: Callable[[], Any],
    *,
    timeout: float = 120,
    what: str = "condition",
    proc: Driver | subprocess.Popen | None = None,
    every: float = 0.05,
) -> Any:
    """Poll ``condition()`` until it is truthy (returned); fail after ``timeout`` seconds or
    when ``proc`` exits first (its output is shown)."""
    deadline = time.monotonic() + timeout
    while True:
        got = condition()
        if got:
            return got
        popen = proc.popen if isinstance(proc, Driver) else proc
        if popen is not None and popen.poll() is not None:
            out = proc.output() if isinstance(proc, Driver) else ""
            raise AssertionError(f"process exited ({popen.returncode}) before {what}:\n{out}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


class Driver:
    """`sweep ARGS` (python -m sweep.cli) in its own session, output in files.

    Its own session makes its process group hold the driver and every process it started
    (the LocalCluster's nanny-managed workers), so ``cleanup()`` can end them all by that
    one id after the driver itself was SIGKILLed (a killed driver cannot stop them).
    """

    def __init__(
        self, tmp: Path, *args: str, env: Mapping[str, str] | None = None, name: str = "driver"
    ) -> None:
        self.tmp = Path(tmp)
        stamp = time.monotonic_ns()
        self.out_path = self.tmp / f"{name}-{stamp}.out"
        self.err_path = self.tmp / f"{name}-{stamp}.err"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "NS_SWEEP_CACHE_DIR": "off", **(env or {})}
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "sweep.cli", *args],
                stdout=out,
                stderr=err,
                env=full_env,
                start_new_session=True,
            )
        self.pid = self.popen.pid

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def output(self) -> str:
        return f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"

    def wait(self, timeout: float = 240) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        finally:
            self.cleanup()

    def kill(self, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to the driver process only (as the OOM killer or a scheduler would)."""
        self.popen.send_signal(sig)
        if sig == signal.SIGKILL:
            code = self.popen.wait(timeout=60)
            self.cleanup()
            return code
        return self.popen.wait(timeout=120)

    def cleanup(self) -> None:
        """End whatever the driver left running in its process group (orphaned workers)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def pause_env(tmp: Path, point: str, seconds: float = 300) -> tuple[dict[str, str], Path]:
    """The environment that makes a driver stop at ``point`` (``name`` or ``name@run_id``),
    and the flag file it writes there."""
    flag = Path(tmp) / f"paused-{point.replace('@', '-')}-{time.monotonic_ns()}"
    return {PAUSE_ENV: f"{point}:{flag}:{seconds}"}, flag


def run_and_kill_at(
    tmp: Path,
    point: str,
    *args: str,
    timeout: float = 180,
    sig: int = signal.SIGKILL,
    env: Mapping[str, str] | None = None,
) -> Driver:
    """Start `sweep ARGS` (with ``env`` added to the environment), wait until it reaches fault
    point ``point``, send ``sig`` there (SIGKILL: it dies at once; SIGINT: Ctrl-C, it stops
    and must exit 130)."""
    pause, flag = pause_env(tmp, point)
    drv = Driver(tmp, *args, env={**(env or {}), **pause}, name=f"killed-at-{point.replace('@', '-')}")
    try:
        wait_for(
            lambda: flag.exists() and flag.read_text().strip(),
            timeout=timeout,
            what=f"the driver to reach {point}",
            proc=drv,
        )
        assert int(flag.read_text()) == drv.pid  # paused in the driver itself, not a worker
        code = drv.kill(sig)
        assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 130), drv.output()
    finally:
        drv.cleanup()
    return drv


# ----------------------------------------------------------------------------- stores


def tree_digest(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file (and '<dir>' for every directory) under ``root``."""
    root = Path(root)
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_digest(store: Path | str, run_id: str) -> dict[str, str]:
    """variable -> sha256 of its bytes, and the attributes (the store's record included) of a
    stored run, whatever its layout (a group of its own or packed)."""
    from sweep.store import Store

    with Store.open(str(store)) as st:
        ds = st.open_run(run_id).load()
    out = {
        name: hashlib.sha256(np.ascontiguousarray(ds[name].values).tobytes()).hexdigest()
        for name in ds.variables
    }
    out["<attrs>"] = json.dumps(ds.attrs, sort_keys=True, default=str)
    return out


def partial_files(root: Path) -> list[str]:
    """Temporary files of interrupted writes (``*.partial``) under ``root``."""
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*.partial"))


# per-run Dataset attributes that may differ between equal results: the store's record (timings,
# attempts, hosts), the FFT thread count, which changes no bit (solver/simulate.py), and the
# timings and restart time external programs' runs record (wall_time, wall_time_<step>)
_VOLATILE_ATTRS = ("ns_sweep_run", "fft_threads", "resumed_from_time")
_VOLATILE_PREFIX = "wall_time"
# open_results variables that describe how a run went, not what it computed
_VOLATILE_VARS = ("wall_time", "attempts")


def _equal_bits(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "O":
        return a.tolist() == b.tolist()
    return a.tobytes() == b.tobytes()


def assert_results_equal(clean: Path | str, other: Path | str) -> None:
    """``other`` holds what ``clean`` holds: ``open_results`` values and every run's Dataset
    (variables, coordinates, attributes) bit for bit, provenance timings aside."""
    import sweep
    from sweep.store import Store

    a = sweep.open_results(str(clean)).sortby("run")
    b = sweep.open_results(str(other)).sortby("run")
    assert a["run"].values.tolist() == b["run"].values.tolist(), "different runs"
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        if name in _VOLATILE_VARS:
            continue
        assert _equal_bits(a[name].values, b[name].values), f"open_results: {name} differs"
    with Store.open(str(clean)) as sa, Store.open(str(other)) as sb:
        assert sa.done_run_ids() == sb.done_run_ids()
        for rid in sorted(sa.done_run_ids()):
            x, y = sa.open_run(rid).load(), sb.open_run(rid).load()
            assert set(x.variables) == set(y.variables), rid
            for name in x.variables:
                assert _equal_bits(x[name].values, y[name].values), f"run {rid}: {name} differs"
            keep = lambda attrs: {  # noqa: E731
                k: v
                for k, v in attrs.items()
                if k not in _VOLATILE_ATTRS and not k.startswith(_VOLATILE_PREFIX)
            }
            assert keep(x.attrs) == keep(y.attrs), f"run {rid}: attributes differ"


def records(store: Path | str) -> dict[str, Any]:
    """run_id -> RunRecord (read-only open)."""
    from sweep.store import Store

    with Store.open(str(store)) as st:
        return dict(st.records())


def checkpoint_steps(store: Path | str) -> dict[str, Any]:
    """run_id -> step of the checkpoint the store holds."""
    from sweep.store import Store

    with Store.open(str(store)) as st:
        return st.checkpoint_steps()


# ----------------------------------------------------------------------------- workers


def worker_pids(client: Any) -> dict[str, int]:
    """worker address -> pid of its process."""
    return client.run(os.getpid)


def started_on(log_text: str) -> list[str]:
    """Worker addresses a package log says its attempts started on, in order."""
    out = []
    for line in log_text.splitlines():
        if " started on " in line:
            out.append(line.split(" started on ", 1)[1].split()[0])
    return out


# ----------------------------------------------------------------------------- file systems


def _mount(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["mount", *args], capture_output=True, text=True)
    except FileNotFoundError:  # no mount(8) in this image: reported as a failed mount
        return subprocess.CompletedProcess(["mount", *args], 127, "", "mount: command not found")


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (needs root and CAP_SYS_ADMIN, else skip)."""
    path.mkdir(parents=True, exist_ok=True)
    res = _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    if res.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs to fill up (needs root with CAP_SYS_ADMIN): {res.stderr.strip()}"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` made read-only by a read-only bind mount over itself: unlike chmod, this stops
    root too (the tests run as root on CI). Skips where mounting is not allowed."""
    res = _mount("--bind", str(path), str(path))
    if res.returncode != 0:
        pytest.skip(
            f"cannot bind-mount to make a store read-only (needs root with "
            f"CAP_SYS_ADMIN; chmod does not stop root): {res.stderr.strip()}"
        )
    try:
        res = _mount("-o", "remount,bind,ro", str(path))
        if res.returncode != 0:
            pytest.skip(f"cannot remount read-only: {res.stderr.strip()}")
        probe = path / ".write-probe"
        try:
            probe.write_text("x")
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip("the read-only bind mount still accepts writes here")
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# ----------------------------------------------------------------------------- remote cluster


class RemoteCluster:
    """`dask scheduler` and one `dask worker` on 127.0.0.1, each a subprocess we may kill."""

    def __init__(self, tmp: Path, name: str = "remote", worker_env: Mapping[str, str] | None = None) -> None:
        self.tmp = Path(tmp) / name
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.worker_env = dict(worker_env or {})  # added to the worker's environment
        self.scheduler: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.address = ""

    def start(self) -> str:
        sfile = self.tmp / "scheduler.json"
        self.scheduler = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(sfile),
            ],
            cwd=self.tmp,
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / "scheduler.err", "w"),
            start_new_session=True,
        )
        wait_for(
            lambda: sfile.exists() and sfile.read_text().strip(),
            timeout=60,
            what="the scheduler file",
            proc=self.scheduler,
        )
        time.sleep(0.2)
        self.address = json.loads(sfile.read_text())["address"]
        home = self.tmp / "worker-home"
        home.mkdir(exist_ok=True)
        self.worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_worker",
                self.address,
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
                "--local-directory",
                str(home),
            ],
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / "worker.err", "w"),
            start_new_session=True,
            env={**os.environ, **self.worker_env},
        )
        from distributed import Client

        with Client(self.address, timeout="30s") as c:
            c.wait_for_workers(1, timeout=60)
        return self.address

    def kill_scheduler(self) -> None:
        assert self.scheduler is not None
        self.scheduler.send_signal(signal.SIGKILL)
        self.scheduler.wait(timeout=30)

    def stop(self) -> None:
        for p in (self.worker, self.scheduler):
            if p is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    p.wait(timeout=30)
