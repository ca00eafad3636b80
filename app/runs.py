"""The run state machine at work: everything that happens to a run after hand-off.

docs/design.md section 6; the statuses and the moves between them are data in
app/run_status.py (admission, app/admission.py, makes pending runs admitted).

Every transition is a conditional UPDATE (app/queries/runs.py) checked by its row count, so a
duplicate delivery, the API and the recovery sweep can race the runner safely. A run that
ends (or leaves its slot without running) hands the slot on at once: the worker runs
admission right after its commit. Times that decide ownership are PostgreSQL's; the
injected `Runtime.clock` only dates what the action sees (a webhook's signature).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from app import actions, admission, attempts, backoff, db, logs, queries, tracing
from app.config import Settings
from app.queries import runs as q
from app.queries.run_queue import Round
from app.run_status import Delivery, RunStatus

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What execute_run needs from the process: database, broker, identity, time."""

    engine: Engine
    publish: admission.Publish  # publish(run_ids): hand admitted runs to the broker
    settings: Settings
    worker: str
    clock: Callable[[], datetime]
    rng: random.Random = field(default_factory=random.Random)
    # wake(at): ask for a hand-off at `at` (a retry's not_before), so a retry does not wait
    # for the next tick. Only a wake-up: the run itself waits in PostgreSQL.
    wake: Callable[[datetime], Any] | None = None
    # pass_on(): have another process go on handing off (app/admission.py, MAX_ROUNDS).
    pass_on: admission.PassOn | None = None
    # For how long after a delivery a process whose run ended (so it is free) keeps an
    # admitted run to run itself rather than publish it (0: never). It bounds how long the
    # delivery's message stays unacknowledged, and what a shutdown waits for.
    chain_seconds: float = 0.0

    @property
    def limits(self) -> admission.Limits:
        return admission.Limits.of(self.settings)


@dataclass
class _Start:
    outcome: Delivery
    run: q.RunRow | None = None
    trigger: q.TriggerRow | None = None
    attempt: int = 0
    detail: str | None = None


def execute_run(run_id: uuid.UUID | str, runtime: Runtime) -> Delivery:
    """Deliver one run; return what the delivery did.

    1. Begin: a run that is not admitted is a duplicate delivery and is left alone; a cancel
       request, a deleted trigger or a disabled recurring trigger cancels it; overlap policy
       `skip`/`buffer_one` skips it when another run of the trigger is in progress; else it
       is claimed (attempt + 1). One call decides and does it (`scheduler_claim_v2`).
    2. Attempt: the action runs within the trigger's timeout while a heartbeat thread stamps
       `heartbeat_at` (PostgreSQL's clock).
    3. Finish, fenced by the attempt number: succeeded, cancelled, back to pending for a
       retry (waits in PostgreSQL until `not_before`), or failed.
    4. Hand-off: the slot this run held is free; admission admits the next runs. Within
       `chain_seconds` of the delivery, this process keeps one and runs it next, from 1.
    """
    rid = q.as_uuid(run_id)
    if rid is None:
        logger.warning("malformed run id", extra={"event": "run_missing"})
        return Delivery.MISSING
    chain_until = time.monotonic() + runtime.chain_seconds
    outcome, following = _deliver(rid, None, runtime, chain_until)
    while following is not None:
        _, following = _deliver(*following, runtime, chain_until, chained=True)
    return outcome


def _deliver(
    rid: uuid.UUID, start: _Start | None, rt: Runtime, chain_until: float, chained: bool = False
) -> tuple[Delivery, tuple[uuid.UUID, _Start] | None]:
    """Steps 1-4 for one run (1 is done when `start` is given): its outcome, and the run
    kept to go next (hand-offs before `chain_until`, time.monotonic), begun, or None."""
    with logs.bind(run_id=str(rid)):
        start = start or _begin(rid, rt)
        run = start.run
        if run is None:
            logger.warning("run not found", extra={"event": "run_missing"})
            return Delivery.MISSING, None
        with logs.bind(
            trigger_id=str(run.trigger_id), tenant_id=run.tenant_id, generation=run.generation
        ):
            if start.outcome != Delivery.RUNNING:
                outcome = _not_started(start)
                keep = time.monotonic() < chain_until
                return outcome, None if outcome == Delivery.DUPLICATE else _hand_on(rt, None, keep)
            fields = {"attempt": start.attempt, "worker": rt.worker, "chained": chained}
            logger.info("run claimed", extra={"event": "run_claimed", **fields})
            span = tracing.run_span(run_id=rid, trigger_id=run.trigger_id,
                                    tenant_id=run.tenant_id, attempt=start.attempt)  # fmt: skip
            with span as current:
                attempt = attempts.perform(
                    rt.engine, rt.settings, start.run, start.trigger, start.attempt, now=rt.clock()
                )
                # One checkout for the finish, the hand-off and a kept run's claim (not the
                # claim's: back in the pool through the attempt, pinged if that was long).
                with db.statements(rt.engine) as conn:
                    keep = time.monotonic() < chain_until
                    status, first = _finish(start, attempt, rt, conn, keep=keep)
                    tracing.outcome(current, status)
                    return status, _hand_on(rt, conn, keep, first)


def _hand_on(
    rt: Runtime, conn: Connection | None, keep: bool, first: Round | None = None
) -> tuple[uuid.UUID, _Start] | None:
    """Hand off (after `first`, the round a successful finish did), keeping a run when
    `keep`: begin it (on `conn`) unless the round claimed it already, and return it."""
    done = hand_off(rt, conn, keep=keep, first=first)
    if done is None or done.kept is None:
        return None
    kept, claimed = done.kept, done.claimed
    if claimed is not None:
        return kept, _Start(Delivery.RUNNING, *claimed, attempt=claimed[0].attempt)
    try:
        return kept, _begin(kept, rt, conn)
    except Exception:  # this run's outcome is committed; the kept run's lease brings it back
        logger.exception("kept run not started", extra={"event": "chain_failed"})
        return None


