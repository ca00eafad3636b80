"""A deploy, end to end, with the Procfile's real processes.

Issue "Operations", docs/design.md section 8.

Release A (web, worker and beat with 2-second ticks) runs one-time triggers spaced a second
apart; release B's web, worker, scheduler and beat start beside it (the overlap of a deploy); B's
restart hook hands dispatching over; A is stopped with SIGTERM. Every fire must have exactly
one run, every run created after the hook carries B's generation, A's ticks were refused,
and nothing is left pending or running. It runs on each broker: Redis and RabbitMQ.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from app import config
from tests.integration.runner import brokers

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-restart-secret-0123456789"
TRIGGERS = 36
SPACING = timedelta(seconds=1)


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Release:
    """One release's processes, started from the Procfile lines: the three of
    docs/design.md section 1 (web, worker, beat), and optionally the dedicated tick
    process `scheduler`."""

    name: str
    env: dict[str, str]
    logs: Path
    kinds: tuple[str, ...] = ("web", "worker", "beat")
    port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self) -> None:
        commands = procfile()
        bin_dir = str(Path(sys.executable).parent)
        env = {
            **self.env,
            "RELEASE_ID": self.name,
            "PORT": str(self.port),
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "WEB_CONCURRENCY": "1",
            "WORKER_CONCURRENCY": "2",
        }
        for kind in self.kinds:
            out = (self.logs / f"{self.name}-{kind}.log").open("w")
            # Its own process group: stop() signals the whole group, as a platform does.
            self.procs[kind] = subprocess.Popen(
                ["bash", "-c", commands[kind]], cwd=ROOT, env=env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_until_serving(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                requests.get(self.url("/healthz"), timeout=5)
                return
            except requests.RequestException:
                time.sleep(0.2)
        raise AssertionError(f"release {self.name}'s web never answered")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> dict[str, int]:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, sig)
        codes = {}
        for kind, proc in self.procs.items():
            try:
                codes[kind] = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                codes[kind] = proc.wait()
        return codes

    def log_events(self, kind: str) -> list[dict]:
        events = []
        for line in (self.logs / f"{self.name}-{kind}.log").read_text().splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return events


@pytest.fixture(params=["redis", "amqp"])
def stack_env(
    request: pytest.FixtureRequest, settings: config.Settings, engine, redis_client
) -> Iterator[dict[str, str]]:
    broker = settings.redis_url
    if request.param == "amqp":
        brokers.require_rabbitmq()
        broker = brokers.amqp_url()
        brokers.purge(broker)
    yield {
        **{k: v for k, v in os.environ.items() if k not in ("RELEASE_ID",)},
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "BROKER_URL": broker,
        "SCHEDULER_RESTART_SECRET": SECRET,
        "SECRET_KEY": "deploy-tests-secret-key-0123456789abcdef",
        "DISPATCH_INTERVAL_SECONDS": "2",
        "HEARTBEAT_SECONDS": "1",
        "HEARTBEAT_TIMEOUT_SECONDS": "10",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }


def make_key(env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "flask"), "--app", "web", "keys", "create",
         "--tenant", "e2e", "--principal", "e2e", "--role", "admin", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])["key"]


def restart_hook(release: Release, *, deployed: str | None = None, status: int = 200) -> dict:
    """Call `release`'s hook naming the `deployed` release (default: its own)."""
    response = requests.post(
        release.url("/api/v1/admin/scheduler/restart"),
        headers={"X-Scheduler-Secret": SECRET},
        json={"release": deployed or release.name},
        timeout=10,
    )
    assert response.status_code == status, response.text
    return response.json()


def test_a_deploy_overlap_loses_and_duplicates_nothing(stack_env, engine, tmp_path) -> None:
    started = time.monotonic()
    a = Release("A", stack_env, tmp_path)
    # B also runs the optional `scheduler` process: both layouts hand over the same way.
    b = Release("B", stack_env, tmp_path, kinds=("web", "worker", "scheduler", "beat"))
    try:
        a.start()
        a.wait_until_serving()
        first = restart_hook(a)  # A's release phase
        assert first["deployment_id"] == "A"

        key = make_key(stack_env)
        t0 = datetime.now(UTC) + timedelta(seconds=6)
        fires = [t0 + n * SPACING for n in range(TRIGGERS)]
        for n, fire in enumerate(fires):
            response = requests.post(
                a.url("/api/v1/triggers"),
                headers={"Authorization": f"Bearer {key}"},
                json={"name": f"e2e-{n}", "run_at": fire.isoformat(),
                      "action": {"type": "task", "name": "echo"}, "payload": {"n": n}},
                timeout=10,
            )  # fmt: skip
            assert response.status_code == 201, response.text

        time.sleep(8)  # A dispatches the first fires alone
        b.start()
        b.wait_until_serving()
        time.sleep(3)  # A and B overlap; B's ticks are refused until the hook
        # B's hook call reaching one of A's web processes is refused and changes nothing.
        stale = restart_hook(a, deployed="B", status=409)
        assert stale["error"]["code"] == "release_mismatch"
        hook = restart_hook(b)
        hooked_at = datetime.now(UTC)
        assert (hook["deployment_id"], hook["generation"]) == ("B", first["generation"] + 1)

        time.sleep(6)  # both run; only B dispatches now
        codes = a.stop(signal.SIGTERM)
        assert set(codes) == {"web", "worker", "beat"}

        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                counts = conn.execute(text(
                    "SELECT count(*) FILTER "
                    "(WHERE status NOT IN ('pending', 'admitted', 'running')), "
                    "count(*) FROM runs"
                )).one()  # fmt: skip
            if datetime.now(UTC) > fires[-1] and counts[0] == counts[1] >= TRIGGERS:
                break
            time.sleep(0.5)
    finally:
        a.stop(signal.SIGKILL, timeout=5)
        b.stop(signal.SIGTERM)

    with engine.connect() as conn:
        runs = conn.execute(text(
            "SELECT r.trigger_id, r.scheduled_for, r.status, r.generation, r.created_at, "
            "t.run_at FROM runs r JOIN triggers t ON t.id = r.trigger_id ORDER BY t.run_at"
        )).all()  # fmt: skip
        due_left = conn.execute(text(
            "SELECT count(*) FROM triggers WHERE enabled AND next_run_at IS NOT NULL"
        )).scalar()  # fmt: skip

    assert len(runs) == TRIGGERS, "every fire exactly one run"
    assert len({r.trigger_id for r in runs}) == TRIGGERS
    assert all(r.scheduled_for == r.run_at for r in runs)
    assert due_left == 0
    assert {r.status for r in runs} == {"succeeded"}, "nothing pending, running or failed"
    after_hook = [r for r in runs if r.created_at > hooked_at]
    assert after_hook, "some fires were dispatched after the hook"
    assert {r.generation for r in after_hook} == {hook["generation"]}

    refused = [
        e for release in (a, b) for kind in release.kinds for e in release.log_events(kind)
        if e.get("event") == "tick_superseded"
    ]  # fmt: skip
    assert any(e.get("release") == "A" and e.get("deployment_id") == "B" for e in refused)
    assert time.monotonic() - started < 120
