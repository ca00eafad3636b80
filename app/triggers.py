"""The trigger service: create, read, list, update, delete, preview.

No Flask here: callers pass a session, the caller's tenant scope (a tenant id, or None for an
admin who sees every tenant) and `now`. Another tenant's trigger is NotFound, never a
permission error, so ids leak nothing. Runs (history, run now, cancel) are app/run_history.py.

Every write path here computes `next_run_at` through :func:`compute_next_run_at`
(docs/design.md section 10: a write path that forgets it leaves a trigger that never fires);
the dispatcher advances a trigger it dispatched from its catch-up plan
(app/schedule/planner.py), and reconciliation gives one to a row that lacks it
(app/reconcile.py). Two columns are set: `next_fire_at`, the next nominal fire, and
`next_run_at`, when it is due (the fire plus the trigger's jitter; the same instant without
jitter). The dispatcher claims by `next_run_at` and plans from `next_fire_at`
(docs/design.md section 11).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app import errors, principals, run_history, schedule, trigger_checks, webhook_secrets
from app.models import Run, Trigger
from app.queries import triggers as triggers_q

EDITABLE_FIELDS = (
    "name", "description", "cron", "timezone", "run_at", "start_at", "end_at", "enabled",
    "action", "payload", "overlap_policy", "catchup_policy", "catchup_window_seconds",
    "max_attempts", "retry_backoff_seconds", "timeout_seconds", "interval_seconds",
    "anchor_at", "jitter_seconds", "paused_note", "run_as",
)  # fmt: skip
# A change to these moves the fires themselves: pending runs of the old schedule are cancelled.
SCHEDULE_FIELDS = frozenset({"cron", "run_at", "timezone", "interval_seconds", "anchor_at"})
# A change to these (schedule, window, enabled, jitter) recomputes next_run_at; nothing else.
TIMING_FIELDS = SCHEDULE_FIELDS | {"start_at", "end_at", "enabled", "jitter_seconds"}

Cursor = tuple[datetime, uuid.UUID]


@dataclass(frozen=True)
class TriggerDetail:
    """A trigger with its most recent run (None when it never ran)."""

    trigger: Trigger
    last_run: Run | None


def compute_next_run_at(
    spec: schedule.TriggerSpec, *, enabled: bool, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """The (next_run_at, next_fire_at) of a trigger written at `now`: when its first fire is due
    (jitter included), and that fire; (None, None) when disabled or over."""
    fire = schedule.first_fire(spec, now) if enabled else None
    return (None, None) if fire is None else (schedule.due_at(spec, fire), fire)


def _set_next(trigger: Trigger, *, now: datetime) -> None:
    trigger.next_run_at, trigger.next_fire_at = compute_next_run_at(
        schedule.TriggerSpec.of(trigger), enabled=trigger.enabled, now=now
    )


def _set_pause(trigger: Trigger, *, note: str | None, actor: str | None, now: datetime) -> None:
    """Stamp who paused a trigger and when (docs/design.md section 11); clear it all on resume."""
    if trigger.enabled:
        trigger.paused_note = trigger.paused_at = trigger.paused_by = None
    else:
        trigger.paused_note, trigger.paused_at, trigger.paused_by = note, now, actor


def create(
    session: Session,
    *,
    tenant_id: str,
    values: Mapping[str, Any],
    now: datetime,
    max_triggers: int,
    by: principals.Actor,
    actor: str | None = None,
) -> Trigger:
    """Insert a trigger from validated `values`; raise errors.InvalidTrigger naming bad fields, or
    errors.TriggerLimitReached when the tenant already has `max_triggers` triggers (required:
    every create path, API, console and CLI, holds the tenant to the cap).

    `by` (required, like the cap) is who creates it: its `run_as` defaults to `by`'s principal,
    and one naming anyone else raises errors.PermissionDenied unless `by` may act for anyone
    (app/principals.py). `by` is recorded as `created_by` and `updated_by`.
    `actor` (keys.Principal.label: the key's prefix, or `admin`) is recorded as `paused_by`
    when it is created disabled.
    """
    trigger_checks.validate(values, now=now, run_at_is_new=True)
    run_as = values.get("run_as")
    run_as = by.principal if run_as is None else run_as
    principals.validate(run_as, field="run_as")
    principals.check_run_as(by, run_as)
    _check_capacity(session, tenant_id, limit=max_triggers)
    fields = {name: values[name] for name in EDITABLE_FIELDS if name in values}
    trigger = Trigger(
        id=uuid.uuid4(), tenant_id=tenant_id, **{"description": "", "payload": {}, **fields}
    )
    trigger.enabled = values.get("enabled", True)
    trigger.timezone = values.get("timezone") or "UTC"
    trigger.jitter_seconds = values.get("jitter_seconds") or 0
    trigger.run_as, trigger.created_by, trigger.updated_by = run_as, by.principal, by.principal
    _set_pause(trigger, note=values.get("paused_note"), actor=actor, now=now)
    _set_next(trigger, now=now)
    trigger.version, trigger.created_at, trigger.updated_at = 1, now, now
    triggers_q.add(session, trigger)
    if trigger.action.get("type") == "webhook":
        # The tenant's first webhook trigger makes its first signing secret, atomically.
        webhook_secrets.ensure_first(session, tenant_id, now=now)
    return trigger


def _check_capacity(session: Session, tenant_id: str, *, limit: int) -> None:
    """Count the tenant's triggers under a transaction-scoped advisory lock on the tenant:
    two creates at `limit - 1` would otherwise both count `limit - 1` and both insert. The
    lock is held until the creating transaction ends, so the second counts the first."""
    triggers_q.lock_tenant_count(session, tenant_id)
    count = triggers_q.count_for_tenant(session, tenant_id)
    if count >= limit:
        raise errors.TriggerLimitReached(
            f"this tenant has {count} triggers, the most it may have ({limit}); "
            "delete some before creating more"
        )


def get(session: Session, trigger_id: uuid.UUID, *, scope: str | None) -> TriggerDetail:
    """A trigger visible to `scope` with its last run; raise NotFound otherwise."""
    row = triggers_q.get_with_last_run(session, trigger_id, scope=scope)
    if row is None:
        raise errors.NotFound("trigger not found")
    return TriggerDetail(*row)


def find_by_name(session: Session, tenant_id: str, name: str) -> Trigger | None:
    """The tenant's trigger with this name (the first if several), or None."""
    return triggers_q.find_by_name(session, tenant_id, name)


def list_page(
    session: Session,
    *,
    scope: str | None,
    enabled: bool | None,
    limit: int,
    after: Cursor | None,
) -> list[TriggerDetail]:
    """Up to `limit` triggers, oldest first, strictly after the keyset cursor `after`.

    The page is cut first and only its rows get the LATERAL last-run lookup, so the cost
    is that of `limit` rows whatever the planner thinks of the tenant's size.
    """
    rows = triggers_q.page_with_last_run(
        session, scope=scope, enabled=enabled, limit=limit, after=after
    )
    return [TriggerDetail(*row) for row in rows]


def update(
    session: Session,
    trigger_id: uuid.UUID,
    *,
    scope: str | None,
    changes: Mapping[str, Any],
    if_match: int | None,
    now: datetime,
    by: principals.Actor,
    actor: str | None = None,
) -> TriggerDetail:
    """Apply a partial update and return the trigger with its last run.

    1. Lock the row; a version other than `if_match` raises PreconditionFailed (412). A
       trigger that runs as another principal than `by`'s, or a `run_as` change to one,
       raises PermissionDenied unless `by` may act for anyone (app/principals.py).
    2. Keep only the fields whose value changes; none changed: return it as is.
    3. Validate the merged trigger (errors.InvalidTrigger), bump `version`, stamp `updated_at`
       and `updated_by` (`by`'s principal).
    4. Pausing stamps `paused_at` and `paused_by` (`actor`: the key's prefix, or `admin`)
       with the note; resuming clears them.
    5. A changed schedule, window, jitter or `enabled` recomputes `next_run_at`.
    6. Disabling it or changing its schedule cancels its pending runs.
    """
    trigger = _lock(session, trigger_id, scope=scope, if_match=if_match)
    principals.check_run_as(by, trigger.run_as)
    if "run_as" in changes:
        principals.validate(changes["run_as"], field="run_as")
        principals.check_run_as(by, changes["run_as"])
    changed = {
        k: v for k, v in changes.items() if k in EDITABLE_FIELDS and getattr(trigger, k) != v
    }
    if changed.get("enabled") is True and "paused_note" not in changes:
        changed["paused_note"] = None  # resuming clears the note
    if not changed:
        return get(session, trigger.id, scope=scope)
    merged = {**{name: getattr(trigger, name) for name in EDITABLE_FIELDS}, **changed}
    trigger_checks.validate(
        merged, now=now, run_at_is_new="run_at" in changed, trigger_id=trigger.id
    )
    for name, value in changed.items():
        setattr(trigger, name, value)
    trigger.version += 1
    trigger.updated_at, trigger.updated_by = now, by.principal
    if "enabled" in changed:
        _set_pause(trigger, note=trigger.paused_note, actor=actor, now=now)
    if TIMING_FIELDS & changed.keys():
        _reschedule(trigger, TIMING_FIELDS & changed.keys(), now=now)
    if SCHEDULE_FIELDS & changed.keys() or changed.get("enabled") is False:
        session.flush()
        run_history.cancel_pending_for_trigger(session, trigger.id, now=now)
    session.flush()
    return get(session, trigger.id, scope=scope)


def _reschedule(trigger: Trigger, changed: set[str], *, now: datetime) -> None:
    """Recompute next_run_at / next_fire_at after a timing change (update, step 5).

    - Only the jitter changed: the next fire stays the same fire and only its due instant
      moves. A fire already dispatched has a run (its key) and lies before `next_fire_at`,
      the next one is not dispatched yet, so no fire runs twice. None is lost either: a new
      due instant already past becomes `now`, so the fire is due, not missed (a catch-up
      policy would otherwise drop it as late), and the next tick runs it.
    - Only the window (or jitter) moved: a fire already due but not yet dispatched (the tick
      skipped this locked row, or a backlog) keeps its place if the new window has it.
    - Otherwise: the first fire after `now`.
    """
    pending = trigger.next_fire_at or trigger.next_run_at
    if changed == {"jitter_seconds"} and pending is not None:
        trigger.next_fire_at = pending
        spec = schedule.TriggerSpec.of(trigger)
        trigger.next_run_at = max(schedule.due_at(spec, pending), now)
        return
    after = now
    if pending is not None and not (SCHEDULE_FIELDS | {"enabled"}) & changed:
        after = min(now, pending - timedelta(microseconds=1))
    _set_next(trigger, now=after)


def delete(
    session: Session,
    trigger_id: uuid.UUID,
    *,
    scope: str | None,
    if_match: int | None,
    now: datetime,
    by: principals.Actor,
) -> int:
    """Delete a trigger and cancel its pending runs; return how many were cancelled.

    Finished runs stay: run history outlives the trigger (the runs table has no foreign key).
    A trigger that runs as another principal than `by`'s raises PermissionDenied unless `by`
    may act for anyone.
    """
    trigger = _lock(session, trigger_id, scope=scope, if_match=if_match)
    principals.check_run_as(by, trigger.run_as)
    triggers_q.delete(session, trigger)
    return run_history.cancel_pending_for_trigger(session, trigger_id, now=now)


def preview(spec: schedule.TriggerSpec, *, after: datetime, count: int) -> list[datetime]:
    """Up to `count` fire instants (aware UTC) strictly after `after`, inside the window."""
    return list(itertools.islice(schedule.fires(spec, after), count))


def _lock(
    session: Session, trigger_id: uuid.UUID, *, scope: str | None, if_match: int | None
) -> Trigger:
    trigger = triggers_q.lock(session, trigger_id, scope=scope)
    if trigger is None:
        raise errors.NotFound("trigger not found")
    if if_match is not None and if_match != trigger.version:
        raise errors.PreconditionFailed(f"trigger is at version {trigger.version}, not {if_match}")
    return trigger
