"""The batch planner: what a dispatch batch inserts and how its triggers advance. Pure.

Rows come as the dispatcher claims them (app/queries/triggers.py, `claim_due`), as
ClaimedTrigger; out go NewRun and Advance rows, typed at the seam by the model's column
names. The planner reads no clock and no database: `now` is an argument, so it is tested
without PostgreSQL (tests/unit/schedule/test_planner.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from app.run_status import RunStatus
from app.schedule.catchup import CatchupPlan, plan_catchup
from app.schedule.spec import TriggerSpec
from app.schedule.zones import iso_utc

# Distinct schedules memoised per tick; memory stays bounded whatever the mix.
PLAN_CACHE_SIZE = 10_000


class ClaimedTrigger(NamedTuple):
    """A trigger as the dispatcher's claims return it (app/queries/triggers.py)."""

    id: str  # as text: the batch writes it back as text
    tenant_id: str
    cron: str | None
    timezone: str
    run_at: datetime | None
    start_at: datetime | None
    end_at: datetime | None
    interval_seconds: int | None
    anchor_at: datetime | None
    jitter_seconds: int | None
    next_fire_at: datetime  # the first nominal fire due (next_run_at when NULL)
    next_run_at: datetime  # when it is due: the fire plus jitter
    catchup_policy: str
    catchup_window_seconds: int


class NewRun(NamedTuple):
    """A run a batch inserts (app/queries/run_queue.py, insert_scheduled)."""

    trigger_id: str
    tenant_id: str
    scheduled_for: datetime
    idempotency_key: str
    status: RunStatus  # pending, or skipped by the catch-up policy
    due_at: datetime


class Advance(NamedTuple):
    """How a dispatched trigger moves on (app/queries/triggers.py, advance)."""

    id: str
    next_run_at: datetime | None
    next_fire_at: datetime | None
    last_scheduled_for: datetime | None
    enabled: bool


@dataclass
class BatchPlan:
    """Run rows to insert, trigger advances to write, and rows that could not be planned."""

    run_rows: list[NewRun] = field(default_factory=list)
    advances: list[Advance] = field(default_factory=list)
    parked: list[tuple[str, str, Exception]] = field(default_factory=list)


def idempotency_key(trigger_id: uuid.UUID | str, scheduled_for: datetime) -> str:
    """`<trigger_id>:<scheduled_for ISO-8601 UTC>`, a scheduled run's unique key
    (docs/design.md section 5)."""
    return f"{trigger_id}:{iso_utc(scheduled_for)}"


def plan_batch(
    rows: Sequence[ClaimedTrigger],
    *,
    now: datetime,
    tick_seconds: int,
    max_fires: int,
    plans: PlanCache,
) -> BatchPlan:
    """Decide each claimed trigger's fires; return the run rows and the trigger advances.

    `plans` memoises the decision per distinct schedule for the tick: 100,000 triggers due
    at midnight share a handful of (expression, zone, next_run_at) combinations, and the
    plan is pure, so each is computed once (most of a tick's CPU otherwise), and so are its
    fires' ISO-8601 key suffixes (the next largest cost: one per trigger otherwise).

    A row that cannot be planned (a zone a tzdata upgrade removed, a row edited by hand) is
    parked (no next run; in `parked` with its error for the caller to log): it must not fail
    its batch, which would lead every later batch and stop dispatch for every tenant.
    """
    result = BatchPlan()
    for row in rows:
        trigger, tenant_id = str(row.id), row.tenant_id
        schedule_key = _schedule_key(row)
        planned = plans.get(schedule_key)
        if planned is None:
            if len(plans) >= PLAN_CACHE_SIZE:
                plans.clear()
            try:
                plan = _plan(row, now=now, tick_seconds=tick_seconds, max_fires=max_fires)
            except Exception as exc:
                result.parked.append((trigger, tenant_id, exc))
                result.advances.append(Advance(trigger, None, None, None, True))
                continue
            planned = plans[schedule_key] = _Planned.of(plan, one_time=schedule_key[2] is not None)
        result.run_rows.extend(
            NewRun(trigger, tenant_id, fire, trigger + key_suffix, status, due_at)
            for fire, key_suffix, status, due_at in planned.fires
        )
        result.advances.append(Advance(trigger, *planned.advance))
    return result


@dataclass(frozen=True)
class _Planned:
    """A plan as every trigger that shares it writes it: its fires (fire, the idempotency
    key's `:<instant>` suffix, status, due), and its advance without the trigger id."""

    fires: tuple[tuple[datetime, str, str, datetime], ...]
    advance: tuple[datetime | None, datetime | None, datetime | None, bool]

    @classmethod
    def of(cls, plan: CatchupPlan, *, one_time: bool) -> _Planned:
        fires = tuple(
            (fire, idempotency_key("", fire), status, plan.due_at(fire))
            for status, fires in ((RunStatus.PENDING, plan.run), (RunStatus.SKIPPED, plan.skipped))
            for fire in fires
        )
        last = max(plan.run + plan.skipped, default=None)
        # A one-time trigger is done once dispatched; a cron or interval trigger past end_at
        # keeps its row enabled but has no next run (docs/design.md section 4).
        enabled = not (one_time and plan.next_run_at is None)
        return cls(fires, (plan.next_run_at, plan.next_fire, last, enabled))


# What plan_batch memoises for a tick: schedule key -> its plan, as its triggers write it.
PlanCache = dict[tuple, _Planned]


def _schedule_key(row: ClaimedTrigger) -> tuple:
    """The part of a claimed row the plan depends on. The trigger id is in it only for a
    jittered trigger (its delays are its own); others share plans with their lookalikes."""
    trigger_id, _tenant, cron, timezone, run_at, start_at, end_at, *rest = row
    interval, anchor, jitter, first, first_due_at, policy, window = rest
    key = str(trigger_id) if jitter else ""
    return (cron, timezone, run_at, start_at, end_at, interval, anchor, jitter, key, first,
            first_due_at, policy, window)  # fmt: skip


def _plan(row: ClaimedTrigger, *, now: datetime, tick_seconds: int, max_fires: int) -> CatchupPlan:
    return plan_catchup(
        TriggerSpec.of(row),
        policy=row.catchup_policy,
        window_seconds=row.catchup_window_seconds,
        first_due=row.next_fire_at,
        now=now,
        tick_seconds=tick_seconds,
        max_fires=max_fires,
        first_due_at=row.next_run_at,
    )
