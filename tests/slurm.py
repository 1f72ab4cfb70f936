"""A real one-node SLURM for tests: munged, slurmctld and slurmd as child processes.

Use the session fixture ``slurm`` (import it into a test module or conftest.py:
``from slurm import slurm  # noqa: F401``). It starts Debian's slurm-wlm 22.05 daemons in a
private temp directory with free ports (two test runs may share a machine), sets ``SLURM_CONF``
in ``os.environ`` for the session (so ``sbatch``/``squeue`` and dask-jobqueue's calls reach it),
yields a ``Slurm`` (config path, partition, the node's cores and memory, queue helpers), and at
the end cancels every job, waits for an empty queue, then stops slurmd, slurmctld and munged in
that order (slurmd first while jobs still complete would leave ``slurmstepd`` orphans). It skips
with the reason when the binaries are missing (``apt-get install slurm-wlm slurm-wlm-torque``).

Facts behind the choices are in ../shared/notes/slurm.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["BINARIES", "Slurm", "slurm_missing", "start_slurm", "slurm"]

# Daemons (in /usr/sbin, often not on a user's PATH) and the clients the tests call.
BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
PARTITION = "debug"
# The node offers less memory than the machine has, so jobs cannot exhaust a shared CI box.
NODE_MEMORY_MB = 4096


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")


def slurm_missing() -> str | None:
    """Why a test SLURM cannot start here, or None when it can."""
    missing = [b for b in BINARIES if _which(b) is None]
    if missing:
        return f"SLURM not installed (no {', '.join(missing)}): apt-get install slurm-wlm slurm-wlm-torque"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Child pre-exec: SIGTERM the daemon if the test process dies without its teardown
    (PR_SET_PDEATHSIG), so a killed pytest leaves no SLURM behind."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class Slurm:
    """A running test SLURM: what clients need, and helpers over its queue."""

    root: Path  # the temp directory with config, state, spool, logs and the munge socket
    conf: Path  # give clients SLURM_CONF=<conf>
    partition: str
    node: str
    cores: int  # CPUs of the one node
    memory_mb: int  # RealMemory of the node
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The environment of a client process (``os.environ`` plus ``SLURM_CONF``)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, timeout: float = 30, check: bool = True) -> str:
        """Run a SLURM client command against this cluster; its stdout."""
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}: {out.stderr.strip()}")
        return out.stdout

    def squeue(self, fmt: str = "%i %j %T") -> list[list[str]]:
        """The queue (pending, running and completing jobs), one list of fields per job."""
        return [line.split() for line in self.run("squeue", "-h", "-o", fmt).splitlines() if line.strip()]

    def job_ids(self) -> list[str]:
        """Ids of the jobs in the queue."""
        return [row[0] for row in self.squeue("%i")]

    def wait_queue_empty(self, timeout: float = 30) -> float:
        """Wait until no job is pending, running or completing; the seconds it took.
        Raises TimeoutError naming the jobs still there."""
        t0 = time.monotonic()
        while True:
            rows = self.squeue()
            if not rows:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"jobs still in the queue after {timeout:g} s: {rows}")
            time.sleep(0.2)

    def node_idle(self) -> bool:
        """True when the node is up with no job on it or completing (``sinfo`` says idle)."""
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() == "idle"

    def cancel_all(self) -> None:
        """Cancel every job of this user."""
        self.run("scancel", "--user", getpass.getuser(), check=False)

    def check_alive(self) -> None:
        """Raise RuntimeError naming a daemon that exited, with the end of its log."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = self.root / "log" / f"{name}.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"{name} exited with code {proc.returncode}:\n{tail}")


def _write_config(conf: Path, root: Path, node: str, cores: int, memory_mb: int, user: str) -> None:
    ctl_port, d_port = _free_port(), _free_port()
    while d_port == ctl_port:
        d_port = _free_port()
    lines = [
        "ClusterName=nssweep-test",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={ctl_port}",
        f"SlurmdPort={d_port}",
        f"SlurmUser={user}",
        f"SlurmdUser={user}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root}/munge/munge.socket",
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/run/slurmctld.pid",
        f"SlurmdPidFile={root}/run/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log",
        f"SlurmdLogFile={root}/log/slurmd.log",
        "ProctrackType=proctrack/pgid",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "MpiDefault=none",
        "SwitchType=switch/none",
        "MailProg=/bin/true",
        "ReturnToService=2",
        # A cancelled job's processes get SIGTERM, then SIGKILL this many seconds later
        # (default 30): a dask worker stops on SIGTERM at once, so teardown stays short.
        "KillWait=5",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cores} RealMemory={memory_mb} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
    ]
    conf.write_text("\n".join(lines) + "\n")


