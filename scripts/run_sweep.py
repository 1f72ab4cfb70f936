"""Run a sweep from a Python script: on a LocalCluster you start, or on a remote scheduler.

    python scripts/run_sweep.py packages results/sweep.zarr                       # LocalCluster
    python scripts/run_sweep.py packages results/sweep.zarr --workers 4
    python scripts/run_sweep.py packages results/sweep.zarr --scheduler tcp://head:8786
    python scripts/run_sweep.py packages results/sweep.zarr --scheduler tls://head:8786 \\
        --tls-ca ca.pem --tls-cert client.pem --tls-key client.key

The same as `sweep run`, written out so you can adapt it: the engine takes any connected
``distributed.Client`` and leaves it open, so one client can run several sweeps.
"""

from __future__ import annotations

import argparse
import sys

from distributed import Client, LocalCluster
from distributed.security import Security

import sweep
from sweep.engine import run_sweep


def main(argv: list[str] | None = None) -> int:
    """Parse the options, connect or start a cluster, run the sweep, show the results."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("packages", help="package directory")
    p.add_argument("store", help="result store (zarr directory or fsspec URL)")
    p.add_argument("--priority", default="ALL")
    p.add_argument(
        "--package",
        action="append",
        dest="package_ids",
        metavar="ID",
        help="only this package (package_id or file name); repeat for more",
    )
    p.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes")
    p.add_argument("--scheduler", help="remote scheduler address (tcp:// or tls://)")
    p.add_argument("--tls-ca")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_args(argv)

    if args.scheduler:
        # A remote cluster: its workers need this project installed, not access to our disk.
        security = None
        if args.scheduler.startswith("tls://"):
            security = Security(
                tls_ca_file=args.tls_ca,
                tls_client_cert=args.tls_cert,
                tls_client_key=args.tls_key,
                require_encryption=True,
            )
        client = Client(args.scheduler, security=security)
        cluster = None
    else:
        # One thread per worker process: the solver holds the GIL between its FFT calls.
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True)
        client = Client(cluster)
    try:
        print(f"Dask dashboard: {client.dashboard_link}")
        result = run_sweep(
            args.packages, args.store, client=client, priority=args.priority, package_ids=args.package_ids
        )
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

    ds = sweep.open_results(args.store)
    print(ds)
    print(f"counts: {dict(result.counts)}; exit code {result.exit_code}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
