"""Statements on `runs` for reading and keeping history: the API's run reads, manual and
backfill runs, the metrics' aggregates and retention.

The service reads and creates ORM rows here (`Run` objects its views serialise); the
aggregates are `text()`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app import run_status
from app.models import Run, SchedulerState

# Histogram buckets (seconds) of the lag metrics; the statements count each bucket.
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)

# Lag from when a run was due (`due_at`, written when the run is: docs/design.md section 3).
_LAG = "GREATEST(0, EXTRACT(EPOCH FROM (enqueued_at - due_at)))"
# Two indexed halves: unfinished runs (ix_runs_unfinished) and recently finished ones
# (ix_runs_finished_at). A run enqueued in the window is in exactly one of them.
_ENQUEUE_LAG_HISTOGRAM = text(
    "WITH recent AS ("
    f" SELECT {_LAG} AS lag FROM runs"
    "  WHERE status IN ('pending', 'admitted', 'running') AND enqueued_at >= :since"
    f" UNION ALL SELECT {_LAG} FROM runs"
    "  WHERE finished_at >= :since AND enqueued_at >= :since"
    ") SELECT "
    + ", ".join(f"count(*) FILTER (WHERE lag <= {bound})" for bound in LAG_BUCKETS)
    + ", count(*), COALESCE(sum(lag), 0) FROM recent"
)


_START_LAG = "GREATEST(0, EXTRACT(EPOCH FROM (started_at - due_at)))"
# Admission lag: fire to first start, of runs started in the window (running ones and ones
# finished in the window; a run started in the window is in exactly one of the halves).
_START_LAG_HISTOGRAM = text(
    "WITH recent AS ("
    f" SELECT {_START_LAG} AS lag FROM runs"
    "  WHERE status IN ('pending', 'admitted', 'running') AND started_at >= :since"
    f" UNION ALL SELECT {_START_LAG} FROM runs"
    "  WHERE finished_at >= :since AND started_at >= :since"
    ") SELECT "
    + ", ".join(f"count(*) FILTER (WHERE lag <= {bound})" for bound in LAG_BUCKETS)
    + ", count(*), COALESCE(sum(lag), 0) FROM recent"
)

# Webhook runs that finished (succeeded or failed) in the window, joined to their trigger's
# action. A run's duration runs from its first start to its end, retries included.
_WEBHOOK_RECENT = (
    "FROM runs AS r JOIN triggers AS t ON t.id = r.trigger_id"
    " WHERE r.finished_at >= :since AND r.status IN ('succeeded', 'failed')"
    " AND t.action->>'type' = 'webhook'"
)
_WEBHOOK_DURATION = "GREATEST(0, EXTRACT(EPOCH FROM (r.finished_at - r.started_at)))"
_WEBHOOK_DURATION_HISTOGRAM = text(
    f"WITH recent AS (SELECT {_WEBHOOK_DURATION} AS lag {_WEBHOOK_RECENT}"
    " AND r.started_at IS NOT NULL) SELECT "
    + ", ".join(f"count(*) FILTER (WHERE lag <= {bound})" for bound in LAG_BUCKETS)
    + ", count(*), COALESCE(sum(lag), 0) FROM recent"
)
# Per receiver host (the URL's host, without user info or port); hosts are a tenant's
# choice, so only the `:top` with the most failures are returned (a bounded label set).
_WEBHOOK_BY_HOST = text(
    "SELECT lower(substring(t.action->>'url' FROM '^[A-Za-z][A-Za-z0-9+.-]*://"
    "(?:[^@/]*@)?([^/:?#]+)')) AS host,"
    " count(*) FILTER (WHERE r.status = 'failed') AS failed, count(*) AS finished "
    f"{_WEBHOOK_RECENT} GROUP BY 1 ORDER BY 2 DESC, 3 DESC, 1 LIMIT :top"
)

# The batch is an ARRAY(...) (evaluated once), never an IN (...): a plan that makes the IN a
# nested loop runs the locking subquery again for each row, and each time it skips the rows
# this statement has just deleted and takes the next ones, past the LIMIT (every prune
# statement here, tests/integration/ops/test_batches_stay_bounded.py).
_DELETE_FINISHED = text("""
    DELETE FROM runs WHERE id = ANY(ARRAY(
        SELECT id FROM runs
        WHERE finished_at IS NOT NULL AND finished_at < :cutoff
          AND status IN ('succeeded', 'failed', 'cancelled', 'skipped')
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ))
""")


def get(session: Session, run_id: uuid.UUID, *, scope: str | None) -> Run | None:
    """The run visible to `scope` (refreshed from the database), or None."""
    query = select(Run).where(Run.id == run_id).execution_options(populate_existing=True)
    if scope is not None:
        query = query.where(Run.tenant_id == scope)
    return session.scalars(query).one_or_none()


def page_for_trigger(
    session: Session,
    trigger_id: uuid.UUID,
    *,
    scope: str | None,
    status: str | None,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[Run]:
    """Up to `limit` runs of a trigger visible to `scope`, newest first, before the cursor."""
    query = _visible(select(Run), scope).where(Run.trigger_id == trigger_id)
    if status is not None:
        query = query.where(Run.status == status)
    if before is not None:
        query = query.where(tuple_(Run.created_at, Run.id) < tuple_(*before))
    query = query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)
    return list(session.scalars(query))


def any_for_trigger(session: Session, trigger_id: uuid.UUID, *, scope: str | None) -> bool:
    """Whether any run of the trigger is visible to `scope` (history outlives triggers)."""
    query = _visible(select(Run.id), scope).where(Run.trigger_id == trigger_id).limit(1)
    return session.execute(query).first() is not None


def find_by_key(session: Session, key: str) -> Run | None:
    """The run with this idempotency key, or None."""
    return session.scalars(select(Run).where(Run.idempotency_key == key)).one_or_none()


def insert_pending(session: Session, rows: Sequence[dict[str, Any]]) -> list[Run]:
    """Insert pending runs (manual, backfill) stamped with the current scheduler generation,
    as the dispatcher stamps scheduled runs; return those inserted (a key already taken is
    left out)."""
    generation = select(SchedulerState.generation).where(SchedulerState.id == 1).scalar_subquery()
    statement = (
        insert(Run)
        .values([{**row, "generation": generation} for row in rows])
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(Run)
    )
    return list(session.scalars(statement))


def count_active(session: Any) -> dict[str, int]:
    """Runs pending, admitted and running, by status (each present, 0 when none)."""
    rows = session.execute(
        text(
            "SELECT status, count(*) FROM runs "
            "WHERE status IN ('pending', 'admitted', 'running') GROUP BY status"
        )
    )
    counts = {str(status): 0 for status in run_status.UNFINISHED}
    return counts | {status: n for status, n in rows}


def count_finished(session: Any, *, since: datetime) -> dict[str, int]:
    """Runs finished since `since`, by status."""
    rows = session.execute(
        text("SELECT status, count(*) FROM runs WHERE finished_at >= :since GROUP BY status"),
        {"since": since},
    )
    return {status: count for status, count in rows}


def enqueue_lag_histogram(session: Any, *, since: datetime) -> tuple[list[int], int, float]:
    """(cumulative bucket counts, count, sum) of due-to-enqueued lags of runs enqueued since."""
    return _histogram(session, _ENQUEUE_LAG_HISTOGRAM, since=since)


def start_lag_histogram(session: Any, *, since: datetime) -> tuple[list[int], int, float]:
    """(cumulative bucket counts, count, sum) of due-to-first-start lags of runs started since."""
    return _histogram(session, _START_LAG_HISTOGRAM, since=since)


def webhook_duration_histogram(session: Any, *, since: datetime) -> tuple[list[int], int, float]:
    """(cumulative bucket counts, count, sum) of first-start-to-end durations of webhook runs
    that finished since `since`."""
    return _histogram(session, _WEBHOOK_DURATION_HISTOGRAM, since=since)


def webhook_outcomes_by_host(
    session: Any, *, since: datetime, top: int
) -> list[tuple[str, int, int]]:
    """(host, failed, finished) of webhook runs finished since `since`, for the `top` hosts
    with the most failures."""
    rows = session.execute(_WEBHOOK_BY_HOST, {"since": since, "top": top})
    return [(host or "unknown", failed, finished) for host, failed, finished in rows]


def delete_finished(conn: Connection, *, cutoff: datetime, batch: int) -> int:
    """Delete up to `batch` runs finished before `cutoff`; return how many."""
    return conn.execute(_DELETE_FINISHED, {"cutoff": cutoff, "batch": batch}).rowcount


def _histogram(session: Any, query: Any, *, since: datetime) -> tuple[list[int], int, float]:
    row = session.execute(query, {"since": since}).one()
    return list(row[: len(LAG_BUCKETS)]), row[-2], float(row[-1])


def _visible(query: Select, scope: str | None) -> Select:
    return query if scope is None else query.where(Run.tenant_id == scope)


# One pass over the unfinished runs (ix_runs_unfinished), grouped by tenant: what the
# backlog report (app/backlog.py) needs to tell a growing queue from a tenant at its cap.
_UNFINISHED_BY_TENANT = text("""
    SELECT tenant_id,
           count(*) FILTER (WHERE status = 'pending'
                            AND (not_before IS NULL OR not_before <= now())) AS waiting,
           COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(
                        GREATEST(created_at, COALESCE(not_before, created_at)))
                    FILTER (WHERE status = 'pending'
                            AND (not_before IS NULL OR not_before <= now()))), 0) AS oldest,
           count(*) FILTER (WHERE status IN ('admitted', 'running')) AS in_progress,
           count(*) FILTER (WHERE status = 'pending') AS pending
    FROM runs WHERE status IN ('pending', 'admitted', 'running')
    GROUP BY tenant_id
