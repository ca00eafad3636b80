"""Backfill: run a trigger's past fires again, each at most once (docs/design.md section 11).

A backfill run has the idempotency key of the scheduled fire it stands for
(`<trigger_id>:<fire ISO-8601 UTC>`), so the unique key, not a read-then-write, decides that
a fire already run (scheduled, or by an earlier backfill) is not run twice.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app import errors, principals, schedule, triggers, waiting
from app.models import Run
from app.queries import run_history
from app.run_status import RunStatus
from app.schedule import planner

MAX_BACKFILL = 1000
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class BackfillResult:
    """What a backfill did: runs created, fires that already had a run, the new runs."""

    created: int
    existing: int
    runs: list[Run]


def backfill(
    session: Session,
    trigger_id: uuid.UUID,
    *,
    scope: str | None,
    start: datetime,
    end: datetime,
    now: datetime,
    max_waiting: int,
    max_age_days: int,
    by: principals.Actor,
) -> BackfillResult:
    """Create a `backfill` run for every fire of the trigger in [start, end)
    (docs/design.md sections 11 and 17).

    1. Validate the range: aware, start < end, end not in the future, start no more than
       `max_age_days` ago, at most 1,000 fires (InvalidTrigger naming `start` or `end`); a
       disabled trigger is a Conflict (its runner would cancel the runs).
    2. Insert the runs with the idempotency keys of scheduled fires, ON CONFLICT DO NOTHING:
       a fire that already has a run (scheduled, or an earlier backfill) is counted as
       existing and not run twice. Two identical calls at once create each run once: the
       unique key makes the second insert wait for the first and then do nothing.
    3. Hold the tenant to `max_waiting` runs waiting (app/waiting.py): past it, nothing is
       created (WaitingRunsLimitReached rolls the transaction back); fires that already had
       a run add nothing.
    The caller hands the created runs over after commit (the recovery sweep otherwise).
    A trigger that runs as another principal than `by`'s raises PermissionDenied unless `by`
    may act for anyone (app/principals.py); the runs record the trigger's `run_as`.
    """
    trigger = triggers.get(session, trigger_id, scope=scope).trigger
    principals.check_run_as(by, trigger.run_as)
    problems = {}
    if start >= end:
        problems["end"] = "must be after start"
    elif end > now:
        problems["end"] = "must not be in the future"
    if start < now - timedelta(days=max_age_days):
        problems["start"] = f"must be within the last {max_age_days} days (BACKFILL_MAX_AGE_DAYS)"
    if problems:
        raise errors.InvalidTrigger(problems)
    spec = schedule.TriggerSpec.of(trigger)
    # Fires f with start <= f < end: strictly after the instant just before `start`.
    in_range = itertools.takewhile(lambda f: f < end, schedule.fires(spec, start - _TICK))
    fires = list(itertools.islice(in_range, MAX_BACKFILL + 1))
    if len(fires) > MAX_BACKFILL:
        raise errors.InvalidTrigger(
            {"end": f"the range holds more than {MAX_BACKFILL} fires; split it into smaller ones"}
        )
    if not trigger.enabled:
        raise errors.Conflict("trigger is disabled")
    if not fires:
        return BackfillResult(created=0, existing=0, runs=[])
    rows = [
        {
            "id": uuid.uuid4(), "trigger_id": trigger.id, "tenant_id": trigger.tenant_id,
            # Due when asked for: its lag counts from now, not from the past fire.
            "scheduled_for": fire, "due_at": now, "kind": "backfill",
            "idempotency_key": planner.idempotency_key(trigger.id, fire),
            "status": RunStatus.PENDING, "attempt": 0, "created_at": now, "run_as": trigger.run_as,
        }
        for fire in fires
    ]  # fmt: skip
    created = run_history.insert_pending(session, rows)
    waiting.hold(session, trigger.tenant_id, created=len(created), limit=max_waiting)
    return BackfillResult(created=len(created), existing=len(fires) - len(created), runs=created)
