"""The package table's compact columns (issue 17): of a ``package_<n>.json`` file name a row
keeps ``<n>``, its offsets take 4 bytes, every package is found by its id through the hashes
of the ids, and what a row gives back (its file's path, a repeated id's problem line) is what
the directory holds."""

from __future__ import annotations

from array import array
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_sweep, write_packages

from sweep.spec import check_directory, load_packages
from sweep.spec.table import PackageColumns, _offsets

IDS = ["alpha", "beta", "gamma", "delta", "eps", "zeta"]


def _dir(tmp_path: Path) -> Path:
    """Six packages in package_0000.json .. package_0005.json, package_0003.json renamed
    package_x-y_.json."""
    d = write_packages(tmp_path / "pk", [{"package_id": p, "priority": "HIGH"} for p in IDS])
    (d / "package_0003.json").rename(d / "package_x-y_.json")
    return d


def test_spec_table_keeps_the_middle_of_each_file_name(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    table = load_packages(d, worker_memory=4 << 30)
    on_disk = {p.name for p in d.glob("package_*.json")}
    paths = [Path(str(p.path)) for p in table]
    assert {p.name for p in paths} == on_disk
    assert all(p.parent == d and p.exists() for p in paths)
    assert bytes(table._cols.names) == b"00000001000200040005x-y_"  # the middles only, in file order
    assert table._cols.name_end.dtype == np.uint32 and table._cols.id_end.dtype == np.uint32


def test_spec_table_other_names_are_kept_whole() -> None:
    cols = PackageColumns("/d/")
    for name in ["package_.json", "other.json", "package_7.json"]:
        cols.append(name, "HIGH", name, "{}", "0123456789abcdef", None)
    assert [cols.name(r) for r in range(3)] == ["package_.json", "other.json", "package_7.json"]
    assert [p.path for p in cols.table()] == ["/d/package_.json", "/d/other.json", "/d/package_7.json"]


def test_spec_table_offsets_past_4_gib_keep_8_bytes() -> None:
    assert _offsets(array("q", [3, 2**32 - 1])).dtype == np.uint32
    wide = _offsets(array("q", [3, 2**32]))
    assert wide.dtype == np.int64 and int(wide[-1]) == 2**32


def test_spec_table_finds_each_id_by_its_hash(tmp_path: Path) -> None:
    table = load_packages(_dir(tmp_path), worker_memory=4 << 30)
    assert sorted(p.package_id for p in table) == sorted(IDS)
    for i, p in enumerate(table):
        assert table.position_of(p.package_id) == i
    assert table.position_of("absent") is None
    assert table.position_of("alph") is None
    assert table._index is not None and table._index[0].dtype == np.int64  # hashes, not the ids


def test_spec_table_repeated_id_names_both_files(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    (d / "package_0099.json").write_text((d / "package_0000.json").read_text())
    _, problems = check_directory(d, worker_memory=4 << 30)
    line = next(p for p in problems if "package_0099.json" in p)
    assert "package_0000.json" in line  # the first file's name, rebuilt from its middle


def test_spec_run_keys_of_many_ids_is_run_key_of_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """The vectorised parse of run ids (what run_id_mask compares) agrees with run_key, one id
    at a time: 16 hex digits in either case give their integer, any other id is left out."""
    from sweep.spec import run_ids
    from sweep.spec.table import run_key, run_keys_of

    rng = np.random.default_rng(5)
    ids = [f"{int(k):016x}" for k in rng.integers(0, 2**63, 500, dtype=np.int64)]
    ids += ["ffffffffffffffff", "0000000000000000", "ABCDEF0123456789", "0123456789abcdeF"]
    odd = ["", "abc", "g" * 16, "0123456789abcde ", "+123456789abcdef", "0123_56789abcdef", "é" * 16]
    odd += ["0" * 15 + "\u0100", "0" * 17]
    mixed = [x for pair in zip(ids, odd * 100, strict=False) for x in pair]
    expected = [k for k in map(run_key, mixed) if k is not None]
    assert len(expected) == len(ids)
    assert run_keys_of(mixed).tolist() == expected
    assert run_keys_of(odd).dtype == np.uint64 and len(run_keys_of(odd)) == 0
    # parsed in blocks (bounded memory at a million ids): a block of odd ids alone is no end
    monkeypatch.setattr(run_ids, "_KEYS_BLOCK", 7)
    assert run_keys_of(iter(odd * 3 + mixed)).tolist() == expected


def test_spec_run_id_set_keeps_keys_and_is_the_set_of_its_ids(tmp_path: Path) -> None:
    """A store's done runs as run keys (8 bytes a run): the set of the ids given, exactly
    (an id of another form kept as it is), and what run_id_mask compares."""
    from sweep.spec.run_ids import RunIdSet

    hexes = [f"{k:016x}" for k in (0, 1, 2**63 + 5, 2**64 - 1)]
    others = ["ABCDEF0123456789", "short", "0123456789abcdef0", "0123456789abcdeg"]
    given = np.array([r.encode() for r in hexes + others + hexes[:2]], dtype=bytes)  # repeats
    ids = RunIdSet(given)
    assert set(ids) == set(hexes + others) and len(ids) == 8
    assert ids.keys.dtype == np.uint64 and len(ids.keys) == 4 and ids.others == frozenset(others)
    assert all(r in ids for r in hexes + others)
    assert "abcdef0123456789" not in ids and "0" * 15 + "2" not in ids and 5 not in ids
    assert len(RunIdSet(np.array([], dtype=bytes))) == 0
    # planning compares it with a directory's packages as it would the set of strings
    d = write_packages(tmp_path / "pk", tiny_sweep(5, priorities=("HIGH",)))
    table = load_packages(d, worker_memory=4 << 30)
    done = [table.run_id(1), table.run_id(3)]
    mask = table.run_id_mask(RunIdSet(np.array([r.encode() for r in done + others], dtype=bytes)))
    assert mask.tolist() == table.run_id_mask(set(done)).tolist() == [False, True, False, True, False]
