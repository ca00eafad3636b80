"""Factories for the runner tests: triggers and runs inserted directly, the runner called
in-process with a recording publisher, a real local HTTP receiver."""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text

from app import admission, config, runs
from tests import factories
from tests.integration.runner import brokers
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
    published: list[uuid.UUID] = dataclasses.field(default_factory=list)

    def configure(self, **overrides: Any) -> None:
        """Change settings (max_running, heartbeat_seconds, ...) for the runtimes built next."""
        self.settings = dataclasses.replace(self.settings, **overrides)

    def runtime(self, *, clock: Any = None, publish: Any = None, **fields: Any) -> runs.Runtime:
        return runs.Runtime(
            engine=self.engine,
            publish=publish or self.published.extend,
            settings=self.settings,
            worker=fields.pop("worker", "test-worker"),
            clock=clock or self.clock.now,
            rng=fields.pop("rng", random.Random(7)),
            **fields,
        )

    def execute(self, run_id: uuid.UUID, **fields: Any) -> str:
        return runs.execute_run(str(run_id), self.runtime(**fields))

    def admit(self) -> list[uuid.UUID]:
        """Run admission with the harness's limits; return the runs it admitted."""
        admitted, _skipped = admission.admit(
            self.engine,
            admission.Limits(
                max_running=self.settings.max_running,
                max_per_tenant=self.settings.max_running_per_tenant,
            ),
        )
        return admitted

    def db_now(self) -> datetime:
        """PostgreSQL's clock, the one that times retries and leases."""
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT clock_timestamp()")).scalar_one()

    def retry_due_in(self, run_id: uuid.UUID) -> float:
        """Seconds from now (PostgreSQL's clock) until the run's `not_before`."""
        return (self.row(run_id)["not_before"] - self.db_now()).total_seconds()

    def make_due(self, run_id: uuid.UUID) -> None:
        """Move a retry's `not_before` into the past (PostgreSQL's clock), as time would."""
        with self.engine.begin() as conn:
            conn.execute(
                text("UPDATE runs SET not_before = now() - interval '1 s' WHERE id = :id"),
                {"id": run_id},
            )

    def trigger(
        self,
        *,
        action: dict[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
        tenant_id: str = "tenant-a",
        cron: str | None = "*/5 * * * *",
        run_at: datetime | None = None,
        interval_seconds: int | None = None,
        enabled: bool = True,
        overlap_policy: str = "allow",
        max_attempts: int = 3,
        retry_backoff_seconds: int = 10,
        timeout_seconds: int = 30,
    ) -> uuid.UUID:
        with self.engine.begin() as conn:
            return factories.make_trigger(
                conn,
                tenant_id=tenant_id,
                name="test",
                cron=None if run_at or interval_seconds else cron,
                run_at=run_at,
                interval_seconds=interval_seconds,
                enabled=enabled,
                action=action or ECHO,
                payload=payload or {},
                overlap_policy=overlap_policy,
                max_attempts=max_attempts,
                retry_backoff_seconds=retry_backoff_seconds,
                timeout_seconds=timeout_seconds,
            )

    def run(
        self,
        trigger_id: uuid.UUID,
        *,
        scheduled_for: datetime | None = None,
        kind: str = "scheduled",
        status: str = "admitted",
        attempt: int = 0,
        tenant_id: str | None = None,
    ) -> uuid.UUID:
        run_id = uuid.uuid4()
        moment = scheduled_for or self.clock.now()
        # PostgreSQL's clock, as the runner stamps it: a fresh heartbeat.
        started = datetime.now(UTC) if status == "running" else None
        in_progress = status in ("admitted", "running")
        with self.engine.begin() as conn:
            factories.make_run(
                conn,
                id=run_id,
                trigger_id=trigger_id,
                **({"tenant_id": tenant_id} if tenant_id else {}),
                scheduled_for=moment,
                kind=kind,
                idempotency_key=f"{trigger_id}:{iso(moment)}:{run_id.hex[:6]}",
                status=status,
                attempt=attempt,
                generation=7,
                created_at=self.clock.now(),
                started_at=started,
                heartbeat_at=started,
                enqueued_at=factories.sql("now()") if in_progress else None,
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
def broker(
    request: pytest.FixtureRequest, settings: config.Settings, celery_app: Any
) -> Iterator[str]:
    """The broker URL of the test: the test Redis, or RabbitMQ for a test parametrized with
    `@pytest.mark.parametrize("broker", ["redis", "amqp"], indirect=True)`. The product's
    Celery app publishes to it; workers get it as BROKER_URL (worker_env)."""
    from tasks.celery_app import use_broker

    kind = getattr(request, "param", "redis")
    if kind == "amqp":
        brokers.require_rabbitmq()
    url = settings.redis_url if kind == "redis" else brokers.amqp_url()
    if kind == "amqp":
        brokers.purge(url)
    use_broker(celery_app, url)
    yield url
    use_broker(celery_app, settings.redis_url)


@pytest.fixture()
def publish(broker: str, harness: Harness) -> Callable[..., int]:
    """tasks.publish.enqueue_runs into the test's broker, for tests with real worker
    processes (which use the real clock, so the harness's clock is set to it)."""
    from tasks import publish as publisher

    harness.clock.set(datetime.now(UTC))
    return publisher.enqueue_runs
