"""Migration 0003 (schedules beyond cron) keeps existing triggers firing.

docs/design.md section 3.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from app import dispatch
from tests import support

NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture()
def database_at() -> Iterator[Callable[[str], str]]:
    """A new database at the revision asked for (support.database_at), dropped after."""
    made: list[str] = []

    def make(revision: str) -> str:
        made.append(support.database_at(revision, "sched_upg"))
        return made[-1]

    yield make
    for url in made:
        support.drop_database(url)


def test_an_existing_trigger_keeps_firing_across_the_upgrade(
    database_at: Callable[[str], str],
) -> None:
    database = database_at("0001")
    engine = create_engine(support.sqlalchemy_url(database))
    trigger_id = uuid.uuid4()
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO triggers (id, tenant_id, name, cron, action, next_run_at) "
                    "VALUES (:id, 'acme', 'old', '*/5 * * * *', CAST(:action AS jsonb), :due)"
                ),
                {"id": trigger_id, "action": json.dumps({"type": "task", "name": "echo"}),
                 "due": NOON},
            )  # fmt: skip
        support.migrate(database, "head")
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT next_run_at, next_fire_at, jitter_seconds FROM triggers")
            ).one()
        assert tuple(row) == (NOON, NOON, 0)

        published: list[uuid.UUID] = []
        stats = dispatch.run_tick(
            engine, now=NOON + timedelta(seconds=3), release_id="r1", publish=published.extend
        )
        with engine.connect() as conn:
            [run] = conn.execute(text("SELECT * FROM runs")).mappings().all()
            after = conn.execute(text("SELECT next_run_at, next_fire_at FROM triggers")).one()
    finally:
        engine.dispose()
    assert stats.dispatched == 1 and published == [run["id"]]
    assert (run["scheduled_for"], run["due_at"], run["kind"]) == (NOON, NOON, "scheduled")
    assert run["idempotency_key"] == f"{trigger_id}:2026-01-05T12:00:00Z"
    assert tuple(after) == (NOON + timedelta(minutes=5), NOON + timedelta(minutes=5))


def test_downgrade_keeps_backfill_runs_jittered_fires_and_refuses_to_drop_interval_triggers(
    database_at: Callable[[str], str],
) -> None:
    database = database_at("head")
    cfg = support.alembic_config(database)
    engine = create_engine(support.sqlalchemy_url(database))
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO runs (id, trigger_id, tenant_id, scheduled_for, kind, "
                    "idempotency_key) VALUES (:id, :tid, 'acme', :at, 'backfill', 'k1')"
                ),
                {"id": uuid.uuid4(), "tid": uuid.uuid4(), "at": NOON},
            )
            conn.execute(
                text(
                    "INSERT INTO triggers (id, tenant_id, name, interval_seconds, action) "
                    "VALUES (:id, 'acme', 'every hour', 3600, '{}'::jsonb)"
                ),
                {"id": uuid.uuid4()},
            )
        with pytest.raises(RuntimeError, match="1 interval trigger"):
            command.downgrade(cfg, "0001")
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM triggers"))
            conn.execute(
                text(
                    "INSERT INTO triggers (id, tenant_id, name, cron, action, jitter_seconds, "
                    "next_fire_at, next_run_at) VALUES (:id, 'acme', 'jittered', '0 * * * *', "
                    "'{}'::jsonb, 600, :fire, :due)"
                ),
                {"id": uuid.uuid4(), "fire": NOON, "due": NOON + timedelta(seconds=321)},
            )
        command.downgrade(cfg, "0001")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT kind FROM runs")).scalar_one() == "manual"
            # the older dispatcher plans from next_run_at: it holds the nominal fire again
            assert conn.execute(text("SELECT next_run_at FROM triggers")).scalar_one() == NOON
        command.upgrade(cfg, "head")
    finally:
        engine.dispose()
