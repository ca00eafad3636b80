"""Reconciliation: no enabled trigger may silently stop (docs/design.md section 10, issue 13).

Every tick, an enabled trigger that should have a next fire but has `next_run_at` NULL gets
one, computed by the engine from now, with a log line (`trigger_reconciled`) and the tick's
`reconciled` statistic (a metric). A trigger past its `end_at` and a dispatched one-time
trigger are left alone: NULL is right for them.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Engine

from app import schedule
from app.queries import triggers as triggers_q

logger = logging.getLogger(__name__)

_failures_logged: set[str] = set()  # a row that cannot be planned is retried every tick


def _log_failure_once(trigger_id: str, tenant_id: str) -> None:
    """Log an unplannable row once per process, not on every tick (it stays for an operator;
    the dispatcher parked it with the same log line's cause)."""
    if trigger_id in _failures_logged:
        return
    if len(_failures_logged) > 10_000:  # bounded memory whatever happens
        _failures_logged.clear()
    _failures_logged.add(trigger_id)
    logger.exception(
        "trigger without a next run cannot be scheduled",
        extra={"event": "reconcile_failed", "trigger_id": trigger_id, "tenant_id": tenant_id},
    )


def reconcile(engine: Engine, *, now: datetime, batch_size: int) -> int:
    """Give a next fire to enabled triggers that should have one but have `next_run_at` NULL;
    return how many got one.

    No write path of ours leaves such a row (they all call schedule.first_fire through
    app.triggers.compute_next_run_at), but a bulk load, a hand edit or a restore can, and the
    dispatcher would never see it again: a trigger that silently stops. One bounded batch
    per tick, SKIP LOCKED (a row being edited is the editor's to schedule). Missed fires are
    not replayed: the next fire is the first after `now`. A row that cannot be planned (a
    zone a tzdata upgrade removed) is logged once and left for an operator; such rows are
    looked at again every tick (bounded by the batch size).
    """
    with engine.begin() as conn:
        updates: list[tuple] = []
        for row in triggers_q.claim_unscheduled(conn, now=now, batch=batch_size):
            try:
                spec = schedule.TriggerSpec.of(row)
                fire = schedule.first_fire(spec, now)
            except Exception:
                _log_failure_once(str(row.id), row.tenant_id)
                continue
            if fire is None:
                continue
            due = schedule.due_at(spec, fire)
            updates.append((str(row.id), due, fire))
            logger.warning(
                "trigger had no next run; rescheduled",
                extra={"event": "trigger_reconciled", "trigger_id": str(row.id),
                       "tenant_id": row.tenant_id, "next_run_at": due.isoformat()},
            )  # fmt: skip
        if updates:
            triggers_q.set_next(conn, updates)
    return len(updates)
