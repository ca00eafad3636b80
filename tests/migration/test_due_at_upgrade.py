"""Migration 0016 writes `due_at` for the runs made before it, as the rule it replaces said.

A scheduled run keeps its own (its fire plus jitter); a manual run is due at its
`scheduled_for` (it was NULL); a backfill is due when it was made (`created_at`, where it
held its fire plus jitter). A run an older release inserts without the column afterwards
is due when it is made. The downgrade gives a manual run NULL and a backfill its fire.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import create_engine, text

from tests import support

FIRE = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
MADE = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
JITTER = timedelta(seconds=40)


def _due(engine) -> dict[str, datetime | None]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT kind, due_at FROM runs")).all())


def test_existing_runs_get_the_due_at_the_old_rule_gave_them_and_back() -> None:
    database = support.database_at("0015", "sched_due_at")
    engine = create_engine(support.sqlalchemy_url(database))
    trigger_id = uuid.uuid4()
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO triggers (id, tenant_id, name, cron, action) "
                    "VALUES (:id, 'acme', 'old', '0 * * * *', '{}'::jsonb)"
                ),
                {"id": trigger_id},
            )
            for kind, due_at in (("scheduled", FIRE + JITTER), ("manual", None),
                                 ("backfill", FIRE + JITTER)):  # fmt: skip
                conn.execute(
                    text(
                        "INSERT INTO runs (id, trigger_id, tenant_id, scheduled_for, due_at, "
                        "kind, idempotency_key, created_at) VALUES (gen_random_uuid(), :t, "
                        "'acme', :fire, :due, :kind, :kind, :made)"
                    ),
                    {"t": trigger_id, "fire": FIRE, "due": due_at, "kind": kind, "made": MADE},
                )
        engine.dispose()

        support.migrate(database, "0016")

        assert _due(engine) == {"scheduled": FIRE + JITTER, "manual": FIRE, "backfill": MADE}
        with engine.begin() as conn:  # an older release's manual run, without the column
            due_when_made = conn.execute(
                text(
                    "INSERT INTO runs (id, trigger_id, tenant_id, scheduled_for, kind, "
                    "idempotency_key) VALUES (gen_random_uuid(), :t, 'acme', now(), 'manual', "
                    "'late') RETURNING due_at = created_at"
                ),
                {"t": trigger_id},
            ).scalar_one()
            assert due_when_made is True
            conn.execute(text("DELETE FROM runs WHERE idempotency_key = 'late'"))
        engine.dispose()

        command.downgrade(support.alembic_config(database), "0015")

        assert _due(engine) == {"scheduled": FIRE + JITTER, "manual": None, "backfill": FIRE}
    finally:
        engine.dispose()
        support.drop_database(database)
