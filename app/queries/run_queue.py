"""The statements on `runs` that work the queue: batch insert, admission, recovery.

Dispatch inserts a batch of runs (psycopg2 `execute_values`: one round trip per page of
1,000 rows); admission moves `pending` runs into free slots (app/admission.py explains the
lock and the fairness); the recovery sweep gives back the slots of dead workers and lost
publishes. `enqueued_at` is stamped by one statement, `admit`: the publish follows its
commit at once, and every statement that takes a slot back clears the stamp with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from psycopg2.extras import execute_values
from sqlalchemy import Connection, text

from app import models, queries

# pg_advisory_xact_lock(bigint) key of the one admission critical section: ASCII "ADMIT".
ADMISSION_LOCK = 0x41444D4954

_INSERT_RUNS = """
    INSERT INTO runs (id, trigger_id, tenant_id, scheduled_for, kind, idempotency_key, status,
                      generation, created_at, finished_at, due_at)
    VALUES %s
    ON CONFLICT DO NOTHING
    RETURNING id, status
"""
_INSERT_RUNS_TEMPLATE = (
    "(%s::uuid, %s::uuid, %s, %s::timestamptz, 'scheduled', %s, %s, %s, %s::timestamptz, "
    "%s::timestamptz, %s::timestamptz)"
)


def insert_scheduled(conn: Connection, rows: Sequence[tuple]) -> list[tuple[uuid.UUID, str]]:
    """Insert scheduled runs, pages of 1,000 rows per round trip; return (id, status) of those
    inserted. A fire that already has its run (its idempotency key) is left out."""
    with queries.raw_cursor(conn) as cursor:
        return execute_values(
            cursor, _INSERT_RUNS, rows, template=_INSERT_RUNS_TEMPLATE, page_size=1000, fetch=True
        )


# Every would-be admitter takes a number from this sequence before it tries admission's lock.
# A sequence is never rolled back and its last value is seen by every session at once,
# unlike a row, so the lock's holder can tell whether anyone came by while it held the lock.
ADMISSION_WAKEUPS = models.ADMISSION_WAKEUPS.name

_START_ROUND = text(f"""
    WITH state AS MATERIALIZED (
        SELECT (SELECT count(*) FROM runs WHERE status IN ('admitted', 'running')) AS in_use,
               (SELECT last_value FROM {ADMISSION_WAKEUPS}) AS last_wakeup
    ),
    wakeup AS MATERIALIZED (
        SELECT nextval('{ADMISSION_WAKEUPS}') AS ticket FROM state
        WHERE state.in_use < :max_running
          AND (CAST(:seen AS bigint) IS NULL OR state.last_wakeup <> :seen)
    )
    SELECT ticket, pg_try_advisory_xact_lock(:key) FROM wakeup
