"""Packages as columns: a sweep's packages in a few compact arrays, a ``Package`` made on access.

A million ``Package`` objects were ~500 bytes each in the driver (the object, its id, path,
run id and values as separate strings); a sweep needs them only a few at a time (the window
of tasks in flight, a line printed). ``PackageTable`` keeps the package ids and file names
each as one bytes blob with end offsets (of a ``package_<n>.json`` name only ``<n>``), the
validated values (JSON text) compressed by blocks of ``VALUE_BLOCK`` rows (zlib: neighbouring
packages' values differ in a few digits, ~100 bytes become ~5; a block is inflated when a
package of it is made, the last one kept), the run ids as 8-byte integers (their 16 hex
digits), the priorities as one byte each, the end offsets as 4-byte integers, and the rare
extras (tags, another solver) by row: ~50 bytes a package of 19-character ids, 74 with the
rows' order and the id index. It is a ``Sequence[Package]``: ``table[i]`` builds package
``i`` (equal to the one loaded), a slice or ``take(rows)`` is another table over the same
columns.

A table made from ``Package`` objects (``PackageTable.of``: a list a caller built) keeps them
as they are; the columnar queries (``run_keys``, ``run_id_mask``, ...) answer for both.
"""

from __future__ import annotations

import json
import zlib
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, overload

import numpy as np

from .package import DEFAULT_SOLVER, PRIORITIES, Package
from .run_ids import RunIdSet, run_key, run_keys_of

__all__ = ["PackageColumns", "PackageTable", "VALUE_BLOCK", "run_key", "run_keys_of"]

VALUE_BLOCK = 64  # rows whose values are compressed together

_PRIO_CODE = {p: i for i, p in enumerate(PRIORITIES)}
NAME_HEAD, NAME_TAIL = "package_", ".json"  # every package file's name (PACKAGE_GLOB)


def _stored_name(name: str) -> str:
    """What a row stores of a file's name: ``package_<middle>.json`` as its middle (13 bytes
    less a package: 13 MB at 1M), any other name after a NUL (no file name holds one)."""
    if name.startswith(NAME_HEAD) and name.endswith(NAME_TAIL):  # they cannot overlap
        return name[len(NAME_HEAD) : -len(NAME_TAIL)]
    return "\0" + name


def _name(stored: str) -> str:
    """The file's name from what its row stores (``_stored_name``)."""
    return stored[1:] if stored.startswith("\0") else NAME_HEAD + stored + NAME_TAIL


