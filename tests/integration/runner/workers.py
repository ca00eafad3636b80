"""Real `celery -A tasks worker` processes for the runner tests, and a polling helper."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from app import admission, config, recovery
from tests import support

ROOT = Path(__file__).resolve().parents[3]
CELERY = str(Path(sys.executable).parent / "celery")
T = TypeVar("T")


def worker_env(settings: config.Settings, **overrides: str) -> dict[str, str]:
    """The environment of a worker process on the test database and Redis."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "BROKER_URL": settings.broker_url,
        "RELEASE_ID": settings.release_id,
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "HEARTBEAT_SECONDS": "1",
        "HEARTBEAT_TIMEOUT_SECONDS": "3",
        "SLOT_LEASE_SECONDS": "5",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "kv",
        **overrides,
    }


class Workers:
    """Celery worker processes, each in its own process group so SIGKILL takes the pool too."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, concurrency: int = 1, queues: str = "runs") -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [CELERY, "-A", "tasks", "worker", "-Q", queues, "-P", "prefork"]
            + ["-c", str(concurrency), "-n", f"{name}@%h", "--loglevel", "INFO"]
            + ["--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def shared(self) -> subprocess.Popen:
        """A worker with two processes kept for the whole module."""
        proc = self.procs.get("shared")
        return proc if proc and proc.poll() is None else self.start("shared", concurrency=2)

    def kill(self, name: str) -> None:
        support.stop_group(self.procs.pop(name), timeout=10, sig=signal.SIGKILL)

    def terminate(self, name: str, *, timeout: float) -> float:
        """SIGTERM to the worker's whole process group, as a platform stops a dyno; return
        how long it took to exit (SIGKILL after `timeout`, and the test fails)."""
        proc = self.procs.pop(name)
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            support.stop_group(proc, timeout=0, sig=signal.SIGKILL)
            raise AssertionError(f"worker {name} ignored SIGTERM for {timeout} s") from None
        took = time.monotonic() - started
        support.stop_group(proc, timeout=10)  # its pool processes too, if any outlived it
        return took

    def stop_all(self) -> None:
        """Stop every worker and whatever it started: one left consuming after its test
        would take the next tests' messages."""
        for name, proc in list(self.procs.items()):
            support.stop_group(proc, timeout=10)
            del self.procs[name]


def wait_for(check: Callable[[], T], *, timeout: float, every: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def status_is(harness: Any, run_id: Any, status: str) -> Callable[[], dict[str, Any] | None]:
    """A check for wait_for: the run's row once it has `status`, else None."""

    def check() -> dict[str, Any] | None:
        row = harness.row(run_id)
        return row if row["status"] == status else None

    return check


def hand_off(harness: Any, publish: Callable[..., Any]) -> admission.HandOff:
    """What a tick's hand-off does: admit into the free slots with the worker's limits
    (`worker_env`'s defaults unless the harness was configured otherwise), then publish."""
    limits = admission.Limits(
        max_running=harness.settings.max_running,
        max_per_tenant=harness.settings.max_running_per_tenant,
    )
    return admission.hand_off(harness.engine, limits, publish)


def sweep_until_requeued(harness: Any, publish: Callable[..., Any], *, timeout: float) -> int:
    """Run the dispatcher's recovery sweep and hand-off (as every tick does) until the run of
    a lost worker goes back to the queue and on to another worker: after the workers' 3 s
    heartbeat timeout, on PostgreSQL's clock."""
    options = recovery.RecoveryOptions(heartbeat_timeout_seconds=3, admitted_lease_seconds=5)

    def sweep() -> int:
        requeued = recovery.sweep(harness.engine, options=options).requeued
        hand_off(harness, publish)
        return requeued

    return wait_for(sweep, timeout=timeout, every=0.5)
