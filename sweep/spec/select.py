"""Select the packages a command acts on: by priority, and by name (``--package``)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from .package import PRIORITIES, Package, check_priority
from .table import PackageTable

__all__ = ["select_packages", "selection_label"]


def select_packages(
    packages: Sequence[Package], priority: str = "ALL", names: Sequence[str] | None = None
) -> PackageTable:
    """The packages a command acts on (a ``PackageTable``), in the given order: those of
    ``priority`` ('ALL': every one) and, with ``names``, only the packages named, each by its
    package_id or its file name (with or without '.json'). ConfigError for a name that matches
    no package, or a named package of another priority than ``priority``."""
    check_priority(priority)
    table = PackageTable.of(packages)
    if not names:
        if priority == "ALL":
            return table
        return table.take(np.flatnonzero(table.priority_codes() == PRIORITIES.index(priority)))
    keys: dict[str, Package] = {}
    for p in table:
        keys[p.package_id] = p  # an id wins over another package's file name
        if p.path:
            file = os.path.basename(p.path)
            keys.setdefault(file, p)
            keys.setdefault(file.removesuffix(".json"), p)
    chosen: set[str] = set()
    for name in names:
        found = keys.get(name)
        if found is None:
            close = difflib.get_close_matches(name, [q.package_id for q in table], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            first = table[0] if len(table) else None
            where = os.path.dirname(first.path) if first is not None and first.path else "the directory"
            raise ConfigError(
                f"package_ids: bad value {name!r}: no package of {where} has this package_id or "
                f"file name{hint}; allowed: a package_id or a package_*.json file name "
                "(sweep explain lists them)",
                option="package_ids",
            )
        if priority not in ("ALL", found.priority):
            raise ConfigError(
                f"package_ids: {name!r} has priority {found.priority}, not {priority} (priority); "
                "drop the priority or name a package of that priority",
                option="package_ids",
            )
        chosen.add(found.package_id)
    return table.take([i for i in range(len(table)) if table.package_id(i) in chosen])


def selection_label(priority: str = "ALL", names: Sequence[str] | None = None) -> str:
    """What ``select_packages`` was asked for, for messages: ``priority ALL, 2 named``."""
    return f"priority {priority}" + (f", {len(set(names))} named" if names else "")
