"""A remote scheduler: `dask scheduler` and `dask worker` subprocesses on 127.0.0.1, plain
TCP and TLS (certificates generated here), driven by `sweep run --scheduler`.

The worker runs in its own directory, and the sweep's store lives where only the client
writes: results travel back through Dask, as they must when workers share no disk.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_stores_identical, store_records, tiny_sweep

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _write_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and one certificate for 127.0.0.1/localhost signed by it (scheduler, worker, client)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sweep test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


class _RemoteCluster:
    """`dask scheduler` + one `dask worker` (2 threads are not needed: 1 process, 1 thread)."""

    def __init__(self, tmp: Path, tls: tuple[Path, Path, Path] | None) -> None:
        self.tmp = tmp
        self.tls = tls
        self.procs: list[subprocess.Popen] = []
        self.scheduler_file = tmp / "scheduler.json"

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        ca, cert, key = self.tls
        return ["--tls-ca-file", str(ca), "--tls-cert", str(cert), "--tls-key", str(key)]

    def start(self, *, worker: bool = True) -> str:
        sched = [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(self.scheduler_file),
        ]
        if self.tls is not None:
            sched += ["--protocol", "tls", *self._tls_args()]
        self.procs.append(
            subprocess.Popen(
                sched, cwd=self.tmp, stdout=subprocess.DEVNULL, stderr=open(self.tmp / "scheduler.err", "w")
            )
        )
        deadline = time.time() + 60
        while not self.scheduler_file.exists() or not self.scheduler_file.read_text().strip():
            assert time.time() < deadline, (self.tmp / "scheduler.err").read_text()
            time.sleep(0.2)
        time.sleep(0.2)  # the file is written in one go, but give the writer a moment
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        if not worker:
            return self.address
        workdir = self.tmp / "worker-home"  # the worker's own directory: no shared store path
        workdir.mkdir()
        worker = [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            self.address,
            "--nthreads",
            "1",
            "--nworkers",
            "1",
            "--host",
            "127.0.0.1",
            "--no-dashboard",
            "--local-directory",
            str(workdir),
            *self._tls_args(),
        ]
        self.procs.append(
            subprocess.Popen(
                worker, cwd=workdir, stdout=subprocess.DEVNULL, stderr=open(self.tmp / "worker.err", "w")
            )
        )
        self._wait_for_worker()
        return self.address

    def _wait_for_worker(self) -> None:
        from distributed import Client
        from distributed.security import Security

        sec = None
        if self.tls is not None:
            ca, cert, key = self.tls
            sec = Security(
                tls_ca_file=str(ca),
                tls_client_cert=str(cert),
                tls_client_key=str(key),
                require_encryption=True,
            )
        with Client(self.address, security=sec, timeout="30s") as c:
            c.wait_for_workers(1, timeout=60)

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A package directory and its sweep, run in this process on a one-worker LocalCluster."""
    import io

    from conftest import write_packages

    from sweep.engine import run_sweep

    tmp = tmp_path_factory.mktemp("remote-ref")
    pkgs = write_packages(tmp / "packages", tiny_sweep(3, initial_condition="random"))
    store = tmp / "seq.zarr"
    res = run_sweep(pkgs, store, mode="sequential", progress_bar=False, out=io.StringIO())
    assert res.exit_code == 0
    return pkgs, store


@pytest.mark.parametrize("use_tls", [False, True], ids=["tcp", "tls"])
def test_cluster_remote_scheduler_gives_the_local_results(tmp_path: Path, reference, sweep_cli, use_tls):
    pkgs, ref_store = reference
    tls = _write_certificates(tmp_path) if use_tls else None
    cluster = _RemoteCluster(tmp_path, tls)
    try:
        address = cluster.start()
        assert address.startswith("tls://" if use_tls else "tcp://")
        store = tmp_path / "client-side" / "r.zarr"
        tls_args = (
            []
            if tls is None
            else ["--tls-ca", str(tls[0]), "--tls-cert", str(tls[1]), "--tls-key", str(tls[2])]
        )
        res = sweep_cli("run", str(pkgs), "--store", str(store), "--scheduler", address, *tls_args)
        assert res.returncode == 0, res.stderr + res.stdout
        assert f"remote scheduler {address}" in res.stdout
        assert {r.status for r in store_records(store).values()} == {"done"}
        assert_stores_identical(ref_store, store)
        # nothing of the sweep was written on the worker's side
        assert not list((tmp_path / "worker-home").rglob("*.zarr"))
        # the same scheduler found through its scheduler file
        store2 = tmp_path / "client-side" / "r2.zarr"
        res = sweep_cli(
            "run",
            str(pkgs),
            "--store",
            str(store2),
            "--scheduler-file",
            str(cluster.scheduler_file),
            *tls_args,
        )
        assert res.returncode == 0, res.stderr + res.stdout
        assert_stores_identical(ref_store, store2)
    finally:
        cluster.stop()


def test_cluster_remote_tls_without_certificates_is_refused(tmp_path: Path, reference, sweep_cli):
    pkgs, _ = reference
    res = sweep_cli("run", str(pkgs), "--store", str(tmp_path / "r.zarr"), "--scheduler", "tls://127.0.0.1:9")
    assert res.returncode == 2
    assert "a tls:// scheduler needs --tls-ca, --tls-cert, --tls-key" in res.stderr
    assert not (tmp_path / "r.zarr").exists()


@pytest.mark.parametrize("scheme", ["tls", "tcp"])
def test_cluster_remote_tls_options_must_match_the_scheduler(tmp_path: Path, reference, sweep_cli, scheme):
    pkgs, _ = reference
    tls = _write_certificates(tmp_path)
    cluster = _RemoteCluster(tmp_path, tls if scheme == "tls" else None)
    try:
        address = cluster.start(worker=False)
        store = tmp_path / "r.zarr"
        if scheme == "tls":  # a TLS scheduler found through its file, without the TLS files
            args = ["--scheduler-file", str(cluster.scheduler_file)]
            message = "--tls-ca: missing; allowed: a tls:// scheduler needs --tls-ca, --tls-cert, --tls-key"
        else:  # TLS files given for a plain TCP scheduler: never silently ignored
            args = ["--scheduler", address, "--tls-ca", str(tls[0]), "--tls-cert", str(tls[1])]
            args += ["--tls-key", str(tls[2])]
            message = "allowed: the TLS files only with a tls:// scheduler"
        res = sweep_cli("run", str(pkgs), "--store", str(store), *args)
        assert res.returncode == 2, res.stderr + res.stdout
        (line,) = res.stderr.strip().splitlines()
        assert message in line and "Traceback" not in res.stderr, line
        assert not store.exists()
    finally:
        cluster.stop()
