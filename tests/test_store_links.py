"""A store's writer creates, truncates and deletes only inside the store's own tree.

Symbolic links, non-directories where a directory belongs, hard-linked and special files
planted in a store (before it is opened, or while its writer holds it) are refused with one
line naming them, and whatever they point at outside the store is left exactly as it was.
Every place that deletes or truncates in the store has its case here (the writer's lock,
batch groups, the log, index generations, checkpoints, run groups, in-place writes).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dask.config
import numpy as np
import pytest
from faults import tree_digest
from store_data import provenance, result_like

from sweep.errors import StoreError
from sweep.spec import run_id_of
from sweep.store import Store

P = [{"Re": 100.0 + i, "dt": 0.01, "T_final": 0.05, "grid": [8, 8, 8]} for i in range(4)]


def _victim(tmp_path: Path) -> Path:
    """Somebody's files outside the store: plain files, JSON and log-like files, directories."""
    v = tmp_path / "victim"
    (v / "project" / "src").mkdir(parents=True)
    (v / "notes.txt").write_text("precious notes\n")
    (v / "data.json").write_text('{"keep": true}\n')
    (v / "000000000001-cafe.jsonl").write_text('{"record": {"seq": 1, "run_id": "x"}}\n')
    (v / "project" / "src" / "main.py").write_text("print('hello')\n")
    (v / "project" / "zarr.json").write_text("{}\n")
    return v


def _state(victim: Path) -> dict[str, str]:
    """What the victim holds, with each file's link count (a hard link dropped shows)."""
    out = tree_digest(victim)
    for p in victim.rglob("*"):
        if p.is_file():
            out[str(p.relative_to(victim)) + "#links"] = str(p.stat().st_nlink)
    return out


def _store(tmp_path: Path, *, pack_bytes: int = 32768, n: int = 2, compact: bool = True) -> Path:
    """A store with ``n`` done runs, one failed run, a checkpoint, an index generation."""
    url = tmp_path / "r.zarr"
    with Store.open(url, mode="a", pack_bytes=pack_bytes) as st:
        for p in P[:n]:
            st.commit_run(run_id_of(p), result_like(p), provenance(p))
        st.record_failure(run_id_of(P[n]), "error", "boom", provenance(P[n]))
        st.save_checkpoint(run_id_of(P[n + 1]), {"x": np.arange(3.0)}, step=3)
        if compact:
            st.compact()
    return url


def _link_dir(store: Path, rel: str, victim: Path) -> None:
    """Replace the store's directory ``rel`` by a link to a copy of it at ``victim`` (so that a
    writer following the link finds exactly the names it would delete)."""
    shutil.copytree(store / rel, victim)
    shutil.rmtree(store / rel)
    (store / rel).symlink_to(victim, target_is_directory=True)


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text, text
    return text


# ------------------------------------------------------------------ refused when the writer opens


def _lock_symlink(store: Path, victim: Path) -> str:
    (store / "lock.json").unlink(missing_ok=True)
    (store / "lock.json").symlink_to(victim / "notes.txt")
    return "lock.json"


def _lock_hardlink(store: Path, victim: Path) -> str:
    (store / "lock.json").unlink(missing_ok=True)
    os.link(victim / "notes.txt", store / "lock.json")
    return "lock.json"


def _lock_fifo(store: Path, victim: Path) -> str:
    (store / "lock.json").unlink(missing_ok=True)
    os.mkfifo(store / "lock.json")
    return "lock.json"


def _dir_link(rel: str) -> Callable[[Path, Path], str]:
    def plant(store: Path, victim: Path) -> str:
        _link_dir(store, rel, victim / "project" / rel.replace("/", "_"))
        return rel

    return plant


def _log_is_a_file(store: Path, victim: Path) -> str:
    shutil.rmtree(store / "log", ignore_errors=True)
    (store / "log").write_text("not a directory")
    return "log"


def _orphan_batch_link(store: Path, victim: Path) -> str:
    # a batch group that no index points at: the writer's repair removes such groups
    (store / "batches" / "b000000000099-abcdef-0").symlink_to(victim / "project", target_is_directory=True)
    return "batches/b000000000099-abcdef-0"


def _log_file_link(store: Path, victim: Path) -> str:
    (store / "log").mkdir(exist_ok=True)
    (store / "log" / "000000000001-cafe.jsonl").symlink_to(victim / "000000000001-cafe.jsonl")
    return "log/000000000001-cafe.jsonl"


