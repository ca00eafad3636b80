"""Retention: finished runs, idempotency records and dead webhook secrets (revoked or
expired a day ago: they sign nothing) older than their horizon are pruned in bounded
batches (docs/design.md section 9), never in one huge DELETE that would hold locks and
bloat the WAL at once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from app.queries import idempotency_records, run_history, webhook_secrets

# How long a revoked or expired webhook secret is kept after it stopped signing (to tell
# why a receiver refused a delivery); then it is deleted, never kept forever.
DEAD_SECRET_RETENTION = timedelta(hours=24)

logger = logging.getLogger(__name__)


@dataclass
class PruneResult:
    runs: int = 0
    idempotency_records: int = 0
    webhook_secrets: int = 0
    complete: bool = True


def prune(
    engine: Engine,
    *,
    now: datetime,
    run_retention_days: int,
    idempotency_retention_hours: int,
    batch_size: int = 1000,
    max_batches: int = 100,
) -> PruneResult:
    """Delete expired rows, one committed batch at a time.

    Returns the counts; `complete` is False when `max_batches` stopped it (the next beat
    run continues).
    """
    result = PruneResult()
    jobs = (
        ("runs", run_history.delete_finished, now - timedelta(days=run_retention_days)),
        (
            "idempotency_records",
            idempotency_records.delete_expired,
            now - timedelta(hours=idempotency_retention_hours),
        ),
        ("webhook_secrets", webhook_secrets.delete_dead, now - DEAD_SECRET_RETENTION),
    )
    for name, delete, cutoff in jobs:
        for _ in range(max_batches):
            with engine.begin() as conn:
                deleted = delete(conn, cutoff=cutoff, batch=batch_size)
            setattr(result, name, getattr(result, name) + deleted)
            if deleted < batch_size:
                break
        else:
            result.complete = False
    logger.info(
        "retention pruned",
        extra={
            "event": "retention_pruned",
            "runs": result.runs,
            "idempotency_records": result.idempotency_records,
            "webhook_secrets": result.webhook_secrets,
            "complete": result.complete,
        },
    )
    return result
