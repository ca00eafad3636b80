"""Fixtures for the dispatcher tests: triggers inserted in bulk (tests/factories.py), queued
messages read back, a tick."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime

import pytest
import redis
from sqlalchemy import Engine, text

from app import admission, dispatch
from tasks.celery_app import RUNS_QUEUE
from tests import factories

UNLIMITED = admission.Limits(max_running=1_000_000, max_per_tenant=1_000_000)


@pytest.fixture()
def make_triggers(engine: Engine) -> Callable[..., list[uuid.UUID]]:
    def make(
        count: int = 1,
        *,
        next_run_at: datetime,
        cron: str | None = "*/5 * * * *",
        timezone: str = "UTC",
        run_at: datetime | None = None,
        catchup_policy: str = "latest",
        catchup_window_seconds: int = 3600,
        tenant_id: str = "tenant-a",
        enabled: bool = True,
    ) -> list[uuid.UUID]:
        with engine.begin() as conn:
            return factories.make_triggers(
                conn,
                count,
                tenant_id=tenant_id,
                name=factories.sql("'t' || (n - 1)"),
                cron=cron,
                timezone=timezone,
                run_at=run_at,
                next_run_at=next_run_at,
                catchup_policy=catchup_policy,
                catchup_window_seconds=catchup_window_seconds,
                enabled=enabled,
            )

    return make


@pytest.fixture()
def queued(redis_client: redis.Redis) -> Callable[[], list[str]]:
    """The Celery task ids waiting in the runs queue, oldest first."""

    def read() -> list[str]:
        messages = redis_client.lrange(RUNS_QUEUE, 0, -1)
        return [json.loads(m)["headers"]["id"] for m in reversed(messages)]

    return read


@pytest.fixture()
def tick(engine: Engine, celery_app: object) -> Callable[..., dispatch.TickStats]:
    """One tick with the real publisher, at the given instant, as the given release.

    Limits are out of the way (every run gets a slot) unless the test passes `limits`: these
    tests are about dispatch; admission has its own (test_admission.py)."""
    from tasks import publish

    def run(
        now: datetime, *, release: str = "test-release", publisher=None, **options: object
    ) -> dispatch.TickStats:
        options.setdefault("limits", UNLIMITED)
        return dispatch.run_tick(
            engine,
            now=now,
            release_id=release,
            publish=publisher or publish.enqueue_runs,
            options=dispatch.TickOptions(**options),
        )

    return run


def runs(engine: Engine, where: str = "TRUE", **params: object) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT * FROM runs WHERE {where} ORDER BY scheduled_for, created_at"), params
        ).mappings()
        return [dict(r) for r in rows]


def trigger(engine: Engine, trigger_id: uuid.UUID) -> dict:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM triggers WHERE id = :id"), {"id": trigger_id})
        return dict(row.mappings().one())
