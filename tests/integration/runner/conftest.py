"""Factories for the runner tests: triggers and runs inserted directly, the runner called
in-process with a recording publisher, a real local HTTP receiver."""

from __future__ import annotations

import dataclasses
import json
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text

from app import config, limiter, runs
from tests.integration.runner.receiver import Receiver
from tests.support import FakeClock

ECHO = {"type": "task", "name": "echo"}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclasses.dataclass
class Harness:
    engine: Engine
    settings: config.Settings
    redis: redis.Redis
    clock: FakeClock
    published: list[tuple[str, datetime | None]] = dataclasses.field(default_factory=list)

    def configure(self, **overrides: Any) -> None:
        """Change settings (max_running, heartbeat_seconds, ...) for the runtimes built next."""
        self.settings = dataclasses.replace(self.settings, **overrides)

    def runtime(self, *, clock: Any = None, publish: Any = None, **fields: Any) -> runs.Runtime:
        return runs.Runtime(
            engine=self.engine,
            limiter=limiter.Limiter(
                self.redis,
                max_running=self.settings.max_running,
                max_per_tenant=self.settings.max_running_per_tenant,
                lease_seconds=self.settings.slot_lease_seconds,
            ),
            publish=publish or (lambda run_id, eta: self.published.append((run_id, eta))),
            settings=self.settings,
            worker=fields.pop("worker", "test-worker"),
            clock=clock or self.clock.now,
            rng=fields.pop("rng", random.Random(7)),
            **fields,
        )

    def execute(self, run_id: uuid.UUID, **fields: Any) -> str:
        return runs.execute_run(str(run_id), self.runtime(**fields))

    def trigger(
        self,
        *,
        action: dict[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
        tenant_id: str = "tenant-a",
        cron: str | None = "*/5 * * * *",
        run_at: datetime | None = None,
        enabled: bool = True,
        overlap_policy: str = "allow",
        max_attempts: int = 3,
        retry_backoff_seconds: int = 10,
        timeout_seconds: int = 30,
    ) -> uuid.UUID:
        trigger_id = uuid.uuid4()
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO triggers (id, tenant_id, name, cron, run_at, enabled, action, "
                    "payload, overlap_policy, max_attempts, retry_backoff_seconds, "
                    "timeout_seconds) VALUES (:id, :tenant, 'test', :cron, :run_at, :enabled, "
                    "CAST(:action AS jsonb), CAST(:payload AS jsonb), :overlap, :attempts, "
                    ":backoff, :timeout)"
                ),
                {
                    "id": trigger_id,
                    "tenant": tenant_id,
                    "cron": None if run_at else cron,
                    "run_at": run_at,
                    "enabled": enabled,
                    "action": json.dumps(action or ECHO),
                    "payload": json.dumps(payload or {}),
                    "overlap": overlap_policy,
                    "attempts": max_attempts,
                    "backoff": retry_backoff_seconds,
                    "timeout": timeout_seconds,
                },
            )
        return trigger_id

    def run(
        self,
        trigger_id: uuid.UUID,
        *,
        scheduled_for: datetime | None = None,
        kind: str = "scheduled",
        status: str = "pending",
        attempt: int = 0,
        tenant_id: str | None = None,
    ) -> uuid.UUID:
        run_id = uuid.uuid4()
        moment = scheduled_for or self.clock.now()
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO runs (id, trigger_id, tenant_id, scheduled_for, kind, "
                    "idempotency_key, status, attempt, generation, created_at, started_at, "
                    "heartbeat_at) SELECT :id, t.id, COALESCE(:tenant, t.tenant_id), :at, :kind, "
                    ":key, :status, :attempt, 7, :now, :started, :started "
                    "FROM triggers t WHERE t.id = :tid"
                ),
                {
                    "id": run_id,
                    "tid": trigger_id,
                    "tenant": tenant_id,
                    "at": moment,
                    "kind": kind,
                    "key": f"{trigger_id}:{iso(moment)}:{run_id.hex[:6]}",
                    "status": status,
                    "attempt": attempt,
                    "now": self.clock.now(),
                    "started": self.clock.now() if status == "running" else None,
                },
            )
        return run_id

    def row(self, run_id: uuid.UUID) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return dict(
                conn.execute(text("SELECT * FROM runs WHERE id = :id"), {"id": run_id})
                .mappings()
                .one()
            )

    def statuses(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT status, count(*) FROM runs GROUP BY status"))
            return {status: count for status, count in rows}


@pytest.fixture()
def harness(
    engine: Engine, redis_client: redis.Redis, settings: config.Settings, clock: FakeClock
) -> Harness:
    return Harness(engine=engine, settings=settings, redis=redis_client, clock=clock)


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def later(moment: datetime, seconds: float) -> datetime:
    return moment + timedelta(seconds=seconds)


@pytest.fixture()
def publish(celery_app: object, harness: Harness) -> Callable[..., int]:
    """tasks.publish.enqueue_runs into the test Redis, for tests with real worker processes
    (which use the real clock, so the harness's clock is set to it)."""
    from tasks import publish as publisher

    harness.clock.set(datetime.now(UTC))
    return publisher.enqueue_runs
