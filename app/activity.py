"""What the service is doing, read for operators: /metrics (web/metrics.py) and the console's
scheduler page read it here, not from app.queries (docs/design.md section 2).

Each function reads in the caller's session; the queries are app/queries' indexed
aggregates over runs and triggers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app import admission, state
from app.queries import run_history
from app.queries import triggers as triggers_q

LAG_BUCKETS = run_history.LAG_BUCKETS


def runs_overview(session: Session, *, now: datetime, since: datetime) -> dict[str, Any]:
    """Triggers due at `now`, runs in progress by status, runs finished since `since` by
    status."""
    return {
        "due": triggers_q.count_due(session, now=now),
        "active": run_history.count_active(session),
        "finished": run_history.count_finished(session, since=since),
    }


def snapshot(
    session: Session, *, now: datetime, since: datetime, top: int, top_hosts: int
) -> dict[str, Any]:
    """Everything /metrics shows, read in one transaction: the overview, the lag histograms
    and webhook figures of the runs since `since`, the waiting room, and the `top` tenants
    with the most runs waiting (none when 0) and the `top_hosts` receivers with the most
    failures."""
    return {
        "state": state.get_state(session),
        **runs_overview(session, now=now, since=since),
        "lag": run_history.enqueue_lag_histogram(session, since=since),
        "admission_lag": run_history.start_lag_histogram(session, since=since),
        "backlog": admission.backlog(session),
        "waiting_by_tenant": admission.waiting_by_tenant(session, top=top) if top else [],
        "webhook_duration": run_history.webhook_duration_histogram(session, since=since),
        "webhook_hosts": run_history.webhook_outcomes_by_host(session, since=since, top=top_hosts),
    }
