"""Durations and sizes as people read and write them (one format everywhere)."""

from __future__ import annotations

import math
import re

from .errors import option_error

__all__ = [
    "format_duration",
    "format_bytes",
    "parse_size",
    "parse_walltime",
    "format_walltime",
    "WALLTIME_FORMS",
]

_WALLTIME = re.compile(r"^(?:(?P<d>\d+)-)?(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+)$")

WALLTIME_FORMS = "HH:MM:SS, MM:SS or D-HH:MM:SS (e.g. 01:30:00)"


def format_duration(seconds: float | None) -> str:
    """Seconds as ``1h 02m 03s`` / ``4m 05s`` / ``6.2s`` / ``2d 03h 04m``; ``unknown`` for None."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "unknown"
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    if h >= 24:
        d, h = divmod(h, 24)
        return f"{d}d {h:02d}h {m:02d}m"
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def format_bytes(n: float) -> str:
    """A byte count with a binary unit, 3 significant digits (``1.5 GiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def parse_size(text: str | None, option: str = "worker_memory") -> int | None:
    """A memory size such as ``4GiB`` or ``500MB`` in bytes (None stays None); ConfigError
    naming ``option`` for anything else."""
    if text is None:
        return None
    from dask.utils import parse_bytes  # only when given: importing dask costs 0.2 s

    try:
        n = parse_bytes(text)
    except (ValueError, TypeError):
        n = -1
    if n <= 0:
        raise option_error(option, text, "a size such as 4GiB or 500MB")
    return int(n)


def parse_walltime(text: str) -> float:
    """Seconds in a SLURM/PBS walltime: ``[D-]HH:MM:SS`` or ``MM:SS``.

    Raises ValueError naming the value and the accepted forms (``1h`` is not one).
    """
    m = _WALLTIME.match(str(text).strip())
    if m is None:
        raise ValueError(f"bad walltime {text!r}; allowed: {WALLTIME_FORMS}")
    d, h, mi, s = (int(m.group(k) or 0) for k in ("d", "h", "m", "s"))
    return float(((d * 24 + h) * 60 + mi) * 60 + s)


def format_walltime(seconds: float) -> str:
    """``HH:MM:SS`` (hours may exceed 24), rounded up to the second."""
    s = int(math.ceil(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