def _spawn(name: str, cmd: Sequence[str], root: Path, env: dict[str, str]) -> subprocess.Popen:
    out = open(root / "log" / f"{name}.out", "wb")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        list(cmd), stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
    )


def _stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def start_slurm(memory_mb: int = NODE_MEMORY_MB, ready_timeout: float = 20) -> Iterator[Slurm]:
    """Start munged, slurmctld and slurmd in a fresh temp directory; stop them on exit.

    The directory is under /tmp with a short name (munge's Unix socket path is limited) and
    mode 755 (munged requires its socket directory be world-executable). Raises RuntimeError
    with the daemon's log when the node is not idle within ``ready_timeout`` seconds.
    """
    reason = slurm_missing()
    if reason is not None:
        raise RuntimeError(reason)
    root = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
    info = Slurm(root, root / "slurm.conf", PARTITION, socket.gethostname().split(".")[0], 0, 0)
    try:
        for sub in ("munge", "state", "spool", "run", "log"):
            (root / sub).mkdir()
        os.chmod(root, 0o755)
        os.chmod(root / "munge", 0o755)
        # the node line slurmd would register with (`slurmd -C`): its CPUs, at most its memory
        probe = subprocess.run(
            [_which("slurmd") or "slurmd", "-C"], capture_output=True, text=True, timeout=30
        )
        fields = dict(f.split("=", 1) for f in probe.stdout.split() if "=" in f)
        info.cores = int(fields.get("CPUs", os.cpu_count() or 1))
        info.memory_mb = min(memory_mb, int(fields.get("RealMemory", memory_mb)))
        _write_config(info.conf, root, info.node, info.cores, info.memory_mb, getpass.getuser())
        env = {**os.environ, "SLURM_CONF": str(info.conf)}
        key = root / "munge" / "munge.key"
        subprocess.run(
            [_which("mungekey") or "mungekey", "--create", f"--keyfile={key}"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        os.chmod(key, 0o600)
        info.procs["munged"] = _spawn(
            "munged",
            [
                _which("munged") or "munged",
                "--foreground",
                f"--socket={root}/munge/munge.socket",
                f"--key-file={key}",
                f"--pid-file={root}/run/munged.pid",
                f"--log-file={root}/log/munged.log",
                f"--seed-file={root}/munge/munged.seed",
            ],
            root,
            env,
        )
        _wait_for(lambda: (root / "munge" / "munge.socket").exists(), info, "munged", 10)
        info.procs["slurmctld"] = _spawn(
            "slurmctld", [_which("slurmctld") or "slurmctld", "-D", "-f", str(info.conf)], root, env
        )
        info.procs["slurmd"] = _spawn(
            "slurmd", [_which("slurmd") or "slurmd", "-D", "-f", str(info.conf), "-N", info.node], root, env
        )
        _wait_for(info.node_idle, info, "slurmd", ready_timeout)
        yield info
    finally:
        _teardown(info)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for(cond: Callable[[], bool], info: Slurm, what: str, timeout: float) -> None:
    t0 = time.monotonic()
    while not cond():
        info.check_alive()
        if time.monotonic() - t0 > timeout:
            log = info.root / "log" / f"{what}.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"test SLURM: {what} not ready after {timeout:g} s:\n{tail}")
        time.sleep(0.1)


def _teardown(info: Slurm) -> None:
    """scancel, wait for an empty queue and an idle node (every job's slurmstepd gone), then
    stop slurmd, slurmctld, munged (this order)."""
    if info.procs.get("slurmctld") is not None and info.procs["slurmctld"].poll() is None:
        with contextlib.suppress(Exception):
            info.cancel_all()
            info.wait_queue_empty(timeout=30)
            _wait_for(info.node_idle, info, "slurmd", 15)
    for name in ("slurmd", "slurmctld", "munged"):
        proc = info.procs.get(name)
        if proc is not None:
            _stop(proc)


@pytest.fixture(scope="session")
def slurm() -> Iterator[Slurm]:
    """A one-node SLURM for the whole session (``SLURM_CONF`` set in ``os.environ``);
    skips when slurm-wlm is not installed."""
    reason = slurm_missing()
    if reason is not None:
        pytest.skip(reason)
    with start_slurm() as info, pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(info.conf))
        yield info
