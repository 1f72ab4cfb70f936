"""The engine's defaults: the packaged ``sweep.yaml`` registered with ``dask.config``.

Importing this module makes ``dask.config.get("sweep.timeout")`` and friends work; users
override values the usual Dask ways (a YAML file in ~/.config/dask, ``DASK_SWEEP__...``
environment variables, ``dask.config.set``). Command-line options override both.
"""

from __future__ import annotations

import os
from typing import Any

import dask.config
import yaml

__all__ = ["DEFAULTS_FILE", "get"]

DEFAULTS_FILE = os.path.join(os.path.dirname(__file__), "sweep.yaml")

with open(DEFAULTS_FILE, encoding="utf-8") as _f:
    _defaults = yaml.safe_load(_f)

# Defaults only: no dask.config.ensure_file copy into ~/.config/dask, because such a copy
# silently overrides the packaged defaults of every later version (a known dask-jobqueue pitfall).
# Users who want a file copy sweep.yaml themselves (see the README).
dask.config.update_defaults(_defaults)


def get(key: str, override: Any = None) -> Any:
    """``override`` when given, else the configured ``sweep.<key>`` value."""
    if override is not None:
        return override
    try:
        return dask.config.get(f"sweep.{key}")
    except KeyError:
        # a ``dask.config.set({"sweep...."})`` made before this module was imported drops
        # the whole namespace when it exits: put the packaged defaults back under it
        dask.config.update(dask.config.config, _defaults, priority="old")
        return dask.config.get(f"sweep.{key}")
