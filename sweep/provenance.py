"""Facts recorded with every run and store: clock, host, versions, git commit.

One home for each, so that the store, the engine and the worker side agree on formats.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
from datetime import UTC, datetime

__all__ = ["utc_now", "hostname", "ns_sweep_version", "solver_version", "git_commit"]


def utc_now(timespec: str = "milliseconds") -> str:
    """The current UTC time in ISO 8601 (``2026-12-06T08:16:18.123+00:00``)."""
    return datetime.now(UTC).isoformat(timespec=timespec)


@functools.lru_cache(maxsize=1)
def hostname() -> str:
    """This machine's host name."""
    return socket.gethostname()


@functools.lru_cache(maxsize=1)
def ns_sweep_version() -> str:
    """The installed ns-sweep distribution's version ('unknown' from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ns-sweep")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


@functools.lru_cache(maxsize=1)
def solver_version() -> str:
    """The solver's version (``solver.SOLVER_VERSION``), else the ns-sweep distribution's."""
    import solver

    found = getattr(solver, "SOLVER_VERSION", None)
    return str(found) if found else ns_sweep_version()


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The project's git commit (with '+dirty' for local changes), None outside a checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if out.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
