"""Hostile package directories: files that are not regular files, links out of the directory,
JSON nested without end, numbers without end, duplicate keys, text that is not UTF-8. Each is
one problem line naming the file (``sweep validate``: exit 2, no traceback, no hang), and
nothing that is not a regular file is ever opened."""

from __future__ import annotations

import codecs
import json
import os
import re
import threading
from pathlib import Path

import pytest
from conftest import TINY, run_cli, write_packages

from sweep.spec import check_directory, load_packages
from sweep.spec.files import MAX_DEPTH

WORKER = 4 << 30


def _doc(**changes: object) -> dict:
    return {"package_id": "p0", "priority": "HIGH", "parameters": dict(TINY), **changes}


def _dir(tmp_path: Path, raw: bytes | None = None, *, summary: bytes | None = None) -> Path:
    """A package directory of one package p0, its file written as ``raw`` bytes when given."""
    d = write_packages(tmp_path / "pk", [_doc()])
    if raw is not None:
        (d / "package_0000.json").write_bytes(raw)
    if summary is not None:
        (d / "priority_summary.json").write_bytes(summary)
    return d


def _problems(d: Path) -> list[str]:
    """check_directory's problems, in a thread that must finish (no FIFO may hang it)."""
    out: list = []

    def check() -> None:
        try:
            out.append(check_directory(d, worker_memory=WORKER))
        except BaseException as exc:  # reported below, not lost in the thread
            out.append(exc)

    t = threading.Thread(target=check, daemon=True)
    t.start()
    t.join(30)
    assert out, "check_directory hangs"
    assert not isinstance(out[0], BaseException), repr(out[0])
    return out[0][1]


def _nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def _digits(n: int) -> str:
    return "1" + "0" * (n - 1)


def _package_text(**raw_values: str) -> bytes:
    """A package file whose parameters/tags hold raw JSON text (numbers beyond any float...)."""
    params = {**TINY}
    parts = [f'"{k}": {json.dumps(v)}' for k, v in params.items() if k not in raw_values]
    parts += [f'"{k}": {v}' for k, v in raw_values.items() if k != "tags"]
    tags = raw_values.get("tags", "{}")
    return (
        '{"package_id": "p0", "priority": "HIGH", "parameters": {' + ", ".join(parts) + "}, "
        '"tags": ' + tags + "}"
    ).encode()


