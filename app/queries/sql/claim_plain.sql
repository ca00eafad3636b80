-- The plain claim: its current definition; migration 0007 made it. The runner claims with
-- scheduler_claim_v2 since migration 0017; this one stays for an older release's runner
-- and for the older release's scheduler_finish_and_admit (migration 0019 drops it).
-- admitted -> running in one statement when nothing needs deciding: the run is not
-- cancelled, its trigger exists, is enabled (or is a one-time trigger, disabled by its own
-- dispatch), has attempts left and does not run one fire at a time. No row otherwise: the
-- caller decides the rest (since 0017: scheduler_claim_v2). `attempt` is the new attempt.
-- PL/pgSQL, not SQL: it keeps the statement's plan for the session (an SQL function's is
-- made at every call, a quarter of a millisecond, and the finish's call holds admission's
-- lock while it claims). A lookup by primary key has one good plan, whatever the statistics.
-- Moves: admitted -> running
CREATE OR REPLACE FUNCTION scheduler_claim_plain(p_run_id uuid, p_worker varchar)
RETURNS TABLE (
    id uuid, trigger_id uuid, tenant_id varchar, scheduled_for timestamptz, kind varchar,
    idempotency_key varchar, status varchar, attempt integer, not_before timestamptz,
    cancel_requested_at timestamptz, generation bigint, created_at timestamptz,
    t_id uuid, t_enabled boolean, t_recurring boolean, t_action jsonb, t_payload jsonb,
    t_overlap_policy varchar, t_max_attempts integer, t_retry_backoff_seconds integer,
    t_timeout_seconds integer
)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE runs AS r
    SET status = 'running', attempt = r.attempt + 1,
        started_at = COALESCE(r.started_at, clock_timestamp()),
        heartbeat_at = clock_timestamp(), worker = p_worker, not_before = NULL
    FROM triggers AS t
    WHERE r.id = p_run_id AND r.status = 'admitted' AND r.cancel_requested_at IS NULL
      AND t.id = r.trigger_id AND (t.enabled OR t.run_at IS NOT NULL)
      AND r.attempt < t.max_attempts
      AND (t.overlap_policy NOT IN ('skip', 'buffer_one') OR r.attempt > 0)
    RETURNING r.id, r.trigger_id, r.tenant_id, r.scheduled_for, r.kind, r.idempotency_key,
              r.status, r.attempt, r.not_before, r.cancel_requested_at, r.generation,
              r.created_at, t.id, t.enabled, t.run_at IS NULL, t.action, t.payload,
              t.overlap_policy, t.max_attempts, t.retry_backoff_seconds, t.timeout_seconds;
END
$fn$
