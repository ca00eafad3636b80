"""runs: when a run was admitted is one fact, `enqueued_at`; admission_round_v2 and
finish_and_admit_v2 stamp and read it alone

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07

Admission stamped two columns with the same instant, `admitted_at` and `enqueued_at`, and
every statement that took a slot back cleared both. `enqueued_at` is the public one (the
API's and the console's run); `admitted_at` was read by the recovery sweep alone, for the
lease of an admitted run that no worker started. The release that carries this migration
writes and reads `enqueued_at` only: the lease sweep reads it (through ix_runs_unfinished,
`(status, enqueued_at)` for unfinished runs, which serves `status = 'admitted' AND
enqueued_at < cut-off ORDER BY enqueued_at` as it served the look for runs waiting in the
broker: no index to replace; none was ever made on `admitted_at`).

Deploy safety. During the overlap an older release's workers still run, and until the
restart hook moves the deployment (docs/design.md section 8) its ticks still sweep, by
`admitted_at`:
- Its round and its finish are not changed in place: changed, they would stop stamping
  `admitted_at`, and the older release's lease sweep would no longer see the runs they
  admit (a lost publish would hold its slot until the hook). The new release calls new
  names, `scheduler_admission_round_v2` and `scheduler_finish_and_admit_v2` (the same round
  and finish but for the stamp; the finish claims the run it keeps itself, by the same
  conditions, instead of calling `scheduler_claim_plain`). Both rounds take the same
  advisory lock and count the same runs, so the caps hold across the two releases.
- The column stays: the older release's statements that take a slot back write
  `admitted_at = NULL`, and would fail without it. Nothing of the new release reads it or
  stamps it; its statements that take a slot back (retry, sweeps, a failed publish) still
  clear it, so a run the older release admitted and the new one took back and admitted
  again carries no stale stamp that an older sweep would take for an expired lease.
- Runs admitted by the new release have no `admitted_at`, so an older tick that still
  sweeps does not see their lease: this matters only when new processes admit before the
  restart hook (the release phase runs the hook before they start), and the new release's
  sweep takes such a run back once it is the deployment.

Upgrade: `enqueued_at` is backfilled from `admitted_at` where it is null (one pass over
`runs`; no row of the current code has one without the other). Downgrade: the v2 functions
are dropped, and admitted runs get `admitted_at` from `enqueued_at`, so the older sweep
sees the leases of the runs the v2 round admitted.

Migration 0019, to ship in a release after this one (not written yet), drops
`runs.admitted_at`, `scheduler_admission_round`, `scheduler_finish_and_admit` and
`scheduler_claim_plain`: nothing of this release writes, reads or calls them, and once no
process older than this release runs (the previous deploy's have all stopped), nothing does.

The whole new texts are frozen below; the current ones are app/queries/sql/
admission_round_v2.sql and finish_and_admit_v2.sql.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(ADMISSION_ROUND_V2)
    op.execute(FINISH_AND_ADMIT_V2)
    op.execute(
        "UPDATE runs SET enqueued_at = admitted_at"
        " WHERE enqueued_at IS NULL AND admitted_at IS NOT NULL"
    )


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION scheduler_finish_and_admit_v2("
        "uuid, integer, jsonb, bigint, bigint, bigint, bigint, varchar, double precision)"
    )
    op.execute("DROP FUNCTION scheduler_admission_round_v2(bigint, bigint, bigint, bigint, bigint)")
    op.execute("UPDATE runs SET admitted_at = enqueued_at WHERE status = 'admitted'")


# The whole texts this migration installs (frozen copies: the current texts are in
# app/queries/sql/).
ADMISSION_ROUND_V2 = r"""
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

