"""The template tree: a directory held in memory as ``{relative path: bytes}``, with its hash.

A template (an OpenFOAM case, a command directory) travels with every task of a sweep, so
workers need no shared disk with the driver; its content hash is part of each run's identity.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sweep.errors import ConfigError

from .errors import config_line

__all__ = ["TemplateTree", "read_tree", "MAX_TEMPLATE_BYTES", "rebuilt"]


MAX_TEMPLATE_BYTES = 64 << 20  # every task carries its template: results and big meshes stay out
_IGNORED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".ipynb_checkpoints"})
_IGNORED_SUFFIXES = (".pyc", "~")


@dataclass(frozen=True)
class TemplateTree:
    """A directory's files as ``{posix relative path: bytes}`` plus which ones are executable.

    ``digest`` is the SHA-256 over every file in sorted path order of (path, executable flag,
    size, bytes): edit any file, rename it or flip its mode, and the digest changes.
    """

    files: Mapping[str, bytes]
    executable: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))  # read-only

    def __reduce__(self) -> tuple[Any, ...]:
        return (TemplateTree, (dict(self.files), self.executable))  # a mappingproxy does not pickle

    @functools.cached_property
    def digest(self) -> str:
        """The content hash (64 hex digits; computed once: run ids of every package use it)."""
        h = hashlib.sha256()
        for path in sorted(self.files):
            data = self.files[path]
            mode = "x" if path in self.executable else "-"
            h.update(f"{path}\0{mode}\0{len(data)}\0".encode())
            h.update(data)
        return h.hexdigest()

    @property
    def size(self) -> int:
        """Total bytes of the files."""
        return sum(len(b) for b in self.files.values())

    def write(self, dest: Path, replace: Mapping[str, bytes] | None = None) -> None:
        """Write the files under ``dest`` (``replace`` overrides some files' bytes)."""
        replace = replace or {}
        for path, data in self.files.items():
            target = dest / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(replace.get(path, data))
            if path in self.executable:
                target.chmod(0o755)


def read_tree(directory: Path, what: str = "case directory") -> TemplateTree:
    """A directory's files (VCS and cache directories skipped; symlinks followed) as a
    TemplateTree; a one-line ConfigError if it is missing or larger than MAX_TEMPLATE_BYTES."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(config_line(str(directory), f"({what})", str(directory), f"an existing {what}"))
    files: dict[str, bytes] = {}
    executable: set[str] = set()
    total = 0
    for root, dirs, names in os.walk(directory, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED_DIRS)
        for name in sorted(names):
            if name.endswith(_IGNORED_SUFFIXES):
                continue
            path = Path(root) / name
            rel = path.relative_to(directory).as_posix()
            data = path.read_bytes()
            total += len(data)
            if total > MAX_TEMPLATE_BYTES:
                raise ConfigError(
                    config_line(
                        str(directory),
                        f"({what} size)",
                        f"over {total >> 20} MiB",
                        f"at most {MAX_TEMPLATE_BYTES >> 20} MiB: the template travels "
                        "with every task; remove results (time directories, logs)",
                    )
                )
            files[rel] = data
            if os.access(path, os.X_OK):
                executable.add(rel)
    return TemplateTree(files, frozenset(executable))


_REBUILT: dict[tuple[str, str, str, str], Any] = {}  # templates rebuilt in this process
_REBUILT_KEEP = 64


def rebuilt(
    factory: Callable[[TemplateTree, str, str], Any], tree: TemplateTree, name: str, source: str
) -> Any:
    """``factory(tree, name, source)``, once per process for the same files (what an unpickled
    template calls: a worker running 1,000 packages of one case parses its manifest once, not
    1,000 times: ~5 ms each for the cavity)."""
    key = (f"{factory.__module__}.{factory.__qualname__}", tree.digest, name, source)
    found = _REBUILT.get(key)
    if found is None:
        found = factory(tree, name, source)
        if len(_REBUILT) >= _REBUILT_KEEP:
            _REBUILT.pop(next(iter(_REBUILT)))
        _REBUILT[key] = found
    return found
