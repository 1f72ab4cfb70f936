"""What a running sweep shows on the terminal: a live bar, a summary line every few packages,
and a final summary by status and by priority.

The bar (tqdm, on stderr) shows done, failed and running counts and an ETA; it is drawn only on
a terminal. The summary lines go to stdout, so they also appear in logs and CI output.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO

import numpy as np
from tqdm import tqdm

from ..spec import PRIORITIES
from ..store import FAILURE_CLASSES
from ..units import format_duration

__all__ = ["SweepProgress", "final_summary", "failure_lines", "MAX_FAILURE_LINES", "MIN_FINISHED_FOR_ETA"]

MIN_FINISHED_FOR_ETA = 3  # packages finished before an ETA is printed


class SweepProgress:
    """Counts finished packages and draws them; ``total`` is the number of packages to run.

    A summary line every ``summary_every`` packages, and after the first 20 of them at most one
    per ``SUMMARY_SECONDS`` (100,000 tiny packages printed and logged 20,000 lines)."""

    SUMMARY_SECONDS = 1.0

    def __init__(
        self,
        total: int,
        *,
        summary_every: int = 5,
        bar: bool | None = None,
        out: IO[str] | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.total = total
        self.summary_every = max(1, summary_every)
        self.out = out or sys.stdout
        self.echo = echo  # also send each summary line here (the main log)
        self.counts: Counter[str] = Counter()
        self.running = 0
        self.t0 = time.monotonic()
        self._said = self.t0  # when the last summary line was written
        # disable=None: draw only when stderr is a terminal
        self.bar = tqdm(
            total=total,
            unit="pkg",
            desc="sweep",
            file=sys.stderr,
            disable=None if bar is None else not bar,
            dynamic_ncols=True,
            smoothing=0.1,
            leave=True,
        )
        self._refresh_postfix()

    @property
    def finished(self) -> int:
        """Packages done or failed so far."""
        return sum(self.counts.values())

    def eta(self) -> float | None:
        """Seconds left, from the mean wall time per finished package so far; None until
        ``MIN_FINISHED_FOR_ETA`` packages finished (one package's time says little of the rest)."""
        n = self.finished
        if n < min(self.total, MIN_FINISHED_FOR_ETA):
            return None
        return (time.monotonic() - self.t0) / n * (self.total - n)

    def restart_clock(self) -> None:
        """Start the elapsed time and the ETA's rate now (once the workers are ready: their
        start-up is no package's time)."""
        self.t0 = time.monotonic()
        self.bar.reset(total=self.total)
        self._refresh_postfix()

    def _refresh_postfix(self) -> None:
        failed = self.finished - self.counts.get("done", 0)
        self.bar.set_postfix_str(
            f"done={self.counts.get('done', 0)} failed={failed} running={self.running}", refresh=False
        )

    def set_running(self, n: int) -> None:
        """The number of packages now running on workers."""
        if n != self.running:
            self.running = n
            self._refresh_postfix()
            self.bar.refresh()

    def package_finished(self, status: str) -> None:
        """Count one finished package (``done`` or a failure class); maybe print a summary."""
        self.counts[status] += 1
        self._refresh_postfix()
        self.bar.update(1)
        n = self.finished
        if n == self.total or (
            n % self.summary_every == 0
            and (n <= 20 * self.summary_every or time.monotonic() - self._said >= self.SUMMARY_SECONDS)
        ):
            self._said = time.monotonic()
            self.write(self.summary_line())

    def summary_line(self) -> str:
        """``[ 10/100] done 9, failed 1 (diverged 1), running 2, elapsed 12.0s, eta 1m 48s``."""
        width = len(str(self.total))
        done = self.counts.get("done", 0)
        fails = {k: v for k, v in sorted(self.counts.items()) if k != "done"}
        failed = sum(fails.values())
        detail = f" ({', '.join(f'{k} {v}' for k, v in fails.items())})" if fails else ""
        eta = self.eta()
        return (
            f"[{self.finished:>{width}}/{self.total}] done {done}, failed {failed}{detail}, "
            f"running {self.running}, elapsed {format_duration(time.monotonic() - self.t0)}"
            + (f", eta {format_duration(eta)}" if eta is not None else "")
        )

    def write(self, line: str) -> None:
        """Print a line without breaking the bar."""
        self.bar.write(line, file=self.out)
        if self.echo is not None:
            self.echo(line)

    def close(self) -> None:
        """Remove the bar."""
        self.bar.close()


def summary_rows(
    prio_codes: np.ndarray, codes: np.ndarray, labels: Sequence[str]
) -> Iterator[tuple[str, str, int]]:
    """``(priority, status, packages)`` of each pair present (priority ``PRIORITIES[prio_codes[i]]``,
    status ``labels[codes[i]]``): counted as pairs of codes, with no list of a million statuses
    (two such lists were 15 MiB of the closing peak of a 1M sweep's driver)."""
    n = max(len(labels), 1)
    pairs = prio_codes.astype(np.int64) * n + codes
    for k, count in enumerate(np.bincount(pairs, minlength=len(PRIORITIES) * n).tolist()):
        if count:
            yield PRIORITIES[k // n], labels[k % n], count


def final_summary(
    rows: Iterable[tuple[str, str, int]], priorities: Iterable[str], skipped: int, elapsed: float
) -> list[str]:
    """Lines of the closing table: counts by status (columns) and priority (rows).

    ``rows`` holds ``(priority, status, packages)``: how many requested packages have that
    priority and status, where status is ``done``, ``skipped``, ``cancelled`` or a failure
    class (a pair may come in several rows: they add up).
    """
    table: dict[str, Counter[str]] = {}
    n_rows = 0
    for prio, status, count in rows:
        table.setdefault(prio, Counter())[status] += count
        n_rows += count
    order = ["done", "skipped", *FAILURE_CLASSES, "cancelled"]
    statuses = [s for s in order if any(c[s] for c in table.values())]
    statuses += sorted({s for c in table.values() for s in c} - set(order))
    head = f"{'priority':<10}" + "".join(f"{s:>12}" for s in statuses) + f"{'total':>8}"
    lines = [
        f"summary: {n_rows} packages in {format_duration(elapsed)} ({skipped} skipped as already done)",
        head,
    ]
    total: Counter[str] = Counter()
    for prio in list(priorities) + sorted(set(table) - set(priorities)):
        c = table.get(prio)
        if not c:
            continue
        total.update(c)
        lines.append(f"{prio:<10}" + "".join(f"{c[s]:>12}" for s in statuses) + f"{sum(c.values()):>8}")
    lines.append(f"{'ALL':<10}" + "".join(f"{total[s]:>12}" for s in statuses) + f"{sum(total.values()):>8}")
    return lines


MAX_FAILURE_LINES = 20  # failed packages named at the end of a sweep; the rest are counted


def failure_lines(
    failed: Sequence[tuple[str, str]], errors: Mapping[str, tuple[str, str]], more: str
) -> list[str]:
    """Lines naming each failed package with its class and one-line reason.

    ``failed``: (package_id, run_id) of the failed packages; ``errors``: run id -> (class,
    error text), as ``Store.failures()`` gives them; ``more``: the command that lists them all.
    """
    if not failed:
        return []
    width = min(max(len(pid) for pid, _ in failed), 40)
    out = [f"failed: {len(failed)} package(s) (class and reason; the package logs have the details):"]
    for pid, rid in failed[:MAX_FAILURE_LINES]:
        fclass, error = errors.get(rid, ("error", ""))
        out.append(f"  {pid:<{width}}  {fclass:<11} {one_line(error)}")
    if len(failed) > MAX_FAILURE_LINES:
        out.append(f"  ... and {len(failed) - MAX_FAILURE_LINES} more: {more}")
    return out


def one_line(text: str, limit: int = 200) -> str:
    """The first line of an error text, at most ``limit`` characters."""
    first = (text or "").strip().splitlines()[0] if (text or "").strip() else "(no message)"
    return first if len(first) <= limit else first[: limit - 3] + "..."
