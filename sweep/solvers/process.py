"""Running a program in its own process group under a deadline, and scratch directories.

Every program of a run starts in a new session (its own process group); when the deadline
passes, or a line watcher asks, the whole group is killed (SIGTERM, then SIGKILL), and members a
program left behind after it exited are killed too: nothing a run started outlives it.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import KeptScratch

__all__ = [
    "ProgramRun",
    "SCRATCH_ENV",
    "run_program",
    "describe_exit",
    "kill_live_groups",
    "scratch_dir",
]


# every program of a run gets its scratch path in this variable: find its processes by it
SCRATCH_ENV = "NS_SWEEP_SCRATCH"
# A program must not outlive the process that runs it, even one killed with SIGKILL (a lost
# Dask worker): util-linux's setpriv asks the kernel to kill it when its parent dies
# (PR_SET_PDEATHSIG) and then execs it in place; without setpriv (not Linux) that safety is lost.
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None
_LIVE_GROUPS: set[int] = set()  # process groups started here and not yet reaped


def kill_live_groups() -> None:
    """Kill every process group this process started and still runs (at exit; a Dask worker
    plugin's teardown can call it too)."""
    for pgid in list(_LIVE_GROUPS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        _LIVE_GROUPS.discard(pgid)


atexit.register(kill_live_groups)


@dataclass
class ProgramRun:
    """How a program ended: exit code (negative: killed by that signal), and whether it was
    stopped because the deadline passed or because a line watcher asked (``stop_reason``)."""

    argv: tuple[str, ...]
    returncode: int
    wall_time: float
    timed_out: bool = False
    stop_reason: str | None = None
    stderr_tail: list[str] = field(default_factory=list)


def _group_alive(pgid: int) -> bool:
    """Whether a process group still has a member that is not a zombie (a zombie is dead; it
    waits for its parent, or for PID 1, which in some containers reaps slowly or never)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not proc.is_dir():  # pragma: no cover - not Linux: trust killpg
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # state ppid pgrp ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the group, SIGKILL it after ``grace`` seconds, reap the leader, and wait until
    no member is left alive."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _reap_group(proc)


def _reap_group(proc: subprocess.Popen[bytes]) -> None:
    """Reap the leader and SIGKILL what is left of its group until no member is alive (at most
    5 s: a member in uninterruptible sleep cannot be waited for longer)."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait()
    end = time.monotonic() + 5.0
    while _group_alive(pgid) and time.monotonic() < end:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.01)
    _LIVE_GROUPS.discard(pgid)


def run_program(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    deadline: float | None,
    stdout_path: Path,
    stderr_path: Path | None = None,
    on_line: Callable[[str], str | None] | None = None,
    grace: float = 1.0,
    tail_lines: int = 20,
) -> ProgramRun:
    """Run ``argv`` in ``cwd`` (with ``PWD`` set to it) in a new session and process group.

    Output goes to ``stdout_path`` (stderr too unless ``stderr_path`` is given). Each complete
    line of the main output is passed to ``on_line``; a non-None return stops the run (kill
    the group) with that reason. When ``deadline`` (``time.time()`` seconds) passes, the whole
    group is killed (SIGTERM, SIGKILL after ``grace`` s). Members the program left running
    after it exited are killed too: nothing this call started outlives it, and on Linux the
    program is killed by the kernel if this process dies first (``setpriv --pdeathsig``).
    """
    cwd = Path(cwd)
    full_env = {**env, "PWD": str(cwd)}
    t0 = time.time()
    if deadline is not None and t0 >= deadline:
        return ProgramRun(tuple(argv), -signal.SIGKILL, 0.0, timed_out=True)
    with contextlib.ExitStack() as stack:
        # unbuffered: the log on disk is complete up to the last line a watcher has seen
        out = stack.enter_context(open(stdout_path, "wb", buffering=0))
        err = stack.enter_context(open(stderr_path, "wb", buffering=0)) if stderr_path is not None else None
        proc = subprocess.Popen(
            [_SETPRIV, "--pdeathsig", "KILL", "--", *argv] if _SETPRIV else list(argv),
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if err is not None else subprocess.STDOUT,
            start_new_session=True,
        )
        _LIVE_GROUPS.add(proc.pid)
        try:
            run = _pump(proc, out, err, deadline, on_line, grace, tail_lines)
        except BaseException:
            _kill_group(proc, grace=0.0)
            raise
    run.argv = tuple(argv)
    run.wall_time = time.time() - t0
    return run


def _pump(
    proc: subprocess.Popen[bytes],
    out: Any,
    err: Any,
    deadline: float | None,
    on_line: Callable[[str], str | None] | None,
    grace: float,
    tail_lines: int,
) -> ProgramRun:
    """Copy the program's output to its files and watch it until it ends or must be stopped."""
    assert proc.stdout is not None
    main_fd = proc.stdout.fileno()
    files = {main_fd: out}
    if err is not None:
        assert proc.stderr is not None
        files[proc.stderr.fileno()] = err
    tail_fd = proc.stderr.fileno() if err is not None and proc.stderr is not None else main_fd
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    partial = dict.fromkeys(files, b"")
    stop_reason: str | None = None
    timed_out = False

    def take(fd: int, raw: bytes) -> str | None:
        line = raw.decode("utf-8", "replace")
        if fd == tail_fd:
            tail.append(line)
        return on_line(line) if fd == main_fd and on_line is not None else None

    with selectors.DefaultSelector() as sel:
        for fd in files:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map() and stop_reason is None:
            wait = 0.2 if deadline is None else min(0.2, deadline - time.time())
            if wait <= 0:
                timed_out = True
                break
            events = sel.select(wait)
            for key, _ in events:
                fd = int(key.fd)
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    sel.unregister(fd)
                    continue
                files[fd].write(chunk)
                *lines, partial[fd] = (partial[fd] + chunk).split(b"\n")
                for raw in lines:
                    stop_reason = take(fd, raw) or stop_reason
            # the program exited but a member it left running holds the pipe open: stop reading
            if not events and proc.poll() is not None:
                break
    if not timed_out and stop_reason is None:
        for fd, rest in partial.items():
            if rest:
                stop_reason = take(fd, rest) or stop_reason
    if timed_out or stop_reason is not None:
        _kill_group(proc, grace)
    else:
        _reap_group(proc)  # reap it and kill whatever it left behind in its group
    assert proc.returncode is not None
    return ProgramRun((), proc.returncode, 0.0, timed_out, stop_reason, list(tail))


def describe_exit(returncode: int) -> str:
    """``exit code N`` or ``killed by SIGNAME`` (a negative return code)."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


@contextlib.contextmanager
def scratch_dir(root: str | os.PathLike[str] | None, prefix: str, keep_failed: bool) -> Iterator[Path]:
    """A fresh scratch directory (``tempfile.mkdtemp`` under ``root``, default the system's temp
    directory), removed when the block ends; kept if it ends with an exception and
    ``keep_failed``: then the exception names ``host:path``."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    try:
        yield path
    except BaseException as exc:
        if keep_failed and isinstance(exc, Exception):
            where = f"{socket.gethostname()}:{path}"
            if isinstance(exc, KeptScratch):
                exc.scratch = where
            else:
                exc.add_note(f"scratch kept at {where}")
        else:
            shutil.rmtree(path, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
