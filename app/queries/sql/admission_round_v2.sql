-- One admission round (app/admission.py): its current definition. Migration 0018 made it
-- from scheduler_admission_round (0006, 0008-0010, 0012, 0015), which an older release
-- still calls during a deploy: the same round, except that it stamps when a run was
-- admitted in `enqueued_at` alone (`admitted_at` was the same fact in a second column).
-- In the caller's transaction, in one round trip.
-- Returns one row per admitted run, or a single row with a
-- NULL run_id when this round held the lock but admitted nothing; no row when there was
-- nothing to do (every slot taken, no wake-up since p_seen) or another admitter holds the
-- lock. VOLATILE: each statement below takes a fresh snapshot (READ COMMITTED), so the
-- ones after the lock see every admission committed before it was granted.
-- Moves: pending -> skipped, pending -> admitted, pending -> running
-- (pending -> running: the run a finishing worker keeps, started by the round itself.)
CREATE OR REPLACE FUNCTION scheduler_admission_round_v2(
    p_max_running bigint, p_max_per_tenant bigint, p_factor bigint, p_seen bigint,
    p_lock_key bigint
) RETURNS TABLE (ticket bigint, run_id uuid, skipped bigint)
-- Planned once per session, and again when the statistics of the tables change, and
-- without sequential scans of `runs`, which a kept plan would go on using as the table
-- grows (migration 0008). 0.5-0.8 ms a round; planned at every call, 1.1-1.6 ms. Plain
-- index scans, not bitmap scans: a bitmap scan visits the heap page of every dead entry
-- that runs going through leave in the indexes of runs in progress, and never marks one
-- dead (migration 0009).
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off
SET enable_bitmapscan = off AS $fn$
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
    -- 3. Count, choose, lock the chosen, mark admitted (and start the kept run).
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
        -- the tenant's oldest first attempt (a probe of ix_runs_pending_first: no set of
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
        -- Past its budget: every tenant with a first attempt waiting, one index probe each
        -- (a loose index scan of ix_runs_pending_first), and its oldest (the same probe).
        everyone (tenant_id, oldest) AS (
            (SELECT tenant_id, scheduled_for FROM runs
             WHERE status = 'pending' AND not_before IS NULL AND NOT (SELECT yes FROM complete)
             ORDER BY tenant_id, scheduled_for, id LIMIT 1)
            UNION ALL
            SELECT nxt.tenant_id, nxt.scheduled_for FROM everyone AS w
            CROSS JOIN LATERAL (
                SELECT tenant_id, scheduled_for FROM runs
                WHERE status = 'pending' AND not_before IS NULL AND tenant_id > w.tenant_id
                ORDER BY tenant_id, scheduled_for, id LIMIT 1) AS nxt
        ),
        -- Retries whose backoff has passed. No more than `budget` of them are read from
        -- ix_runs_pending_retry (the retries waiting, by the end of their backoff): when
        -- that is all of them, each one's fire joins in, as before (migration 0012).
        due AS MATERIALIZED (
            SELECT tenant_id, scheduled_for FROM runs
            WHERE status = 'pending' AND not_before IS NOT NULL AND not_before <= now()
            ORDER BY not_before
            LIMIT (SELECT budget FROM capacity) + 1
        ),
        few_due AS (
            SELECT count(*) <= (SELECT budget FROM capacity) AS yes FROM due
        ),
        -- More than that (a pile: one tenant's failing runs, long backoffs, a backfill):
        -- every tenant with a retry waiting, one probe each of ix_runs_retry_tenant (its
        -- retries by the end of their backoff), keeping those whose first has passed, and
        -- for each no more retries than its free slots could use, times p_factor: a round
        -- costs what the tenants need, not what one of them has piled up (migration 0012).
        retrying (tenant_id, ready_at) AS (
            (SELECT tenant_id, not_before FROM runs
             WHERE status = 'pending' AND not_before IS NOT NULL
               AND NOT (SELECT yes FROM few_due)
             ORDER BY tenant_id, not_before LIMIT 1)
            UNION ALL
            SELECT nxt.tenant_id, nxt.not_before FROM retrying AS w
            CROSS JOIN LATERAL (
                SELECT tenant_id, not_before FROM runs
                WHERE status = 'pending' AND not_before IS NOT NULL AND tenant_id > w.tenant_id
                ORDER BY tenant_id, not_before LIMIT 1) AS nxt
        ),
        waiting (tenant_id, oldest) AS (
            SELECT tenant_id, min(oldest) FROM (
                SELECT tenant_id, at AS oldest FROM walk
                WHERE first AND (SELECT yes FROM complete)
                UNION ALL
                SELECT tenant_id, oldest FROM everyone
                UNION ALL
                SELECT tenant_id, scheduled_for FROM due WHERE (SELECT yes FROM few_due)
                UNION ALL
                SELECT t.tenant_id, d.oldest FROM retrying AS t
                LEFT JOIN busy AS b USING (tenant_id)
                CROSS JOIN LATERAL (
                    SELECT min(s.scheduled_for) AS oldest FROM (
                        SELECT scheduled_for FROM runs
                        -- The tenant's range of ix_runs_retry_tenant, as a range of
                        -- (tenant, end of backoff): as `tenant_id =` and ordered by the end
                        -- of the backoff, the planner walked ix_runs_pending_retry, every
                        -- tenant's retries, for each tenant (all of them, for one with none).
                        WHERE (tenant_id, not_before) >= (t.tenant_id, '-infinity')
                          AND (tenant_id, not_before) <= (t.tenant_id, now())
                          AND status = 'pending' AND not_before IS NOT NULL
                        ORDER BY tenant_id, not_before
                        LIMIT GREATEST(LEAST((SELECT free FROM capacity),
                                             p_max_per_tenant - COALESCE(b.n, 0)), 0)
                              * p_factor) AS s) AS d
                WHERE t.ready_at <= now() AND d.oldest IS NOT NULL
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
        -- Each candidate's oldest runs that can start, first attempts and due retries
        -- apart (each from its own index, so that neither kind is read past what the
        -- tenant can take: a pile of retries in their backoff is not walked to reach a
        -- first attempt), up to what it can take; `ranked` puts them in fire order. Read,
        -- not locked: only the runs chosen are locked, below (migration 0015).
        eligible AS MATERIALIZED (
            SELECT c.tenant_id, c.n, x.id, x.scheduled_for
            FROM candidates AS c
            CROSS JOIN LATERAL (
                SELECT r.id, r.scheduled_for FROM runs AS r
                WHERE r.tenant_id = c.tenant_id AND r.status = 'pending'
                  AND r.not_before IS NULL AND r.cancel_requested_at IS NULL
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
            ) AS x
            UNION ALL
            -- Due retries, the oldest fires first: all of them when there are few (`due`
            -- read them all), else of the first p_factor times as many as the tenant can
            -- take by the end of their backoff (LIMIT NULL is no limit).
            SELECT c.tenant_id, c.n, x.id, x.scheduled_for
            FROM candidates AS c
            CROSS JOIN LATERAL (
                SELECT r.id, r.scheduled_for FROM runs AS r
                -- By primary key: as an IN, a plan made before the table's first ANALYZE
                -- read every waiting run to find these. The status is checked (again) by
                -- an expression no partial index is defined by: as a plain
                -- `status = 'pending'`, such a plan scanned ix_runs_pending_trigger whole.
                WHERE r.id = ANY(ARRAY(
                        SELECT d.id FROM runs AS d
                        WHERE (d.tenant_id, d.not_before) >= (c.tenant_id, '-infinity')
                          AND (d.tenant_id, d.not_before) <= (c.tenant_id, now())
                          AND d.status = 'pending' AND d.not_before IS NOT NULL
                        ORDER BY d.tenant_id, d.not_before  -- as `retrying`'s, above
                        LIMIT CASE WHEN (SELECT yes FROM few_due) THEN NULL
                                   ELSE LEAST((SELECT free FROM capacity),
                                              p_max_per_tenant - c.n) * p_factor END))
                  AND r.status || '' = 'pending' AND r.cancel_requested_at IS NULL
                ORDER BY r.scheduled_for, r.id
                LIMIT LEAST((SELECT free FROM capacity), p_max_per_tenant - c.n)
            ) AS x
        ),
        ranked AS (
            SELECT id, n + row_number() OVER (
                       PARTITION BY tenant_id ORDER BY scheduled_for, id) AS turn,
                   scheduled_for
            FROM eligible
        ),
        chosen AS (
            -- A tenant's turns past its cap are left (`eligible` may hold more of its runs:
            -- as many first attempts, and as many due retries, as it can take).
            SELECT id, row_number() OVER (ORDER BY turn, scheduled_for, id) AS place
            FROM ranked WHERE turn <= p_max_per_tenant
            ORDER BY turn, scheduled_for, id
            LIMIT (SELECT free FROM capacity)
        ),
        -- The chosen runs, locked, and still pending and not cancelled as locked (the lock
        -- reads the row's latest version): one that another transaction holds or has just
        -- changed (a cancel) is left out of this round, not replaced. Locking only these,
        -- not every eligible run read (about four row locks, each written to the WAL, per
        -- run admitted, measured by bench.per_run_cost).
        grabbed AS MATERIALIZED (
            SELECT r.id FROM runs AS r
            -- By primary key, the status by an expression no partial index is defined by
            -- (as below).
            WHERE r.id = ANY(ARRAY(SELECT id FROM chosen))
              AND r.status || '' = 'pending' AND r.cancel_requested_at IS NULL
            FOR UPDATE OF r SKIP LOCKED
        ),
        -- The run a finishing worker keeps, started here for it: the finish
        -- (scheduler_finish_and_admit_v2) names the worker in the transaction's setting
        -- `scheduler.keep_for` (empty or unset: keep none). One chosen run that nothing
        -- needs deciding about, as the plain claim's conditions say, goes from pending
        -- straight to running:
        -- one row version (and an entry in each of the table's indexes) fewer than admitted
        -- then claimed (migration 0015).
        -- The first in the order of the turns, as the run published first would be.
        kept AS (
            SELECT r.id FROM chosen AS c
            JOIN runs AS r ON r.id = c.id
            JOIN triggers AS t ON t.id = r.trigger_id
            WHERE r.id = ANY(ARRAY(SELECT id FROM grabbed))
              AND COALESCE(current_setting('scheduler.keep_for', true), '') <> ''
              AND (t.enabled OR t.run_at IS NOT NULL) AND r.attempt < t.max_attempts
              AND (t.overlap_policy NOT IN ('skip', 'buffer_one') OR r.attempt > 0)
            ORDER BY c.place
            LIMIT 1
        ),
        admitted AS (
            UPDATE runs AS r
            SET status = CASE WHEN k.id IS NULL THEN 'admitted' ELSE 'running' END,
                enqueued_at = clock_timestamp(),
                attempt = r.attempt + CASE WHEN k.id IS NULL THEN 0 ELSE 1 END,
                started_at = CASE WHEN k.id IS NULL THEN r.started_at
                                  ELSE COALESCE(r.started_at, clock_timestamp()) END,
                heartbeat_at = CASE WHEN k.id IS NULL THEN r.heartbeat_at
                                    ELSE clock_timestamp() END,
                worker = CASE WHEN k.id IS NULL THEN r.worker
                              ELSE current_setting('scheduler.keep_for', true) END,
                not_before = CASE WHEN k.id IS NULL THEN r.not_before END
            FROM grabbed LEFT JOIN kept AS k ON k.id = grabbed.id
            -- By primary key only: `grabbed` holds these rows, still pending. A condition on
            -- the status would tempt the planner into scanning the whole waiting room.
            WHERE r.id = ANY(ARRAY(SELECT id FROM grabbed)) AND r.id = grabbed.id
            RETURNING r.id
        )
        -- In the order of the turns: the order the runs are published in, so the order
        -- the workers take them in.
        SELECT v_ticket, a.id, v_skipped
        FROM admitted AS a JOIN chosen AS c ON c.id = a.id
        ORDER BY c.place;
    IF NOT FOUND THEN
        RETURN QUERY SELECT v_ticket, NULL::uuid, v_skipped;
    END IF;
END
$fn$

