from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from app import retention
from tests import factories

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _runs(conn, count: int = 1, *, status: str, finished_at: datetime | None) -> None:
    factories.make_runs(
        conn, count, tenant_id="a", scheduled_for=NOW, status=status, finished_at=finished_at
    )


def test_old_finished_runs_are_pruned_in_batches_and_the_rest_kept(engine) -> None:
    old = NOW - timedelta(days=31)
    with engine.begin() as conn:
        _runs(conn, 25, status="succeeded", finished_at=old)
        _runs(conn, status="failed", finished_at=NOW - timedelta(days=29))
        _runs(conn, status="pending", finished_at=None)
        conn.execute(
            text(
                "INSERT INTO idempotency_records (tenant_id, key, request_hash, created_at) "
                "VALUES ('a', 'old', 'h', :old), ('a', 'new', 'h', :new)"
            ),
            {"old": NOW - timedelta(hours=25), "new": NOW - timedelta(hours=1)},
        )

    result = retention.prune(
        engine, now=NOW, run_retention_days=30, idempotency_retention_hours=24, batch_size=10
    )

    assert (result.runs, result.idempotency_records, result.complete) == (25, 1, True)
    with engine.connect() as conn:
        left = conn.execute(text("SELECT status FROM runs ORDER BY status")).scalars().all()
        keys = conn.execute(text("SELECT key FROM idempotency_records")).scalars().all()
    assert left == ["failed", "pending"]
    assert keys == ["new"]


def test_a_bounded_prune_reports_that_work_remains(engine) -> None:
    with engine.begin() as conn:
        _runs(conn, 5, status="succeeded", finished_at=NOW - timedelta(days=40))
    result = retention.prune(
        engine,
        now=NOW,
        run_retention_days=30,
        idempotency_retention_hours=24,
        batch_size=2,
        max_batches=2,
    )
    assert (result.runs, result.complete) == (4, False)


def test_dead_webhook_secrets_are_pruned_a_day_after_they_stop_signing(engine) -> None:
    day = timedelta(hours=24)
    rows = {  # name: (expires_at, revoked_at)
        "current": (None, None),
        "in-grace": (NOW + timedelta(hours=3), None),
        "expired-just-now": (NOW - timedelta(hours=1), None),
        "expired-long-ago": (NOW - day - timedelta(seconds=1), None),
        "revoked-long-ago": (None, NOW - timedelta(days=3)),
        "revoked-after-expiry": (NOW - timedelta(days=2), NOW - timedelta(days=5)),
        "revoked-just-now": (NOW + timedelta(hours=1), NOW - timedelta(minutes=5)),
    }
    with engine.begin() as conn:
        for name, (expires_at, revoked_at) in rows.items():
            conn.execute(
                text(
                    "INSERT INTO webhook_secrets (id, tenant_id, secret_ciphertext, created_at, "
                    "expires_at, revoked_at) VALUES (:id, :name, 'x', :created, :exp, :rev)"
                ),
                {"id": uuid.uuid4(), "name": name, "created": NOW - timedelta(days=9),
                 "exp": expires_at, "rev": revoked_at},
            )  # fmt: skip

    result = retention.prune(
        engine, now=NOW, run_retention_days=30, idempotency_retention_hours=24, batch_size=2
    )

    assert (result.webhook_secrets, result.complete) == (3, True)
    with engine.connect() as conn:
        left = set(conn.execute(text("SELECT tenant_id FROM webhook_secrets")).scalars())
    assert left == {"current", "in-grace", "expired-just-now", "revoked-just-now"}