""")


def start_round(conn: Connection, *, max_running: int, seen: int | None) -> int | None:
    """Begin an admission round, in one statement; return this round's wake-up number when
    admission's transaction-scoped advisory lock is now ours, else None.

    In order (each CTE is computed before what reads it): nothing to do when every slot is
    taken (the unfinished-runs index), or when `seen` (the caller's number from its last
    round) is still the last one taken; else take a number, then try the lock. Its own
    statement: app/admission.py says why the counting statement must come after it.
    """
    row = conn.execute(
        _START_ROUND, {"max_running": max_running, "seen": seen, "key": ADMISSION_LOCK}
    ).one_or_none()
    if row is None or not row[1]:
        return None
    return int(row[0])


# Overlap policies that run one fire of a trigger at a time. Under `skip` a fire that finds
# an earlier run in progress is skipped; under `buffer_one` the oldest such fire waits and
# the later ones are skipped. Runs under admission's lock, before admitting.
#
# It starts from the triggers with a run in progress (at most `max_running` runs) or between
# two attempts (ix_runs_retrying), never from the waiting room, which may hold 100,000 runs:
# only such a trigger can have a fire to skip. A pile of waiting fires of a `buffer_one`
# trigger with nothing in progress is left as it is until admission takes the oldest, and
# the next hand-off then skips the rest (admission never takes a fire with an older one
# waiting, so none of them can start meanwhile).
_SKIP_OVERLAPPING = text("""
    WITH busy AS (
        SELECT trigger_id, count(*) AS n FROM (
            SELECT trigger_id FROM runs WHERE status IN ('admitted', 'running')
            UNION ALL
            SELECT trigger_id FROM runs WHERE status = 'pending' AND attempt > 0
        ) AS in_progress
        GROUP BY trigger_id
    ),
    one_at_a_time AS MATERIALIZED (
        SELECT t.id, t.overlap_policy, b.n
        FROM triggers AS t JOIN busy AS b ON b.trigger_id = t.id
        WHERE t.overlap_policy IN ('skip', 'buffer_one')
    ),
    -- From each busy trigger to its own waiting fires (the row lock keeps the planner from
    -- flattening the LATERAL into a scan of the whole waiting room); a fire someone else
    -- holds (a cancel) is left to the next hand-off.
    doomed AS MATERIALIZED (
        SELECT w.id, t.overlap_policy FROM one_at_a_time AS t
        CROSS JOIN LATERAL (
            SELECT p.id FROM runs AS p
            WHERE p.trigger_id = t.id AND p.status = 'pending' AND p.attempt = 0
              AND (
                t.overlap_policy = 'skip'
                -- buffer_one keeps the run in progress and the oldest waiting fire.
                OR t.n + (SELECT count(*) FROM runs AS o
                          WHERE o.trigger_id = t.id AND o.status = 'pending'
                            AND o.attempt = 0
                            AND (o.scheduled_for, o.id) < (p.scheduled_for, p.id)) >= 2
              )
            FOR UPDATE OF p SKIP LOCKED
        ) AS w
    )
    UPDATE runs AS r
    SET status = 'skipped', finished_at = clock_timestamp(), worker = NULL,
        error = CASE d.overlap_policy
            WHEN 'skip' THEN 'an earlier run of the trigger was still in progress'
            ELSE 'a fire of the trigger was already waiting (overlap buffer_one)' END
    FROM doomed AS d
    -- By primary key only: `doomed` locked its rows still pending, and a condition on
    -- the status would tempt the planner into scanning the waiting room.
    WHERE r.id = ANY(ARRAY(SELECT id FROM doomed)) AND r.id = d.id
    RETURNING r.id
