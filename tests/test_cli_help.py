"""`sweep --help` stays fast: it imports no subcommand's dependencies (issue 17: 0.54 s)."""

from __future__ import annotations

import subprocess
import sys


def test_cli_help_imports_neither_dask_nor_numpy():
    code = (
        "import sys\n"
        "from sweep.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('dask', 'distributed', 'numpy', 'xarray', 'zarr') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout, out.stdout
    assert "logs " in out.stdout and "run " in out.stdout  # every subcommand is listed
