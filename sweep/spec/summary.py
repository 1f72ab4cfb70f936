"""The priority summary of a package directory (``priority_summary.json``): which package has
which priority, for any number of packages.

Each priority lists package ids, or patterns that stand for many ids::

    {"HIGH": ["re100-seed0", "re200-*"], "MEDIUM": [], "LOW": ["*"]}

An entry with ``*``, ``?`` or ``[`` is a pattern (shell-style, ``fnmatch``); any other entry is
an id. A package listed by its id takes that priority; one listed by no id takes the priority
of the patterns it matches, which must all be of one priority (``LOW: ["*"]`` beside a few
HIGH ids is "everything else is LOW"). An id whose package does not exist, and a pattern that
matches no package, are problems, as is a package neither listed nor matched.

Size: a listed id costs ~30 bytes, so the file may hold at most ``SUMMARY_BYTES_PER_PACKAGE``
bytes per package file of the directory (at least the 1 MiB of any file): an explicit list
never outgrows it, and a hand-edited summary is still bounded. ``sweep new`` lists the ids, except
for a sweep of more than ``IDS_UP_TO`` packages of one priority: ``["*"]`` (1,000,000 ids would
be a 30 MB file that every command parses).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .files import MAX_FILE_BYTES, json_type, problem_line, read_json
from .package import PRIORITIES, SUMMARY_FILE, id_problem

__all__ = [
    "SUMMARY_BYTES_PER_PACKAGE",
    "PATTERN_CHARS",
    "PrioritySummary",
    "read_summary",
    "summary_limit",
    "summary_document",
    "explicit_ids",
    "IDS_UP_TO",
]

SUMMARY_BYTES_PER_PACKAGE = 96  # an id of the longest length (64) with quotes, comma, indent
PATTERN_CHARS = frozenset("*?[")


def summary_limit(n_package_files: int) -> int:
    """The largest summary a directory of ``n_package_files`` package files may have (bytes)."""
    return max(MAX_FILE_BYTES, SUMMARY_BYTES_PER_PACKAGE * n_package_files)


def _is_pattern(entry: str) -> bool:
    return not PATTERN_CHARS.isdisjoint(entry)


class PrioritySummary:
    """A parsed summary: ids by priority, and patterns by priority."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}  # package id -> priority
        # (priority, pattern, matcher or None for "*": everything), in the file's order
        self.patterns: list[tuple[str, str, Any]] = []
        self.matched: set[str] = set()  # patterns that matched a package

    def priority_of(self, package_id: str) -> tuple[str | None, str]:
        """(priority, "") of a package, or (None, why): unlisted, or matched by patterns of
        several priorities."""
        prio = self.ids.get(package_id)
        if prio is not None:
            return prio, ""
        if not self.patterns:
            return None, ""
        if len(self.patterns) == 1 and self.patterns[0][2] is None:  # "*" alone: every package
            self.matched.add("*")
            return self.patterns[0][0], ""
        found: dict[str, str] = {}
        for p, pattern, match in self.patterns:
            if match is None or match(package_id):
                self.matched.add(pattern)
                found.setdefault(p, pattern)
        if len(found) > 1:
            return None, " and ".join(f"{pat!r} under {p}" for p, pat in found.items())
        return (next(iter(found)), "") if found else (None, "")

    def unmatched_patterns(self) -> list[tuple[str, str]]:
        """(priority, pattern) of the patterns no package matched."""
        return [(p, pat) for p, pat, _ in self.patterns if pat not in self.matched]


def read_summary(path: str, n_package_files: int, problems: list[str]) -> PrioritySummary | None:
    """The summary at ``path`` (of a directory with ``n_package_files`` package files), or None
    with problem lines when it is unusable."""
    doc = read_json(path, SUMMARY_FILE, problems, summary_limit(n_package_files))
    if doc is None:
        return None
    if not isinstance(doc, dict):
        problems.append(
            problem_line(
                SUMMARY_FILE, "(top level)", json_type(doc), "an object with keys " + ", ".join(PRIORITIES)
            )
        )
        return None
    out = PrioritySummary()
    seen_patterns: dict[str, str] = {}
    for key, entries in doc.items():
        if key not in PRIORITIES:
            problems.append(problem_line(SUMMARY_FILE, key, key, "one of the keys " + ", ".join(PRIORITIES)))
            continue
        if not isinstance(entries, list):
            problems.append(problem_line(SUMMARY_FILE, key, entries, "a list of package ids or patterns"))
            continue
        for entry in entries:
            if isinstance(entry, str) and _is_pattern(entry):
                if entry in seen_patterns:
                    problems.append(
                        problem_line(
                            SUMMARY_FILE, key, entry, f"each pattern once (also under {seen_patterns[entry]})"
                        )
                    )
                    continue
                seen_patterns[entry] = key
                matcher = None if entry == "*" else re.compile(fnmatch.translate(entry)).match
                out.patterns.append((key, entry, matcher))
            elif (why := id_problem(entry)) is not None:
                problems.append(
                    problem_line(SUMMARY_FILE, key, entry, why + ", or a pattern with *, ? or [...]")
                )
            elif entry in out.ids:
                prev = out.ids[entry]
                where = "twice in " + key if prev == key else f"in both {prev} and {key}"
                problems.append(
                    problem_line(SUMMARY_FILE, key, entry, f"each id under one priority only (it is {where})")
                )
            else:
                out.ids[entry] = key
    return out


IDS_UP_TO = 10_000  # sweep new lists the ids of at most this many packages of one priority


def summary_document(docs: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The summary ``sweep new`` writes for package documents: every id under its priority, or
    ``["*"]`` under their priority when they all have one and are more than ``IDS_UP_TO``."""
    summary: dict[str, list[str]] = {p: [] for p in PRIORITIES}
    for doc in docs:
        summary[doc["priority"]].append(doc["package_id"])
    used = [p for p, ids in summary.items() if ids]
    if len(used) == 1 and len(summary[used[0]]) > IDS_UP_TO:
        summary[used[0]] = ["*"]
    return summary


def explicit_ids(summary: Mapping[str, Sequence[Any]]) -> set[str]:
    """The ids a summary document lists by name (not its patterns)."""
    return {e for ids in summary.values() for e in ids if isinstance(e, str) and not _is_pattern(e)}
