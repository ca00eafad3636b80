"""TLS servers the tests start themselves: a self-signed certificate (`openssl req -x509`),
a `redis-server --tls-port`, and a PostgreSQL cluster that accepts TLS only."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.ports import free_port


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 that is its own CA, as hosted Redis serves:
    (certificate, key), both PEM."""
    cert, key = folder / f"{name}.pem", folder / f"{name}-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN=localhost/O={name}", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(log.read_text() if log.exists() else "server did not start")
        time.sleep(0.05)


@contextmanager
def redis_tls(folder: Path, cert: Path, key: Path) -> Iterator[int]:
    """A redis-server that speaks TLS only, on a free port (yielded); stopped afterwards."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port, log = free_port(), folder / "redis.log"
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(cert), "--tls-key-file", str(key),
         "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(folder), "--logfile", str(log)],
    )  # fmt: skip
    try:
        _wait_for_port(port, proc, log)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@contextmanager
def postgres_tls_only() -> Iterator[int]:
    """A second PostgreSQL cluster (initdb, pg_ctl as the postgres user) with ssl=on whose
    pg_hba.conf takes TLS connections only (trust) and rejects the rest; yields its port."""
    bindir = _postgres_bin()
    if bindir is None or shutil.which("runuser") is None or os.geteuid() != 0:
        pytest.skip("needs root, runuser and PostgreSQL's initdb to start a TLS-only cluster")
    # Its own folder under /tmp: the postgres user cannot reach into pytest's (mode 700).
    folder = Path(tempfile.mkdtemp(prefix="scheduler-pg-tls-"))
    try:
        folder.chmod(0o755)
        shutil.chown(folder, "postgres")
        with _cluster(bindir, folder) as port:
            yield port
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _cluster(bindir: Path, folder: Path) -> Iterator[int]:
    data = folder / "pgdata"
    cert, key = self_signed(folder, "postgres")
    for path in (cert, key):
        shutil.chown(path, "postgres")
    key.chmod(0o600)
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
         "--auth=trust", "--no-sync"],
        check=True, capture_output=True, cwd="/",
    )  # fmt: skip
    with (data / "pg_hba.conf").open("w") as hba:
        hba.write("hostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n")
    port, log = free_port(), folder / "postgres.log"
    options = (
        f"-c port={port} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={cert} "
        f"-c ssl_key_file={key} -c unix_socket_directories={folder} -c fsync=off"
    )
    pg_ctl = [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*pg_ctl, "-l", str(log), "-o", options, "-w", "start"],
        check=True, capture_output=True, cwd="/",
    )  # fmt: skip
    try:
        yield port
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], capture_output=True, cwd="/")


@contextmanager
def rabbitmq_tls() -> Iterator[tuple[int, Path, Path]]:
    """A RabbitMQ node of its own (not the machine's) that listens for AMQP over TLS only,
    with a self-signed certificate; yields (port, its certificate, a certificate from
    elsewhere). Stopped, with its folder removed, afterwards."""
    server = shutil.which("rabbitmq-server")
    if server is None or os.geteuid() != 0:
        pytest.skip("needs root and rabbitmq-server to start a TLS-only RabbitMQ node")
    # The node runs as the rabbitmq user: its folder is under /tmp and belongs to it.
    folder = Path(tempfile.mkdtemp(prefix="scheduler-rabbitmq-tls-"))
    try:
        cert, key = self_signed(folder, "rabbitmq")
        other, _ = self_signed(folder, "elsewhere")
        port = free_port()
        (folder / "rabbitmq.conf").write_text(
            f"listeners.tcp = none\nlisteners.ssl.default = 127.0.0.1:{port}\n"
            f"ssl_options.cacertfile = {cert}\nssl_options.certfile = {cert}\n"
            f"ssl_options.keyfile = {key}\nssl_options.verify = verify_none\n"
            "ssl_options.fail_if_no_peer_cert = false\nloopback_users = none\n"
        )
        (folder / "enabled_plugins").write_text("[].\n")
        for path in (folder, *folder.iterdir()):
            shutil.chown(path, "rabbitmq", "rabbitmq")
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": f"sched-tls-{port}@localhost",
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(folder / "pid"),
        }
        log = folder / "server.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [server], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            _wait_for_port(port, proc, log, timeout=90)
            yield port, cert, other
        finally:
            # The node runs as the rabbitmq user in a session of its own, out of reach of
            # the script's process group: it is stopped by name.
            subprocess.run(
                ["rabbitmqctl", "-n", env["RABBITMQ_NODENAME"], "stop"],
                capture_output=True, timeout=90,
            )  # fmt: skip
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
