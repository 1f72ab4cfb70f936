"""The validation cache: verdicts on package files, keyed by the SHA-1 of their bytes.

Checking a package is a pure function of its bytes and of the checking code, so a file
whose bytes were checked before (same SHA-1, same code) needs no second check: every
file is read and hashed on every pass (no trust in modification times, so an edit is
always seen), and only files with new bytes are parsed and validated. Only packages
without problems are cached; the cross-file checks (ids, summary, priorities, memory)
always run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Any

__all__ = ["CACHE_ENV", "CACHE_KEEP", "cache_file", "load_cache", "save_cache"]

CACHE_ENV = "NS_SWEEP_CACHE_DIR"  # directory of the validation cache; "off" disables it


@functools.lru_cache(maxsize=1)
def _fingerprint() -> str:
    """Hash of the code whose rules a cached verdict depends on."""
    import solver
    import solver.memory
    import solver.params

    from . import check, files, package

    h = hashlib.sha1()
    paths = [getattr(mod, "__file__", None) for mod in (solver.params, solver.memory, package, files, check)]
    # the checks of other solvers' parameters (their verdicts also hold only for the same
    # template: check.py compares the run id, which hashes the template's content)
    solvers = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "solvers")
    paths += [os.path.join(solvers, name) for name in ("manifest.py", "registry.py", "run_params.py")]
    for path in paths:
        if path:
            with open(path, "rb") as f:
                h.update(f.read())
    h.update(str(getattr(solver, "SOLVER_VERSION", "")).encode())
    return h.hexdigest()


def cache_file(directory: str) -> str | None:
    root = os.environ.get(CACHE_ENV)
    if root is not None and root.strip().lower() in ("", "off", "0", "no"):
        return None
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "ns-sweep")
    key = hashlib.sha1(os.path.abspath(directory).encode()).hexdigest()[:16]
    return os.path.join(root, f"packages-{key}.json")


def load_cache(path: str | None) -> dict[str, list[Any]]:
    """SHA-1 of a file's bytes -> its verdict; empty when absent or written by other code."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
        if doc.get("fingerprint") != _fingerprint():
            return {}
        return dict(doc["entries"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save_cache(path: str | None, entries: dict[str, list[Any]]) -> None:
    if path is None:
        return
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.partial"
        with open(tmp, "w", encoding="utf-8") as f:
            # dumps, not dump: json.dump streams through the pure-Python encoder (20x slower)
            f.write(json.dumps({"fingerprint": _fingerprint(), "entries": entries}, separators=(",", ":")))
        os.replace(tmp, path)
        _prune_cache(os.path.dirname(path))
    except OSError:  # a cache that cannot be written only costs time
        pass


CACHE_KEEP = 64  # package directories remembered; the least recently rewritten are forgotten


def _prune_cache(root: str) -> None:
    entries = [e for e in os.scandir(root) if e.name.startswith("packages-") and e.name.endswith(".json")]
    if len(entries) > CACHE_KEEP:
        entries.sort(key=lambda e: e.stat().st_mtime)
        for e in entries[: len(entries) - CACHE_KEEP]:
            try:
                os.remove(e.path)
            except OSError:
                pass
