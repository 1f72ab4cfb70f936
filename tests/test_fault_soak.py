"""The standing chaos soak: one sweep with checkpoints driven through random worker SIGKILLs,
driver process-group SIGKILLs and SIGTERMs, with readers of the store (in this process and as
`sweep status --json` commands) all along; it must end bit-identical to a clean sweep, with no
checkpoint left over, and no reader may ever see an error, a done run disappear or a run's
data differ from the clean one.

Bounded: ``NS_SWEEP_SOAK_SECONDS`` of chaos (default 60), then a last `sweep run` finishes
what is left. ``NS_SWEEP_SOAK_SEED`` replays a sequence of actions (the seed is printed with
the counts: kills, restarts, reads, runs compared).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from conftest import TINY, tiny_sweep
from faults import Driver, assert_results_equal, checkpoint_steps, partial_files

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SOAK_SECONDS = float(os.environ.get("NS_SWEEP_SOAK_SECONDS", "60"))
SEED = int(os.environ.get("NS_SWEEP_SOAK_SEED", str(time.time_ns() % 2**31)))


def _packages() -> list[dict]:
    """Quick runs, runs of about a second and a few seconds (checkpointed, resumed), and one run
    with final fields (a zarr group of its own instead of a packed run)."""
    medium = {**TINY, "grid": [16, 16, 16], "T_final": 10.0, "initial_condition": "random"}
    long = {**TINY, "grid": [16, 16, 16], "T_final": 40.0, "initial_condition": "random"}
    pkgs = tiny_sweep(16, initial_condition="random")
    pkgs += [
        {"package_id": f"m{i}", "priority": "MEDIUM", "parameters": {**medium, "Re": 200.0 + i}}
        for i in range(5)
    ]
    pkgs += [
        {"package_id": f"l{i}", "priority": "LOW", "parameters": {**long, "Re": 300.0 + i}} for i in range(3)
    ]
    pkgs.append({"package_id": "fields", "priority": "HIGH", "parameters": {**TINY, "keep_fields": True}})
    return pkgs


def _workers(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children() if "spawn_main" in " ".join(p.cmdline())]
    except psutil.Error:
        return []


def _energy(store_reader, run_id: str) -> str:
    return hashlib.sha256(store_reader.open_run(run_id)["energy"].values.tobytes()).hexdigest()


class _Readers:
    """Readers of the store while the chaos goes on: one thread opening it (done runs never
    disappear; a done run's energy is the clean sweep's, bit for bit), one running
    `sweep status --json` now and then."""

    def __init__(self, store: Path, reference: dict[str, str], counts: Counter, rng: random.Random) -> None:
        self.store, self.reference, self.counts, self.rng = store, reference, counts, rng
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._open, self._status)]

    def __enter__(self) -> _Readers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def _open(self) -> None:
        from sweep.errors import StoreError
        from sweep.store import Store

        seen: set[str] = set()
        while not self.stop.is_set():
            try:
                with Store.open(str(self.store)) as st:
                    done = st.done_run_ids()
                    if not seen <= done:
                        self.errors.append(f"done runs disappeared: {sorted(seen - done)}")
                    seen = done
                    if done:
                        rid = self.rng.choice(sorted(done))
                        if _energy(st, rid) != self.reference[rid]:
                            self.errors.append(f"run {rid}: energy differs from the clean sweep's")
                self.counts["store reads"] += 1
            except StoreError as exc:
                if "no result store here" not in str(exc):
                    self.errors.append(f"StoreError: {exc}")
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.stop.wait(0.05)

    def _status(self) -> None:
        while not self.stop.wait(2.0):
            proc = subprocess.run(
                [sys.executable, "-m", "sweep.cli", "status", "--store", str(self.store), "--json"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if proc.returncode == 0:
                json.loads(proc.stdout)
                self.counts["status commands"] += 1
            elif "no result store here" not in proc.stderr:
                self.errors.append(f"sweep status: exit {proc.returncode}: {proc.stderr.strip()}")


def test_fault_soak_chaos_ends_bit_identical_to_a_clean_sweep(
    tmp_path: Path, packages_dir, local_client, capsys
):
    from sweep.engine import run_sweep
    from sweep.store import Store

    rng = random.Random(SEED)
    d = packages_dir(_packages())
    clean = tmp_path / "clean.zarr"
    assert run_sweep(d, clean, client=local_client, progress_bar=False, out=io.StringIO()).exit_code == 0
    with Store.open(str(clean)) as st:
        reference = {rid: _energy(st, rid) for rid in st.done_run_ids()}

    store = tmp_path / "soak.zarr"
    args = (
        "run",
        str(d),
        "--store",
        str(store),
        "--mode",
        "parallel",
        "--max-parallel",
        "2",
        "--no-progress",
    )
    args += ("--checkpoint-every-steps", "50", "--log-dir", str(tmp_path / "logs"))
    counts: Counter = Counter()
    exits: Counter = Counter()

    def start() -> Driver:
        counts["driver starts"] += 1
        return Driver(tmp_path, *args, name=f"soak-{counts['driver starts']}")

    def ended(drv: Driver, code: int) -> None:
        exits[code] += 1
        err = drv.stderr
        if code == -signal.SIGTERM:  # only once it was exiting anyway (its verdict printed)
            assert "exit code" in drv.stdout or "sweep run: error:" in err, f"seed {SEED}\n{drv.output()}"
            return
        assert code in (0, 1, 143, -signal.SIGKILL), f"seed {SEED}, exit {code}\n{drv.output()}"
        assert "Traceback" not in err and "lost the connection" not in err, (
            f"seed {SEED}, exit {code}\n{drv.output()}"
        )

    with _Readers(store, reference, counts, random.Random(SEED + 1)) as readers:
        drv = start()
        try:
            deadline = time.monotonic() + SOAK_SECONDS
            while time.monotonic() < deadline:
                time.sleep(rng.uniform(0.3, 2.5))
                code = drv.popen.poll()
                if code is not None:  # it ended by itself: finished (0) or runs lost past their retries (1)
                    ended(drv, code)
                    if code == 0:
                        break
                    drv = start()
                    continue
                action = rng.choices(("worker", "driver SIGKILL", "driver SIGTERM"), weights=(5, 2, 2))[0]
                if action == "worker":
                    workers = _workers(drv.pid)
                    if workers:
                        with contextlib.suppress(psutil.Error):
                            rng.choice(workers).kill()
                            counts["worker SIGKILLs"] += 1
                    continue
                sig = signal.SIGKILL if action == "driver SIGKILL" else signal.SIGTERM
                if sig == signal.SIGTERM and not drv.stdout:
                    continue  # still starting Python: a SIGTERM would end it before `sweep` runs
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(drv.pid, sig)  # the driver with its workers, as an OOM killer or a batch system
                counts[f"driver process-group {sig.name}s"] += 1
                ended(drv, drv.popen.wait(timeout=120))
                drv.cleanup()
                drv = start()
            if drv.popen.poll() is None:  # the chaos is over: this driver finishes what is left
                ended(drv, drv.popen.wait(timeout=600))
        finally:
            drv.cleanup()
        if exits[0] == 0 or drv.popen.returncode != 0:
            drv = start()
            code = drv.wait(timeout=600)
            ended(drv, code)
            assert code == 0, drv.output()
    assert not readers.errors, readers.errors[:5]

    assert_results_equal(clean, store)
    assert checkpoint_steps(store) == {}
    assert partial_files(store) == []
    assert (store / "lock.json").read_bytes() == b""
    counts["runs compared bit for bit"] = len(reference)
    with capsys.disabled():
        figures = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(f"\nsoak (seed {SEED}, {SOAK_SECONDS:g} s of chaos): {figures}; driver exits {dict(exits)}")
