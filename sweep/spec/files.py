"""Reading the files of a package directory: bytes of regular files only, JSON with problems
reported as lines (``<file>: <field>: bad value <v>; allowed: <...>``), never raised one by one.

What is read, and what is refused (decided once, here):

- only regular files of the package directory: a symbolic link is followed only when it
  stays inside the directory; a FIFO, directory, device or socket is refused from its
  ``lstat`` and never opened (a FIFO would block the reader for ever), and files are opened
  non-blocking and checked again after the open;
- at most ``MAX_FILE_BYTES``; JSON objects and arrays nested at most ``MAX_DEPTH`` deep;
  integers of at most 4300 digits (Python's own limit; each parameter has tighter bounds);
- UTF-8 only: a UTF-8 byte-order mark is skipped and CRLF line ends are JSON whitespace
  (both are accepted: editors write them); UTF-16 and UTF-32 text is refused (RFC 8259
  requires UTF-8 between systems); a lone surrogate (an ``\\ud800`` escape without its pair)
  is refused: it is not Unicode text and could not be written to a log or a store;
- a key twice in one object is refused (JSON parsers would silently keep the last one).
"""

from __future__ import annotations

import codecs
import json
import os
import re
import stat
from typing import Any

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_DEPTH",
    "problem_line",
    "show",
    "json_type",
    "file_kind",
    "file_problem",
    "read_bytes",
    "parse_json",
    "read_json",
]

MAX_FILE_BYTES = 1 << 20  # 1 MiB: a package is a few hundred bytes; more is a mistake
MAX_DEPTH = 32  # nesting of JSON objects and arrays: a package needs 3 (tags may use more)


def problem_line(file: str, fieldname: str, value: Any, allowed: str) -> str:
    """One problem line of a validation report."""
    return f"{file}: {fieldname}: bad value {show(value)}; allowed: {allowed}"


def show(value: Any) -> str:
    """A value as JSON for a message, cut to 80 characters."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def json_type(v: Any) -> str:
    """The JSON name of a parsed value's type (for 'a JSON object' style messages)."""
    return {dict: "object", list: "array", str: "string", bool: "true/false", type(None): "null"}.get(
        type(v), "number"
    )


def file_kind(mode: int) -> str:
    """What a file-system entry is (its ``st_mode``), for a message: "a FIFO", "a directory"..."""
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


_REGULAR_FILE = "a regular file in the package directory (not a link out of it, a FIFO, directory or device)"


def file_problem(path: str, name: str, directory: str | None) -> str | None:
    """Why ``path`` (called ``name``) is not a regular file of ``directory`` (None: anywhere, a
    file the user named); None when it is. Decided from ``lstat`` (and where a link leads),
    without opening anything."""
    allowed = _REGULAR_FILE if directory is not None else "a regular file (not a FIFO, directory or device)"
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) and directory is not None:
            target = os.path.realpath(path)
            root = os.path.realpath(directory)
            if os.path.commonpath([root, target]) != root:
                where = f"a symbolic link to {target}, outside {root}"
                return f"{name}: (file): bad value: {where}; allowed: {_REGULAR_FILE}"
        if stat.S_ISLNK(st.st_mode):
            st = os.stat(path)
    except FileNotFoundError:
        if not os.path.lexists(path):
            return f"{name}: (file): cannot read: No such file or directory; allowed: a readable file"
        return f"{name}: (file): bad value: a symbolic link to nothing; allowed: {allowed}"
    except OSError as exc:
        return f"{name}: (file): cannot read: {exc.strerror}; allowed: a readable file"
    if not stat.S_ISREG(st.st_mode):
        return f"{name}: (file): bad value: {file_kind(st.st_mode)}; allowed: {allowed}"
    return None


_FIRST_READ = 1 << 16  # one read() takes a whole package file (a few hundred bytes)
_O_READ = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def read_bytes(path: str, name: str, problems: list[str], limit: int = MAX_FILE_BYTES) -> bytes | None:
    """A regular file's bytes; None (with a problem line) when unreadable, not a regular file
    or over ``limit`` bytes (default MAX_FILE_BYTES). Opened non-blocking: a FIFO put there
    after the caller's ``file_problem`` check is refused, never waited on."""
    try:
        fd = os.open(path, _O_READ)  # os-level I/O: 3x faster than open() for tiny files
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                problems.append(f"{name}: (file): bad value: {file_kind(mode)}; allowed: {_REGULAR_FILE}")
                return None
            text = os.read(fd, _FIRST_READ)
            if len(text) == _FIRST_READ:  # a big file: read on, but never past the limit
                parts, total = [text], len(text)
                while total <= limit and (chunk := os.read(fd, _FIRST_READ)):
                    parts.append(chunk)
                    total += len(chunk)
                if total > limit:
                    size = max(total, os.fstat(fd).st_size)
                    why = (
                        f"at most {MAX_FILE_BYTES} bytes (1 MiB); a package needs a few hundred"
                        if limit == MAX_FILE_BYTES
                        else f"at most {limit} bytes for this directory"
                    )
                    problems.append(problem_line(name, "(file size)", f"{size} bytes", why))
                    return None
                text = b"".join(parts)
            return text
        finally:
            os.close(fd)
    except OSError as exc:
        problems.append(f"{name}: (file): cannot read: {exc.strerror}; allowed: a readable file")
    return None


