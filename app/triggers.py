"""The trigger service: create, read, list, update, delete, run now, preview; run history reads.

No Flask here: callers pass a session, the caller's tenant scope (a tenant id, or None for an
admin who sees every tenant) and `now`. Another tenant's trigger or run is NotFound, never a
permission error, so ids leak nothing.

`next_run_at` is computed in exactly one place, :func:`compute_next_run_at`, which every write
path calls (DESIGN section 10: a write path that forgets it leaves a trigger that never fires).
It sets two columns: `next_fire_at`, the next nominal fire, and `next_run_at`, when it is due
(the fire plus the trigger's jitter; the same instant without jitter). The dispatcher claims by
`next_run_at` and plans from `next_fire_at` (DESIGN section 11).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select, text, true, tuple_
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, aliased

from app import errors, runs, schedule, webhook_secrets
from app.models import FINISHED_STATUSES, Run, SchedulerState, Trigger

EDITABLE_FIELDS = (
    "name", "description", "cron", "timezone", "run_at", "start_at", "end_at", "enabled",
    "action", "payload", "overlap_policy", "catchup_policy", "catchup_window_seconds",
    "max_attempts", "retry_backoff_seconds", "timeout_seconds", "interval_seconds",
    "anchor_at", "jitter_seconds", "paused_note",
)  # fmt: skip
# A change to these moves the fires themselves: pending runs of the old schedule are cancelled.
SCHEDULE_FIELDS = frozenset({"cron", "run_at", "timezone", "interval_seconds", "anchor_at"})
# A change to these (schedule, window, enabled, jitter) recomputes next_run_at; nothing else.
TIMING_FIELDS = SCHEDULE_FIELDS | {"start_at", "end_at", "enabled", "jitter_seconds"}
SCHEDULE_KINDS = ("cron", "run_at", "interval_seconds")
# A one-time trigger may be created this far in the past (clock skew, slow clients).
RUN_AT_GRACE = timedelta(seconds=60)

Cursor = tuple[datetime, uuid.UUID]
# pg_advisory_xact_lock(int, int) namespace for "trigger count of this tenant": ASCII "TCAP".
TENANT_CAP_LOCK_NAMESPACE = 0x54434150


class InvalidTrigger(errors.SchedulerError):
    """The trigger is invalid."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in fields.items()))
        self.fields = dict(fields)


@dataclass(frozen=True)
class TriggerDetail:
    """A trigger with its most recent run (None when it never ran)."""

    trigger: Trigger
    last_run: Run | None


def check_fields(
    *,
    has_cron: bool,
    has_run_at: bool,
    run_at: datetime | None,
    start_at: datetime | None,
    end_at: datetime | None,
    now: datetime,
    run_at_is_new: bool,
    has_interval: bool = False,
    jitter_seconds: int | None = None,
    paused_note: str | None = None,
    enabled: bool = True,
) -> dict[str, str]:
    """The cross-field problems of a trigger's schedule, as {field: message} (empty if none)."""
    problems: dict[str, str] = {}
    given = [name for name, has in zip(SCHEDULE_KINDS, (has_cron, has_run_at, has_interval),
                                       strict=True) if has]  # fmt: skip
    if len(given) != 1:
        message = (
            f"give exactly one of cron, run_at and interval_seconds, not {' and '.join(given)}"
            if given
            else "one of cron, run_at and interval_seconds is required"
        )
        for name in given or SCHEDULE_KINDS:
            problems[name] = message
    if jitter_seconds and has_run_at and not (has_cron or has_interval):
        problems["jitter_seconds"] = "a one-time trigger (run_at) takes no jitter"
    if paused_note is not None and enabled:
        problems["paused_note"] = "only a paused trigger (enabled: false) carries a note"
    for name, value in (("run_at", run_at), ("start_at", start_at), ("end_at", end_at)):
        if value is not None and value.tzinfo is None:
            problems[name] = "must include a UTC offset"
    aware = not ({"run_at", "start_at", "end_at"} & problems.keys())
    if aware and run_at_is_new and run_at is not None and run_at < now - RUN_AT_GRACE:
        problems["run_at"] = "is more than 60 seconds in the past"
    if aware and start_at is not None and end_at is not None and end_at <= start_at:
        problems["end_at"] = "must be after start_at"
    return problems


