"""Run history: read, list and cancel runs, create manual runs, and hand new runs on.

No Flask here: callers pass a session, the caller's tenant scope (a tenant id, or None for an
admin who sees every tenant) and `now`. Another tenant's run is NotFound, never a permission
error. The API and the CLI both go through these functions, and through :func:`hand_off`
once new runs (run now, backfill) have committed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app import admission, errors, principals, run_status, waiting
from app.models import Run
from app.queries import run_history
from app.queries import runs as runs_q
from app.queries import triggers as triggers_q
from app.run_status import RunStatus

logger = logging.getLogger(__name__)

Cursor = tuple[datetime, uuid.UUID]


def get_run(session: Session, run_id: uuid.UUID, *, scope: str | None) -> Run:
    """A run visible to `scope`; raise NotFound otherwise."""
    run = run_history.get(session, run_id, scope=scope)
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
    items = run_history.page_for_trigger(
        session, trigger_id, scope=scope, status=status, limit=limit, before=before
    )
    if (
        not items
        and not triggers_q.exists(session, trigger_id, scope=scope)
        and not run_history.any_for_trigger(session, trigger_id, scope=scope)
    ):
        raise errors.NotFound("trigger not found")
    return items


def cancel_run(
    session: Session,
    run_id: uuid.UUID,
    *,
    scope: str | None,
    now: datetime,
    by: principals.Actor,
) -> Run:
    """Cancel a pending run or ask a running one to stop; return the run.

    A run that already finished (other than cancelled) raises Conflict; a run that runs as
    another principal than `by`'s raises PermissionDenied unless `by` may act for anyone.
    """
    run = get_run(session, run_id, scope=scope)
    principals.check_run_as(by, run.run_as or "")
    status = request_cancel(session, run_id, now=now)
    if status is None:
        raise errors.NotFound("run not found")
    if status in run_status.FINISHED and status != RunStatus.CANCELLED:
        raise errors.Conflict(f"run already finished ({status})")
    session.flush()
    return get_run(session, run_id, scope=scope)


def request_cancel(session: Session, run_id: uuid.UUID | str, *, now: datetime) -> str | None:
    """Cancel a run: a pending or admitted one becomes `cancelled` at once; a running one is
    flagged and ends `cancelled` at its next attempt boundary (or finishes if its attempt
    succeeds).

    Returns the run's status after the request, or None when there is no such run.
    """
    rid = runs_q.as_uuid(run_id)
    if rid is None:
        return None
    status = runs_q.request_cancel(session, rid, now=now)
    if status is not None:
        logger.info(
            "run cancel requested",
            extra={"event": "run_cancel_requested", "run_id": str(rid), "status": status},
        )
    return status


def cancel_pending_for_trigger(
    session: Session, trigger_id: uuid.UUID | str, *, now: datetime
) -> int:
    """Cancel every waiting (pending or admitted) run of a trigger (on disable, delete and
    schedule change); return how many were cancelled. Running runs finish their attempt."""
    tid = runs_q.as_uuid(trigger_id)
    if tid is None:
        return 0
    count = runs_q.cancel_pending_for_trigger(session, tid, now=now)
    if count:
        logger.info(
            "pending runs cancelled",
            extra={"event": "runs_cancelled", "trigger_id": str(tid), "count": count},
        )
    return count


def run_now(
    session: Session,
    trigger_id: uuid.UUID,
    *,
    scope: str | None,
    request_key: str | None,
    now: datetime,
    max_waiting: int,
    by: principals.Actor,
) -> tuple[Run, bool]:
    """Create a `manual` run scheduled for `now`; return (run, created).

    The run's idempotency key is `<trigger_id>:manual:<request_key or a new uuid>`, so a
    retried request with the same key returns the first run (created False) instead of a
    second one. A disabled trigger raises Conflict: its runner would cancel the run anyway.
    A tenant with `max_waiting` runs waiting gets WaitingRunsLimitReached (app/waiting.py).
    A trigger that runs as another principal than `by`'s raises PermissionDenied unless `by`
    may act for anyone; the run records the trigger's `run_as`.
    The caller hands the run on after commit (:func:`hand_off`).
    """
    found = triggers_q.get_with_last_run(session, trigger_id, scope=scope)
    if found is None:
        raise errors.NotFound("trigger not found")
    trigger = found[0]
    principals.check_run_as(by, trigger.run_as)
    key = f"{trigger.id}:manual:{request_key or uuid.uuid4()}"
    existing = run_history.find_by_key(session, key)
    if existing is not None:
        return existing, False
    if not trigger.enabled:
        raise errors.Conflict("trigger is disabled")
    row = {
        "id": uuid.uuid4(), "trigger_id": trigger.id, "tenant_id": trigger.tenant_id,
        "scheduled_for": now, "due_at": now, "kind": "manual", "idempotency_key": key,
        "status": RunStatus.PENDING, "attempt": 0, "created_at": now, "run_as": trigger.run_as,
    }  # fmt: skip
    inserted = run_history.insert_pending(session, [row])
    if not inserted:  # a concurrent request with the same key committed first
        return run_history.find_by_key(session, key), False
    waiting.hold(session, trigger.tenant_id, created=1, limit=max_waiting)
    return inserted[0], True


def hand_off(
    engine: Engine,
    handed: Sequence[Run],
    *,
    limits: admission.Limits,
    publish: admission.Publish,
    now: datetime,
    pass_on: admission.PassOn | None = None,
) -> None:
    """After new runs commit (run now, backfill): admit into the free slots and publish, and
    show the runs of `handed` that were admitted as such (status, `enqueued_at` = `now`).

    The new runs wait their turn like any other; those admitted now are published at once.
    A broker failure is logged by admission and the caller still succeeds: the runs wait
    in PostgreSQL and a later hand-off (a finishing run, the tick) publishes them.
    """
    result = admission.hand_off(engine, limits, publish, pass_on=pass_on)
    if not result.published:
        return
    admitted = set(result.admitted)
    for run in handed:
        if run.id in admitted:
            run.status = RunStatus.ADMITTED
            run.enqueued_at = now