def _foreign_encoding(text: bytes) -> str | None:
    """'UTF-16' or 'UTF-32' when the bytes are such text (JSON text starts with an ASCII
    character, so a NUL among the first bytes gives it away even without a byte-order mark)."""
    head = text[:4]
    if head in (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE) or (len(head) == 4 and head.count(0) == 3):
        return "UTF-32"
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) or 0 in head[:2]:
        return "UTF-16"
    return None


class _Duplicated(dict[str, Any]):
    """A parsed JSON object in which the key ``key`` appeared twice (reported by ``_walk``)."""

    key = ""


_MARKED = [0]  # objects marked by _object so far (a change during a parse says: look for them)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's ``object_pairs_hook``: a dict; a marked one when a key appears twice in the object."""
    d = dict(pairs)
    if len(d) == len(pairs):
        return d
    seen: set[str] = set()
    marked = _Duplicated(d)
    marked.key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    _MARKED[0] += 1
    return marked


# one decoder for every file (json.loads with a hook would build one per call)
_DECODER = json.JSONDecoder(object_pairs_hook=_object)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _walk(doc: Any, name: str) -> str | None:
    """The first problem of a parsed document: nesting deeper than MAX_DEPTH, a key twice in
    one object, a lone surrogate in a string (with the field's dotted path)."""
    stack: list[tuple[Any, str, int]] = [(doc, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                return (
                    f"{name}: (nesting): bad value: nested deeper than {MAX_DEPTH} levels; allowed: "
                    f"objects and arrays at most {MAX_DEPTH} deep (a package needs 3)"
                )
            if isinstance(value, _Duplicated):
                field = f"{path}.{value.key}" if path else value.key
                return (
                    f'{name}: {field}: bad value: the key "{value.key}" twice in one object; allowed: '
                    "each key once (a JSON reader would silently keep the last one)"
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                sub = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and _SURROGATE.search(key):
                    stack.append((key, sub, depth))
                stack.append((item, sub, depth + 1))
        elif isinstance(value, str) and (m := _SURROGATE.search(value)):
            return (
                f"{name}: {path or '(top level)'}: bad value: a lone surrogate (\\u{ord(m.group()):04x}); "
                "allowed: Unicode text (a character outside the BMP as a surrogate pair, or as UTF-8)"
            )
    return None


_BIG_INT = re.compile(r"\d{4301,}")


def parse_json(text: bytes, name: str, problems: list[str]) -> Any:
    """Parse JSON text; None (with one problem line naming where) when it is not a JSON
    document this project reads (see the module docstring)."""
    enc = _foreign_encoding(text)
    if enc is not None:
        problems.append(
            f"{name}: (encoding): bad value: {enc} text; allowed: UTF-8 (save the file as UTF-8; "
            "a UTF-8 byte-order mark is fine)"
        )
        return None
    try:
        s = text.decode("utf-8-sig")  # a UTF-8 byte-order mark, if any, is dropped
        marked = _MARKED[0]
        doc = _DECODER.decode(s)
    except json.JSONDecodeError as exc:
        problems.append(
            f"{name}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}; "
            "allowed: a JSON object (check quotes, commas and brackets)"
        )
        return None
    except UnicodeDecodeError as exc:
        problems.append(f"{name}: byte {exc.start}: invalid JSON: not UTF-8 text; allowed: a UTF-8 JSON file")
        return None
    except RecursionError:
        problems.append(
            f"{name}: (nesting): bad value: nested deeper than {MAX_DEPTH} levels; allowed: objects "
            f"and arrays at most {MAX_DEPTH} deep (a package needs 3)"
        )
        return None
    except ValueError:  # an integer beyond Python's limit of digits (sys.get_int_max_str_digits)
        m = _BIG_INT.search(s)
        at = s[: m.start()] if m else ""
        where = f"line {at.count(chr(10)) + 1} column {len(at) - at.rfind(chr(10))}" if m else "(number)"
        problems.append(
            f"{name}: {where}: bad value: an integer of more than 4300 digits; allowed: numbers "
            "within each field's bounds"
        )
        return None
    # the walk costs a little per file: only when the text could hold what it looks for
    # (another thread's parse may change _MARKED too: then the walk just finds nothing)
    if _MARKED[0] != marked or text.count(b"[") + text.count(b"{") > MAX_DEPTH or b"\\u" in text:
        why = _walk(doc, name)
        if why is not None:
            problems.append(why)
            return None
    return doc


def read_json(path: str, name: str, problems: list[str], limit: int = MAX_FILE_BYTES) -> Any:
    """Parse one JSON file; None (with a problem line) when unreadable, over ``limit`` bytes or
    invalid."""
    text = read_bytes(path, name, problems, limit)
    return None if text is None else parse_json(text, name, problems)
