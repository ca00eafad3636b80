"""The dispatcher's batch planner, without PostgreSQL: rows in, run rows and advances out."""

from __future__ import annotations

import uuid

from app.schedule import planner
from tests.unit.schedule.helpers import at, iso

NOW = at("2026-01-05T12:00:30Z")
NOON = at("2026-01-05T12:00Z")


def row(*, cron="*/15 * * * *", zone="UTC", run_at=None, first=NOON, jitter=0, policy="latest",
        window=3600, trigger_id=None, tenant="acme") -> planner.ClaimedTrigger:  # fmt: skip
    """A claimed row as app/queries/triggers.claim_due returns it."""
    return planner.ClaimedTrigger(
        id=str(trigger_id or uuid.uuid4()), tenant_id=tenant, cron=cron, timezone=zone,
        run_at=run_at, start_at=None, end_at=None, interval_seconds=None, anchor_at=None,
        jitter_seconds=jitter, next_fire_at=first, next_run_at=first, catchup_policy=policy,
        catchup_window_seconds=window,
    )  # fmt: skip


def plan(rows, *, plans=None):
    return planner.plan_batch(
        rows, now=NOW, tick_seconds=60, max_fires=100, plans={} if plans is None else plans
    )


def test_a_due_cron_trigger_gets_one_pending_run_and_advances_to_its_next_fire() -> None:
    trigger = uuid.uuid4()
    result = plan([row(trigger_id=trigger)])
    [run] = result.run_rows
    tid, tenant, fire, key, status, due = run
    assert (tid, tenant, iso(fire), status, iso(due)) == (
        str(trigger), "acme", "2026-01-05T12:00Z", "pending", "2026-01-05T12:00Z"
    )  # fmt: skip
    assert key == f"{trigger}:2026-01-05T12:00:00Z"
    [(advanced, next_run_at, next_fire, last, enabled)] = result.advances
    assert (advanced, iso(next_run_at), iso(next_fire), iso(last), enabled) == (
        str(trigger), "2026-01-05T12:15Z", "2026-01-05T12:15Z", "2026-01-05T12:00Z", True
    )  # fmt: skip
    assert result.parked == []


def test_a_dispatched_one_time_trigger_is_disabled() -> None:
    result = plan([row(cron=None, run_at=NOON)])
    assert [r.status for r in result.run_rows] == ["pending"]
    [(_id, next_run_at, next_fire, _last, enabled)] = result.advances
    assert (next_run_at, next_fire, enabled) == (None, None, False)


def test_lookalike_schedules_share_one_plan_and_jittered_ones_do_not() -> None:
    plans: dict = {}
    plan([row(), row(), row()], plans=plans)
    assert len(plans) == 1
    plan([row(jitter=30), row(jitter=30)], plans=plans)
    assert len(plans) == 3


def test_an_unplannable_row_is_parked_and_the_rest_of_the_batch_goes_ahead() -> None:
    bad = uuid.uuid4()
    result = plan([row(trigger_id=bad, zone="Mars/Olympus_Mons"), row()])
    assert [(trigger, tenant) for trigger, tenant, _exc in result.parked] == [(str(bad), "acme")]
    assert (str(bad), None, None, None, True) in result.advances
    assert len(result.run_rows) == 1


def test_the_idempotency_key_is_the_trigger_and_the_fire_in_utc_with_z() -> None:
    trigger = uuid.UUID("00000000-0000-0000-0000-000000000001")
    fire = at("2026-03-29T03:30+02:00")
    assert planner.idempotency_key(trigger, fire) == f"{trigger}:2026-03-29T01:30:00Z"