"""

FINISH_AND_ADMIT_V2 = r"""
-- A finish that admits (app/runs.py, app/admission.py): its current definition.
-- Migration 0018 made it from scheduler_finish_and_admit (0007, 0009, 0015), which an older
-- release still calls during a deploy: the same, except that its round is
-- scheduler_admission_round_v2 (a run's admission is stamped in `enqueued_at` alone) and
-- that it claims the kept run itself rather than by scheduler_claim_plain.
-- A successful attempt's finish, an admission round and, with p_keep_worker, the claim of
-- one admitted run for that worker, in the caller's transaction (one round trip). One row:
--   finished: the finish was this attempt's (false: the recovery sweep took the run back);
--   ticket: the round's wake-up number, NULL when the round did nothing (every slot taken)
--     or another admitter held the lock;
--   skipped: fires the round skipped (overlap policy); admitted: runs to publish;
--   kept: the run kept for the worker (not in `admitted`), and its claimed columns when
--     it was started for the worker (NULL columns: the caller claims it with
--     scheduler_claim_v2, app/runs.py _begin).
-- No run is kept while a run admitted more than p_waiting_seconds ago has not started: its
-- message waits in the broker for a free worker process, and a kept run would go first.
-- The round itself starts the kept run (pending -> running in one row version) when
-- nothing needs deciding, told whom for by the transaction's setting `scheduler.keep_for`;
-- else the first run it admitted is kept and the plain claim tries it, as before 0015.
-- Moves: running -> succeeded, admitted -> running
-- (The functions it calls make their own moves: see their files.)
CREATE OR REPLACE FUNCTION scheduler_finish_and_admit_v2(
    p_run_id uuid, p_attempt integer, p_result jsonb,
    p_max_running bigint, p_max_per_tenant bigint, p_factor bigint, p_lock_key bigint,
    p_keep_worker varchar, p_waiting_seconds double precision
) RETURNS TABLE (
    finished boolean, ticket bigint, skipped bigint, admitted uuid[], kept uuid,

    id uuid, trigger_id uuid, tenant_id varchar, scheduled_for timestamptz, kind varchar,
    idempotency_key varchar, status varchar, attempt integer, not_before timestamptz,
    cancel_requested_at timestamptz, generation bigint, created_at timestamptz,
    t_id uuid, t_enabled boolean, t_recurring boolean, t_action jsonb, t_payload jsonb,
    t_overlap_policy varchar, t_max_attempts integer, t_retry_backoff_seconds integer,
    t_timeout_seconds integer

)
LANGUAGE plpgsql VOLATILE
SET enable_bitmapscan = off AS $fn$
#variable_conflict use_column
DECLARE
    v_finished boolean;
    v_ticket bigint;
    v_skipped bigint;
    v_admitted uuid[];
    v_kept uuid;
    v_keep boolean;
    v_now timestamptz := clock_timestamp();
BEGIN
    UPDATE runs SET status = 'succeeded', finished_at = v_now, heartbeat_at = v_now,
                    result = p_result, error = NULL
    WHERE runs.id = p_run_id AND runs.status = 'running' AND runs.attempt = p_attempt;
    v_finished := FOUND;
    v_keep := p_keep_worker IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM runs AS w
        WHERE w.status = 'admitted'
          AND w.enqueued_at < clock_timestamp() - make_interval(secs => p_waiting_seconds)
    );
    PERFORM set_config('scheduler.keep_for', CASE WHEN v_keep THEN p_keep_worker ELSE '' END,
                       true);
    SELECT max(r.ticket), COALESCE(max(r.skipped), 0),
           COALESCE(array_agg(r.run_id) FILTER (WHERE r.run_id IS NOT NULL), '{}')
    INTO v_ticket, v_skipped, v_admitted
    FROM scheduler_admission_round_v2(p_max_running, p_max_per_tenant, p_factor, NULL, p_lock_key)
         AS r;
    PERFORM set_config('scheduler.keep_for', '', true);
    IF v_keep AND cardinality(v_admitted) > 0 THEN
        -- The run the round started for this worker, if any (by primary key: at most
        -- `free` ids; a status no partial index is defined by, as in the round); else the
        -- first admitted, for the plain claim to try.
        SELECT r.id INTO v_kept FROM runs AS r
        WHERE r.id = ANY(v_admitted) AND r.status || '' = 'running'
          AND r.worker = p_keep_worker
        LIMIT 1;
        IF v_kept IS NOT NULL THEN
            v_admitted := array_remove(v_admitted, v_kept);
            RETURN QUERY
                SELECT v_finished, v_ticket, v_skipped, v_admitted, v_kept,
                       r.id, r.trigger_id, r.tenant_id, r.scheduled_for, r.kind,
                       r.idempotency_key, r.status, r.attempt, r.not_before,
                       r.cancel_requested_at, r.generation, r.created_at, t.id, t.enabled,
                       t.run_at IS NULL, t.action, t.payload, t.overlap_policy,
                       t.max_attempts, t.retry_backoff_seconds, t.timeout_seconds
                FROM runs AS r JOIN triggers AS t ON t.id = r.trigger_id
                WHERE r.id = v_kept;
            RETURN;
        END IF;
        v_kept := v_admitted[1];
        v_admitted := v_admitted[2:];
    END IF;
    -- The plain claim of the kept run: only when nothing needs deciding about it (the
    -- round's own conditions for starting it), so that no decision, and no wait for a
    -- trigger's lock, happens inside admission's critical section. Else NULL columns: the
    -- caller claims it with scheduler_claim_v2 after the commit.
    RETURN QUERY
        WITH c AS (
            UPDATE runs AS r
            SET status = 'running', attempt = r.attempt + 1,
                started_at = COALESCE(r.started_at, clock_timestamp()),
                heartbeat_at = clock_timestamp(), worker = p_keep_worker, not_before = NULL
            FROM triggers AS t
            -- By primary key: the status by an expression no partial index is defined by
            -- (as in scheduler_claim_v2).
            WHERE r.id = v_kept AND r.status || '' = 'admitted'
              AND r.cancel_requested_at IS NULL
              AND t.id = r.trigger_id AND (t.enabled OR t.run_at IS NOT NULL)
              AND r.attempt < t.max_attempts
              AND (t.overlap_policy NOT IN ('skip', 'buffer_one') OR r.attempt > 0)
            RETURNING r.id, r.trigger_id, r.tenant_id, r.scheduled_for, r.kind,
                      r.idempotency_key, r.status, r.attempt, r.not_before,
                      r.cancel_requested_at, r.generation, r.created_at, t.id AS t_id,
                      t.enabled, t.run_at IS NULL, t.action, t.payload, t.overlap_policy,
                      t.max_attempts, t.retry_backoff_seconds, t.timeout_seconds
        )
        SELECT v_finished, v_ticket, v_skipped, v_admitted, v_kept, c.*
        FROM (SELECT 1) AS one
        LEFT JOIN c ON true;
END
$fn$
"""
