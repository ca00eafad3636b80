"""Ports for the servers the tests start (gunicorn, the Procfile's web, TLS brokers).

`bind(("", 0))` and closing the socket only names a port that was free a moment ago: the
kernel hands the same ephemeral ports to the next `bind(0)` and to every outgoing
connection, so the server that binds it later can find it taken (gunicorn then retries and
gives up, and a health check may reach another test's server). Here a port comes from
below the ephemeral range, where the kernel hands out nothing by itself, and is claimed in
Redis (`SET NX` with an expiry, beside the sessions' claims of their Redis databases), so
no two tests on this machine, in this suite or another, are given the same one."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import redis

FIRST = 20000
CLAIM_SECONDS = 3600


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def claims() -> redis.Redis | None:
    """The Redis that holds the claims (REDIS_URL's database, where the sessions claim
    their Redis databases too), or None when it cannot be reached."""
    base = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        return redis.Redis.from_url(base, socket_timeout=2)
    except (ValueError, redis.RedisError):
        return None


def claim_key(port: int) -> str:
    return f"scheduler-tests:port:{port}"


def _claimed(client: redis.Redis | None, port: int) -> bool:
    if client is None:
        return True
    try:
        return bool(client.set(claim_key(port), os.getpid(), nx=True, ex=CLAIM_SECONDS))
    except redis.RedisError:
        return True  # no claims without Redis: the bind check alone


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("", port))  # every address: the Procfile's web binds 0.0.0.0
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port no other test on this machine has been given in the last hour, free now."""
    last = max(_ephemeral_low(), FIRST + 1000)
    client = claims()
    try:
        for _ in range(500):
            port = FIRST + secrets.randbelow(last - FIRST)
            if _claimed(client, port) and _bindable(port):
                return port
    finally:
        if client is not None:
            client.close()
    raise RuntimeError(f"no free port between {FIRST} and {last}")