def spec_of(values: Trigger | Mapping[str, Any]) -> schedule.TriggerSpec:
    """The schedule part of a trigger (a model or a mapping of its fields)."""
    get = values.get if isinstance(values, Mapping) else lambda name: getattr(values, name)
    trigger_id = get("id")
    return schedule.TriggerSpec(
        cron=get("cron"),
        timezone=get("timezone") or "UTC",
        run_at=get("run_at"),
        start_at=get("start_at"),
        end_at=get("end_at"),
        interval_seconds=get("interval_seconds"),
        anchor_at=get("anchor_at"),
        jitter_seconds=get("jitter_seconds") or 0,
        jitter_key="" if trigger_id is None else str(trigger_id),
    )


def compute_next_run_at(
    spec: schedule.TriggerSpec, *, enabled: bool, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """THE (next_run_at, next_fire_at) of a trigger: when its first fire after `now` is due
    (jitter included), and that fire; (None, None) when disabled or over."""
    fire = schedule.first_fire(spec, now) if enabled else None
    return (None, None) if fire is None else (schedule.due_at(spec, fire), fire)


def _set_next(trigger: Trigger, *, now: datetime) -> None:
    trigger.next_run_at, trigger.next_fire_at = compute_next_run_at(
        spec_of(trigger), enabled=trigger.enabled, now=now
    )


def _set_pause(trigger: Trigger, *, note: str | None, actor: str | None, now: datetime) -> None:
    """Stamp who paused a trigger and when (DESIGN section 11); clear it all on resume."""
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
    max_triggers: int | None = None,
    actor: str | None = None,
) -> Trigger:
    """Insert a trigger from validated `values`; raise InvalidTrigger naming bad fields, or
    TriggerLimitReached when the tenant already has `max_triggers` triggers.

    `actor` (the API key's prefix) is recorded as `paused_by` when it is created disabled.
    """
    _validate(values, now=now, run_at_is_new=True)
    if max_triggers is not None:
        _check_capacity(session, tenant_id, limit=max_triggers)
    fields = {name: values[name] for name in EDITABLE_FIELDS if name in values}
    trigger = Trigger(
        id=uuid.uuid4(), tenant_id=tenant_id, **{"description": "", "payload": {}, **fields}
    )
    trigger.enabled = values.get("enabled", True)
    trigger.timezone = values.get("timezone") or "UTC"
    trigger.jitter_seconds = values.get("jitter_seconds") or 0
    _set_pause(trigger, note=values.get("paused_note"), actor=actor, now=now)
    _set_next(trigger, now=now)
    trigger.version, trigger.created_at, trigger.updated_at = 1, now, now
    session.add(trigger)
    session.flush()
    if trigger.action.get("type") == "webhook":
        # The tenant's first webhook trigger makes its first signing secret, atomically.
        webhook_secrets.ensure_first(session, tenant_id, now=now)
    return trigger


class TriggerLimitReached(errors.Conflict):
    """The tenant has as many triggers as it may have."""


