"""`sweep dashboard`: serve a live web page (Panel) with the report's views of a sweep."""

from __future__ import annotations

import argparse
import sys

HELP = "serve a live dashboard of a sweep (Panel); refreshes as runs finish"
DESCRIPTION = (
    "Serve a web page with the sweep's progress and results (the same views as `sweep "
    "report`), re-reading the store's committed runs periodically. It listens on 127.0.0.1 "
    "by default: from another machine use an SSH tunnel (and --allow-origin for the "
    "tunnel's local address) or --address. Stop it with Ctrl-C."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sweep dashboard`."""
    parser.add_argument("--store", required=True, help="the result store (path or fsspec URL)")
    parser.add_argument(
        "--packages",
        metavar="DIR",
        default=None,
        help="the package directory: show pending and stale packages too",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--refresh",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how often to re-read the store (default 5)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="runs proceeding at once, for the ETA (default 1)",
    )
    parser.add_argument(
        "--reference",
        action="append",
        default=None,
        metavar="FILE",
        help="a reference curve to overlay, as sweep report --reference (repeatable)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="extra browser origin allowed to connect, e.g. localhost:8080 behind an SSH tunnel (repeatable)",
    )


def main(args: argparse.Namespace) -> int:
    """Serve until interrupted (Ctrl-C: exit 130, as every `sweep` command)."""
    from ..errors import ConfigError, option_error
    from ..monitor.dashboard import DEFAULT_REFRESH_SECONDS, serve_dashboard
    from ..monitor.reference import load_references
    from ..monitor.status import check_workers, read_packages, read_runs

    refresh = DEFAULT_REFRESH_SECONDS if args.refresh is None else args.refresh
    if not refresh > 0:
        raise option_error("--refresh", args.refresh, "a number of seconds > 0")
    if not 0 <= args.port <= 65535:
        raise option_error("--port", args.port, "0 (any free port) to 65535")
    check_workers(args.workers)
    for origin in args.allow_origin:
        host, _, port = origin.partition(":")
        if not host or (port and not port.isdigit()):
            raise option_error("--allow-origin", origin, "HOST or HOST:PORT, e.g. localhost:8080")
    # fail fast on a bad store or package directory, before serving anything
    read_runs(args.store)
    read_packages(args.packages)
    load_references(args.reference)

    def ready(url: str) -> None:
        print(f"sweep dashboard: {url}  (store {args.store}; Ctrl-C to stop)", flush=True)

    try:
        serve_dashboard(
            args.store,
            args.packages,
            port=args.port,
            address=args.address,
            refresh_seconds=refresh,
            workers=args.workers,
            allow_origin=args.allow_origin,
            on_ready=ready,
            reference_files=args.reference,
        )
    except OSError as exc:
        raise ConfigError(
            f"--port {args.port} / --address {args.address}: cannot listen: "
            f"{exc.strerror or exc}; choose another port or address"
        ) from None
    print("sweep dashboard: stopped", file=sys.stderr)
    return 0