def _hash_index(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted hashes, their rows): rows of equal hashes in row order."""
    order = np.argsort(hashes, kind="stable")
    return hashes[order], order


def _rows_hashed(index: tuple[np.ndarray, np.ndarray], package_id: str) -> list[int]:
    """The rows whose id hashes as ``package_id`` does (the caller tells equal hashes apart)."""
    hashes, order = index
    key = hash(package_id)
    return order[np.searchsorted(hashes, key, "left") : np.searchsorted(hashes, key, "right")].tolist()


class PackageColumns:
    """Builds a ``PackageTable`` one package file at a time (``check_directory``), compactly.

    Every file with a package id is a row, also one with a problem (left out of the table:
    ``ok=False``), so that ids used by several files are found after the pass, by sorting the
    ids' hashes (``repeated``, ``has_id``), not with a dict of a million ids."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix  # the directory of the files' names, with its separator
        self.ids, self.names, self.values = bytearray(), bytearray(), bytearray()  # values: this block's
        self.blocks: list[bytes] = []  # the values of each full block of rows, compressed
        self.n_values = 0  # bytes of the values of the rows before this block
        self.id_end, self.name_end, self.value_end = array("q"), array("q"), array("q")
        self.run_ids, self.prios = array("Q"), bytearray()
        self.keys = array("q")  # hash of each row's id (equal ids, equal keys)
        self.ok = array("q")  # the rows of the table: packages without problems
        self.extras: dict[int, tuple[Any, ...]] = {}  # row -> (tags, solver, case, solver object)
        self._index: tuple[np.ndarray, np.ndarray] | None = None  # (sorted keys, their rows)

    def append(
        self,
        package_id: str,
        priority: str | None,
        name: str,
        values: str | None,
        run_id: str | None,
        extras: tuple[Any, ...] | None,
        ok: bool = True,
    ) -> None:
        """One file: its package's id, priority, file name, values (JSON text) and run id (16
        hex digits); ``extras``: (tags, solver, case, solver object) when it has tags or
        another solver; ``ok``: the package is valid (the others need only an id and a name)."""
        row = len(self.prios)
        if ok:
            self.ok.append(row)
            if extras is not None:
                self.extras[row] = extras
        self.keys.append(hash(package_id))
        self.ids += package_id.encode()
        self.id_end.append(len(self.ids))
        self.names += _stored_name(name).encode()
        self.name_end.append(len(self.names))
        if ok:
            self.values += values.encode()  # type: ignore[union-attr]
        self.value_end.append(self.n_values + len(self.values))
        self.run_ids.append(int(run_id, 16) if ok else 0)  # type: ignore[arg-type]
        self.prios.append(_PRIO_CODE[priority] if ok else 0)  # type: ignore[index]
        if len(self.prios) % VALUE_BLOCK == 0:
            self._close_block()

    def _close_block(self) -> None:
        self.blocks.append(zlib.compress(self.values))
        self.n_values += len(self.values)
        self.values = bytearray()

    def _text(self, blob: bytearray, ends: array, r: int) -> str:
        return blob[(ends[r - 1] if r else 0) : ends[r]].decode()

    def package_id(self, r: int) -> str:
        return self._text(self.ids, self.id_end, r)

    def name(self, r: int) -> str:
        return _name(self._text(self.names, self.name_end, r))

    def _sorted_keys(self) -> tuple[np.ndarray, np.ndarray]:
        if self._index is None:
            keys = np.frombuffer(self.keys, dtype=np.int64) if len(self.keys) else np.zeros(0, np.int64)
            self._index = _hash_index(keys)
        return self._index

    def repeated(self) -> list[tuple[int, int]]:
        """(row, first row with the same id) of each row whose id an earlier row has, in row order."""
        keys, order = self._sorted_keys()
        same = keys[1:] == keys[:-1]
        if not same.any():
            return []
        in_run = np.zeros(len(keys), dtype=bool)
        in_run[1:] |= same
        in_run[:-1] |= same
        first: dict[str, int] = {}  # (equal hashes of different ids are told apart here)
        out = []
        for r in sorted(int(r) for r in order[in_run]):
            pid = self.package_id(r)
            if pid in first:
                out.append((r, first[pid]))
            else:
                first[pid] = r
        return out

    def has_id(self, package_id: str) -> bool:
        """Whether a row has this id."""
        return any(self.package_id(r) == package_id for r in _rows_hashed(self._sorted_keys(), package_id))

    def table(self) -> PackageTable:
        """The table of every package appended with ``ok``, in that order."""
        self._index = None
        if len(self.prios) % VALUE_BLOCK:
            self._close_block()
        rows = np.frombuffer(self.ok, dtype=np.int64).copy() if len(self.ok) else np.zeros(0, np.int64)
        self.keys = self.ok = array("q")
        return PackageTable(_Columns.built(self), rows)


def _offsets(ends: array) -> np.ndarray:
    """End offsets as 4-byte integers while they fit (12 bytes a package less over three columns),
    else as they were built."""
    a = np.frombuffer(ends, dtype=np.int64) if len(ends) else np.zeros(0, np.int64)
    return a.astype(np.uint32) if len(a) and int(a[-1]) <= np.iinfo(np.uint32).max else a