def hand_off(
    rt: Runtime,
    conn: Connection | None = None,
    *,
    keep: bool = False,
    first: Round | None = None,
) -> admission.HandOff | None:
    """A slot came free: admit and publish the next runs (on `conn`, an autocommit
    connection, when given); with `keep`, one is returned as `kept` instead, for the caller
    to run. Never raises: the tick's hand-off is the safety net, and the run's own outcome
    is already committed (a kept run left unclaimed goes back to the queue after its lease)."""
    try:
        return admission.hand_off(
            rt.engine, rt.limits, rt.publish, pass_on=rt.pass_on, conn=conn, keep=keep,
            first=first,
        )  # fmt: skip
    except Exception:
        logger.exception("hand-off failed", extra={"event": "hand_off_failed"})
        return None


def _begin(run_id: uuid.UUID, rt: Runtime, conn: Connection | None = None) -> _Start:
    """Decide what this delivery does and do it: one call of the SQL function
    `scheduler_claim_v2` (app/queries/runs.py, claim), which claims the run, ends it without
    running it (cancelled, failed, skipped) or leaves it (duplicate, missing), and says
    which. `conn`: an autocommit connection to use (default: one from the pool)."""
    with nullcontext(conn) if conn is not None else db.statements(rt.engine) as conn:
        claim = q.claim(conn, run_id, worker=rt.worker)
    run = claim.run
    attempt = run.attempt if claim.decision == Delivery.RUNNING and run is not None else 0
    return _Start(claim.decision, run, claim.trigger, attempt=attempt, detail=claim.detail)


def _not_started(start: _Start) -> Delivery:
    """Log a delivery that ended without running."""
    fields: dict[str, Any] = {"event": f"run_{start.outcome}", "detail": start.detail}
    if start.outcome == Delivery.DUPLICATE:
        logger.info("duplicate delivery ignored", extra=fields)
    else:
        logger.info(f"run {start.outcome}", extra=fields)
    return start.outcome


def _finish(
    start: _Start, outcome: actions.Attempt, rt: Runtime, conn: Connection, *, keep: bool
) -> tuple[Delivery, Round | None]:
    """Record the attempt's outcome on `conn`, an autocommit connection (db.statements);
    return it, and the first round of the hand-off when it was done with the finish."""
    run, trigger, attempt = start.run, start.trigger, start.attempt
    assert run is not None and trigger is not None
    retry_at: datetime | None = None
    first = None
    if outcome.succeeded:
        # The hot path: one statement for the finish, the first round of the hand-off and a
        # kept run's claim. A cancel request that came during the attempt has nothing left
        # to stop.
        ours, first = admission.finish_succeeded(
            conn, rt.limits, run.id, attempt=attempt, result=q.clip_json(outcome.result),
            keep_worker=rt.worker if keep else None,
        )  # fmt: skip
        status = Delivery.SUCCEEDED if ours else Delivery.LOST
    else:
        with db.transaction(rt.engine) as tx:
            status, retry_at = _after_failure(tx, start, outcome, rt)
    fields: dict[str, Any] = {"event": f"run_{status}", "attempt": attempt}
    if status == Delivery.SUCCEEDED:
        logger.info("run succeeded", extra=fields)
    elif status == Delivery.RETRYING:
        _wake(rt, retry_at)
        not_before = retry_at.isoformat() if retry_at else None
        fields.update(event="run_retry_scheduled", error=outcome.error, not_before=not_before)
        logger.warning("attempt failed; retry scheduled", extra=fields)
    elif status == Delivery.LOST:
        # The recovery sweep judged this attempt dead and handed the run on: whatever this
        # attempt did, the run's state belongs to the newer attempt.
        logger.warning("run taken over; result of this attempt dropped", extra=fields)
    else:
        logger.warning(f"run {status}", extra={**fields, "error": outcome.error})
    return status, first


def _wake(rt: Runtime, at: datetime | None) -> None:
    if rt.wake is None or at is None:
        return
    try:
        rt.wake(at)
    except Exception:
        # The tick's hand-off admits the retry anyway, at most a tick period later.
        logger.warning("retry wake-up not sent", extra={"event": "wake_failed"}, exc_info=True)


def _after_failure(
    session: queries.Executor, start: _Start, outcome: actions.Attempt, rt: Runtime
) -> tuple[Delivery, datetime | None]:
    """Decide and record what follows a failed attempt: (status, retry time or None)."""
    run, trigger, attempt = start.run, start.trigger, start.attempt
    assert run is not None and trigger is not None
    ours, cancel_requested = q.lock_attempt(session, run.id, attempt=attempt)
    if not ours:
        return Delivery.LOST, None
    if outcome.retryable and attempt < trigger.max_attempts and not cancel_requested:
        delay = backoff.delay_seconds(
            attempt, trigger.retry_backoff_seconds, rng=rt.rng, retry_after=outcome.retry_after
        )
        retry_at = q.schedule_retry(
            session,
            run.id,
            attempt=attempt,
            delay_seconds=delay,
            result=outcome.result,
            error=outcome.error,
        )
        return Delivery.RETRYING, retry_at
    # A cancel request is honoured here, between attempts: no further attempt starts.
    status = RunStatus.CANCELLED if cancel_requested else RunStatus.FAILED
    q.finish(
        session, run.id, attempt=attempt, status=status, result=outcome.result, error=outcome.error
    )
    return Delivery(status), None
