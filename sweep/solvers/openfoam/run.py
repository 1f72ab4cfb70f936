"""Run one OpenFOAM case with given parameters on this machine: the worker side of the solver.

``run_case`` copies the case's files (carried in memory with the task) into a fresh scratch
directory, fills in the ``${...}`` fields, sets the foamDictionary entries, runs the declared
steps (each in its own process group, under the run's deadline), reads the outputs into a
``RunResult`` and removes the scratch directory (kept for a failed run when ``keep_failed``).

Failures raise the solver's error classes, so the engine classifies them as it does the
spectral solver's: a floating-point exception or NaN in the log -> ``ProgramDiverged``
(``diverged``); the deadline -> ``ProgramTimeout`` (``timeout``, the process group killed);
a non-zero exit or FOAM FATAL ERROR -> ``ExternalSolverError`` (``error``) whose message is
OpenFOAM's own, on one line.

Checkpoint/resume: while the application runs, each time directory it writes can be packed
into a ``CaseCheckpoint`` (the fields of that time, the function objects' outputs and the
application log up to it) and handed to ``checkpoint``; ``run_case(..., resume=ckpt)`` on any
worker regenerates the mesh, restores it and restarts the application from that time
(``startFrom latestTime``). With the cavity's 17-digit writes the resumed run's arrays are
bit-identical to an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from solver.output import RunResult
from sweep.errors import ConfigError

from ..errors import ExternalSolverError, ProgramDiverged, ProgramTimeout
from ..expressions import format_value, render_fields
from ..process import SCRATCH_ENV, ProgramRun, describe_exit, run_program, scratch_dir
from .case import CaseTemplate
from .outputs import read_result
from .parse import LogParser, LogSeries, fatal_message, last_meaningful_lines, truncate_rows

__all__ = ["CaseCheckpoint", "run_case", "openfoam_env", "DEFAULT_PROJECT_DIR"]

DEFAULT_PROJECT_DIR = "/usr/share/openfoam"  # Debian's openfoam package


@dataclass(frozen=True)
class CaseCheckpoint:
    """A resumable state of a running case: the files of one written time directory, the
    function objects' outputs up to it and the application log up to its last step.

    ``files`` maps paths relative to the case to bytes; everything is plain data (a driver
    can store it as one blob) and it resumes on any worker with the same case.
    """

    case_hash: str
    time_name: str
    step: int
    files: Mapping[str, bytes]

    @property
    def nbytes(self) -> int:
        """Total bytes of the files."""
        return sum(len(b) for b in self.files.values())

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays (lossless; what the engine relays and the store keeps): ``step``,
        ``header`` (JSON of the case hash, the time's name, the paths and sizes, as uint8) and
        ``data`` (the files' bytes, concatenated)."""
        paths = sorted(self.files)
        header = {
            "case_hash": self.case_hash,
            "time_name": self.time_name,
            "paths": paths,
            "sizes": [len(self.files[p]) for p in paths],
        }
        return {
            "step": np.array([self.step], dtype=np.int64),
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8).copy(),
            "data": np.frombuffer(b"".join(self.files[p] for p in paths), dtype=np.uint8).copy(),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> CaseCheckpoint:
        """Inverse of ``to_arrays`` (anything array-like, e.g. zarr arrays)."""
        header = json.loads(np.asarray(arrays["header"], dtype=np.uint8).tobytes())
        data = np.asarray(arrays["data"], dtype=np.uint8).tobytes()
        files, pos = {}, 0
        for path, size in zip(header["paths"], header["sizes"], strict=True):
            files[path] = data[pos : pos + size]
            pos += size
        step = int(np.asarray(arrays["step"]).reshape(-1)[0])
        return cls(header["case_hash"], header["time_name"], step, files)