def _log_file_hardlink(store: Path, victim: Path) -> str:
    (store / "log").mkdir(exist_ok=True)
    os.link(victim / "000000000001-cafe.jsonl", store / "log" / "000000000001-cafe.jsonl")
    return "log/000000000001-cafe.jsonl"


def _root_doc_link(store: Path, victim: Path) -> str:
    shutil.copy(store / "zarr.json", victim / "root.json")
    (store / "zarr.json").unlink()
    (store / "zarr.json").symlink_to(victim / "root.json")
    return "zarr.json"


AT_OPEN = {
    "lock.json symlink": _lock_symlink,
    "lock.json hard link": _lock_hardlink,
    "lock.json FIFO": _lock_fifo,
    "batches/ symlink": _dir_link("batches"),
    "log/ symlink": _dir_link("log"),
    "index/ symlink": _dir_link("index"),
    "checkpoints/ symlink": _dir_link("checkpoints"),
    "runs/ symlink": _dir_link("runs"),
    "log is a file": _log_is_a_file,
    "orphan batch symlink": _orphan_batch_link,
    "log file symlink": _log_file_link,
    "log file hard link": _log_file_hardlink,
    "root document symlink": _root_doc_link,
}


@pytest.mark.parametrize("case", list(AT_OPEN))
def test_store_writer_refuses_links_at_open_and_touches_nothing_outside(tmp_path: Path, case: str) -> None:
    victim = _victim(tmp_path)
    store = _store(tmp_path, compact=False)  # the log holds records: the writer would compact
    rel = AT_OPEN[case](store, victim)
    before = _state(victim)
    with pytest.raises(StoreError) as err:
        Store.open(store, mode="a").close()
    line = _one_line(err.value)
    assert f"store {store}: {rel} is " in line and "allowed: " in line, line
    assert _state(victim) == before


