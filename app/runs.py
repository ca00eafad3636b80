"""The run state machine (DESIGN section 6): everything that happens to a run after hand-off.

    pending --claim--> running --success--> succeeded
       ^                  |---retryable failure, attempts left--> pending (not_before)
       |                  |---cancel requested--> cancelled
       |                  '---other failure / attempts used up--> failed
       '-- no slot: stays pending, re-published after a short jittered countdown
    pending --cancel, trigger deleted or disabled--> cancelled
    pending --overlap policy `skip`, another run in progress--> skipped

Every transition is a conditional UPDATE (app/run_queries.py) checked by its row count, so a
duplicate delivery, the API and the recovery sweep can race the runner safely. Times come
from `Runtime.clock` (the task passes the real clock; tests a fake one).
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app import actions, logs, webhook_secrets
from app import limiter as limiter_mod
from app import run_queries as q
from app.config import Settings

logger = logging.getLogger(__name__)

# Outcomes of execute_run: the run's new status, or what this delivery did instead.
SUCCEEDED, FAILED, CANCELLED, SKIPPED = "succeeded", "failed", "cancelled", "skipped"
RETRYING = "retrying"  # back to pending until not_before, re-published for then
THROTTLED = "throttled"  # no concurrency slot: still pending, re-published shortly
DEFERRED = "deferred"  # delivered before its not_before: re-published for then
DUPLICATE = "duplicate"  # not pending any more: another delivery or the API got there first
MISSING = "missing"  # no such run
LOST = "lost"  # the recovery sweep handed the run to another attempt meanwhile
RUNNING = "running"  # claimed: the attempt goes ahead
_NEEDS_LOCK = "needs_lock"  # overlap policy `skip`: decide again in a transaction, locked

# Longest wait between attempts. Kept under the broker's visibility timeout (1 h): a retry's
# ETA message is held unacknowledged by a worker until due, and Redis would hand it to a
# second worker past that timeout (harmless, but a wasted delivery).
BACKOFF_CAP_SECONDS = 1800.0
# A message for a retry may arrive a little early (clock skew between hosts): run it anyway.
EARLY_TOLERANCE = timedelta(seconds=1)

Publish = Callable[[str, datetime | None], Any]


@dataclass
class Runtime:
    """What execute_run needs from the process: database, limiter, broker, identity, time."""

    engine: Engine
    limiter: limiter_mod.Limiter
    publish: Publish  # publish(run_id, eta): hand the run to the broker again
    settings: Settings
    worker: str
    clock: Callable[[], datetime]
    rng: random.Random = field(default_factory=random.Random)
    throttle_min_seconds: float = 1.0
    throttle_max_seconds: float = 15.0


@dataclass
class _Start:
    outcome: str
    run: q.RunRow | None = None
    trigger: q.TriggerRow | None = None
    attempt: int = 0
    lease: limiter_mod.Lease | None = None
    publish_at: datetime | None = None
    detail: str | None = None


def backoff_seconds(
    attempt: int,
    base_seconds: float,
    *,
    rng: random.Random,
    retry_after: float | None = None,
    cap: float = BACKOFF_CAP_SECONDS,
) -> float:
    """Delay before the attempt after `attempt`: exponential backoff with full jitter,
    uniform(0, min(cap, base * 2^(attempt-1))). A server's Retry-After raises the delay to
    what it asked for, never past the cap."""
    ceiling = min(cap, base_seconds * 2 ** max(0, attempt - 1))
    delay = rng.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(max(retry_after, 0.0), cap))
    return delay


def throttle_delay(waited_seconds: float, runtime: Runtime) -> float:
    """Countdown before a run without a slot tries again: short at first, longer for a run
    that has waited long (a backlog of thousands then costs tens of messages a second, not
    thousands), jittered so the waiting runs do not all come back at once."""
    base = min(runtime.throttle_max_seconds, max(runtime.throttle_min_seconds, waited_seconds / 10))
    return base * runtime.rng.uniform(0.5, 1.5)


def execute_run(run_id: uuid.UUID | str, runtime: Runtime) -> str:
    """Deliver one run; return its outcome (one of the constants above).

    1. Begin: a run that is not pending is a duplicate delivery and is left alone; a cancel
       request, a deleted trigger or a disabled recurring trigger cancels it; overlap policy
       `skip` skips it; without a concurrency slot it is re-published with a countdown and
       stays pending; else it is claimed (attempt + 1) by a conditional UPDATE.
    2. Attempt: the action runs within the trigger's timeout while a heartbeat thread stamps
       `heartbeat_at` and renews the slot lease.
    3. Finish, fenced by the attempt number: succeeded, cancelled, back to pending for a
       retry (re-published for `not_before`), or failed.
    4. The slot is released.
    """
    rid = q.as_uuid(run_id)
    if rid is None:
        logger.warning("malformed run id", extra={"event": "run_missing"})
        return MISSING
    with logs.bind(run_id=str(rid)):
        start = _begin(rid, runtime)
        run = start.run
        if run is None:
            logger.warning("run not found", extra={"event": "run_missing"})
            return MISSING
        with logs.bind(
            trigger_id=str(run.trigger_id), tenant_id=run.tenant_id, generation=run.generation
        ):
            if start.lease is None:
                return _not_started(start, runtime)
            logger.info(
                "run claimed",
                extra={"event": "run_claimed", "attempt": start.attempt, "worker": runtime.worker},
            )
            try:
                outcome = _attempt(start, runtime)
                return _finish(start, outcome, runtime)
            finally:
                runtime.limiter.release(start.lease)


def _begin(run_id: uuid.UUID, rt: Runtime) -> _Start:
    """Decide what this delivery does and, when it runs, claim the run and its slot.

    Every step but one is a single conditional statement, so they run in autocommit (a
    round trip each, no BEGIN/COMMIT). The exception is overlap policy `skip`: checking
    that no other run is in progress and claiming must be one transaction, under a lock.
    """
    now = rt.clock()
    with q.statements(rt.engine) as conn:
        start = _decide(conn, run_id, rt, now, overlap_locked=False)
    if start.outcome != _NEEDS_LOCK:
        return start
    try:
        with q.transaction(rt.engine) as tx:
            assert start.run is not None
            q.lock_trigger_runs(tx, start.run.trigger_id)
            start = _decide(tx, run_id, rt, now, overlap_locked=True)
        return start
    except BaseException:
        # The claim did not commit: the slot must not leak until its lease expires.
        if start.lease is not None:
            rt.limiter.release(start.lease)
        raise


def _decide(
    conn: q.Executor, run_id: uuid.UUID, rt: Runtime, now: datetime, *, overlap_locked: bool
) -> _Start:
    found = q.load(conn, run_id)
    if found is None:
        return _Start(MISSING)
    run, trigger = found
    if run.status != "pending":
        # Another delivery claimed it, or it is finished or cancelled: no side effect.
        return _Start(DUPLICATE, run, detail=run.status)
    if run.not_before is not None and run.not_before - now > EARLY_TOLERANCE:
        q.mark_enqueued(conn, run.id, now=now)
        return _Start(DEFERRED, run, publish_at=run.not_before)
    reason = _cancel_reason(run, trigger)
    if reason is not None:
        ended = q.end_pending(conn, run.id, status="cancelled", now=now, error=reason)
        return _Start(CANCELLED if ended else DUPLICATE, run, trigger, detail=reason)
    assert trigger is not None  # _cancel_reason answers for a deleted trigger
    if run.attempt >= trigger.max_attempts:
        # Taken back by the recovery sweep after its last attempt, or max_attempts lowered.
        ended = q.end_pending(conn, run.id, status="failed", now=now, error=None)
        return _Start(FAILED if ended else DUPLICATE, run, trigger, detail="attempts used up")
    if trigger.overlap_policy == "skip" and run.attempt == 0:
        if not overlap_locked:
            return _Start(_NEEDS_LOCK, run, trigger)
        if q.other_run_in_progress(conn, trigger.id, run.id):
            detail = "an earlier run of the trigger was still in progress"
            ended = q.end_pending(conn, run.id, status="skipped", now=now, error=detail)
            return _Start(SKIPPED if ended else DUPLICATE, run, trigger, detail=detail)
    grant = rt.limiter.acquire(run.tenant_id, str(run.id), now=now)
    if isinstance(grant, limiter_mod.Denied):
        # Stays pending; the new stamp keeps the recovery sweep from publishing it again.
        q.mark_enqueued(conn, run.id, now=now)
        waited = max(0.0, (now - run.created_at).total_seconds())
        eta = now + timedelta(seconds=throttle_delay(waited, rt))
        return _Start(THROTTLED, run, trigger, publish_at=eta, detail=grant.scope)
    try:
        attempt = q.claim(conn, run.id, worker=rt.worker, now=now)
    except BaseException:
        rt.limiter.release(grant)
        raise
    if attempt is None:
        # Lost the race to a concurrent delivery (or a cancel) since the read above.
        rt.limiter.release(grant)
        return _Start(DUPLICATE, run, trigger, detail="claimed elsewhere")
    return _Start(RUNNING, run, trigger, attempt=attempt, lease=grant)


def _cancel_reason(run: q.RunRow, trigger: q.TriggerRow | None) -> str | None:
    if run.cancel_requested_at is not None:
        return "cancel requested"
    if trigger is None:
        return "trigger deleted"
    # A one-time trigger is disabled by the dispatcher in the transaction that creates its
    # run, so only a recurring trigger's disabled flag means "disabled since dispatch" (the
    # API cancels a one-time trigger's pending runs itself when a user disables it).
    if not trigger.enabled and trigger.recurring:
        return "trigger disabled"
    return None


def _not_started(start: _Start, rt: Runtime) -> str:
    """Log a delivery that ended without running, and publish it again when it waits."""
    run = start.run
    assert run is not None
    fields: dict[str, Any] = {"event": f"run_{start.outcome}", "detail": start.detail}
    if start.outcome in (THROTTLED, DEFERRED):
        eta = start.publish_at.isoformat() if start.publish_at else None
        logger.debug("run re-queued", extra={**fields, "eta": eta})
        rt.publish(str(run.id), start.publish_at)
    elif start.outcome == DUPLICATE:
        logger.info("duplicate delivery ignored", extra=fields)
    else:
        logger.info(f"run {start.outcome}", extra=fields)
    return start.outcome


def _attempt(start: _Start, rt: Runtime) -> actions.Attempt:
    run, trigger = start.run, start.trigger
    assert run is not None and trigger is not None and start.lease is not None
    ctx = actions.RunContext(
        run_id=str(run.id),
        trigger_id=str(run.trigger_id),
        tenant_id=run.tenant_id,
        idempotency_key=run.idempotency_key,
        scheduled_for=run.scheduled_for,
        attempt=start.attempt,
        payload=dict(trigger.payload or {}),
    )
    now = rt.clock()
    is_webhook = isinstance(trigger.action, dict) and trigger.action.get("type") == "webhook"
    # Read at attempt time: a rotation or revocation applies to the very next attempt.
    secrets = (
        webhook_secrets.signing_secrets(rt.engine, run.tenant_id, now=now) if is_webhook else []
    )
    with _heartbeats.watch(rt, run.id, start.attempt, start.lease):
        return actions.perform(
            trigger.action,
            ctx,
            timeout_seconds=trigger.timeout_seconds,
            signing_secrets=secrets,
            now=now,
            allow_private_networks=rt.settings.webhook_allow_private_networks,
        )


def _finish(start: _Start, outcome: actions.Attempt, rt: Runtime) -> str:
    run, trigger, attempt = start.run, start.trigger, start.attempt
    assert run is not None and trigger is not None
    now = rt.clock()
    retry_at: datetime | None = None
    if outcome.succeeded:
        with q.statements(rt.engine) as conn:
            # The hot path: one statement. A cancel request that came during the attempt
            # has nothing left to stop.
            ours = q.finish(
                conn,
                run.id,
                attempt=attempt,
                status=SUCCEEDED,
                now=now,
                result=outcome.result,
                error=None,
            )
        status = SUCCEEDED if ours else LOST
    else:
        with q.transaction(rt.engine) as tx:
            status, retry_at = _after_failure(tx, start, outcome, rt, now)
    fields = {"event": f"run_{status}", "attempt": attempt}
    if status == SUCCEEDED:
        logger.info("run succeeded", extra=fields)
    elif status == RETRYING:
        logger.warning(
            "attempt failed; retry scheduled",
            extra={
                **fields,
                "event": "run_retry_scheduled",
                "error": outcome.error,
                "not_before": retry_at.isoformat() if retry_at else None,
            },
        )
        rt.publish(str(run.id), retry_at)
    elif status == LOST:
        # The recovery sweep judged this attempt dead and handed the run on: whatever this
        # attempt did, the run's state belongs to the newer attempt.
        logger.warning("run taken over; result of this attempt dropped", extra=fields)
    else:
        logger.warning(f"run {status}", extra={**fields, "error": outcome.error})
    return status


def _after_failure(
    session: q.Executor, start: _Start, outcome: actions.Attempt, rt: Runtime, now: datetime
) -> tuple[str, datetime | None]:
    """Decide and record what follows a failed attempt: (status, retry time or None)."""
    run, trigger, attempt = start.run, start.trigger, start.attempt
    assert run is not None and trigger is not None
    ours, cancel_requested = q.lock_attempt(session, run.id, attempt=attempt)
    if not ours:
        return LOST, None
    if outcome.retryable and attempt < trigger.max_attempts and not cancel_requested:
        delay = backoff_seconds(
            attempt, trigger.retry_backoff_seconds, rng=rt.rng, retry_after=outcome.retry_after
        )
        retry_at = now + timedelta(seconds=delay)
        q.schedule_retry(
            session,
            run.id,
            attempt=attempt,
            not_before=retry_at,
            now=now,
            result=outcome.result,
            error=outcome.error,
        )
        return RETRYING, retry_at
    # A cancel request is honoured here, between attempts: no further attempt starts.
    status = CANCELLED if cancel_requested else FAILED
    q.finish(
        session,
        run.id,
        attempt=attempt,
        status=status,
        now=now,
        result=outcome.result,
        error=outcome.error,
    )
    return status, None


@dataclass
class _Beat:
    key: int
    rt: Runtime
    run_id: uuid.UUID
    attempt: int
    lease: limiter_mod.Lease
    context: contextvars.Context  # the run's log fields
    due: float


class _Heartbeats:
    """One daemon thread per process that stamps `heartbeat_at` and renews the slot lease of
    every attempt in progress in the process, every `heartbeat_seconds`, so the recovery
    sweep can tell a slow worker from a dead one. One thread for the process rather than one
    per attempt: starting a thread per run cost as much as the rest of a short run."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._beats: dict[int, _Beat] = {}
        self._keys = itertools.count()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(
        self, rt: Runtime, run_id: uuid.UUID, attempt: int, lease: limiter_mod.Lease
    ) -> Iterator[None]:
        due = time.monotonic() + rt.settings.heartbeat_seconds
        with self._cond:
            key = next(self._keys)
            context = contextvars.copy_context()
            self._beats[key] = _Beat(key, rt, run_id, attempt, lease, context, due)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
                self._thread.start()
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                del self._beats[key]

    def _loop(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [beat for beat in self._beats.values() if beat.due <= now]
                if not due:
                    soonest = min((beat.due for beat in self._beats.values()), default=now + 60)
                    self._cond.wait(soonest - now)
                    continue
                for beat in due:
                    beat.due = now + beat.rt.settings.heartbeat_seconds
            for beat in due:
                beat.context.run(self._beat, beat)

    def _beat(self, beat: _Beat) -> None:
        try:
            now = beat.rt.clock()
            with q.statements(beat.rt.engine) as conn:
                ours = q.touch_heartbeat(conn, beat.run_id, attempt=beat.attempt, now=now)
            renewed = beat.rt.limiter.renew(beat.lease, now=now)
        except Exception:
            # A database or Redis blip must not end the attempt; the next beat retries.
            logger.exception("heartbeat failed", extra={"event": "heartbeat_failed"})
            return
        with self._cond:
            if beat.key not in self._beats:
                return  # the attempt ended while this beat ran: nothing was lost
        if not ours:
            logger.warning("run no longer owned by this attempt", extra={"event": "run_lost"})
        if not renewed:
            logger.warning("slot lease had expired", extra={"event": "slot_lease_lost"})


_heartbeats = _Heartbeats()


def _after_fork() -> None:
    # Threads do not survive a fork (and a lock held at fork time never gets released in
    # the child): each pool process starts afresh.
    global _heartbeats
    _heartbeats = _Heartbeats()


os.register_at_fork(after_in_child=_after_fork)


def request_cancel(session: Session, run_id: uuid.UUID | str, *, now: datetime) -> str | None:
    """Cancel a run: a pending one becomes `cancelled` at once; a running one is flagged and
    ends `cancelled` at its next attempt boundary (or finishes if its attempt succeeds).

    Returns the run's status after the request, or None when there is no such run.
    """
    rid = q.as_uuid(run_id)
    if rid is None:
        return None
    status = q.request_cancel(session, rid, now=now)
    if status is not None:
        logger.info(
            "run cancel requested",
            extra={"event": "run_cancel_requested", "run_id": str(rid), "status": status},
        )
    return status


def cancel_pending_for_trigger(
    session: Session, trigger_id: uuid.UUID | str, *, now: datetime
) -> int:
    """Cancel every pending run of a trigger (on disable, delete and schedule change);
    return how many were cancelled. Running runs finish their current attempt."""
    tid = q.as_uuid(trigger_id)
    if tid is None:
        return 0
    count = q.cancel_pending_for_trigger(session, tid, now=now)
    if count:
        logger.info(
            "pending runs cancelled",
            extra={"event": "runs_cancelled", "trigger_id": str(tid), "count": count},
        )
    return count
