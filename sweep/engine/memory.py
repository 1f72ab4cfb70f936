"""Does each run fit in a worker's memory? Checked before anything is created: on a local
cluster from this machine's memory (while the package files are checked), on a cluster we did
not start from the memory its workers report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import StoreError, config_error
from ..spec import Package, memory_need
from ..store import Store
from ..units import format_bytes

__all__ = ["memory_problems", "check_cluster_memory"]


def memory_problems(
    client: Any, packages: Sequence[Package], fallback: int | None = None
) -> list[tuple[Package, str]]:
    """(package, one-line problem) of the packages whose run fits in no worker of ``client``:
    the memory limits its workers report; ``fallback`` (``--worker-memory``) when none reports
    one (workers started without a limit)."""
    limits = [
        w.get("memory_limit") or 0 for w in client.scheduler_info(n_workers=-1).get("workers", {}).values()
    ]
    limits = [m for m in limits if m] or ([fallback] if fallback else [])
    if not limits:
        return []
    biggest = max(limits)
    problems = []
    for p in packages:
        need = memory_need(p.params)  # memoised by solver.memory; 0 for other solvers than spectral
        if need > biggest:
            problems.append(
                (
                    p,
                    (
                        f"{p.path}: parameters.grid: bad value {list(p.params.grid)}; allowed: a grid "
                        f"whose run fits in a worker's memory (it needs {format_bytes(need)}, the largest "
                        f"worker has {format_bytes(biggest)}); use a smaller grid or workers with more memory"
                    ),
                )
            )
    return problems


def check_cluster_memory(
    client: Any, packages: Sequence[Package], store_url: str, fallback: int | None = None
) -> None:
    """Refuse runs that fit in no worker of a cluster we did not start, before anything is
    created: runs already done in the store (read, never created, here) do not count."""
    problems = memory_problems(client, packages, fallback)
    if not problems:
        return
    done: set[str] = set()
    try:
        with Store.open(store_url, mode="r") as st:
            done = st.done_run_ids()
    except StoreError:  # no store yet (or an unreadable one: opening it for writing says why)
        pass
    lines = [line for p, line in problems if p.run_id not in done]
    if lines:
        raise config_error(lines)
