"""The cluster a sweep starts keeps few Dask debug messages (issue 17: a driver's memory).

In a module of its own: no other client may be the default one while the sweep runs.
"""

from __future__ import annotations

import io
from pathlib import Path

import dask.config
from conftest import tiny_sweep, write_packages


def test_run_sweep_keeps_few_dask_debug_messages_in_the_cluster_it_starts(tmp_path: Path):
    """The cluster a sweep starts keeps `sweep.dask-log-length` messages per connection for
    debugging, not Dask's 1,000 (each message of a batch holds hundreds of packages' items)."""
    from distributed import get_client

    from sweep import config, run_sweep

    seen = {}

    def on_start(start):
        client = get_client()
        seen["driver"] = dask.config.get("distributed.admin.low-level-log-length")
        seen["workers"] = set(
            client.run(lambda: dask.config.get("distributed.admin.low-level-log-length")).values()
        )
        seen["scheduler"] = client.run_on_scheduler(
            lambda dask_scheduler: {b.recent_message_log.maxlen for b in dask_scheduler.stream_comms.values()}
        )
        return None

    d = write_packages(tmp_path / "pk", tiny_sweep(4))
    res = run_sweep(
        d, tmp_path / "r.zarr", max_parallel=2, progress_bar=False, out=io.StringIO(), on_start=on_start
    )
    keep = config.get("dask-log-length")
    assert res.exit_code == 0 and keep < 1000
    assert seen == {"driver": keep, "workers": {keep}, "scheduler": {keep}}
