"""The dispatcher with interval and jittered triggers, jitter changes, and reconciliation."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app import db, schedule, triggers
from tests import support
from tests.integration.dispatch.conftest import runs, trigger

NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
ECHO = {"type": "task", "name": "echo"}


def create(engine, now: datetime, **values) -> dict:
    with db.session_scope(engine) as session:
        made = triggers.create(
            session,
            tenant_id="acme",
            now=now,
            values={"name": "t", "action": ECHO, **values},
            max_triggers=100,
            by=support.OWNER,
        )
        return {"id": made.id, "spec": schedule.TriggerSpec.of(made)}


def patch(engine, trigger_id, now: datetime, **changes) -> None:
    with db.session_scope(engine) as session:
        triggers.update(
            session, trigger_id, scope=None, changes=changes, if_match=None, now=now,
            by=support.OWNER,
        )  # fmt: skip


def test_an_interval_trigger_runs_at_each_anchor_multiple(engine, tick, queued) -> None:
    made = create(engine, NOON, interval_seconds=5400, anchor_at=NOON - timedelta(minutes=20))
    # fires at 11:40 + k * 90 min: 13:10, 14:40, ...
    assert trigger(engine, made["id"])["next_run_at"] == datetime(2026, 1, 5, 13, 10, tzinfo=UTC)
    assert tick(datetime(2026, 1, 5, 13, 9, 59, tzinfo=UTC)).dispatched == 0
    assert tick(datetime(2026, 1, 5, 13, 10, 1, tzinfo=UTC)).dispatched == 1
    [run] = runs(engine)
    assert run["scheduled_for"] == run["due_at"] == datetime(2026, 1, 5, 13, 10, tzinfo=UTC)
    row = trigger(engine, made["id"])
    assert row["next_run_at"] == row["next_fire_at"] == datetime(2026, 1, 5, 14, 40, tzinfo=UTC)


def test_a_jittered_fire_is_claimed_when_due_and_keeps_its_nominal_key(engine, tick) -> None:
    fire = datetime(2026, 1, 5, 13, 0, tzinfo=UTC)
    while True:  # a trigger id whose 13:00 delay is over a minute (59 ids in 60 are)
        made = create(engine, NOON, cron="0 * * * *", jitter_seconds=3600)
        due = schedule.due_at(made["spec"], fire)
        if due - fire > timedelta(seconds=60):
            break
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM triggers WHERE id = :id"), {"id": made["id"]})
    row = trigger(engine, made["id"])
    assert (row["next_fire_at"], row["next_run_at"]) == (fire, due)

    assert tick(fire + timedelta(seconds=1)).due == 0  # nominal time: not yet
    assert tick(due - timedelta(seconds=1)).due == 0
    assert tick(due + timedelta(seconds=1)).dispatched == 1
    [run] = runs(engine)
    assert (run["scheduled_for"], run["due_at"]) == (fire, due)
    assert run["idempotency_key"] == f"{made['id']}:2026-01-05T13:00:00Z"
    following = fire + timedelta(hours=1)
    row = trigger(engine, made["id"])
    assert (row["next_fire_at"], row["next_run_at"]) == (
        following, schedule.due_at(made["spec"], following)
    )  # fmt: skip


@pytest.mark.parametrize("policy", ["latest", "none"])
def test_changing_the_jitter_never_runs_a_fire_twice_or_not_at_all(engine, tick, policy) -> None:
    made = create(engine, NOON, cron="*/10 * * * *", jitter_seconds=500, catchup_policy=policy)
    # An id whose delays turn a pending fire late after some of the changes below (checked
    # against the engine: without the rule that a changed due instant is never before the
    # change, both policies lose a fire with this id).
    fixed = uuid.UUID(int=2)
    with engine.begin() as conn:
        conn.execute(text("UPDATE triggers SET id = :fixed WHERE id = :id"),
                     {"fixed": fixed, "id": made["id"]})  # fmt: skip
    patch(engine, fixed, NOON, jitter_seconds=499)
    patch(engine, fixed, NOON, jitter_seconds=500)
    made["id"] = fixed
    clock = NOON
    jitters = [0, 600, 17, 599, 0, 300, 1, 450]
    # A tick a minute for 4 hours, with the jitter changed every 10 minutes (before and
    # after fires are dispatched alike): each fire from 12:10 to 15:50 runs exactly once.
    step = 0
    while clock < NOON + timedelta(hours=4):
        clock += timedelta(seconds=60)
        if clock.minute % 10 == 0:
            step += 1
            patch(engine, made["id"], clock, jitter_seconds=jitters[step % len(jitters)])
        tick(clock)
    fired = [r["scheduled_for"] for r in runs(engine)]
    expected = [NOON + timedelta(minutes=10 * k) for k in range(1, 24)]
    assert fired[: len(expected)] == expected
    assert len(fired) == len(set(fired))
    # none skipped as late: each waits for, or already has, a slot (docs/design.md section 12)
    assert all(r["status"] in ("pending", "admitted") for r in runs(engine))


def test_reconciliation_schedules_an_enabled_trigger_without_next_run(
    engine, tick, make_triggers, caplog
) -> None:
    [lost] = make_triggers(next_run_at=None, cron="*/5 * * * *")
    [over] = make_triggers(next_run_at=None, cron="*/5 * * * *")
    [done] = make_triggers(next_run_at=None, cron=None, run_at=NOON - timedelta(hours=1))
    [paused] = make_triggers(next_run_at=None, cron="*/5 * * * *", enabled=False)
    with engine.begin() as conn:
        conn.execute(text("UPDATE triggers SET end_at = :t WHERE id = :id"),
                     {"t": NOON - timedelta(minutes=1), "id": over})  # fmt: skip
        conn.execute(text("UPDATE triggers SET last_scheduled_for = run_at, enabled = true "
                          "WHERE id = :id"), {"id": done})  # fmt: skip

    with caplog.at_level(logging.WARNING, logger="app.reconcile"):
        stats = tick(NOON + timedelta(minutes=1, seconds=3))
    assert stats.reconciled == 1
    row = trigger(engine, lost)
    assert row["next_run_at"] == row["next_fire_at"] == NOON + timedelta(minutes=5)
    assert [r.event for r in caplog.records if getattr(r, "event", "") == "trigger_reconciled"]
    for other in (over, done, paused):
        assert trigger(engine, other)["next_run_at"] is None
    assert runs(engine) == []  # missed fires are not replayed; the next one runs
    assert tick(NOON + timedelta(minutes=5, seconds=1)).dispatched == 1
    assert tick(NOON + timedelta(minutes=5, seconds=2)).reconciled == 0


def test_reconciliation_logs_an_unplannable_row_once_and_goes_on(
    engine, tick, make_triggers, caplog
) -> None:
    [broken] = make_triggers(next_run_at=None, cron="*/5 * * * *", timezone="Nowhere/Land")
    [lost] = make_triggers(next_run_at=None, cron="*/5 * * * *")
    with caplog.at_level(logging.WARNING, logger="app.reconcile"):
        assert tick(NOON).reconciled == 1
        assert tick(NOON + timedelta(seconds=10)).reconciled == 0
    failures = [r for r in caplog.records if getattr(r, "event", "") == "reconcile_failed"]
    assert [r.trigger_id for r in failures] == [str(broken)]
    assert trigger(engine, lost)["next_run_at"] == NOON + timedelta(minutes=5)
    assert trigger(engine, broken)["next_run_at"] is None
