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
