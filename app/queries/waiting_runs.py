"""The statements of the waiting-runs cap (app/waiting.py): `waiting_counts` and recounts.

`waiting_counts` holds, per tenant, a bound on its unfinished runs (pending, admitted,
running): every run created since the tenant's last recount is added to it, and nothing
else ever lowers it but a recount (or a batch taking back what it skipped). A run moves
between pending and in progress (a retry, a recovery, a lease that ran out) without
leaving the unfinished, so the bound is never below the tenant's pending runs, and a
creator that keeps the bound under the cap keeps the tenant under it. A recount that left
out the runs in progress let them come back as retries uncounted: pending went past the cap
by up to the tenant's runs in progress.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import text

from app.queries import Executor

# Rows are written in tenant order, so two creators that add to the same tenants take the
# rows' locks in the same order; each lock is held until the creator commits.
_ADD = text("""
    INSERT INTO waiting_counts AS w (tenant_id, bound)
    SELECT tenant_id, n FROM unnest(CAST(:tenants AS text[]), CAST(:counts AS integer[]))
         AS v (tenant_id, n)
    ORDER BY tenant_id
    ON CONFLICT (tenant_id) DO UPDATE SET bound = w.bound + EXCLUDED.bound
    RETURNING w.tenant_id, w.bound, w.counted_at, now() - w.counted_at < make_interval(
        secs => :fresh_seconds)
""")
# A tenant's unfinished runs (its own uncommitted ones included): pending first attempts and
# retries, each counted no further than `limit` (ix_runs_pending_first, ix_runs_retry_tenant),
# and runs in progress (ix_runs_in_progress: at most MAX_RUNNING_PER_TENANT), written back as
# its new bound.
_RECOUNT = text("""
    UPDATE waiting_counts AS w
    SET bound = (SELECT count(*) FROM (
                     SELECT 1 FROM runs
                     WHERE runs.tenant_id = w.tenant_id AND runs.status = 'pending'
                       AND runs.not_before IS NULL
                     LIMIT :limit) AS first)
              + (SELECT count(*) FROM (
                     SELECT 1 FROM runs
                     WHERE runs.tenant_id = w.tenant_id AND runs.status = 'pending'
                       AND runs.not_before IS NOT NULL
                     LIMIT :limit) AS retries)
              + (SELECT count(*) FROM runs
                 WHERE runs.tenant_id = w.tenant_id
                   AND runs.status IN ('admitted', 'running')),
        counted_at = now()
    WHERE w.tenant_id = :tenant
    RETURNING w.bound
""")
_LOWER = text("""
    UPDATE waiting_counts AS w SET bound = w.bound - v.n
    FROM unnest(CAST(:tenants AS text[]), CAST(:counts AS integer[])) AS v (tenant_id, n)
    WHERE w.tenant_id = v.tenant_id
""")


def add(
    executor: Executor, added: Mapping[str, int], *, fresh_seconds: float
) -> list[tuple[str, int, bool]]:
    """Add each tenant's new pending runs to its bound, locking its row until the
    transaction ends; return (tenant, bound, whether it was recounted within
    `fresh_seconds`) for each."""
    tenants = sorted(added)
    if not tenants:
        return []
    params = {
        "tenants": tenants,
        "counts": [added[t] for t in tenants],
        "fresh_seconds": fresh_seconds,
    }
    return [(t, int(bound), bool(fresh)) for t, bound, _, fresh in executor.execute(_ADD, params)]


def recount(executor: Executor, tenant_id: str, *, limit: int) -> int:
    """Count the tenant's pending runs (up to `limit`) into its bound (its row is locked by
    `add` already); return the count."""
    return int(executor.execute(_RECOUNT, {"tenant": tenant_id, "limit": limit}).scalar_one())


def lower(executor: Executor, removed: Mapping[str, int]) -> None:
    """Take runs no longer pending (made skipped before commit) off their tenants' bounds."""
    tenants = sorted(t for t, n in removed.items() if n)
    if tenants:
        executor.execute(_LOWER, {"tenants": tenants, "counts": [removed[t] for t in tenants]})


# The latest of a dispatch batch's runs of one tenant, past its room, become skipped with a
# reason: among the batch's keys, the pending scheduled runs the batch inserted (created at
# the tick's instant: a fire whose run existed before kept it, and is not this batch's).
_SKIP_LATEST = text("""
    UPDATE runs SET status = 'skipped', finished_at = :now, error = :reason
    WHERE id IN (
        SELECT id FROM runs
        WHERE idempotency_key = ANY(CAST(:keys AS text[])) AND kind = 'scheduled'
          AND created_at = :now AND status = 'pending'
        ORDER BY scheduled_for DESC, id DESC
        LIMIT :count)
""")


def skip_latest(
    executor: Executor, keys: Sequence[str], *, count: int, now: datetime, reason: str
) -> None:
    """Make the `count` latest (by fire) of a dispatch batch's new pending runs with these
    idempotency keys skipped, with `reason` as their error."""
    params = {"keys": list(keys), "count": count, "now": now, "reason": reason}
    executor.execute(_SKIP_LATEST, params)
