"""runs: a successful finish, its hand-off and the next run's claim in one call

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

A worker whose run succeeded used to send four statements, each its own transaction: the
finish (a synchronous commit), the admission round, a look at the wake-up sequence and
at the broker, and the claim of the run it keeps (another synchronous commit). With
several short runs per slot and second, those round trips and commits were a third of the
time a slot was not running anything.

`scheduler_finish_and_admit` does the finish, the admission round and the keep in one
transaction (app/runs.py, app/admission.py): one round trip and one commit. The wake-up
rule still holds (app/admission.py): the caller looks at the sequence after the commit,
and when the round did not get admission's lock, it hands off again after the commit,
because its wake-up number was taken before its freed slot was visible to the holder.

`scheduler_claim_plain` is the common claim (an admitted run with nothing to decide),
shared by that function and the worker's own claim so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The run's columns and its trigger's, as app/queries/runs.py reads them (RunRow, TriggerRow).
_CLAIMED_COLUMNS = """
    id uuid, trigger_id uuid, tenant_id varchar, scheduled_for timestamptz, kind varchar,
    idempotency_key varchar, status varchar, attempt integer, not_before timestamptz,
    cancel_requested_at timestamptz, generation bigint, created_at timestamptz,
    t_id uuid, t_enabled boolean, t_recurring boolean, t_action jsonb, t_payload jsonb,
    t_overlap_policy varchar, t_max_attempts integer, t_retry_backoff_seconds integer,
    t_timeout_seconds integer
"""

CLAIM_PLAIN = f"""
-- admitted -> running in one statement when nothing needs deciding: the run is not
-- cancelled, its trigger exists, is enabled (or is a one-time trigger, disabled by its own
-- dispatch), has attempts left and does not run one fire at a time. No row otherwise: the
-- caller decides the rest (app/runs.py, _decide). `attempt` is the new attempt.
-- PL/pgSQL, not SQL: it keeps the statement's plan for the session (an SQL function's is
-- made at every call, a quarter of a millisecond, and the finish's call holds admission's
-- lock while it claims). A lookup by primary key has one good plan, whatever the statistics.
CREATE FUNCTION scheduler_claim_plain(p_run_id uuid, p_worker varchar)
RETURNS TABLE ({_CLAIMED_COLUMNS})
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
"""

FINISH_AND_ADMIT = f"""
-- A successful attempt's finish, an admission round and, with p_keep_worker, the claim of
-- one admitted run for that worker, in the caller's transaction (one round trip). One row:
--   finished: the finish was this attempt's (false: the recovery sweep took the run back);
--   ticket: the round's wake-up number, NULL when the round did nothing (every slot taken)
--     or another admitter held the lock;
--   skipped: fires the round skipped (overlap policy); admitted: runs to publish;
--   kept: the run kept for the worker (not in `admitted`), and its claimed columns when
--     the plain claim took it (NULL columns: the caller decides, app/runs.py _decide).
-- No run is kept while a run admitted more than p_waiting_seconds ago has not started: its
-- message waits in the broker for a free worker process, and a kept run would go first.
CREATE FUNCTION scheduler_finish_and_admit(
    p_run_id uuid, p_attempt integer, p_result jsonb,
    p_max_running bigint, p_max_per_tenant bigint, p_factor bigint, p_lock_key bigint,
    p_keep_worker varchar, p_waiting_seconds double precision
) RETURNS TABLE (
    finished boolean, ticket bigint, skipped bigint, admitted uuid[], kept uuid,
    {_CLAIMED_COLUMNS}
)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    v_finished boolean;
    v_ticket bigint;
    v_skipped bigint;
    v_admitted uuid[];
    v_kept uuid;
    v_now timestamptz := clock_timestamp();
BEGIN
    UPDATE runs SET status = 'succeeded', finished_at = v_now, heartbeat_at = v_now,
                    result = p_result, error = NULL
    WHERE runs.id = p_run_id AND runs.status = 'running' AND runs.attempt = p_attempt;
    v_finished := FOUND;
    SELECT max(r.ticket), COALESCE(max(r.skipped), 0),
           COALESCE(array_agg(r.run_id) FILTER (WHERE r.run_id IS NOT NULL), '{{}}')
    INTO v_ticket, v_skipped, v_admitted
    FROM scheduler_admission_round(p_max_running, p_max_per_tenant, p_factor, NULL, p_lock_key)
         AS r;
    IF p_keep_worker IS NOT NULL AND cardinality(v_admitted) > 0 AND NOT EXISTS (
        SELECT 1 FROM runs AS w
        WHERE w.status = 'admitted'
          AND w.enqueued_at < clock_timestamp() - make_interval(secs => p_waiting_seconds)
    ) THEN
        v_kept := v_admitted[1];
        v_admitted := v_admitted[2:];
    END IF;
    RETURN QUERY
        SELECT v_finished, v_ticket, v_skipped, v_admitted, v_kept, c.*
        FROM (SELECT 1) AS one
        LEFT JOIN LATERAL scheduler_claim_plain(v_kept, p_keep_worker) AS c ON true;
END
$fn$
"""


def upgrade() -> None:
    op.execute(CLAIM_PLAIN)
    op.execute(FINISH_AND_ADMIT)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION scheduler_finish_and_admit("
        "uuid, integer, jsonb, bigint, bigint, bigint, bigint, varchar, double precision)"
    )
    op.execute("DROP FUNCTION scheduler_claim_plain(uuid, varchar)")