class _Columns:
    """The frozen columns of a ``PackageColumns`` (numpy arrays, bytes blobs)."""

    def __init__(
        self,
        prefix: str,
        text: tuple[bytes | bytearray, bytes | bytearray, list[bytes]],
        ends: tuple[np.ndarray, np.ndarray, np.ndarray],
        run_ids: np.ndarray,
        prios: np.ndarray,
        extras: dict[int, tuple[Any, ...]],
    ) -> None:
        self.prefix = prefix
        self.ids, self.names, self.blocks = text  # the blocks: each VALUE_BLOCK rows' values, compressed
        self.id_end, self.name_end, self.value_end = ends
        self.run_ids, self.prios, self.extras = run_ids, prios, extras
        self._inflated: tuple[int, bytes] = (-1, b"")  # the last block inflated

    @classmethod
    def built(cls, b: PackageColumns) -> _Columns:
        """The columns of a builder, on its own buffers (a copy would double them while made)."""
        return cls(
            b.prefix,
            (b.ids, b.names, b.blocks),
            (_offsets(b.id_end), _offsets(b.name_end), _offsets(b.value_end)),
            np.frombuffer(b.run_ids, dtype=np.uint64) if len(b.run_ids) else np.zeros(0, np.uint64),
            np.frombuffer(b.prios, dtype=np.uint8) if len(b.prios) else np.zeros(0, np.uint8),
            b.extras,
        )

    @staticmethod
    def _text(blob: bytes | bytearray, ends: np.ndarray, r: int) -> str:
        return blob[(int(ends[r - 1]) if r else 0) : int(ends[r])].decode()

    def package_id(self, r: int) -> str:
        return self._text(self.ids, self.id_end, r)

    def run_id(self, r: int) -> str:
        return f"{int(self.run_ids[r]):016x}"

    def values(self, r: int) -> str:
        """The values (JSON text) of row ``r``, from its block (inflated once for its neighbours)."""
        block = r // VALUE_BLOCK
        at, text = self._inflated
        if at != block:
            text = zlib.decompress(self.blocks[block])
            self._inflated = (block, text)
        first = block * VALUE_BLOCK
        base = int(self.value_end[first - 1]) if first else 0
        start = (int(self.value_end[r - 1]) if r else 0) - base
        return text[start : int(self.value_end[r]) - base].decode()

    def package(self, r: int) -> Package:
        tags, solver, case, solver_object = self.extras.get(r) or (None, DEFAULT_SOLVER, None, None)
        return Package(
            self.package_id(r),
            PRIORITIES[self.prios[r]],
            None,
            tags,
            self.prefix + _name(self._text(self.names, self.name_end, r)),
            run_id=self.run_id(r),
            values=self.values(r),
            solver=solver,
            case=case,
            solver_object=solver_object,
        )