def test_store_reader_of_fifo_document_does_not_hang(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (store / "index" / "zarr.json").unlink()
    os.mkfifo(store / "index" / "zarr.json")
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            with Store.open(store) as st:
                st.done_run_ids()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(30)
    assert outcome, "reading a store whose index pointer is a FIFO hangs"
    assert isinstance(outcome[0], StoreError) and "index/zarr.json is a FIFO" in str(outcome[0])


# ------------------------------------------------------------------ planted while the writer holds the store


def _writer(store: Path, pack_bytes: int = 32768) -> Store:
    return Store.open(store, mode="a", pack_bytes=pack_bytes)


def _compaction_with_log_link(store: Path, victim: Path) -> tuple[str, Callable[[], object]]:
    st = _writer(store)
    st.commit_run(run_id_of(P[2]), result_like(P[2]), provenance(P[2]))  # a record in this session's log
    _link_dir(store, "log", victim / "project" / "log")
    return "log", lambda: st.compact()


def _compaction_with_old_segment_link(store: Path, victim: Path) -> tuple[str, Callable[[], object]]:
    with dask.config.set({"sweep.store.merge-fan-in": 2}):  # the flush's segment and the old one merge
        st = _writer(store)
    (entry,) = json.loads((store / "index" / "zarr.json").read_text())["attributes"]["segments"]
    st.commit_run(run_id_of(P[2]), result_like(P[2]), provenance(P[2]))
    _link_dir(store, f"index/{entry['name']}", victim / "project" / "segment")
    return f"index/{entry['name']}", lambda: st.compact()


def _compaction_with_batches_link(store: Path, victim: Path) -> tuple[str, Callable[[], object]]:
    st = _writer(store)
    st.commit_run(run_id_of(P[2]), result_like(P[2]), provenance(P[2]))  # packed: written as a batch
    _link_dir(store, "batches", victim / "project" / "batches")
    return "batches", lambda: st.compact()


def _drop_checkpoint_link(store: Path, victim: Path) -> tuple[str, Callable[[], object]]:
    st = _writer(store)
    rid = run_id_of(P[3])
    _link_dir(store, f"checkpoints/{rid}", victim / "project" / "ckpt")
    return f"checkpoints/{rid}", lambda: st.drop_checkpoint(rid)


def _new_checkpoint_old_generation_link(store: Path, victim: Path) -> tuple[str, Callable[[], object]]:
    st = _writer(store)
    rid = run_id_of(P[3])
    gen = json.loads((store / "checkpoints" / rid / "zarr.json").read_text())["attributes"]["current"]
    _link_dir(store, f"checkpoints/{rid}/{gen}", victim / "project" / "ckptgen")
    time.sleep(0.002)  # a new generation name (milliseconds)
    return f"checkpoints/{rid}/{gen}", lambda: st.save_checkpoint(rid, {"x": np.arange(4.0)}, step=4)


def _checkpoints_dir_link(store: Path, victim: Path) -> tuple[str, Callable[[], object]]:
    st = _writer(store)
    _link_dir(store, "checkpoints", victim / "project" / "ckpts")
    rid = run_id_of(P[0])
    return "checkpoints", lambda: st.save_checkpoint(rid, {"x": np.arange(4.0)}, step=4)


def _redo_failed_run_link(store: Path, victim: Path) -> tuple[str, Callable[[], object]]:
    st = _writer(store, pack_bytes=0)
    rid = run_id_of(P[2])  # failed: a new commit replaces its group
    _link_dir(store, f"runs/{rid}", victim / "project" / "run")
    return f"runs/{rid}", lambda: st.commit_run(rid, result_like(P[2]), provenance(P[2]))


def _redo_failed_packed_run_link(store: Path, victim: Path) -> tuple[str, Callable[[], object]]:
    st = _writer(store)
    rid = run_id_of(P[2])  # failed; its packed commit removes the failure's marker group
    _link_dir(store, f"runs/{rid}", victim / "project" / "run")
    return f"runs/{rid}", lambda: st.commit_run(rid, result_like(P[2]), provenance(P[2]))


def _fail_again_link(store: Path, victim: Path) -> tuple[str, Callable[[], object]]:
    st = _writer(store)
    rid = run_id_of(P[2])  # failed: a new failure replaces its marker
    _link_dir(store, f"runs/{rid}", victim / "project" / "run")
    return f"runs/{rid}", lambda: st.record_failure(rid, "error", "again", provenance(P[2]))


def _partial_group_with_link(store: Path, victim: Path) -> tuple[str, Callable[[], object]]:
    st = _writer(store, pack_bytes=0)
    rid = run_id_of(P[3])  # never committed: a crash left data without a marker, and a link
    (store / "runs" / rid).mkdir()
    (store / "runs" / rid / "energy").symlink_to(victim / "project", target_is_directory=True)
    return f"runs/{rid}/energy", lambda: st.commit_run(rid, result_like(P[3]), provenance(P[3]))


def _runs_dir_is_a_file(store: Path, victim: Path) -> tuple[str, Callable[[], object]]:
    st = _writer(store, pack_bytes=0)
    shutil.copytree(store / "runs", victim / "project" / "runs")
    shutil.rmtree(store / "runs")
    (store / "runs").write_text("not a directory")
    rid = run_id_of(P[3])
    return "runs", lambda: st.commit_run(rid, result_like(P[3]), provenance(P[3]))


WHILE_OPEN = {
    "compaction, log/ symlink": _compaction_with_log_link,
    "compaction, merged index segment symlink": _compaction_with_old_segment_link,
    "compaction, batches/ symlink": _compaction_with_batches_link,
    "drop checkpoint, checkpoints/<run> symlink": _drop_checkpoint_link,
    "save checkpoint, old generation symlink": _new_checkpoint_old_generation_link,
    "save checkpoint, checkpoints/ symlink": _checkpoints_dir_link,
    "redo failed run, runs/<run> symlink": _redo_failed_run_link,
    "redo failed packed run, runs/<run> symlink": _redo_failed_packed_run_link,
    "failure again, runs/<run> symlink": _fail_again_link,
    "partial group holding a symlink": _partial_group_with_link,
    "runs is a file": _runs_dir_is_a_file,
}


@pytest.mark.parametrize("case", list(WHILE_OPEN))
def test_store_writer_refuses_links_planted_while_open(tmp_path: Path, case: str) -> None:
    victim = _victim(tmp_path)
    store = _store(tmp_path, pack_bytes=0 if "group" in case or "redo failed run" in case else 32768)
    rel, operation = WHILE_OPEN[case](store, victim)
    before = _state(victim)
    try:
        with pytest.raises(StoreError) as err:
            operation()
    finally:
        assert _state(victim) == before
    line = _one_line(err.value)
    assert f"{rel} is " in line, line


def test_store_writer_with_linked_root_is_fine(tmp_path: Path) -> None:
    # the store's own path may be a link (the user chose it): only links inside are refused
    real = tmp_path / "scratch" / "r.zarr"
    real.parent.mkdir()
    (tmp_path / "r.zarr").symlink_to(real, target_is_directory=True)
    with Store.open(tmp_path / "r.zarr", mode="a") as st:
        st.commit_run(run_id_of(P[0]), result_like(P[0]), provenance(P[0]))
    with Store.open(real) as st:
        assert st.done_run_ids() == {run_id_of(P[0])}
