"""The demo: run the example sweep in packages/ on a LocalCluster, then write the report.

Called by scripts/demo.sh (which sets up .venv first). Results go to results/demo.zarr, logs to
results/demo.zarr.logs, the report to results/report. Running it again resumes: finished runs
are skipped. The sweep is the Taylor-Green vortex past its dissipation peak (packages/grid.toml).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Run the demo sweep and the report; return the sweep's exit code."""
    from sweep.engine import run_sweep

    argv = list(sys.argv[1:] if argv is None else argv)
    packages = ROOT / "packages"
    results = ROOT / "results"
    store = results / "demo.zarr"
    logs = results / "demo.zarr.logs"  # the store's own logs (the default place)
    report_dir = results / "report"
    results.mkdir(exist_ok=True)

    print(f"demo: running the example sweep in {packages} on a LocalCluster", flush=True)
    result = run_sweep(packages, store, mode="parallel", max_parallel=int(argv[0]) if argv else None)

    from sweep.cli import main as sweep_main

    code = sweep_main(
        ["report", "--store", str(store), "--out", str(report_dir), "--packages", str(packages)]
    )
    report_note = (
        f"report: {report_dir} (open the .html file in a browser)"
        if code == 0
        else f"the report failed (exit {code}); see the message above"
    )

    print()
    print(f"results: {store}")
    print(f"logs:    {logs} (sweep.log, and the packages' lines: sweep logs PACKAGE_ID --store {store})")
    print(report_note)
    print("open the results with xarray:")
    print("    import sweep")
    print(f"    ds = sweep.open_results({str(store)!r})   # dimensions run, output; coordinates Re, dt, ...")
    print("    ds.dissipation.plot.line(x='time', hue='run')")
    print(f"or from the shell: .venv/bin/sweep status --store {store} --packages {packages}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
