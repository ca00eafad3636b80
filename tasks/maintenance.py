"""Maintenance tasks sent by beat: retention of finished runs and idempotency records."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from app import config, db, retention
from tasks import celery
from tasks.celery_app import PRUNE_TASK


@celery.task(name=PRUNE_TASK, acks_late=False, ignore_result=True)
def prune_finished_runs(release_id: str | None = None) -> dict[str, Any]:
    settings = config.get_settings()
    result = retention.prune(
        db.get_engine(),
        now=datetime.now(UTC),
        run_retention_days=settings.run_retention_days,
        idempotency_retention_hours=settings.idempotency_retention_hours,
        batch_size=settings.dispatch_batch_size,
    )
    return asdict(result)
