"""The harness's own PostgreSQL cluster and Redis broker, each on its own bridge address.

The machine's servers listen on 127.0.0.1 only and are left alone: the harness starts a
throwaway cluster (`initdb` + `pg_ctl` under `runuser -u postgres`) and a `redis-server`
with no persistence, so a broker restart loses every message it held (the worst case).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from chaos import net

PG_PORT = 55432
REDIS_PORT = 56379
DATABASE = "chaos"


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"{name} not found under /usr/lib/postgresql/*/bin")
    return found[-1]


def wait_listening(addr: str, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((addr, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {addr}:{port} after {timeout} s")


class Postgres:
    """A cluster in `base/pg`, listening on net.PG_ADDR only."""

    def __init__(self, base: Path) -> None:
        self.data = base / "pg"
        self.log = base / "postgres.log"
        self.url = f"postgresql://postgres@{net.PG_ADDR}:{PG_PORT}/{DATABASE}"

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       capture_output=True, text=True)  # fmt: skip

    def start(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir(parents=True)
        shutil.chown(self.data, "postgres", "postgres")
        self.log.touch()
        shutil.chown(self.log, "postgres", "postgres")
        self._as_postgres(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U",
                          "postgres", "--no-sync")  # fmt: skip
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {net.SUBNET_PREFIX}.0/24 trust\n")
        options = (
            f"-c listen_addresses={net.PG_ADDR} -c port={PG_PORT} -c unix_socket_directories='' "
            "-c max_connections=200 -c fsync=off -c synchronous_commit=off"
        )
        self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                          "-o", options, "-w", "start")  # fmt: skip
        wait_listening(net.PG_ADDR, PG_PORT)
        import psycopg2

        conn = psycopg2.connect(self.url.rsplit("/", 1)[0] + "/postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {DATABASE}")
        conn.close()

    def terminate_backends(self) -> int:
        """pg_terminate_backend every other connection to the harness database; return how many."""
        import psycopg2

        conn = psycopg2.connect(self.url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                    "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                    "AND application_name NOT LIKE 'chaos-%%'",
                    (DATABASE,),
                )
                return int(cur.fetchone()[0])
        finally:
            conn.close()

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(["runuser", "-u", "postgres", "--", _pg_bin("pg_ctl"), "-D",
                            str(self.data), "-m", "immediate", "stop"],
                           capture_output=True)  # fmt: skip


class Redis:
    """A redis-server on net.REDIS_ADDR with no persistence."""

    def __init__(self, base: Path) -> None:
        self.log = base / "redis.log"
        self.url = f"redis://{net.REDIS_ADDR}:{REDIS_PORT}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("a")
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", net.REDIS_ADDR, "--port", str(REDIS_PORT), "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_listening(net.REDIS_ADDR, REDIS_PORT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self, down_seconds: float = 2.0) -> None:
        """Kill the broker (every message in it is lost), wait, start it again."""
        self.stop()
        time.sleep(down_seconds)
        self.start()
