"""Migration 0014 (principals and run-as) keeps existing keys and triggers working.

docs/design.md section 18: keys made before it are `admin` keys of their tenant (principal
`legacy`); existing triggers run as `legacy`, keep firing, and those keys still change them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from app import config, dispatch, keys
from tests import support
from web import create_app

NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture()
def database_at() -> Iterator[Callable[[str], str]]:
    """A new database at the revision asked for (support.database_at), dropped after."""
    made: list[str] = []

    def make(revision: str) -> str:
        made.append(support.database_at(revision, "sched_principals"))
        return made[-1]

    yield make
    for url in made:
        support.drop_database(url)


def test_existing_keys_and_triggers_keep_working_across_the_upgrade(
    database_at: Callable[[str], str], redis_url: str
) -> None:
    database = database_at("0012")
    engine = create_engine(support.sqlalchemy_url(database))
    trigger_id, run_id, key = uuid.uuid4(), uuid.uuid4(), keys.generate()
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, is_admin) "
                    "VALUES (:id, 'acme', 'old', :prefix, :hash, false)"
                ),
                {"id": uuid.uuid4(), "prefix": key[:12], "hash": keys.hash_key(key)},
            )
            conn.execute(
                text(
                    "INSERT INTO triggers (id, tenant_id, name, cron, action, next_run_at, "
                    "next_fire_at) VALUES (:id, 'acme', 'old', '*/5 * * * *', "
                    "CAST(:action AS jsonb), :due, :due)"
                ),
                {"id": trigger_id, "action": json.dumps({"type": "task", "name": "echo"}),
                 "due": NOON},
            )  # fmt: skip
            conn.execute(
                text(
                    "INSERT INTO runs (id, trigger_id, tenant_id, scheduled_for, "
                    "idempotency_key, status) VALUES (:id, :tid, 'acme', :at, 'old-run', "
                    "'succeeded')"
                ),
                {"id": run_id, "tid": trigger_id, "at": NOON - timedelta(minutes=5)},
            )
        support.migrate(database, "head")

        with engine.connect() as conn:
            key_row = conn.execute(text("SELECT principal, role, is_admin FROM api_keys")).one()
            trigger_row = conn.execute(
                text("SELECT run_as, created_by, updated_by FROM triggers")
            ).one()
            old_run = conn.execute(text("SELECT run_as FROM runs")).scalar_one()
        assert tuple(key_row) == ("legacy", "admin", False)
        assert tuple(trigger_row) == ("legacy", "legacy", "legacy")
        assert old_run == "legacy"

        # The trigger keeps firing, and its new run records whom it runs as.
        stats = dispatch.run_tick(
            engine, now=NOON + timedelta(seconds=3), release_id="r1", publish=lambda ids: None
        )
        with engine.connect() as conn:
            fired = conn.execute(
                text("SELECT run_as FROM runs WHERE id <> :id"), {"id": run_id}
            ).scalar_one()
        assert stats.dispatched == 1 and fired == "legacy"

        # Over HTTP, the old key reads the trigger and changes it, even its run_as: an admin.
        settings = config.Settings.from_env(
            {"DATABASE_URL": database, "REDIS_URL": redis_url, "RELEASE_ID": "r1"}
        )
        client = create_app(settings).test_client()
        auth = {"Authorization": f"Bearer {key}"}
        read = client.get(f"/api/v1/triggers/{trigger_id}", headers=auth)
        assert read.status_code == 200
        assert (read.json["run_as"], read.json["created_by"]) == ("legacy", "legacy")
        changed = client.patch(
            f"/api/v1/triggers/{trigger_id}", headers=auth, json={"run_as": "alice"}
        )
        assert changed.status_code == 200, changed.json
        assert (changed.json["run_as"], changed.json["updated_by"]) == ("alice", "legacy")
        history = client.get(f"/api/v1/runs/{run_id}", headers=auth)
        assert history.json["run_as"] == "legacy"  # history is not rewritten
    finally:
        engine.dispose()


def test_the_downgrade_removes_principals_and_run_as(database_at: Callable[[str], str]) -> None:
    database = database_at("head")
    command.downgrade(support.alembic_config(database), "0012")
    engine = create_engine(support.sqlalchemy_url(database))
    try:
        with engine.connect() as conn:
            columns = conn.execute(
                text(
                    "SELECT table_name || '.' || column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND column_name IN ('principal', 'role', "
                    "'run_as', 'created_by', 'updated_by')"
                )
            ).scalars()
            assert list(columns) == []
    finally:
        engine.dispose()
