"""The recovery sweep (DESIGN section 5), run at the start of every accepted tick.

Two kinds of run are stuck without it:

- `pending` runs whose hand-off to the broker was lost: the dispatcher died between its
  commit and the publish, Redis was down, or Redis lost the message. They are published
  again; the conditional claim in the runner makes a second delivery harmless.
- `running` runs whose worker died: no heartbeat for `heartbeat_timeout_seconds`. They go
  back to `pending` for another attempt, or to `failed` when their attempts are used up
  (`cancelled` when their trigger was deleted).

Each step claims rows with FOR UPDATE SKIP LOCKED and stamps `enqueued_at` before commit, so
concurrent dispatchers never publish the same run twice in one sweep.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from app.errors import SchedulerError

logger = logging.getLogger(__name__)

MAX_ROUNDS = 20  # bounds one sweep; what is left waits for the next tick

RECOVER_STALE_RUNNING = text("""
    UPDATE runs AS r
    SET status = CASE
            WHEN s.max_attempts IS NULL THEN 'cancelled'
            WHEN r.attempt >= s.max_attempts THEN 'failed'
            ELSE 'pending' END,
        finished_at = CASE
            WHEN s.max_attempts IS NULL OR r.attempt >= s.max_attempts THEN :now END,
        error = CASE
            WHEN s.max_attempts IS NULL THEN 'trigger deleted while its worker was lost'
            WHEN r.attempt >= s.max_attempts
            THEN 'worker lost: no heartbeat for ' || :timeout || ' s; attempts used up'
            ELSE r.error END,
        enqueued_at = CASE
            WHEN s.max_attempts IS NOT NULL AND r.attempt < s.max_attempts THEN :now
            ELSE r.enqueued_at END,
        not_before = NULL,
        worker = NULL
    FROM (
        SELECT runs.id, t.max_attempts
        FROM runs LEFT JOIN triggers AS t ON t.id = runs.trigger_id
        WHERE runs.status = 'running'
          AND COALESCE(runs.heartbeat_at, runs.started_at, runs.created_at) < :cutoff
        ORDER BY runs.heartbeat_at
        LIMIT :batch
        FOR UPDATE OF runs SKIP LOCKED
    ) AS s
    WHERE r.id = s.id
    RETURNING r.id, r.status, r.trigger_id, r.tenant_id, r.attempt
""")

CLAIM_UNPUBLISHED_PENDING = text("""
    UPDATE runs SET enqueued_at = :now
    WHERE id IN (
        SELECT id FROM runs
        WHERE status = 'pending'
          AND COALESCE(not_before, created_at) <= :now
          AND ((enqueued_at IS NULL AND created_at <= :grace_cutoff)
               OR (:requeue_published
                   AND GREATEST(enqueued_at, COALESCE(not_before, enqueued_at))
                       <= :requeue_cutoff))
        ORDER BY created_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id
""")

UNSTAMP_ENQUEUED = text("UPDATE runs SET enqueued_at = NULL WHERE id = ANY(:ids)")


class BrokerUnavailable(SchedulerError):
    """The broker refused the hand-off; the runs stay pending for the next sweep."""


@dataclass(frozen=True)
class RecoveryOptions:
    grace_seconds: int = 30
    requeue_after_seconds: int = 300
    heartbeat_timeout_seconds: int = 60
    batch_size: int = 500


@dataclass
class SweepResult:
    requeued: int = 0
    failed: int = 0


def sweep(
    engine: Engine,
    *,
    now: datetime,
    publish: Callable[[Sequence[uuid.UUID]], Any],
    options: RecoveryOptions,
    requeue_published: bool = True,
) -> SweepResult:
    """Recover stale runs and re-publish lost hand-offs; return what it did.

    `requeue_published=False` leaves alone the runs that were published and not started:
    while the broker still holds a backlog they are most likely waiting in it, and copying
    them every `requeue_after_seconds` would multiply the backlog (the midnight flood of
    DESIGN section 10). Runs never published are handed over either way.

    Raises BrokerUnavailable when publishing fails (the runs are left to the next sweep).
    """
    result = SweepResult()
    for _ in range(MAX_ROUNDS):
        with engine.begin() as conn:
            stale = conn.execute(
                RECOVER_STALE_RUNNING,
                {
                    "now": now,
                    "cutoff": now - timedelta(seconds=options.heartbeat_timeout_seconds),
                    "timeout": str(options.heartbeat_timeout_seconds),
                    "batch": options.batch_size,
                },
            ).all()
            lost = conn.execute(
                CLAIM_UNPUBLISHED_PENDING,
                {
                    "now": now,
                    "grace_cutoff": now - timedelta(seconds=options.grace_seconds),
                    "requeue_cutoff": now - timedelta(seconds=options.requeue_after_seconds),
                    "requeue_published": requeue_published,
                    "batch": options.batch_size,
                },
            ).all()
        for run_id, status, trigger_id, tenant_id, attempt in stale:
            logger.warning(
                "worker lost; run recovered",
                extra={
                    "event": "run_recovered",
                    "run_id": str(run_id),
                    "status": status,
                    "trigger_id": str(trigger_id),
                    "tenant_id": tenant_id,
                    "attempt": attempt,
                },
            )
        result.failed += sum(1 for row in stale if row.status != "pending")
        ids = [row.id for row in stale if row.status == "pending"] + [row.id for row in lost]
        if ids:
            _publish(engine, ids, publish)
            result.requeued += len(ids)
        if len(stale) < options.batch_size and len(lost) < options.batch_size:
            break
    if result.requeued or result.failed:
        logger.info(
            "recovery sweep",
            extra={"event": "recovery_sweep", "requeued": result.requeued, "failed": result.failed},
        )
    return result


def _publish(engine: Engine, ids: list[uuid.UUID], publish: Callable[..., Any]) -> None:
    try:
        publish(ids)
    except Exception as exc:
        with engine.begin() as conn:
            # Not published after all: make them eligible again at the next sweep.
            conn.execute(UNSTAMP_ENQUEUED, {"ids": ids})
        logger.error(
            "broker unavailable during recovery",
            extra={"event": "enqueue_failed", "runs": len(ids)},
            exc_info=True,
        )
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc}"[:300])