# (package file bytes, regex of its one problem line)
BAD_PACKAGES = {
    "parameters nested 5,000 deep": (
        _package_text(Re=_nested(5000)),
        rf"package_0000\.json: \(nesting\): bad value: nested deeper than {MAX_DEPTH} levels; allowed: ",
    ),
    "tags nested 100,000 deep": (
        _package_text(tags='{"a": ' + _nested(100_000) + "}"),
        r"package_0000\.json: \(nesting\): bad value: nested deeper than",
    ),
    "tags nested 40 deep (parses, still refused)": (
        _package_text(tags='{"a": ' + _nested(40) + "}"),
        r"package_0000\.json: \(nesting\): bad value: nested deeper than",
    ),
    "Re of 400 digits": (
        _package_text(Re=_digits(400)),
        r"package_0000\.json: parameters\.Re: bad value 1000000.*; allowed: a finite number > 0 and <= ",
    ),
    "grid of 400 digits": (
        _package_text(grid=f"[{_digits(400)}, 8, 8]"),
        r"package_0000\.json: parameters\.grid: bad value \[1000.*; allowed: three even integers",
    ),
    "random_seed 10^400": (
        _package_text(random_seed=_digits(401)),
        r"package_0000\.json: parameters\.random_seed: bad value 1000.*; allowed: an integer >= 0 and <= ",
    ),
    "dt of 400 digits, negative": (
        _package_text(dt="-" + _digits(400)),
        r"package_0000\.json: parameters\.dt: bad value -1000.*; allowed: a finite number > 0",
    ),
    "5,000-digit integer in tags": (
        _package_text(tags='{"n": ' + _digits(5000) + "}"),
        r"package_0000\.json: line 1 column \d+: bad value: an integer of more than 4300 digits; allowed: ",
    ),
    "duplicate package_id": (
        b'{"package_id": "p0", "priority": "HIGH", "package_id": "p9", "parameters": {}}',
        r'package_0000\.json: package_id: bad value: the key "package_id" twice in one object; allowed: ',
    ),
    "duplicate Re": (
        b'{"package_id": "p0", "priority": "HIGH", "parameters": {"Re": 100, "Re": 400}}',
        r'package_0000\.json: parameters\.Re: bad value: the key "Re" twice in one object; allowed: ',
    ),
    "UTF-16 with BOM": (
        json.dumps(_doc()).encode("utf-16"),
        r"package_0000\.json: \(encoding\): bad value: UTF-16 text; allowed: UTF-8",
    ),
    "UTF-16 without BOM": (
        json.dumps(_doc()).encode("utf-16-le"),
        r"package_0000\.json: \(encoding\): bad value: UTF-16 text; allowed: UTF-8",
    ),
    "UTF-32": (
        json.dumps(_doc()).encode("utf-32"),
        r"package_0000\.json: \(encoding\): bad value: UTF-32 text; allowed: UTF-8",
    ),
    "lone surrogate escape in tags": (
        json.dumps(_doc(tags={"note": "x"})).replace('"x"', '"a\\ud800b"').encode(),
        r"package_0000\.json: tags\.note: bad value: a lone surrogate \(\\ud800\); allowed: Unicode text",
    ),
    "lone surrogate bytes": (
        json.dumps(_doc(tags={"note": "x"})).replace('"x"', '"a').encode() + b'\xed\xa0\x80b"}',
        r"package_0000\.json: byte \d+: invalid JSON: not UTF-8 text; allowed: a UTF-8 JSON file",
    ),
}


@pytest.mark.parametrize("case", list(BAD_PACKAGES))
def test_spec_hostile_package_file_is_one_problem_line(tmp_path: Path, case: str) -> None:
    raw, pattern = BAD_PACKAGES[case]
    problems = _problems(_dir(tmp_path, raw))
    hits = [p for p in problems if re.match(pattern, p)]
    assert len(hits) == 1 and all("\n" not in p and len(p) < 600 for p in problems), problems


@pytest.mark.parametrize(
    "case, summary, pattern",
    [
        ("nested 5,000 deep", '{"HIGH": ' + _nested(5000, '"p0"') + "}", r"\(nesting\): bad value: nested"),
        ("5,000-digit integer", '{"HIGH": ["p0"], "LOW": [' + _digits(5000) + "]}", r"more than 4300 digits"),
        ("duplicate priority key", '{"HIGH": ["p0"], "HIGH": []}', r'HIGH: bad value: the key "HIGH" twice'),
    ],
)
def test_spec_hostile_summary_is_one_problem_line(
    tmp_path: Path, case: str, summary: str, pattern: str
) -> None:
    problems = _problems(_dir(tmp_path, summary=summary.encode()))
    assert any(p.startswith("priority_summary.json: ") and re.search(pattern, p) for p in problems), problems


@pytest.mark.parametrize(
    "case, raw",
    [
        ("UTF-8 BOM", codecs.BOM_UTF8 + json.dumps(_doc()).encode()),
        ("CRLF line ends", json.dumps(_doc(), indent=1).replace("\n", "\r\n").encode()),
        ("non-ASCII text in tags", json.dumps(_doc(tags={"who": "Ægir, 渦"}), ensure_ascii=False).encode()),
        ("a surrogate pair escape", json.dumps(_doc(tags={"emoji": "\U0001f30a"})).encode()),
    ],
)
def test_spec_utf8_bom_and_crlf_are_accepted(tmp_path: Path, case: str, raw: bytes) -> None:
    d = _dir(tmp_path, raw)
    assert _problems(d) == []
    (pkg,) = load_packages(d, worker_memory=WORKER)
    assert pkg.package_id == "p0" and pkg.params.Re == TINY["Re"]