class PackageTable(Sequence[Package]):
    """A sweep's packages, in order: ``rows`` of its columns (see the module's docstring)."""

    __slots__ = ("_cols", "_objects", "rows", "_index")

    def __init__(
        self, cols: _Columns | None, rows: np.ndarray, objects: Sequence[Package] | None = None
    ) -> None:
        self._cols = cols
        self._objects = objects  # packages given as objects (PackageTable.of)
        self.rows = rows  # row numbers into the columns (or into objects), int64
        self._index: tuple[np.ndarray, np.ndarray] | None = None  # (sorted id hashes, their positions)

    @classmethod
    def of(cls, packages: Iterable[Package]) -> PackageTable:
        """``packages`` as a table (a table as it is; objects kept as they are)."""
        if isinstance(packages, PackageTable):
            return packages
        objects = list(packages)
        return cls(None, np.arange(len(objects), dtype=np.int64), objects)

    def __len__(self) -> int:
        return len(self.rows)

    # -- as arrays (sweep.spec.snapshot keeps a loaded table whole) ---------------------
    def to_arrays(self) -> dict[str, np.ndarray] | None:
        """The table as named arrays (``from_arrays`` makes it again), or None when it cannot
        be kept so: packages given as objects, or another solver's (its solver is an object)."""
        cols = self._cols
        if cols is None or any(e[3] is not None or e[2] is not None for e in cols.extras.values()):
            return None
        tags = {str(r): e[0] for r, e in cols.extras.items() if e[0]}
        return {
            "rows": self.rows,
            "ids": np.frombuffer(cols.ids, np.uint8),  # views of the blobs, not copies
            "names": np.frombuffer(cols.names, np.uint8),
            "blocks": np.frombuffer(b"".join(cols.blocks), np.uint8),
            "block_end": np.cumsum([len(b) for b in cols.blocks], dtype=np.int64),
            "id_end": cols.id_end,
            "name_end": cols.name_end,
            "value_end": cols.value_end,
            "run_ids": cols.run_ids,
            "prios": cols.prios,
            "tags": np.frombuffer(json.dumps(tags, separators=(",", ":")).encode(), np.uint8),
        }

    @classmethod
    def from_arrays(cls, prefix: str, a: Mapping[str, np.ndarray]) -> PackageTable:
        """The table ``to_arrays`` gave, its files in directory ``prefix`` (with its separator)."""
        blob, ends = a["blocks"].tobytes(), a["block_end"].tolist()
        blocks = [blob[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]
        tags = json.loads(a["tags"].tobytes())
        cols = _Columns(
            prefix,
            (a["ids"].tobytes(), a["names"].tobytes(), blocks),
            (a["id_end"], a["name_end"], a["value_end"]),
            a["run_ids"],
            a["prios"],
            {int(r): (t, DEFAULT_SOLVER, None, None) for r, t in tags.items()},
        )
        return cls(cols, a["rows"])

    @overload
    def __getitem__(self, i: int) -> Package: ...
    @overload
    def __getitem__(self, i: slice) -> PackageTable: ...
    def __getitem__(self, i: int | slice) -> Package | PackageTable:
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        r = int(self.rows[i])
        return self._objects[r] if self._cols is None else self._cols.package(r)  # type: ignore[index]

    def __iter__(self) -> Iterator[Package]:
        for i in range(len(self.rows)):
            yield self[i]

    def __repr__(self) -> str:
        return f"PackageTable({len(self)} package(s))"

    def take(self, positions: Sequence[int] | np.ndarray) -> PackageTable:
        """The packages at these positions, in that order (the same columns)."""
        return PackageTable(self._cols, self.rows[np.asarray(positions, dtype=np.int64)], self._objects)

    # -- one package's fields without making it --------------------------------------
    def package_id(self, i: int) -> str:
        r = int(self.rows[i])
        return self._objects[r].package_id if self._cols is None else self._cols.package_id(r)  # type: ignore[index]

    def run_id(self, i: int) -> str:
        r = int(self.rows[i])
        return self._objects[r].run_id if self._cols is None else self._cols.run_id(r)  # type: ignore[index]

    def priority(self, i: int) -> str:
        if self._cols is None:
            return self[i].priority
        return PRIORITIES[int(self._cols.prios[int(self.rows[i])])]

    # -- columns -------------------------------------------------------------------
    def priority_codes(self) -> np.ndarray:
        """Each package's priority as its index in ``PRIORITIES`` (uint8)."""
        if self._cols is not None:
            return self._cols.prios[self.rows]
        return np.array([_PRIO_CODE.get(p.priority, len(PRIORITIES)) for p in self], dtype=np.uint8)

    def run_keys(self) -> np.ndarray:
        """One integer per package, equal for equal run ids (the run id's 16 hex digits; for
        packages given as objects, a code per distinct run id)."""
        if self._cols is not None:
            return self._cols.run_ids[self.rows]
        codes: dict[str, int] = {}
        return np.array([codes.setdefault(p.run_id, len(codes)) for p in self], dtype=np.uint64)

    def run_id_mask(self, run_ids: Iterable[str]) -> np.ndarray:
        """Whether each package's run id is one of ``run_ids`` (bool)."""
        if self._cols is None:
            wanted = run_ids if isinstance(run_ids, (AbstractSet, dict)) else set(run_ids)
            return np.array([p.run_id in wanted for p in self], dtype=bool)
        keys = run_ids.run_keys() if isinstance(run_ids, RunIdSet) else run_keys_of(run_ids)
        if not len(keys):
            return np.zeros(len(self), dtype=bool)
        return np.isin(self.run_keys(), keys)

    def id_lengths(self) -> np.ndarray:
        """The length of each package id (characters: ids are ASCII)."""
        if self._cols is None:
            return np.array([len(p.package_id) for p in self], dtype=np.int64)
        ends = self._cols.id_end
        starts = np.concatenate(([0], ends[:-1]))
        return (ends - starts)[self.rows]

    def id_array(self) -> np.ndarray:
        """The package ids as one fixed-width bytes array (``S<longest id>``; ids are ASCII:
        their bytes sort as the strings do), made without a list of a million bytes objects."""
        width = max(1, int(self.id_lengths().max())) if len(self) else 1
        ids = (self.package_id(i).encode() for i in range(len(self)))
        return np.fromiter(ids, dtype=f"S{width}", count=len(self))

    def position_of(self, package_id: str) -> int | None:
        """The position of the package with this id (None: none has it); the first call
        indexes the ids by their hashes (sorted hashes and their positions: 16 bytes a package,
        ~28 with the ids themselves sorted at 1M)."""
        if self._index is None:
            hashes = (hash(self.package_id(i)) for i in range(len(self)))
            self._index = _hash_index(np.fromiter(hashes, np.int64, len(self)))
        same = (i for i in _rows_hashed(self._index, package_id) if self.package_id(i) == package_id)
        return next(same, None)