""")


def skip_overlapping(conn: Connection) -> int:
    """Mark `skipped` the pending fires of `skip` / `buffer_one` triggers that may never run;
    return how many."""
    return conn.execute(_SKIP_OVERLAPPING).rowcount


# One statement: count, choose, lock, mark. Numbered in app.admission.admit's docstring.
_ADMIT = text("""
    WITH RECURSIVE waiting (tenant_id, oldest) AS (
        -- Distinct tenants with a pending run, one index probe each (a loose index scan):
        -- cheap with 100,000 waiting runs of a few tenants.
        (SELECT tenant_id, scheduled_for FROM runs WHERE status = 'pending'
         ORDER BY tenant_id, scheduled_for, id LIMIT 1)
        UNION ALL
        SELECT nxt.tenant_id, nxt.scheduled_for FROM waiting AS w
        CROSS JOIN LATERAL (
            SELECT tenant_id, scheduled_for FROM runs
            WHERE status = 'pending' AND tenant_id > w.tenant_id
            ORDER BY tenant_id, scheduled_for, id LIMIT 1) AS nxt
    ),
    busy AS (
        SELECT tenant_id, count(*) AS n FROM runs
        WHERE status IN ('admitted', 'running') GROUP BY tenant_id
    ),
    capacity AS (
        SELECT GREATEST(CAST(:max_running AS bigint) - COALESCE(sum(n), 0), 0) AS free
        FROM busy
    ),
    candidates AS MATERIALIZED (
        SELECT w.tenant_id, COALESCE(b.n, 0) AS n, w.oldest
        FROM waiting AS w LEFT JOIN busy AS b USING (tenant_id)
        WHERE COALESCE(b.n, 0) < :max_per_tenant
        ORDER BY COALESCE(b.n, 0), w.oldest, w.tenant_id
        LIMIT (SELECT free FROM capacity) * :factor
    ),
    locked AS MATERIALIZED (
        SELECT c.tenant_id, c.n, x.id, x.scheduled_for
        FROM candidates AS c
        CROSS JOIN LATERAL (
            SELECT r.id, r.scheduled_for FROM runs AS r
            WHERE r.tenant_id = c.tenant_id AND r.status = 'pending'
              AND r.cancel_requested_at IS NULL
              AND (r.not_before IS NULL OR r.not_before <= now())
              -- A one-at-a-time trigger's fire waits while another run of the trigger is
              -- in progress (among the tenant's in-progress runs) or waits ahead of it
              -- (among the trigger's waiting fires): two index probes, however long the
              -- trigger's history.
              AND (r.attempt > 0 OR NOT EXISTS (
                  SELECT 1 FROM triggers AS t
                  WHERE t.id = r.trigger_id AND t.overlap_policy IN ('skip', 'buffer_one')
                    AND (EXISTS (
                           SELECT 1 FROM runs AS o
                           WHERE o.tenant_id = r.tenant_id AND o.trigger_id = r.trigger_id
                             AND o.status IN ('admitted', 'running'))
                         OR EXISTS (
                           SELECT 1 FROM runs AS o
                           WHERE o.trigger_id = r.trigger_id AND o.status = 'pending'
                             AND o.id <> r.id
                             AND (o.attempt > 0
                                  OR (o.scheduled_for, o.id) < (r.scheduled_for, r.id))))))
            ORDER BY r.scheduled_for, r.id
            LIMIT LEAST((SELECT free FROM capacity), :max_per_tenant - c.n)
            FOR UPDATE OF r SKIP LOCKED
        ) AS x
    ),
    ranked AS (
        SELECT id, n + row_number() OVER (
                   PARTITION BY tenant_id ORDER BY scheduled_for, id) AS turn,
               scheduled_for
        FROM locked
    ),
    chosen AS (
        SELECT id FROM ranked ORDER BY turn, scheduled_for, id
        LIMIT (SELECT free FROM capacity)
    )
    UPDATE runs AS r
    SET status = 'admitted', admitted_at = clock_timestamp(), enqueued_at = clock_timestamp()
    FROM chosen
    -- By primary key only: `locked` holds these rows, still pending. A condition on the
    -- status would tempt the planner into scanning the whole waiting room.
    WHERE r.id = ANY(ARRAY(SELECT id FROM chosen)) AND r.id = chosen.id
    RETURNING r.id, r.tenant_id
""")


def admit(
    conn: Connection, *, max_running: int, max_per_tenant: int, factor: int
) -> list[uuid.UUID]:
    """Mark `admitted` (stamping `admitted_at` and `enqueued_at`) the runs chosen for the free
    slots; return their ids."""
    rows = conn.execute(
        _ADMIT, {"max_running": max_running, "max_per_tenant": max_per_tenant, "factor": factor}
    ).all()
    return [row.id for row in rows]


_UNADMIT = text(
    "UPDATE runs SET status = 'pending', admitted_at = NULL, enqueued_at = NULL "
    "WHERE id = ANY(:ids) AND status = 'admitted'"
)


def unadmit(conn: Connection, run_ids: Sequence[uuid.UUID]) -> None:
    """admitted -> pending for runs whose publish failed, taking back the `enqueued_at` stamp."""
    conn.execute(_UNADMIT, {"ids": list(run_ids)})


_BACKLOG = text("""
    SELECT
        (SELECT count(*) FROM runs
         WHERE status = 'pending' AND (not_before IS NULL OR not_before <= now())),
        (SELECT COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(
                    GREATEST(created_at, COALESCE(not_before, created_at)))), 0)
         FROM runs
         WHERE status = 'pending' AND (not_before IS NULL OR not_before <= now())),
        (SELECT count(*) FROM runs WHERE status IN ('admitted', 'running'))