def openfoam_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment OpenFOAM's programs get: this process's, plus ``WM_PROJECT_DIR``
    (Debian's /usr/share/openfoam unless already set; without it every tool fails)."""
    env = {**os.environ, **(extra or {})}
    if "WM_PROJECT_DIR" not in env and Path(DEFAULT_PROJECT_DIR).is_dir():
        env["WM_PROJECT_DIR"] = DEFAULT_PROJECT_DIR
    return env


def run_case(
    case: CaseTemplate,
    params: Mapping[str, Any],
    *,
    deadline: float | None = None,
    scratch_root: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    checkpoint: Callable[[CaseCheckpoint], None] | None = None,
    checkpoint_every_seconds: float | None = None,
    checkpoint_every_steps: int | None = None,
    resume: CaseCheckpoint | None = None,
    env: Mapping[str, str] | None = None,
) -> RunResult:
    """Run ``case`` with ``params`` (validated here; defaults filled in) and return its result.

    ``deadline`` is a ``time.time()`` value; ``progress(step, n_steps, t)`` is called after
    each time step; ``checkpoint`` receives a CaseCheckpoint of a newly written time directory
    once ``checkpoint_every_seconds`` have passed or ``checkpoint_every_steps`` steps were run
    since the last one (every write time if both are None: the case's ``writeInterval`` sets
    where a restart is possible); ``resume`` restarts
    from such a checkpoint. ``scratch_root``: where the scratch directory goes (default: the
    system's temporary directory); ``env``: extra environment variables for the programs.
    """
    t0 = time.time()
    values = case.validate(params)
    if resume is not None and resume.case_hash != case.hash:
        raise ConfigError(
            f"resume: checkpoint of case hash {resume.case_hash[:12]}; allowed: a checkpoint "
            f"of this case ({case.name}, hash {case.hash[:12]})"
        )
    run_env = openfoam_env(env)
    _check_programs(case, run_env)
    with scratch_dir(scratch_root, f"ns-sweep-{case.name}-", values["keep_failed"]) as work:
        run_env[SCRATCH_ENV] = str(work)
        runner = _CaseRun(
            case,
            values,
            work,
            run_env,
            deadline,
            progress,
            checkpoint,
            (checkpoint_every_seconds, checkpoint_every_steps),
        )
        runner.prepare()
        timings = runner.run_steps(resume)
        provenance = {
            **{f"wall_time_{step}": seconds for step, seconds in timings.items()},
            "resumed_from_time": resume.time_name if resume else "",
            "openfoam_build": runner.build,
        }
        result = read_result(case, values, work, runner.series, provenance)
    result.attrs["wall_time"] = time.time() - t0
    return result


def _check_programs(case: CaseTemplate, env: Mapping[str, str]) -> None:
    for argv in (("foamDictionary",), *case.steps):  # foamDictionary sets entries and restarts
        if shutil.which(argv[0], path=env.get("PATH")) is None:
            raise ExternalSolverError(
                f"{argv[0]}: not found on PATH; install OpenFOAM (Debian: apt-get "
                "install openfoam) or put its bin directory on PATH"
            )


class _CaseRun:
    """The steps of one run in its scratch directory (state shared by the line watcher)."""

    def __init__(
        self,
        case: CaseTemplate,
        values: Mapping[str, Any],
        work: Path,
        env: dict[str, str],
        deadline: float | None,
        progress: Callable[[int, int, float], None] | None,
        checkpoint: Callable[[CaseCheckpoint], None] | None,
        every: tuple[float | None, int | None],
    ) -> None:
        self.case, self.values, self.work, self.env = case, values, work, env
        self.deadline, self.progress, self.checkpoint = deadline, progress, checkpoint
        self.every_seconds, self.every_steps = every
        self.n_steps = case.n_steps(values) or 0
        self.parser = LogParser()
        self.build = ""
        self._last_ckpt = time.time()
        self._last_ckpt_step = 0
        self._pending = 0  # a written step waiting for its function-object rows before packing
        self._segment_start = 0  # steps completed before this process of the application
        self._app_log = work / f"log.{case.application}"
        self._prior_log = b""

    @property
    def series(self) -> LogSeries:
        return self.parser.series

    def prepare(self) -> None:
        """Write the case with its ``${...}`` fields filled in, then set its entries."""
        scope = {**self.case.constants, **self.values}
        rendered = {
            rel: render_fields(self.case.tree.files[rel].decode("utf-8"), fields, scope).encode()
            for rel, fields in self.case.templated.items()
        }
        self.case.tree.write(self.work, rendered)
        for entry in self.case.entries:
            value = format_value(entry.value.evaluate(scope))
            self._run(("foamDictionary", "-entry", entry.entry, "-set", value, entry.file), "foamDictionary")

    def run_steps(self, resume: CaseCheckpoint | None) -> dict[str, float]:
        """Run every step (the application resumed from ``resume`` if given); wall times by step."""
        timings: dict[str, float] = {}
        app_seen = False
        for argv in self.case.steps:
            is_app = argv[0] == self.case.application and not app_seen
            if is_app:
                app_seen = True
                if resume is not None:
                    self._restore(resume)
            name = argv[0] if argv[0] not in timings else f"{argv[0]}.{len(timings)}"
            t = time.time()
            run = self._run(argv, name, watch=is_app)
            timings[name] = time.time() - t
            if is_app:
                self._check_complete(run)
        return timings

    def _restore(self, ckpt: CaseCheckpoint) -> None:
        for rel, data in ckpt.files.items():
            target = self.work / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        self._prior_log = ckpt.files.get(self._app_log.name, b"")
        for line in self._prior_log.decode("utf-8", "replace").splitlines():
            self.parser.feed(line)
        self._segment_start = self.series.completed
        self._last_ckpt_step = self.series.completed
        if self._app_log.exists():
            self._app_log.rename(self.work / f"{self._app_log.name}.before-resume")
        self._run(
            ("foamDictionary", "-entry", "startFrom", "-set", "latestTime", "system/controlDict"),
            "foamDictionary",
        )

    def _run(self, argv: tuple[str, ...], name: str, watch: bool = False) -> ProgramRun:
        log = self.work / f"log.{name}"
        run = run_program(
            argv,
            cwd=self.work,
            env=self.env,
            deadline=self.deadline,
            stdout_path=log,
            on_line=self._watch if watch else None,
        )
        text = log.read_text(errors="replace") if log.is_file() else ""
        program = argv[0]
        steps, t = (self.series.completed, self._time()) if watch else (-1, float("nan"))
        if run.timed_out:
            assert self.deadline is not None
            raise ProgramTimeout(program, steps, t, self.deadline)
        current = self.series.times[-1] if self.series.times else float("nan")  # the step that blew up
        if run.stop_reason is not None:
            raise ProgramDiverged(
                program, len(self.series.times), current, self.series.last_courant, run.stop_reason
            )
        if run.returncode == -signal.SIGFPE or "sigFpe::sigHandler" in text:
            raise ProgramDiverged(
                program,
                len(self.series.times),
                current,
                self.series.last_courant,
                "floating-point exception (NaN or overflow) trapped by OpenFOAM",
            )
        fatal = fatal_message(text)
        if run.returncode != 0 or fatal is not None:
            why = fatal or last_meaningful_lines(text) or "no output"
            raise ExternalSolverError(
                f"{program} failed ({describe_exit(run.returncode)}): "
                + why.replace(f"{self.work}/", "").replace(str(self.work), ".")
            )
        if watch and not self.build:
            self.build = next(
                (ln.split(":", 1)[1].strip() for ln in text.splitlines()[:20] if ln.startswith("Build")), ""
            )
        return run

    def _time(self) -> float:
        s = self.series
        return s.times[s.completed - 1] if s.completed else float("nan")

    def _check_complete(self, run: ProgramRun) -> None:
        if self.n_steps and self.series.completed != self.n_steps:
            done, t = self.series.completed, self._time()
            tail = last_meaningful_lines(self._app_log.read_text(errors="replace"))
            raise ExternalSolverError(
                f"{run.argv[0]} ended after {done} of {self.n_steps} time steps (t={t:g}): {tail}"
            )

    def _watch(self, line: str) -> str | None:
        """The application's log, line by line: stop on NaN; progress and checkpoints per step."""
        s = self.series
        before, started = s.completed, len(s.times)
        stop = self.parser.feed(line)
        if stop is not None:
            return stop
        if self._pending and len(s.times) > started:
            # the next step began: the function objects have written their rows for the
            # pending write time (OpenFOAM runs them at the top of the following time step)
            self._last_ckpt, self._last_ckpt_step = time.time(), self._pending
            assert self.checkpoint is not None
            self.checkpoint(self._pack(self._pending))
            self._pending = 0
        if s.completed == before:
            return None
        step = s.completed
        if self.progress is not None:
            self.progress(step, self.n_steps, self._time())
        if (
            self.checkpoint is not None
            and step < self.n_steps
            and self._due(step)
            and (self.work / s.time_names[step - 1]).is_dir()
        ):
            self._pending = step
        return None

    def _due(self, step: int) -> bool:
        """Whether a time written at ``step`` is to be checkpointed (see ``run_case``)."""
        seconds, steps = self.every_seconds, self.every_steps
        if seconds is None and steps is None:
            return True
        return (seconds is not None and time.time() - self._last_ckpt >= seconds) or (
            steps is not None and step - self._last_ckpt_step >= steps
        )

    def _pack(self, step: int) -> CaseCheckpoint:
        """The checkpoint of the time directory written at ``step`` (complete: OpenFOAM prints
        the step's ExecutionTime line after writing it), taken once the next step has begun."""
        name = self.series.time_names[step - 1]
        files: dict[str, bytes] = {}
        for path in sorted((self.work / name).rglob("*")):
            if path.is_file():
                files[path.relative_to(self.work).as_posix()] = path.read_bytes()
        # function-object tables cut at this time (the solver may already be a step or two ahead)
        dts = [b - a for a, b in zip(self.series.times, self.series.times[1:], strict=False)]
        t_max = self.series.times[step - 1] + 0.5 * (min(dts) if dts else 0.0)
        for function in self.case.outputs.probes:
            for path in sorted((self.work / "postProcessing" / function).rglob("*")):
                if path.is_file():
                    rel = path.relative_to(self.work).as_posix()
                    files[rel] = truncate_rows(path.read_text(errors="replace"), t_max).encode()
        files[self._app_log.name] = self._prior_log + _log_upto(
            self._app_log.read_bytes(), step - self._segment_start
        )
        return CaseCheckpoint(self.case.hash, name, step, files)


def _log_upto(log: bytes, steps: int) -> bytes:
    """The log up to the end of the line closing its ``steps``-th time step."""
    pos = 0
    for _ in range(steps):
        pos = log.index(b"\nExecutionTime = ", pos) + 1
    end = log.find(b"\n", pos)
    return log[: end + 1] if end >= 0 else log
