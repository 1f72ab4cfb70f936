"""The driver (`sweep run`) stopped with Ctrl-C, then SIGKILLed at named moments before,
during and after store writes, each time run again: the run continues from its checkpoint,
and the store ends equal to a clean sweep's.

One store goes through the whole sequence, as it would on a cluster that keeps killing the
driver: each rerun starts from what the previous kill left behind.
"""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path

import pytest
from conftest import TINY, tiny_sweep
from faults import (
    Driver,
    assert_results_equal,
    checkpoint_steps,
    partial_files,
    records,
    run_and_kill_at,
    run_digest,
    tree_digest,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# 300 steps of 16^3 (~0.5 s with the numba kernels), a checkpoint every 10: however late
# the driver saves one, later ones follow (step 1b needs one more), and still cheap
SLOW = {**TINY, "grid_size": [16, 16, 16], "T_final": 3.0, "initial_condition": "random"}


def _packages(n_quick: int) -> list[dict]:
    quick = tiny_sweep(n_quick, priorities=("HIGH", "LOW"), initial_condition="random")
    return [*quick, {"package_id": "slow", "priority": "MEDIUM", "parameters": SLOW}]


def _run_id(d: Path, package_id: str) -> str:
    from sweep.spec import load_packages

    return next(p.run_id for p in load_packages(d) if p.package_id == package_id)


def _done(store: Path) -> set[str]:
    return {k for k, r in records(store).items() if r.status == "done"}


# the two store layouts a run can have: packed (the default for runs without final fields:
# its log record is its marker) and a zarr group of its own (data, then marker, then record)
LAYOUTS = {"packed": {}, "groups": {"DASK_SWEEP__STORE__PACK_BYTES": "0"}}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_fault_driver_sigkill_before_during_after_store_writes(
    tmp_path: Path, packages_dir, local_client, layout: str
):
    # each kill is at the first time the named run reaches the point (runs of equal
    # priority start in any order)
    env = LAYOUTS[layout]
    grouped = layout == "groups"
    d = packages_dir(_packages(3))
    store = tmp_path / "r.zarr"
    args = (
        "run",
        str(d),
        "--store",
        str(store),
        "--mode",
        "sequential",
        "--no-progress",
        "--checkpoint-every-steps",
        "10",
    )
    slow = _run_id(d, "slow")

    # steps 1 and 1b wait for a checkpoint the driver saves while the slow run still runs: its
    # steps are slowed (3 ms each: ~1 s in all) so a loaded machine cannot finish it first
    slowed = {**env, "NS_SWEEP_TEST_STEP_SECONDS": "0.003"}

    # 1. stopped with Ctrl-C right after a checkpoint was saved: the store keeps it
    stopped = run_and_kill_at(tmp_path, f"after-checkpoint@{slow}", *args, sig=signal.SIGINT, env=slowed)
    assert "interrupted; finished runs are kept, run again to resume" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert checkpoint_steps(store)[slow] >= 10
    assert slow not in records(store)
    from sweep.engine import run_sweep

    plan = {e.package_id: e for e in run_sweep(d, store, dry_run=True, out=io.StringIO()).plan}
    assert plan["slow"].action == "run" and "resumes from its checkpoint at step" in plan["slow"].reason

    # 1b. during a checkpoint write: the new checkpoint's data written, the pointer to it not;
    # the previous checkpoint stays the one that counts, whole
    step = checkpoint_steps(store)[slow]
    run_and_kill_at(tmp_path, f"checkpoint-before-pointer@{slow}", *args, env=slowed)
    assert checkpoint_steps(store)[slow] == step
    from sweep.store import Store

    with Store.open(str(store)) as st:
        assert int(st.load_checkpoint(slow)["step"][0]) == step

    # 2. before a store write: the run finished (resumed), its result not yet committed
    run_and_kill_at(tmp_path, f"before-commit@{slow}", *args, env=env)
    assert slow not in records(store) and slow in checkpoint_steps(store)

    # 3. during a store write: the run's data written, its done marker not
    killed = run_and_kill_at(tmp_path, f"before-marker@{slow}", *args, env=env)
    # a group: its data are there without the marker; packed: nothing before its record
    assert (store / "runs" / slow / "energy" / "zarr.json").exists() is grouped
    assert slow not in records(store)  # a partial run is not a result
    assert json.loads((store / "lock.json").read_text())["pid"] == killed.pid  # stale lock
    digest = (
        (lambda rid: tree_digest(store / "runs" / rid)) if grouped else (lambda rid: run_digest(store, rid))
    )
    others = {rid: digest(rid) for rid in _done(store)}
    assert others  # HIGH runs go first

    # 4. after a store write: committed, its checkpoint not yet dropped. This rerun took the
    # dead driver's lock over and redid the partial run; the other runs are untouched
    drv = run_and_kill_at(tmp_path, f"after-commit@{slow}", *args, env=env)
    assert f"taking over the write lock left by pid {killed.pid}" in drv.stderr
    assert slow in _done(store)
    rec = records(store)[slow]
    assert rec.resumed_from_checkpoint and rec.resumed_from_step >= 10
    assert {rid: digest(rid) for rid in others} == others
    assert slow in checkpoint_steps(store)

    # 5. a package added to the sweep, killed between its done marker and its index record
    d = packages_dir(_packages(4))  # same ids and parameters, plus p003
    last = _run_id(d, "p003")
    run_and_kill_at(tmp_path, f"before-log@{last}", *args, env=env)
    assert last in _done(store)  # the marker counts; the next writer indexes it again

    # 6. the rerun finishes what is left (LOW runs may not have run yet); the orphaned
    # checkpoint is dropped
    n_done = len(_done(store))
    final = Driver(tmp_path, *args, name="final", env=env)
    assert final.wait() == 0, final.output()
    assert f"{5 - n_done} to run, {n_done} skipped as already done" in final.stdout
    assert checkpoint_steps(store) == {}
    assert partial_files(store) == []
    clean = tmp_path / "clean.zarr"
    assert run_sweep(d, clean, client=local_client, progress_bar=False, out=io.StringIO()).exit_code == 0
    assert_results_equal(clean, store)