""")


def backlog(conn: Any) -> tuple[int, float, int]:
    """(runs waiting for a slot that could start now, seconds the oldest has waited, slots
    in use), on PostgreSQL's clock."""
    waiting, oldest, in_use = conn.execute(_BACKLOG).one()
    return int(waiting), float(oldest), int(in_use)


_WAITING_BY_TENANT = text("""
    SELECT tenant_id, count(*) AS waiting FROM runs
    WHERE status = 'pending' AND (not_before IS NULL OR not_before <= now())
    GROUP BY tenant_id ORDER BY waiting DESC, tenant_id LIMIT :top
""")


def waiting_by_tenant(conn: Any, *, top: int) -> list[tuple[str, int]]:
    """The `top` tenants with the most runs waiting for a slot, most first."""
    return [(tenant, int(n)) for tenant, n in conn.execute(_WAITING_BY_TENANT, {"top": top})]


_RECOVER_STALE_RUNNING = text("""
    UPDATE runs AS r
    SET status = CASE
            WHEN s.max_attempts IS NULL THEN 'cancelled'
            WHEN r.attempt >= s.max_attempts THEN 'failed'
            ELSE 'pending' END,
        finished_at = CASE
            WHEN s.max_attempts IS NULL OR r.attempt >= s.max_attempts THEN clock_timestamp()
            END,
        error = CASE
            WHEN s.max_attempts IS NULL THEN 'trigger deleted while its worker was lost'
            WHEN r.attempt >= s.max_attempts
            THEN 'worker lost: no heartbeat for ' || :timeout || ' s; attempts used up'
            ELSE r.error END,
        enqueued_at = NULL,
        admitted_at = NULL,
        not_before = NULL,
        worker = NULL
    FROM (
        SELECT runs.id, t.max_attempts
        FROM runs LEFT JOIN triggers AS t ON t.id = runs.trigger_id
        WHERE runs.status = 'running'
          AND COALESCE(runs.heartbeat_at, runs.started_at, runs.created_at)
              < clock_timestamp() - make_interval(secs => :timeout)
        ORDER BY runs.heartbeat_at
        LIMIT :batch
        FOR UPDATE OF runs SKIP LOCKED
    ) AS s
    WHERE r.id = s.id
    RETURNING r.id, r.status, r.trigger_id, r.tenant_id, r.attempt
""")


def recover_stale_running(conn: Connection, *, timeout_seconds: int, batch: int) -> list[Any]:
    """Take back up to `batch` running runs whose heartbeat is older than `timeout_seconds`
    (pending with attempts left, else failed or cancelled); return (id, status, trigger_id,
    tenant_id, attempt) rows."""
    return conn.execute(_RECOVER_STALE_RUNNING, {"timeout": timeout_seconds, "batch": batch}).all()


_RETURN_STALE_ADMITTED = text("""
    UPDATE runs SET status = 'pending', admitted_at = NULL, enqueued_at = NULL
    WHERE id IN (
        SELECT id FROM runs
        WHERE status = 'admitted'
          AND admitted_at < clock_timestamp() - make_interval(secs => :lease)
        ORDER BY admitted_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id
""")


def return_stale_admitted(conn: Connection, *, lease_seconds: int, batch: int) -> list[Any]:
    """admitted -> pending for up to `batch` runs admitted more than `lease_seconds` ago (a
    lost publish); return their id rows."""
    return conn.execute(_RETURN_STALE_ADMITTED, {"lease": lease_seconds, "batch": batch}).all()
