"""A deploy, end to end, with the Procfile's real processes.

Issue "Operations", docs/design.md section 8.

Release A (web, worker and beat with 1-second ticks) runs; a one-time trigger is created
through the API every half second, due three seconds later, for as long as the deploy lasts,
so fires fall due in every phase of it. A dispatches fires alone; release B's web, worker,
scheduler and beat start beside it (the overlap of a deploy) and B's ticks are refused; B's
restart hook hands dispatching over; once B has dispatched and A's ticks are refused, A is
stopped with SIGTERM and B dispatches alone. Each phase lasts until the test sees, in the
database or the logs, the state the next one needs (a wait with a deadline, never a fixed
sleep). Every fire must have exactly one run, every run created after the hook carries B's
generation, and nothing is left pending or running. It runs on each broker: Redis and
RabbitMQ.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from app import config, db, keys
from tests import support
from tests.integration.runner import brokers
from tests.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-restart-secret-0123456789"
# A one-time trigger is created every SPACING, due LEAD after its creation.
SPACING = timedelta(seconds=0.5)
LEAD = timedelta(seconds=3)  # a run_at already past when the API reads it is refused


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line)


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
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        return {
            kind: support.stop_group(proc, timeout=timeout, sig=sig)
            for kind, proc in self.procs.items()
        }

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
        "DISPATCH_INTERVAL_SECONDS": "1",
        "HEARTBEAT_SECONDS": "1",
        "HEARTBEAT_TIMEOUT_SECONDS": "10",
        # Celery's soft shutdown sleeps this whole grace whenever a task was in progress at
        # SIGTERM, however soon it ended; here a tick nearly always is. The runs are echo
        # (milliseconds): 2 s is grace enough, where the default 20 s made the test's two
        # stops last from 0 to 40 s.
        "WORKER_SHUTDOWN_GRACE_SECONDS": "2",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }


def make_key(settings: config.Settings) -> str:
    engine = db.get_engine(settings.sqlalchemy_url)
    with db.session_scope(engine) as session:
        return keys.create(
            session, tenant_id="e2e", principal="e2e", role="admin", now=datetime.now(UTC)
        ).key


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


class Feeder(threading.Thread):
    """Creates a one-time trigger through `release`'s API every SPACING, each firing LEAD
    later, until stopped: whatever each phase of the deploy lasts, fires fall due in it.
    The release it calls may be changed while it runs."""

    def __init__(self, release: Release, key: str) -> None:
        super().__init__(daemon=True)
        self.release, self.key = release, key
        self.fires: list[datetime] = []
        self.errors: list[str] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            fire = datetime.now(UTC) + LEAD
            n = len(self.fires)
            try:
                response = requests.post(
                    self.release.url("/api/v1/triggers"),
                    headers={"Authorization": f"Bearer {self.key}"},
                    json={"name": f"e2e-{n}", "run_at": fire.isoformat(),
                          "action": {"type": "task", "name": "echo"}, "payload": {"n": n}},
                    timeout=10,
                )  # fmt: skip
            except requests.RequestException as exc:
                self.errors.append(repr(exc))
                return
            if response.status_code != 201:
                self.errors.append(response.text)
                return
            self.fires.append(fire)
            self.stopped.wait(SPACING.total_seconds())

    def stop(self) -> list[datetime]:
        """Stop creating; return the fire instants of the triggers created."""
        self.stopped.set()
        self.join(timeout=15)
        assert not self.errors, self.errors
        return self.fires


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    """Poll `condition` every 0.2 s until it is true; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.2)


def runs_of_generation(engine, generation: int) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM runs WHERE generation = :g"), {"g": generation}
        ).scalar_one()


def dispatched_since(engine, moment: datetime) -> bool:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT EXISTS (SELECT FROM runs WHERE created_at > :at)"), {"at": moment}
        ).scalar_one()


def refused(releases: tuple[Release, ...], release: str, deployment_id: str) -> bool:
    """Whether a worker of `releases` logged a tick of `release` refused under
    `deployment_id`."""
    return any(
        e.get("event") == "tick_superseded"
        and (e.get("release"), e.get("deployment_id")) == (release, deployment_id)
        for r in releases for kind in r.procs for e in r.log_events(kind)
    )  # fmt: skip


def test_a_deploy_overlap_loses_and_duplicates_nothing(stack_env, settings, engine, tmp_path):
    started = time.monotonic()
    a = Release("A", stack_env, tmp_path)
    # B also runs the optional `scheduler` process: both layouts hand over the same way.
    b = Release("B", stack_env, tmp_path, kinds=("web", "worker", "scheduler", "beat"))
    feeder = None
    try:
        a.start()
        key = make_key(settings)
        a.wait_until_serving()
        first = restart_hook(a)  # A's release phase
        assert first["deployment_id"] == "A"
        feeder = Feeder(a, key)
        feeder.start()

        wait_until(lambda: runs_of_generation(engine, first["generation"]) > 0,
                   "A dispatches fires alone")  # fmt: skip
        b.start()
        b.wait_until_serving()
        # A and B overlap; B's ticks are refused until the hook.
        wait_until(lambda: refused((a, b), "B", "A"), "a tick of B is refused")
        # B's hook call reaching one of A's web processes is refused and changes nothing.
        stale = restart_hook(a, deployed="B", status=409)
        assert stale["error"]["code"] == "release_mismatch"
        hook = restart_hook(b)
        hooked_at = datetime.now(UTC)
        assert (hook["deployment_id"], hook["generation"]) == ("B", first["generation"] + 1)

        # Both run; only B dispatches now.
        wait_until(lambda: runs_of_generation(engine, hook["generation"]) > 0,
                   "B dispatches")  # fmt: skip
        wait_until(lambda: refused((a, b), "A", "B"), "a tick of A is refused")
        feeder.release = b  # A's web goes away with A: new triggers come in through B
        codes = a.stop(signal.SIGTERM)
        assert set(codes) == {"web", "worker", "beat"}
        a_stopped_at = datetime.now(UTC)
        wait_until(lambda: dispatched_since(engine, a_stopped_at), "B dispatches alone")
        fires = feeder.stop()

        def settled() -> bool:
            with engine.connect() as conn:
                done, made = conn.execute(text(
                    "SELECT count(*) FILTER "
                    "(WHERE status NOT IN ('pending', 'admitted', 'running')), "
                    "count(*) FROM runs"
                )).one()  # fmt: skip
            return datetime.now(UTC) > fires[-1] and done == made >= len(fires)

        wait_until(settled, "every fire's run has finished", timeout=45)
    finally:
        if feeder is not None:
            feeder.stopped.set()
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

    assert len(runs) == len(fires), "every fire exactly one run"
    assert len({r.trigger_id for r in runs}) == len(fires)
    assert all(r.scheduled_for == r.run_at for r in runs)
    assert due_left == 0
    assert {r.status for r in runs} == {"succeeded"}, "nothing pending, running or failed"
    after_hook = [r for r in runs if r.created_at > hooked_at]
    assert after_hook, "some fires were dispatched after the hook"
    assert {r.generation for r in after_hook} == {hook["generation"]}
    assert time.monotonic() - started < 120
