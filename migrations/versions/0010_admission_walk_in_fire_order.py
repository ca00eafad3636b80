"""runs: an admission round finds its candidate tenants by a walk in fire order, and a
retry in its backoff no longer holds a place in line

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

A round chooses among the tenants with a waiting run: fewest in progress first, then the
oldest waiting fire, and it needs only `free x factor` of them. It used to list every
waiting tenant first (a loose index scan, one probe per tenant) and sort them: about 1 ms a
round with 10 tenants waiting, 5 ms with 1,000, 45 ms with 10,000 (bench.many_tenants).
Every finishing run calls a round, and the round holds admission's lock, so a burst
across many tenants (a product whose 10,000 tenants each have a job at midnight) capped
the whole service at a few dozen rounds a second.

It also ranked a tenant by its oldest waiting run even when that run was a retry whose
backoff had not passed: with `free x factor` such tenants ahead (webhook receivers down
for a while), the round admitted nothing, and a fire that could start waited until their
backoffs ended. A tenant's place is now its oldest fire that can start: a first attempt
(or a run taken back: `not_before` NULL), or a retry whose backoff has passed.

The tenants that come first are those with nothing in progress, in the order of their
oldest such fire; the others, at most `max_running` tenants in progress, all come after
them. So the round now walks the first attempts waiting in fire order, on the new index
ix_runs_pending_fire (scheduled_for, tenant_id), one step per (fire time, tenant) pair: a
step jumps past all of a tenant's fires at one instant, a second probe tells whether the
pair is the tenant's oldest first attempt (its first meeting), and the walk stops at the
`free x factor`-th tenant with nothing in progress that it meets. Tenants in progress met
on the way are candidates with the rest; one not met would come after all of those anyway.
When the walk meets every first attempt waiting, it has met every tenant that has one. The
retries whose backoff has passed come from the new index ix_runs_pending_retry
(not_before) and join in by their fire times. With no retry in its backoff, the
candidates, and so the admissions, are exactly the ones the list of every tenant gave
(tests/integration/dispatch/test_admission_many_tenants.py checks this, and the whole rule
against a model of it): about 1.1 ms a round whatever the number of tenants waiting, for a
given number of free slots. The retries whose backoff has passed are read in full at every
round: a pile of them waiting for slots (after a receiver's outage) costs a round in
proportion (10 ms with 20,000).

The walk has a budget: the tenants it needs, plus the tenants in progress, plus
256 steps. Fires at many distinct instants ahead of everyone else's, of tenants met
already (a backfill, a long catch-up), could otherwise make every round step through them;
past the budget, the round lists every waiting tenant and probes each one's oldest first
attempt.

The indexes are built CONCURRENTLY: they read all of `runs`, history included, and a deploy
must not stop dispatch and admission from writing to the table meanwhile. Outside the
migration's transaction, so IF (NOT) EXISTS: a migration run that fails after it has
committed an index's creation or removal can be run again.

The rest of the function is 0008's. The whole text it installs is frozen below, and 0008's
for downgrade, each with 0009's setting (CREATE OR REPLACE drops what ALTER set).

The one-at-a-time test of the admitting statement, "another fire of the trigger waits
ahead of this one", was an EXISTS. With ix_runs_pending_fire in place, a plan made before
the table's first ANALYZE ran it as a hashed subplan over every waiting run, for every
candidate run (3 s a round with 20,000 waiting), and with that fenced off (OFFSET 0), as
a scan of ix_runs_pending_fire filtered on the trigger. As the first such fire in the
trigger's line (ORDER BY ... LIMIT 1, the order of ix_runs_pending_trigger), it is a
probe of that index whatever the statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_runs_pending_fire", ["scheduled_for", "tenant_id"],
     "status = 'pending' AND not_before IS NULL"),
    ("ix_runs_pending_retry", ["not_before"], "status = 'pending' AND not_before IS NOT NULL"),
)  # fmt: skip
FUNCTION = "scheduler_admission_round(bigint, bigint, bigint, bigint, bigint)"


def _define(definition: str) -> None:
    """Replace the function, with 0009's setting (CREATE OR REPLACE drops what ALTER set)."""
    op.execute(definition)
    op.execute(f"ALTER FUNCTION {FUNCTION} SET enable_bitmapscan = off")


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, columns, where in INDEXES:
            op.create_index(
                name,
                "runs",
                columns,
                postgresql_where=sa.text(where),
                postgresql_concurrently=True,
                if_not_exists=True,
            )
    _define(ADMISSION_ROUND)


