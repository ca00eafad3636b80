"""Scheduled fires past MAX_WAITING_RUNS_PER_TENANT are recorded as skipped, with the cap as
their reason, never dropped silently (docs/design.md section 17, app/waiting.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app import admission, errors, waiting
from tests import factories

NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
_NO_SLOTS = admission.Limits(max_running=1, max_per_tenant=1)


@pytest.fixture(autouse=True)
def no_free_slot(engine):
    """The one slot is taken: every run the tick creates stays pending."""
    with engine.begin() as conn:
        factories.occupy_slot(conn)


def statuses(engine, tenant: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT status, count(*) FROM runs WHERE tenant_id = :t GROUP BY status"),
            {"t": tenant},
        )
        return dict(rows.all())


@pytest.mark.parametrize(("batch_size", "concurrency"), [(100, 1), (2, 1), (3, 3)])
def test_fires_past_the_cap_are_skipped_with_the_reason(
    make_triggers, tick, engine, batch_size, concurrency
):
    make_triggers(8, next_run_at=NOON, tenant_id="a")
    make_triggers(2, next_run_at=NOON, tenant_id="b")

    stats = tick(
        NOON + timedelta(seconds=1), batch_size=batch_size, concurrency=concurrency,
        max_waiting_per_tenant=5, limits=_NO_SLOTS,
    )  # fmt: skip

    assert (stats.dispatched, stats.capped) == (7, 3)
    assert statuses(engine, "a") == {"pending": 5, "skipped": 3}
    assert statuses(engine, "b") == {"pending": 2}
    with engine.connect() as conn:
        errors = conn.execute(
            text("SELECT DISTINCT error FROM runs WHERE status = 'skipped'")
        ).scalars()
        assert list(errors) == [waiting.skip_reason(5)]


def test_the_cap_counts_what_was_waiting_before_the_tick(make_triggers, tick, engine):
    make_triggers(4, next_run_at=NOON, tenant_id="a", cron="* * * * *")
    first = tick(NOON + timedelta(seconds=1), max_waiting_per_tenant=6, limits=_NO_SLOTS)
    second = tick(NOON + timedelta(minutes=1, seconds=1), max_waiting_per_tenant=6,
                  limits=_NO_SLOTS)  # fmt: skip

    assert (first.dispatched, first.capped) == (4, 0)
    assert (second.dispatched, second.capped) == (2, 2)
    assert statuses(engine, "a") == {"pending": 6, "skipped": 2}


def test_the_latest_fires_are_the_ones_skipped(make_triggers, tick, engine):
    make_triggers(2, next_run_at=NOON - timedelta(minutes=3), tenant_id="a",
                  catchup_policy="all", cron="* * * * *")  # fmt: skip

    tick(NOON + timedelta(seconds=1), max_waiting_per_tenant=5, limits=_NO_SLOTS)

    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT scheduled_for, status FROM runs ORDER BY scheduled_for")
        ).all()
    pending = [at for at, status in rows if status == "pending"]
    skipped = [at for at, status in rows if status == "skipped"]
    assert len(pending) == 5 and len(skipped) == 3
    assert max(pending) <= min(skipped)


def test_runs_in_progress_are_counted_they_come_back_as_retries(engine) -> None:
    """Cap 3: three runs created, two start. A recount of pending runs alone set the bound
    to 2 and let a fourth run in; when the two failed and waited again as retries, the
    tenant had 4 pending runs (5 with one more call). Runs in progress count."""

    def create(conn, count: int) -> None:
        factories.make_runs(conn, count, tenant_id="t")
        waiting.hold(conn, "t", created=count, limit=3)

    with engine.begin() as conn:
        create(conn, 3)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE runs SET status = 'running', attempt = 1, started_at = now() "
                "WHERE id IN (SELECT id FROM runs WHERE tenant_id = 't' LIMIT 2)"
            )
        )
    with pytest.raises(errors.WaitingRunsLimitReached), engine.begin() as conn:
        create(conn, 1)
    with engine.begin() as conn:  # the two fail and wait for their retries
        conn.execute(
            text(
                "UPDATE runs SET status = 'pending', not_before = now() + interval '1 minute' "
                "WHERE tenant_id = 't' AND status = 'running'"
            )
        )
    assert statuses(engine, "t") == {"pending": 3}