""")


def unfinished_by_tenant(session: Any) -> list[Any]:
    """(tenant_id, runs waiting for a slot that could start now, seconds the oldest of them
    has waited (0 when none), runs in progress, pending runs) per tenant with unfinished
    runs, on PostgreSQL's clock."""
    return session.execute(_UNFINISHED_BY_TENANT).all()


# A run inserted by an older release (a deploy's overlap, migration 0014) has no run_as: it
# takes its trigger's, recorded here once, so every later attempt and the history agree.
_RUN_AS = text("""
    WITH filled AS (
        UPDATE runs r SET run_as = t.run_as
        FROM triggers t
        WHERE r.id = :id AND r.run_as IS NULL AND t.id = r.trigger_id
        RETURNING r.run_as
    )
    SELECT coalesce((SELECT run_as FROM filled), (SELECT run_as FROM runs WHERE id = :id))
""")


def run_as(conn: Connection, run_id: uuid.UUID) -> str | None:
    """The principal the run fires as (its trigger's, recorded first when the run had none);
    None when neither the run nor its trigger says (both gone). One statement, atomic on
    its own, so `conn` may be in autocommit (db.statements). Only for a run an older release
    inserted without one: every other run's comes with its claim (RunRow.run_as)."""
    return conn.execute(_RUN_AS, {"id": run_id}).scalar_one()