def downgrade() -> None:
    _define(ADMISSION_ROUND_0008)
    with op.get_context().autocommit_block():
        for name, _, _ in INDEXES:
            op.drop_index(name, table_name="runs", postgresql_concurrently=True, if_exists=True)


# The whole text of the function this migration installs, frozen.
ADMISSION_ROUND = r"""
-- One admission round (app/admission.py), in the caller's transaction, in one round trip.
-- Returns one row per admitted run, or a single row with a
-- NULL run_id when this round held the lock but admitted nothing; no row when there was
-- nothing to do (every slot taken, no wake-up since p_seen) or another admitter holds the
-- lock. VOLATILE: each statement below takes a fresh snapshot (READ COMMITTED), so the
-- ones after the lock see every admission committed before it was granted.
CREATE OR REPLACE FUNCTION scheduler_admission_round(
    p_max_running bigint, p_max_per_tenant bigint, p_factor bigint, p_seen bigint,
    p_lock_key bigint
) RETURNS TABLE (ticket bigint, run_id uuid, skipped bigint)
-- Planned once per session, and again when the statistics of the tables change, and
-- without sequential scans of `runs`, which a kept plan would go on using as the table
-- grows (migration 0008). 0.5-0.8 ms a round; planned at every call, 1.1-1.6 ms.
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off AS $fn$
#variable_conflict use_column
DECLARE
    v_ticket bigint;
    v_locked boolean;
    v_skipped bigint;
BEGIN
    -- 1. Nothing to do, or a wake-up number and then the lock (each CTE is computed before
    -- what reads it).
        WITH state AS MATERIALIZED (
            SELECT (SELECT count(*) FROM runs WHERE status IN ('admitted', 'running')) AS in_use,
                   (SELECT last_value FROM admission_wakeups) AS last_wakeup
        ),
        wakeup AS MATERIALIZED (
            SELECT nextval('admission_wakeups') AS ticket FROM state
            WHERE state.in_use < p_max_running
              AND (p_seen IS NULL OR state.last_wakeup <> p_seen)
        )
        SELECT w.ticket, pg_try_advisory_xact_lock(p_lock_key) INTO v_ticket, v_locked
        FROM wakeup AS w;
    IF v_ticket IS NULL OR NOT v_locked THEN
        RETURN;
    END IF;
    -- 2. Overlap: waiting fires of busy skip / buffer_one triggers that may never run. Most
    -- rounds find no such trigger busy: a cheap look first, so that they do not pay for
    -- planning the statement (about 1 ms).
    v_skipped := 0;
    IF EXISTS (
        SELECT 1 FROM triggers AS t
        WHERE t.overlap_policy IN ('skip', 'buffer_one')
          AND t.id IN (SELECT trigger_id FROM runs WHERE status IN ('admitted', 'running')
                       UNION ALL
                       SELECT trigger_id FROM runs WHERE status = 'pending' AND attempt > 0)
    ) THEN
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
            WHERE r.id = ANY(ARRAY(SELECT id FROM doomed)) AND r.id = d.id;
        GET DIAGNOSTICS v_skipped = ROW_COUNT;
    END IF;
    -- 3. Count, choose, lock, mark admitted.
    RETURN QUERY
        WITH RECURSIVE busy AS (
            SELECT tenant_id, count(*) AS n FROM runs
            WHERE status IN ('admitted', 'running') GROUP BY tenant_id
        ),
        capacity AS (
            SELECT free, free * p_factor AS wanted, free * p_factor + tenants + 256
                       AS budget
            FROM (SELECT GREATEST(p_max_running - COALESCE(sum(n), 0), 0) AS free,
                         count(*) AS tenants
                  FROM busy) AS b
        ),
        -- A tenant's place in line is its oldest waiting fire that can start: a first
        -- attempt (or a run taken back, `not_before` NULL), or a retry whose backoff has
        -- passed. A retry still in its backoff gives its tenant no place (such tenants
        -- used to take every candidate place while eligible runs waited).
        --
        -- The first attempts in fire order, one index probe per (fire time, tenant) pair
        -- (a skip scan of ix_runs_pending_fire), until `wanted` tenants with nothing in
        -- progress have been met (migration 0010). A pair is a tenant's `first` when it is
        -- the tenant's oldest first attempt (a probe of ix_runs_pending_tenant: no set of
        -- the tenants met is carried from step to step, whose copying would grow with the
        -- square of `wanted`).
        walk (at, tenant_id, first, found, steps) AS (
            (SELECT w.at, w.tenant_id, true,
                    CAST(w.tenant_id NOT IN (SELECT tenant_id FROM busy) AS integer), 1
             FROM (SELECT r.scheduled_for AS at, r.tenant_id FROM runs AS r
                   WHERE r.status = 'pending' AND r.not_before IS NULL
                   ORDER BY r.scheduled_for, r.tenant_id LIMIT 1) AS w)
            UNION ALL
            SELECT nxt.scheduled_for, nxt.tenant_id, f.first,
                   w.found + CAST(f.first AND nxt.tenant_id NOT IN (SELECT tenant_id FROM busy)
                                  AS integer),
                   w.steps + 1
            FROM walk AS w
            CROSS JOIN LATERAL (
                SELECT r.scheduled_for, r.tenant_id FROM runs AS r
                WHERE r.status = 'pending' AND r.not_before IS NULL
                  AND (r.scheduled_for, r.tenant_id) > (w.at, w.tenant_id)
                ORDER BY r.scheduled_for, r.tenant_id LIMIT 1) AS nxt
            CROSS JOIN LATERAL (
                SELECT o.scheduled_for = nxt.scheduled_for AS first FROM runs AS o
                WHERE o.tenant_id = nxt.tenant_id AND o.status = 'pending'
                  AND o.not_before IS NULL
                ORDER BY o.scheduled_for, o.id LIMIT 1) AS f
            WHERE w.found < (SELECT wanted FROM capacity)
              AND w.steps < (SELECT budget FROM capacity)
        ),
        -- The walk is the answer when it met `wanted` tenants with nothing in progress (the
        -- tenants in progress that it did not meet come after all of them), or every
        -- waiting fire.
        complete AS (
            SELECT COALESCE(max(found) >= (SELECT wanted FROM capacity)
                            OR max(steps) < (SELECT budget FROM capacity), true) AS yes
            FROM walk
        ),
        -- Past its budget: every waiting tenant, one index probe each (a loose index scan),
        -- and its oldest first attempt (another probe).
        everyone (tenant_id) AS (
            (SELECT tenant_id FROM runs
             WHERE status = 'pending' AND NOT (SELECT yes FROM complete)
             ORDER BY tenant_id, scheduled_for, id LIMIT 1)
            UNION ALL
            SELECT nxt.tenant_id FROM everyone AS w
            CROSS JOIN LATERAL (
                SELECT tenant_id FROM runs
                WHERE status = 'pending' AND tenant_id > w.tenant_id
                ORDER BY tenant_id, scheduled_for, id LIMIT 1) AS nxt
        ),
        -- Retries whose backoff has passed, from ix_runs_pending_retry (the retries waiting,
        -- by the end of their backoff; in that order, so that no plan prefers a scan of
        -- every waiting run in tenant order for the GROUP BY below).
        due AS MATERIALIZED (
            SELECT tenant_id, scheduled_for FROM runs
            WHERE status = 'pending' AND not_before IS NOT NULL AND not_before <= now()
            ORDER BY not_before
        ),
        waiting (tenant_id, oldest) AS (
            SELECT tenant_id, min(oldest) FROM (
                SELECT tenant_id, at AS oldest FROM walk
                WHERE first AND (SELECT yes FROM complete)
                UNION ALL
                SELECT e.tenant_id, a.scheduled_for FROM everyone AS e
                CROSS JOIN LATERAL (
                    SELECT scheduled_for FROM runs
                    WHERE tenant_id = e.tenant_id AND status = 'pending' AND not_before IS NULL
                    ORDER BY scheduled_for, id LIMIT 1) AS a
                UNION ALL
                SELECT tenant_id, scheduled_for FROM due
            ) AS places
            GROUP BY tenant_id
        ),
        candidates AS MATERIALIZED (
            SELECT w.tenant_id, COALESCE(b.n, 0) AS n, w.oldest
            FROM waiting AS w LEFT JOIN busy AS b USING (tenant_id)
            WHERE COALESCE(b.n, 0) < p_max_per_tenant
            ORDER BY COALESCE(b.n, 0), w.oldest, w.tenant_id
            LIMIT (SELECT free FROM capacity) * p_factor
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
                               WHERE o.tenant_id = r.tenant_id AND o.trigger_id = t.id
                                 AND o.status IN ('admitted', 'running'))
                             OR (
                               SELECT o.id FROM runs AS o
                               WHERE o.trigger_id = t.id AND o.status = 'pending'
                                 AND o.id <> r.id
                                 AND (o.attempt > 0
                                      OR (o.scheduled_for, o.id) < (r.scheduled_for, r.id))
                               ORDER BY o.scheduled_for, o.id LIMIT 1) IS NOT NULL)))
                ORDER BY r.scheduled_for, r.id
                LIMIT LEAST((SELECT free FROM capacity), p_max_per_tenant - c.n)
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
        ),
        admitted AS (
            UPDATE runs AS r
            SET status = 'admitted', admitted_at = clock_timestamp(),
                enqueued_at = clock_timestamp()
            FROM chosen
            -- By primary key only: `locked` holds these rows, still pending. A condition on the
            -- status would tempt the planner into scanning the whole waiting room.
            WHERE r.id = ANY(ARRAY(SELECT id FROM chosen)) AND r.id = chosen.id
            RETURNING r.id
        )
        SELECT v_ticket, a.id, v_skipped FROM admitted AS a;
    IF NOT FOUND THEN
        RETURN QUERY SELECT v_ticket, NULL::uuid, v_skipped;
    END IF;
END
$fn$
"""

