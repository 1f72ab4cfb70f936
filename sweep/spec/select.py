"""Select the packages a command acts on: by priority, and by name (``--package``)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence

from ..errors import ConfigError
from .package import Package, check_priority

__all__ = ["select_packages", "selection_label"]


def select_packages(
    packages: Sequence[Package], priority: str = "ALL", names: Sequence[str] | None = None
) -> list[Package]:
    """The packages a command acts on, in the given order: those of ``priority`` ('ALL': every
    one) and, with ``names``, only the packages named, each by its package_id or its file name
    (with or without '.json'). ConfigError for a name that matches no package, or a named
    package of another priority than ``priority``."""
    check_priority(priority)
    if not names:
        return [p for p in packages if priority in ("ALL", p.priority)]
    keys: dict[str, Package] = {}
    for p in packages:
        keys[p.package_id] = p  # an id wins over another package's file name
        if p.path:
            file = os.path.basename(p.path)
            keys.setdefault(file, p)
            keys.setdefault(file.removesuffix(".json"), p)
    chosen: set[str] = set()
    for name in names:
        found = keys.get(name)
        if found is None:
            close = difflib.get_close_matches(name, [q.package_id for q in packages], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            where = os.path.dirname(packages[0].path) if packages and packages[0].path else "the directory"
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
    return [p for p in packages if p.package_id in chosen]


def selection_label(priority: str = "ALL", names: Sequence[str] | None = None) -> str:
    """What ``select_packages`` was asked for, for messages: ``priority ALL, 2 named``."""
    return f"priority {priority}" + (f", {len(set(names))} named" if names else "")
