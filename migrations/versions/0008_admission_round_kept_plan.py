"""runs: the admission round's overlap test starts from the trigger; its plan is kept

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

Three changes to `scheduler_admission_round` (0006); the rest of the function is 0006's.
The whole text it installs is frozen below, and 0006's for downgrade.

1. In the admitting statement, a waiting run is held back when its trigger runs one fire
   at a time (`skip`, `buffer_one`) and another run of the trigger is in progress or waits
   ahead of it. The two EXISTS over `runs` named the run's trigger as `r.trigger_id`, so they
   did not depend on the trigger row: the planner could test them first, as a gate on the
   lookup of the trigger, for every candidate run, however its trigger runs. With
   statistics that had not yet seen a burst of 20,000 waiting runs, it did, and scanned a
   tenant's waiting runs for each: 5 ms per candidate. They now name `t.id`, so they run
   only for a trigger that runs one fire at a time.
2. Its statements were planned at every call (`force_custom_plan`): planning was most of a
   round, 1.1-1.6 ms. They are now planned once per session (`force_generic_plan`), and
   again when the statistics of a table they read change: 0.5-0.8 ms a round, whether or
   not the statistics have seen the latest burst.
3. A plan kept for the session must avoid sequential scans of `runs`: made while the table
   was tiny, a sequential scan is the cheapest plan, and it stays in use as the table
   grows (bench.peers_e2e at 10,000: 8.5 ms in one such scan, in the UPDATE that marks the
   chosen runs admitted). `enable_seqscan = off` for the function (a penalty on the cost
   of a sequential scan, which the planner still takes where no index fits): every read
   of `runs` here has an index. `jit = off` with it: the penalty on the one sequential
   scan left, of the sequence `admission_wakeups`, pushed the first statement's cost past
   `jit_above_cost`, and compiling it took 40 ms a round.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(ADMISSION_ROUND)


def downgrade() -> None:
    op.execute(ADMISSION_ROUND_0006)


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

# 0006's, frozen (for downgrade).
ADMISSION_ROUND_0006 = r"""
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
-- Planned at every call, with the statistics of the moment: a plan cached while the runs
-- table was nearly empty, then kept for a session that sees it grow to 10,000 waiting runs,
-- took 300 ms a round instead of 3 ms.
LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_custom_plan AS $fn$
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
                               WHERE o.tenant_id = r.tenant_id AND o.trigger_id = r.trigger_id
                                 AND o.status IN ('admitted', 'running'))
                             OR EXISTS (
                               SELECT 1 FROM runs AS o
                               WHERE o.trigger_id = r.trigger_id AND o.status = 'pending'
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
