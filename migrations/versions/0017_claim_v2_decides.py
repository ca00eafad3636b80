"""runs: the claim decides and returns its decision: scheduler_claim_v2

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

A worker's claim of a run (app/runs.py) was one statement only when nothing needed deciding
(`scheduler_claim_plain`, migration 0007: it returns no row otherwise); then Python read the
run again and worked out the rest itself: a duplicate delivery, a cancel request, a deleted
or disabled trigger, attempts used up, and a one-fire-at-a-time trigger's first attempt,
which took the trigger's advisory lock in a transaction of its own and looked again. The
rules were written twice, in this function and in `_decide`.

`scheduler_claim_v2` decides and acts in one call and returns the decision (`running`,
`duplicate`, `cancelled`, `failed`, `skipped`, `missing`), a detail, and the run and trigger
columns the runner needs. The overlap case takes the same advisory lock as the older
release's runner (namespace "RUNS", hashtext of the trigger id), inside the function, so the
two releases' runners exclude each other during a deploy's overlap. A new name, not a new
text for the old one: its result has two more columns, and an older release still calls
`scheduler_claim_plain` during the overlap and reads its columns by position.

`scheduler_claim_plain` stays, unchanged: the older release's runner calls it, and so does
`scheduler_finish_and_admit` for the run a finishing worker keeps. Migration 0018's
`scheduler_finish_and_admit_v2` claims that run itself (only the plain case, so that no
decision, and no wait for a trigger's lock, happens inside admission's critical section;
when it declines, the runner calls scheduler_claim_v2 after the commit), so nothing of the
new code calls it; migration 0019 drops it with the other functions of the older release.

Functions only: no table changes. The whole text is frozen below; the current one is
app/queries/sql/claim_v2.sql.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(CLAIM_V2)


def downgrade() -> None:
    op.execute("DROP FUNCTION scheduler_claim_v2(uuid, varchar)")


# The whole text this migration installs (a frozen copy: the current text is in
# app/queries/sql/claim_v2.sql).
CLAIM_V2 = r"""
-- The claim (app/runs.py, _begin): its current definition; migration 0017 made it.
-- Decides what one delivery of a run does, does it, and returns the decision, in one call
-- (in its own transaction: autocommit). One row:
--   decision: what the delivery does (app/run_status.py's Delivery):
--     running: claimed, admitted -> running; `attempt` is the new attempt;
--     duplicate: the run is not admitted (`detail`: its status: another delivery, the API
--       or the sweep came first), or someone moved it first (`detail`: the decision lost);
--     cancelled: a cancel request, a deleted trigger or a disabled recurring trigger
--       (`detail`, also stored as the run's error);
--     failed: attempts used up (the sweep took it back after its last attempt, or
--       max_attempts was lowered); the run's error is kept;
--     skipped: overlap policy skip/buffer_one on a first attempt while another run of the
--       trigger is in progress (`detail`, stored as the error);
--     missing: no such run (every other column NULL);
--   detail: why, for the log;
--   the run and its trigger (`t_` columns, NULL when the trigger is deleted): as claimed
--     for `running`, else as the run is after the call.
-- 1. The common case, nothing to decide, is one statement: the conditional claim. The
--    rest reads the run and its trigger (by primary key) and decides in this order.
-- 2. A one-fire-at-a-time trigger's first attempt is decided under the trigger's lock, the
--    advisory lock (namespace 0x52554E53, "RUNS", and hashtext of the trigger id) that an
--    older release's runner takes for the same check: the look for another run in progress
--    and the claim are then one critical section. Once locked, it decides again from a
--    fresh read. An advisory lock, not FOR UPDATE on the trigger: the dispatcher claims
--    trigger rows with SKIP LOCKED and would skip a trigger whose runs are being claimed.
-- 3. Each move is a conditional statement on an admitted run: losing a race to a cancel,
--    the sweep or another delivery makes the outcome `duplicate`.
-- Replaces scheduler_claim_plain for the runner, which kept only step 1 and left the rest
-- to Python (app/runs.py `_decide`, until migration 0017).
-- PL/pgSQL: its plans are kept for the session; each statement finds the run by primary
-- key (the look for another run in progress probes ix_runs_in_progress by tenant and
-- ix_runs_retrying by trigger). The moves check the status by an expression no partial
-- index is defined by (`status || ''`): as `status = 'admitted'`, a plan made while few
-- runs were in progress walked ix_runs_in_progress, every run in progress, at each claim.
-- Moves: admitted -> running, admitted -> cancelled, admitted -> failed, admitted -> skipped
CREATE OR REPLACE FUNCTION scheduler_claim_v2(p_run_id uuid, p_worker varchar)
RETURNS TABLE (
    decision varchar, detail text,
    id uuid, trigger_id uuid, tenant_id varchar, scheduled_for timestamptz, kind varchar,
    idempotency_key varchar, status varchar, attempt integer, not_before timestamptz,
    cancel_requested_at timestamptz, generation bigint, created_at timestamptz,
    t_id uuid, t_enabled boolean, t_recurring boolean, t_action jsonb, t_payload jsonb,
    t_overlap_policy varchar, t_max_attempts integer, t_retry_backoff_seconds integer,
    t_timeout_seconds integer
)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    v_decision varchar;
    v_detail text;
    v_locked boolean := false;
    v_found boolean;
    v_was varchar;
    v_attempt integer;
    v_cancel_requested boolean;
    v_tenant varchar;
    v_trigger uuid;
    v_enabled boolean;
    v_recurring boolean;
    v_policy varchar;
    v_max_attempts integer;
BEGIN
    -- 1. Nothing to decide: claim (scheduler_claim_plain's conditions).
    RETURN QUERY
    UPDATE runs AS r
    SET status = 'running', attempt = r.attempt + 1,
        started_at = COALESCE(r.started_at, clock_timestamp()),
        heartbeat_at = clock_timestamp(), worker = p_worker, not_before = NULL
    FROM triggers AS t
    WHERE r.id = p_run_id AND r.status || '' = 'admitted' AND r.cancel_requested_at IS NULL
      AND t.id = r.trigger_id AND (t.enabled OR t.run_at IS NOT NULL)
      AND r.attempt < t.max_attempts
      AND (t.overlap_policy NOT IN ('skip', 'buffer_one') OR r.attempt > 0)
    RETURNING CAST('running' AS varchar), CAST(NULL AS text),
              r.id, r.trigger_id, r.tenant_id, r.scheduled_for, r.kind, r.idempotency_key,
              r.status, r.attempt, r.not_before, r.cancel_requested_at, r.generation,
              r.created_at, t.id, t.enabled, t.run_at IS NULL, t.action, t.payload,
              t.overlap_policy, t.max_attempts, t.retry_backoff_seconds, t.timeout_seconds;
    IF FOUND THEN
        RETURN;
    END IF;
    -- Decide: at most two passes, the second under the trigger's lock (step 2).
    LOOP
        SELECT true, r.status, r.attempt, r.cancel_requested_at IS NOT NULL, r.tenant_id,
               t.id, t.enabled, t.run_at IS NULL, t.overlap_policy, t.max_attempts
        INTO v_found, v_was, v_attempt, v_cancel_requested, v_tenant,
             v_trigger, v_enabled, v_recurring, v_policy, v_max_attempts
        FROM runs AS r LEFT JOIN triggers AS t ON t.id = r.trigger_id
        WHERE r.id = p_run_id;
        v_decision := NULL;
        v_detail := NULL;
        IF v_found IS NULL THEN
            v_decision := 'missing';
        ELSIF v_was <> 'admitted' THEN
            -- Waiting for a slot (a stray or old message), claimed by another delivery,
            -- returned to the queue by the sweep, finished or cancelled: no side effect.
            v_decision := 'duplicate';
            v_detail := v_was;
        ELSIF v_cancel_requested THEN
            v_decision := 'cancelled';
            v_detail := 'cancel requested';
        ELSIF v_trigger IS NULL THEN
            v_decision := 'cancelled';
            v_detail := 'trigger deleted';
        -- A one-time trigger is disabled by the dispatcher in the transaction that creates
        -- its run, so only a recurring trigger's flag means "disabled since dispatch".
        ELSIF NOT v_enabled AND v_recurring THEN
            v_decision := 'cancelled';
            v_detail := 'trigger disabled';
        ELSIF v_attempt >= v_max_attempts THEN
            v_decision := 'failed';
            v_detail := 'attempts used up';
        ELSIF v_policy IN ('skip', 'buffer_one') AND v_attempt = 0 THEN
            -- Admission admits one fire of such a trigger at a time; this look under the
            -- trigger's lock covers a run admitted before a policy change.
            IF NOT v_locked THEN
                PERFORM pg_advisory_xact_lock(1381322323, hashtext(CAST(v_trigger AS text)));
                v_locked := true;
                CONTINUE;
            END IF;
            IF EXISTS (
                SELECT 1 FROM runs AS o
                WHERE o.tenant_id = v_tenant AND o.trigger_id = v_trigger
                  AND o.id <> p_run_id AND o.status IN ('admitted', 'running')
            ) OR EXISTS (
                SELECT 1 FROM runs AS o
                WHERE o.trigger_id = v_trigger AND o.id <> p_run_id
                  AND o.status = 'pending' AND o.attempt > 0
            ) THEN
                v_decision := 'skipped';
                v_detail := 'an earlier run of the trigger was still in progress';
            ELSE
                v_decision := 'running';
            END IF;
        ELSE
            -- Moved by someone else since step 1 (and back, or not yet visible then).
            v_decision := 'running';
        END IF;
        EXIT;
    END LOOP;
    -- 3. Act on an admitted run.
    IF v_decision = 'running' THEN
        RETURN QUERY
        UPDATE runs AS r
        SET status = 'running', attempt = r.attempt + 1,
            started_at = COALESCE(r.started_at, clock_timestamp()),
            heartbeat_at = clock_timestamp(), worker = p_worker, not_before = NULL
        FROM triggers AS t
        WHERE r.id = p_run_id AND r.status || '' = 'admitted' AND r.cancel_requested_at IS NULL
          AND t.id = r.trigger_id
        RETURNING CAST('running' AS varchar), CAST(NULL AS text),
                  r.id, r.trigger_id, r.tenant_id, r.scheduled_for, r.kind,
                  r.idempotency_key, r.status, r.attempt, r.not_before,
                  r.cancel_requested_at, r.generation, r.created_at, t.id, t.enabled,
                  t.run_at IS NULL, t.action, t.payload, t.overlap_policy, t.max_attempts,
                  t.retry_backoff_seconds, t.timeout_seconds;
        IF FOUND THEN
            RETURN;
        END IF;
        -- Lost the race to a concurrent delivery (or a cancel) since the read above.
        v_decision := 'duplicate';
        v_detail := 'claimed elsewhere';
    ELSIF v_decision IN ('cancelled', 'failed', 'skipped') THEN
        -- Ended without running, giving its slot back; a failed run keeps its error.
        UPDATE runs AS r
        SET status = CASE WHEN v_decision = 'failed' THEN 'failed'
                          WHEN v_decision = 'skipped' THEN 'skipped' ELSE 'cancelled' END,
            finished_at = clock_timestamp(), worker = NULL,
            error = CASE WHEN v_decision = 'failed' THEN r.error ELSE v_detail END
        WHERE r.id = p_run_id AND r.status || '' = 'admitted';
        IF NOT FOUND THEN
            v_decision := 'duplicate';
        END IF;
    END IF;
    RETURN QUERY
        SELECT v_decision, v_detail,
               r.id, r.trigger_id, r.tenant_id, r.scheduled_for, r.kind, r.idempotency_key,
               r.status, r.attempt, r.not_before, r.cancel_requested_at, r.generation,
               r.created_at, t.id, t.enabled, t.run_at IS NULL, t.action, t.payload,
               t.overlap_policy, t.max_attempts, t.retry_backoff_seconds, t.timeout_seconds
        FROM (SELECT 1) AS one
        LEFT JOIN runs AS r ON r.id = p_run_id
        LEFT JOIN triggers AS t ON t.id = r.trigger_id;
END
$fn$
"""