# 0008's, frozen (for downgrade).
ADMISSION_ROUND_0008 = r"""
-- One admission round (app/admission.py), in the caller's transaction, in one round trip.
-- Returns one row per admitted run, or a single row with a
-- NULL run_id when this round held the lock but admitted nothing; no row when there was
-- nothing to do (every slot taken, no wake-up since p_seen) or another admitter holds the
-- lock. VOLATILE: each statement below takes a fresh snapshot (READ COMMITTED), so the
-- ones after the lock see every admission committed before it was granted.
CREATE OR REPLACE FUNCTION scheduler_admission_round(
    p_max_running bigint, p_max_per_tenant bigint, p_factor bigint, p_seen bigint,
    p_lock_key bigint
) RETURNS TABLE (ticket bigint, run_id uuid, skipped bigint)
-- Planned once per session, and again when the statistics of the tables change, and
-- without sequential scans of `runs`, which a kept plan would go on using as the table
-- grows (migration 0008). 0.5-0.8 ms a round; planned at every call, 1.1-1.6 ms.
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off AS $fn$
#variable_conflict use_column
DECLARE
    v_ticket bigint;
    v_locked boolean;
    v_skipped bigint;
BEGIN
    -- 1. Nothing to do, or a wake-up number and then the lock (each CTE is computed before
    -- what reads it).
        WITH state AS MATERIALIZED (
            SELECT (SELECT count(*) FROM runs WHERE status IN ('admitted', 'running')) AS in_use,
                   (SELECT last_value FROM admission_wakeups) AS last_wakeup
        ),
        wakeup AS MATERIALIZED (
            SELECT nextval('admission_wakeups') AS ticket FROM state
            WHERE state.in_use < p_max_running
              AND (p_seen IS NULL OR state.last_wakeup <> p_seen)
        )
        SELECT w.ticket, pg_try_advisory_xact_lock(p_lock_key) INTO v_ticket, v_locked
        FROM wakeup AS w;
    IF v_ticket IS NULL OR NOT v_locked THEN
        RETURN;
    END IF;
    -- 2. Overlap: waiting fires of busy skip / buffer_one triggers that may never run. Most
    -- rounds find no such trigger busy: a cheap look first, so that they do not pay for
    -- planning the statement (about 1 ms).
    v_skipped := 0;
    IF EXISTS (
        SELECT 1 FROM triggers AS t
        WHERE t.overlap_policy IN ('skip', 'buffer_one')
          AND t.id IN (SELECT trigger_id FROM runs WHERE status IN ('admitted', 'running')
                       UNION ALL
                       SELECT trigger_id FROM runs WHERE status = 'pending' AND attempt > 0)
    ) THEN
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
            WHERE r.id = ANY(ARRAY(SELECT id FROM doomed)) AND r.id = d.id;
        GET DIAGNOSTICS v_skipped = ROW_COUNT;
    END IF;
    -- 3. Count, choose, lock, mark admitted.
    RETURN QUERY
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
            SELECT GREATEST(p_max_running - COALESCE(sum(n), 0), 0) AS free
            FROM busy
        ),
        candidates AS MATERIALIZED (
            SELECT w.tenant_id, COALESCE(b.n, 0) AS n, w.oldest
            FROM waiting AS w LEFT JOIN busy AS b USING (tenant_id)
            WHERE COALESCE(b.n, 0) < p_max_per_tenant
            ORDER BY COALESCE(b.n, 0), w.oldest, w.tenant_id
            LIMIT (SELECT free FROM capacity) * p_factor
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
                               WHERE o.tenant_id = r.tenant_id AND o.trigger_id = t.id
                                 AND o.status IN ('admitted', 'running'))
                             OR EXISTS (
                               SELECT 1 FROM runs AS o
                               WHERE o.trigger_id = t.id AND o.status = 'pending'
                                 AND o.id <> r.id
                                 AND (o.attempt > 0
                                      OR (o.scheduled_for, o.id) < (r.scheduled_for, r.id))))))
                ORDER BY r.scheduled_for, r.id
                LIMIT LEAST((SELECT free FROM capacity), p_max_per_tenant - c.n)
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
        ),
        admitted AS (
            UPDATE runs AS r
            SET status = 'admitted', admitted_at = clock_timestamp(),
                enqueued_at = clock_timestamp()
            FROM chosen
            -- By primary key only: `locked` holds these rows, still pending. A condition on the
            -- status would tempt the planner into scanning the whole waiting room.
            WHERE r.id = ANY(ARRAY(SELECT id FROM chosen)) AND r.id = chosen.id
            RETURNING r.id
        )
        SELECT v_ticket, a.id, v_skipped FROM admitted AS a;
    IF NOT FOUND THEN
        RETURN QUERY SELECT v_ticket, NULL::uuid, v_skipped;
    END IF;
END
$fn$
"""