def _check_capacity(session: Session, tenant_id: str, *, limit: int) -> None:
    """Count the tenant's triggers under a transaction-scoped advisory lock on the tenant:
    two creates at `limit - 1` would otherwise both count `limit - 1` and both insert. The
    lock is held until the creating transaction ends, so the second counts the first."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(:ns, hashtext(:tenant))"),
        {"ns": TENANT_CAP_LOCK_NAMESPACE, "tenant": tenant_id},
    )
    count = session.scalar(select(func.count()).where(Trigger.tenant_id == tenant_id))
    if count >= limit:
        raise TriggerLimitReached(
            f"this tenant has {count} triggers, the most it may have ({limit}); "
            "delete some before creating more"
        )


def get(session: Session, trigger_id: uuid.UUID, *, scope: str | None) -> TriggerDetail:
    """A trigger visible to `scope` with its last run; raise NotFound otherwise."""
    row = session.execute(_with_last_run(_visible(select(Trigger), scope, trigger_id))).first()
    if row is None:
        raise errors.NotFound("trigger not found")
    return TriggerDetail(*row)


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
    page = select(Trigger).order_by(Trigger.created_at, Trigger.id).limit(limit)
    if scope is not None:
        page = page.where(Trigger.tenant_id == scope)
    if enabled is not None:
        page = page.where(Trigger.enabled.is_(enabled))
    if after is not None:
        page = page.where(tuple_(Trigger.created_at, Trigger.id) > tuple_(*after))
    trigger = aliased(Trigger, page.subquery("page"))
    query = _with_last_run(select(trigger), trigger).order_by(trigger.created_at, trigger.id)
    return [TriggerDetail(*row) for row in session.execute(query)]


def update(
    session: Session,
    trigger_id: uuid.UUID,
    *,
    scope: str | None,
    changes: Mapping[str, Any],
    if_match: int | None,
    now: datetime,
    actor: str | None = None,
) -> TriggerDetail:
    """Apply a partial update and return the trigger with its last run.

    1. Lock the row; a version other than `if_match` raises PreconditionFailed (412).
    2. Keep only the fields whose value changes; none changed: return it as is.
    3. Validate the merged trigger (InvalidTrigger), bump `version`, stamp `updated_at`.
    4. Pausing stamps `paused_at` and `paused_by` (`actor`, the key's prefix) with the note;
       resuming clears them.
    5. A changed schedule, window, jitter or `enabled` recomputes `next_run_at`.
    6. Disabling it or changing its schedule cancels its pending runs.
    """
    trigger = _lock(session, trigger_id, scope=scope, if_match=if_match)
    changed = {
        k: v for k, v in changes.items() if k in EDITABLE_FIELDS and getattr(trigger, k) != v
    }
    if changed.get("enabled") is True and "paused_note" not in changes:
        changed["paused_note"] = None  # resuming clears the note
    if not changed:
        return get(session, trigger.id, scope=scope)
    merged = {**{name: getattr(trigger, name) for name in EDITABLE_FIELDS}, **changed}
    _validate(merged, now=now, run_at_is_new="run_at" in changed, trigger_id=trigger.id)
    for name, value in changed.items():
        setattr(trigger, name, value)
    trigger.version += 1
    trigger.updated_at = now
    if "enabled" in changed:
        _set_pause(trigger, note=trigger.paused_note, actor=actor, now=now)
    if TIMING_FIELDS & changed.keys():
        _reschedule(trigger, TIMING_FIELDS & changed.keys(), now=now)
    if SCHEDULE_FIELDS & changed.keys() or changed.get("enabled") is False:
        session.flush()
        runs.cancel_pending_for_trigger(session, trigger.id, now=now)
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
        trigger.next_run_at = max(schedule.due_at(spec_of(trigger), pending), now)
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
) -> int:
    """Delete a trigger and cancel its pending runs; return how many were cancelled.

    Finished runs stay: run history outlives the trigger (the runs table has no foreign key).
    """
    trigger = _lock(session, trigger_id, scope=scope, if_match=if_match)
    session.delete(trigger)
    session.flush()
    return runs.cancel_pending_for_trigger(session, trigger_id, now=now)


def run_now(
    session: Session,
    trigger_id: uuid.UUID,
    *,
    scope: str | None,
    request_key: str | None,
    now: datetime,
) -> tuple[Run, bool]:
    """Create a `manual` run scheduled for `now`; return (run, created).

    The run's idempotency key is `<trigger_id>:manual:<request_key or a new uuid>`, so a
    retried request with the same key returns the first run (created False) instead of a
    second one. A disabled trigger raises Conflict: its runner would cancel the run anyway.
    The caller enqueues the run after commit (a lost enqueue is recovered by the sweep).
    """
    trigger = get(session, trigger_id, scope=scope).trigger
    key = f"{trigger.id}:manual:{request_key or uuid.uuid4()}"
    existing = _select_run_by_key(session, key)
    if existing is not None:
        return existing, False
    if not trigger.enabled:
        raise errors.Conflict("trigger is disabled")
    run = _insert_manual_run(session, trigger, key=key, now=now)
    if run is None:  # a concurrent request with the same key committed first
        return _select_run_by_key(session, key), False
    return run, True


def mark_enqueued(session: Session, run_ids: list[uuid.UUID], *, now: datetime) -> None:
    """Stamp `enqueued_at` on runs just handed to the broker (unless already stamped)."""
    session.execute(
        sql_update(Run)
        .where(Run.id.in_(run_ids), Run.enqueued_at.is_(None))
        .values(enqueued_at=now)
        .execution_options(synchronize_session=False)
    )


def get_run(session: Session, run_id: uuid.UUID, *, scope: str | None) -> Run:
    """A run visible to `scope`; raise NotFound otherwise."""
    query = select(Run).where(Run.id == run_id).execution_options(populate_existing=True)
    if scope is not None:
        query = query.where(Run.tenant_id == scope)
    run = session.scalars(query).one_or_none()
    if run is None:
        raise errors.NotFound("run not found")
    return run


def list_runs(
    session: Session,
    trigger_id: uuid.UUID,
    *,
    scope: str | None,
    status: str | None,
    limit: int,
    before: Cursor | None,
) -> list[Run]:
    """A trigger's runs, newest first, strictly before the keyset cursor `before`.

    Runs outlive their trigger, so a deleted trigger's history stays listable; an id that
    matches neither a visible trigger nor any visible run raises NotFound.
    """
    query = _visible_runs(select(Run), scope).where(Run.trigger_id == trigger_id)
    if status is not None:
        query = query.where(Run.status == status)
    if before is not None:
        query = query.where(tuple_(Run.created_at, Run.id) < tuple_(*before))
    query = query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)
    items = list(session.scalars(query))
    if not items and not _trigger_or_runs_exist(session, trigger_id, scope=scope):
        raise errors.NotFound("trigger not found")
    return items


def cancel_run(session: Session, run_id: uuid.UUID, *, scope: str | None, now: datetime) -> Run:
    """Cancel a pending run or ask a running one to stop; return the run.

    A run that already finished (other than cancelled) raises Conflict.
    """
    get_run(session, run_id, scope=scope)
    status = runs.request_cancel(session, run_id, now=now)
    if status is None:
        raise errors.NotFound("run not found")
    if status in FINISHED_STATUSES and status != "cancelled":
        raise errors.Conflict(f"run already finished ({status})")
    session.flush()
    return get_run(session, run_id, scope=scope)


def preview(spec: schedule.TriggerSpec, *, after: datetime, count: int) -> list[datetime]:
    """Up to `count` fire instants (aware UTC) strictly after `after`, inside the window."""
    return schedule.trigger_fires(spec, after, count)


def _validate(
    values: Mapping[str, Any],
    *,
    now: datetime,
    run_at_is_new: bool,
    trigger_id: uuid.UUID | None = None,
) -> None:
    problems: dict[str, str] = {}
    for name, validate in (
        ("cron", schedule.validate_cron),
        ("timezone", schedule.validate_timezone),
    ):
        if values.get(name) is not None:
            try:
                validate(values[name])
            except errors.ScheduleError as exc:
                problems[name] = exc.message
    problems.update(
        check_fields(
            has_cron=values.get("cron") is not None,
            has_run_at=values.get("run_at") is not None,
            run_at=values.get("run_at"),
            start_at=values.get("start_at"),
            end_at=values.get("end_at"),
            now=now,
            run_at_is_new=run_at_is_new,
            has_interval=values.get("interval_seconds") is not None,
            jitter_seconds=values.get("jitter_seconds"),
            paused_note=values.get("paused_note"),
            enabled=values.get("enabled", True),
        )
    )
    if not problems:
        problems.update(_check_spec(values, trigger_id=trigger_id))
    if problems:
        raise InvalidTrigger(problems)


def _check_spec(values: Mapping[str, Any], *, trigger_id: uuid.UUID | None) -> dict[str, str]:
    """Problems only the whole schedule shows: the interval's range, jitter over its bound."""
    try:
        spec = spec_of({**values, "id": trigger_id})
    except errors.ScheduleError as exc:
        return {exc.field: exc.message}
    period = schedule.period_seconds(spec)
    if period is not None and spec.jitter_seconds > schedule.jitter_limit(period):
        # Within the period, jittered fires stay in order: the dispatcher's plan relies on it.
        bound = schedule.jitter_limit(period)
        return {"jitter_seconds": f"must be at most {bound} (the schedule's period, at most 3600)"}
    return {}


def _visible(query: Select, scope: str | None, trigger_id: uuid.UUID) -> Select:
    query = query.where(Trigger.id == trigger_id)
    return query if scope is None else query.where(Trigger.tenant_id == scope)


def _visible_runs(query: Select, scope: str | None) -> Select:
    return query if scope is None else query.where(Run.tenant_id == scope)


def _with_last_run(query: Select, trigger: Any = Trigger) -> Select:
    """Add each trigger's most recent run with a LATERAL join (one query, no N+1)."""
    latest = (
        select(Run)
        .where(Run.trigger_id == trigger.id)
        .order_by(Run.created_at.desc(), Run.id.desc())
        .limit(1)
        .lateral("last_run")
    )
    return query.add_columns(aliased(Run, latest)).outerjoin(latest, true())


def _lock(
    session: Session, trigger_id: uuid.UUID, *, scope: str | None, if_match: int | None
) -> Trigger:
    query = _visible(select(Trigger), scope, trigger_id).with_for_update(of=Trigger)
    trigger = session.scalars(query.execution_options(populate_existing=True)).one_or_none()
    if trigger is None:
        raise errors.NotFound("trigger not found")
    if if_match is not None and if_match != trigger.version:
        raise errors.PreconditionFailed(f"trigger is at version {trigger.version}, not {if_match}")
    return trigger


def _select_run_by_key(session: Session, key: str) -> Run | None:
    return session.scalars(select(Run).where(Run.idempotency_key == key)).one_or_none()


def _insert_manual_run(
    session: Session, trigger: Trigger, *, key: str, now: datetime
) -> Run | None:
    # Stamp the current scheduler generation, as the dispatcher does for scheduled runs.
    generation = select(SchedulerState.generation).where(SchedulerState.id == 1).scalar_subquery()
    statement = (
        insert(Run)
        .values(
            id=uuid.uuid4(),
            trigger_id=trigger.id,
            tenant_id=trigger.tenant_id,
            scheduled_for=now,
            kind="manual",
            idempotency_key=key,
            status="pending",
            attempt=0,
            generation=generation,
            created_at=now,
        )  # fmt: skip
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(Run)
    )
    return session.scalars(statement).one_or_none()


def _trigger_or_runs_exist(session: Session, trigger_id: uuid.UUID, *, scope: str | None) -> bool:
    trigger = _visible(select(Trigger.id), scope, trigger_id).limit(1)
    run = _visible_runs(select(Run.id), scope).where(Run.trigger_id == trigger_id).limit(1)
    return session.execute(trigger.union_all(run)).first() is not None