def test_spec_cli_validate_hostile_files_at_once_exit_2(tmp_path: Path) -> None:
    d = tmp_path / "pk"
    d.mkdir()
    names = []
    for i, (raw, _) in enumerate(BAD_PACKAGES.values()):
        names.append(f"package_{i:04d}.json")
        (d / names[-1]).write_bytes(raw)
    (d / "priority_summary.json").write_text('{"HIGH": ["p0"]}')
    proc = run_cli("validate", str(d), "--worker-memory", "4GiB", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    for (_, pattern), name in zip(BAD_PACKAGES.values(), names, strict=True):
        pattern = pattern.replace(r"package_0000\.json", re.escape(name))
        assert any(re.match(pattern, ln) for ln in lines), (name, pattern, lines)


# ------------------------------------------------------------------ not regular files (item 4)


def _special(d: Path, kind: str, outside: Path) -> str:
    """Make package_0001.json something else than a regular file of the directory."""
    path = d / "package_0001.json"
    if kind == "symlink outside":
        outside.write_text(json.dumps(_doc(package_id="p1")))
        path.symlink_to(outside)
    elif kind == "symlink to a device":
        path.symlink_to("/dev/zero")
    elif kind == "FIFO":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        try:
            os.mknod(path, 0o600 | __import__("stat").S_IFCHR, os.makedev(1, 5))  # like /dev/zero
        except PermissionError:
            pytest.skip("cannot make a device node here")
    return "package_0001.json"


@pytest.mark.parametrize("kind", ["symlink outside", "symlink to a device", "FIFO", "directory", "device"])
def test_spec_package_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    d = write_packages(tmp_path / "pk", [_doc()])
    name = _special(d, kind, tmp_path / "elsewhere.json")
    problems = _problems(d)
    line = next((p for p in problems if p.startswith(f"{name}: (file): bad value: ")), None)
    assert line is not None, problems
    assert "allowed: a regular file in the package directory" in line, line


def test_spec_symlink_inside_the_directory_is_read(tmp_path: Path) -> None:
    d = write_packages(tmp_path / "pk", [_doc(), _doc(package_id="p1")])
    (d / "sources").mkdir()
    (d / "package_0001.json").rename(d / "sources" / "p1.json")
    (d / "package_0001.json").symlink_to(Path("sources") / "p1.json")
    assert _problems(d) == []


@pytest.mark.parametrize("command", ["validate", "explain", "run"])
def test_spec_fifo_summary_does_not_hang_the_cli(tmp_path: Path, command: str) -> None:
    d = write_packages(tmp_path / "pk", [_doc()])
    (d / "priority_summary.json").unlink()
    os.mkfifo(d / "priority_summary.json")
    args = [command, str(d)] + ([] if command == "validate" else ["--store", str(tmp_path / "r.zarr")])
    proc = run_cli(*args, timeout=60)
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert "priority_summary.json: (file): bad value: a FIFO" in proc.stderr
    assert not (tmp_path / "r.zarr").exists()


def test_spec_declared_solver_numbers_are_bounded_too(tmp_path: Path) -> None:
    # a template's declared parameters (here the command example's Re: float, n: int)
    case = Path(__file__).resolve().parent.parent / "examples" / "command"
    d = tmp_path / "pk"
    d.mkdir()
    big = _digits(400)
    head = json.dumps({"package_id": "p0", "priority": "HIGH", "solver": "command", "case": str(case)})
    text = head[:-1] + f', "parameters": {{"Re": {big}, "n": {big}}}}}'
    (d / "package_0000.json").write_text(text)
    (d / "priority_summary.json").write_text('{"HIGH": ["p0"]}')
    problems = _problems(d)
    assert any(p.startswith("package_0000.json: parameters.Re: bad value 1000") for p in problems), problems
    assert any(p.startswith("package_0000.json: parameters.n: bad value 1000") for p in problems), problems
    assert all("\n" not in p and len(p) < 600 for p in problems), problems
