"""A scheduled run records the run_as of its trigger as the tick found it (docs/design.md
section 18): a later change of the trigger does not rewrite it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from tests.integration.dispatch.conftest import runs

NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def test_each_scheduled_run_records_its_triggers_run_as(engine, make_triggers, tick):
    alice, bob = make_triggers(2, next_run_at=NOON)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE triggers SET run_as = CASE WHEN id = :a THEN 'alice' ELSE 'bob' END"),
            {"a": alice},
        )

    tick(NOON + timedelta(seconds=1))
    with engine.begin() as conn:  # the trigger changes hands after its fire was dispatched
        conn.execute(text("UPDATE triggers SET run_as = 'carol' WHERE id = :a"), {"a": alice})
    tick(NOON + timedelta(minutes=5, seconds=1))

    recorded = [(r["trigger_id"], r["scheduled_for"], r["run_as"]) for r in runs(engine)]
    assert sorted(recorded) == sorted([
        (alice, NOON, "alice"), (bob, NOON, "bob"),
        (alice, NOON + timedelta(minutes=5), "carol"), (bob, NOON + timedelta(minutes=5), "bob"),
    ])  # fmt: skip
