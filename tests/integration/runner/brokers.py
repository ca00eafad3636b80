"""The brokers the real-process tests run on: the test Redis, and RabbitMQ on its own
virtual host per test session so parallel runs of the suite never share a queue."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
from urllib.parse import urlsplit

import pytest
from kombu import Connection

from tasks.celery_app import RUNS_QUEUE, SCHEDULER_QUEUE

AMQP_BASE = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")


def require_rabbitmq() -> None:
    """Skip the calling test when no RabbitMQ listens (a fresh machine running `make test`
    without one: only PostgreSQL and Redis have embedded fallbacks), except in CI
    (CI=true), where .ci/run starts RabbitMQ and its absence is a failure."""
    parts = urlsplit(AMQP_BASE)
    try:
        socket.create_connection((parts.hostname, parts.port or 5672), timeout=2).close()
    except OSError as exc:
        message = f"RabbitMQ is not reachable at {parts.hostname}:{parts.port or 5672}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@functools.cache
def amqp_url() -> str:
    """A RabbitMQ URL on a vhost of this session (`rabbitmqctl` creates it when it is
    available; else the default vhost)."""
    index = os.environ.get("TEST_REDIS_DB") or str(os.getpid())
    vhost = f"sched_test_{index}"
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return AMQP_BASE + "//"
    for args in (["add_vhost", vhost], ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]):
        # add_vhost fails harmlessly when the vhost exists.
        subprocess.run([ctl, *args], capture_output=True, timeout=60, check=False)
    return f"{AMQP_BASE}/{vhost}"


def purge(url: str) -> None:
    """Empty the queues of the product on `url` (what a flushed Redis DB is for Redis)."""
    with Connection(url, connect_timeout=5) as connection:
        channel = connection.channel()
        for queue in (RUNS_QUEUE, SCHEDULER_QUEUE):
            try:
                channel.queue_purge(queue)
            except Exception:  # never declared on this vhost: nothing to purge
                channel = connection.channel()
