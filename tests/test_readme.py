"""Every Python snippet of the README runs as shown, and so does its quickstart (issue 16, bug 3).

The snippets run in order, each as a script of its own (``python snippet.py``: the way a user
copies one into a file), in one directory holding a copy of the example ``packages/``; a later
snippet reads what an earlier one wrote (the store). The quickstart's shell block runs line by
line with the installed ``sweep`` command first on the PATH.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _blocks(language: str, text: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end > 0 else len(text)]


@pytest.mark.slow
def test_readme_python_snippets_run_as_shown(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    snippets = _blocks("python", text)
    assert len(snippets) >= 3 and any('if __name__ == "__main__":' in s for s in snippets)
    shutil.copytree(ROOT / "packages", tmp_path / "packages")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    for i, code in enumerate(snippets):
        script = tmp_path / f"snippet_{i}.py"
        script.write_text(code, encoding="utf-8")
        r = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert r.returncode == 0, f"README snippet {i} failed:\n{code}\n--- stderr:\n{r.stderr[-3000:]}"
    assert (tmp_path / "results" / "sweep.zarr").is_dir() and (
        tmp_path / "energy.png"
    ).stat().st_size > 10_000
    assert (tmp_path / "runs.csv").read_text().count("\n") == 7  # header + the 6 HIGH runs
    # the example sweep shows physics: runs past their dissipation peak, not a linear decay
    import sweep
    from sweep.monitor.physics import derived_frame

    derived = derived_frame(sweep.open_results(tmp_path / "results" / "sweep.zarr"))
    reached = derived[derived["peak_reached"]]
    assert len(reached) >= 2 and (reached["t_peak"] < reached["T_final"]).all(), derived


@pytest.mark.slow
def test_readme_quickstart_runs_as_shown(tmp_path: Path) -> None:
    (block,) = _blocks("bash", _section(README.read_text(encoding="utf-8"), "## Quickstart"))[1:2]
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    for line in block.strip().splitlines():
        args = shlex.split(line.split("#", 1)[0])
        r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{line}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    assert (tmp_path / "results" / "mysweep-report" / "sweep_report.html").is_file()


def test_readme_opens_with_the_two_commands_then_the_sections_a_new_user_reads_in_order() -> None:
    """The first commands are the demo and the test suite, each setting itself up; then install,
    quickstart, the command line, the Python API, monitoring, guarantees, internals, benchmarks."""
    text = README.read_text(encoding="utf-8")
    first = _blocks("bash", text)[0]
    commands = [line.split("#", 1)[0].strip() for line in first.strip().splitlines()]
    assert commands == ["./scripts/demo.sh", "./scripts/test.sh"], first
    for script in ("demo.sh", "test.sh"):  # each sets up .venv itself before it runs
        assert 'bash "$ROOT/scripts/setup.sh"' in (ROOT / "scripts" / script).read_text(), script
    assert text.index(first) < text.index("\n## ")
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    order = [
        "Install",
        "Quickstart",
        "The command line",
        "The Python API",
        "Monitoring",
        "What is guaranteed",
        "Internals",
        "Benchmarks",
    ]
    assert [h for h in headings if h in order] == order, headings
    install = _section(text, "## Install")
    for how in ("source .venv/bin/activate", ".venv/bin/sweep", "pip install", "conda env create"):
        assert how in install, how
