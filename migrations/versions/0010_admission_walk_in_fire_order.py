"""runs: an admission round finds its candidate tenants by a walk in fire order

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

A round chooses among the tenants with a waiting run: fewest in progress first, then the
oldest waiting fire, and it needs only `free x factor` of them. It used to list every
waiting tenant first (a loose index scan, one probe per tenant) and sort them: 1 ms a round
with 10 tenants waiting, 5 ms with 1,000, 39 ms with 10,000. Every finishing run calls a
round, and the round holds admission's lock, so a burst across many tenants (a product
whose 10,000 tenants each have a job at midnight) would have capped the whole service at a
few dozen rounds a second.

The tenants that come first are those with nothing in progress, in the order of their
oldest waiting fire; there are at most `max_running` others, the tenants in progress. So
the round now walks the waiting room in fire order on the new index (scheduled_for,
tenant_id) of pending runs, one probe per (fire time, tenant) pair: it jumps past all of a
tenant's fires at one instant at once, passes tenants in progress and tenants met already,
and stops at the `free x factor`-th new tenant. The tenants in progress get one probe
each for their oldest fire. The candidates, and so the admissions, are exactly the ones the
list of every tenant gave (tests/integration/dispatch/test_admission_many_tenants.py checks
this against a model of the rule).

The walk has a budget: the tenants it needs, plus the tenants in progress, plus
WALK_SLACK pairs. A tenant in progress whose fires lie at hundreds of distinct instants
ahead of everyone else's (a backfill, a long catch-up) could otherwise make every round
step through them; past the budget, the round lists every waiting tenant as before.

The rest of the function is 0008's, read from that migration and changed in one place,
checked to be found.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (fire time, tenant) pairs the walk may step through beyond the tenants it needs and the
# tenants in progress (0.01 ms a pair or less here), before a round lists every tenant.
WALK_SLACK = 256

_OLD = """        WITH RECURSIVE waiting (tenant_id, oldest) AS (
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
"""

_NEW = f"""        WITH RECURSIVE busy AS (
            SELECT tenant_id, count(*) AS n FROM runs
            WHERE status IN ('admitted', 'running') GROUP BY tenant_id
        ),
        capacity AS (
            SELECT free, free * p_factor AS wanted, free * p_factor + tenants + {WALK_SLACK}
                       AS budget, busy_ids
            FROM (SELECT GREATEST(p_max_running - COALESCE(sum(n), 0), 0) AS free,
                         count(*) AS tenants,
                         COALESCE(array_agg(CAST(tenant_id AS text)), '{{}}') AS busy_ids
                  FROM busy) AS b
        ),
        -- Every tenant's oldest waiting fire, tenants with nothing in progress first met
        -- first: the waiting room in fire order, one index probe per (fire time, tenant)
        -- pair (a skip scan of ix_runs_pending_fire), until `wanted` tenants with nothing
        -- in progress have been met; the tenants in progress met on the way come with them
        -- (any one not met would come after all of those anyway).
        walk (at, tenant_id, first, found, seen, steps) AS (
            (SELECT r.scheduled_for, r.tenant_id, true,
                    CAST(CAST(r.tenant_id AS text) <> ALL (
                             CAST((SELECT busy_ids FROM capacity) AS text[])) AS integer),
                    ARRAY[CAST(r.tenant_id AS text)], 1
             FROM runs AS r WHERE r.status = 'pending'
             ORDER BY r.scheduled_for, r.tenant_id LIMIT 1)
            UNION ALL
            SELECT nxt.scheduled_for, nxt.tenant_id, f.first,
                   w.found + CAST(f.first AND CAST(nxt.tenant_id AS text) <> ALL (
                                  CAST((SELECT busy_ids FROM capacity) AS text[])) AS integer),
                   CASE WHEN f.first THEN w.seen || CAST(nxt.tenant_id AS text) ELSE w.seen END,
                   w.steps + 1
            FROM walk AS w
            CROSS JOIN LATERAL (
                SELECT r.scheduled_for, r.tenant_id FROM runs AS r
                WHERE r.status = 'pending'
                  AND (r.scheduled_for, r.tenant_id) > (w.at, w.tenant_id)
                ORDER BY r.scheduled_for, r.tenant_id LIMIT 1) AS nxt
            CROSS JOIN LATERAL (
                SELECT CAST(nxt.tenant_id AS text) <> ALL (w.seen) AS first) AS f
            WHERE w.found < (SELECT wanted FROM capacity)
              AND w.steps < (SELECT budget FROM capacity)
        ),
        -- The walk is the answer when it met `wanted` tenants with nothing in progress, or
        -- every waiting fire.
        complete AS (
            SELECT COALESCE(max(found) >= (SELECT wanted FROM capacity)
                            OR max(steps) < (SELECT budget FROM capacity), true) AS yes
            FROM walk
        ),
        -- Past its budget: every waiting tenant, one index probe each (a loose index scan).
        everyone (tenant_id, oldest) AS (
            (SELECT tenant_id, scheduled_for FROM runs
             WHERE status = 'pending' AND NOT (SELECT yes FROM complete)
             ORDER BY tenant_id, scheduled_for, id LIMIT 1)
            UNION ALL
            SELECT nxt.tenant_id, nxt.scheduled_for FROM everyone AS w
            CROSS JOIN LATERAL (
                SELECT tenant_id, scheduled_for FROM runs
                WHERE status = 'pending' AND tenant_id > w.tenant_id
                ORDER BY tenant_id, scheduled_for, id LIMIT 1) AS nxt
        ),
        waiting (tenant_id, oldest) AS (
            SELECT tenant_id, at FROM walk WHERE first AND (SELECT yes FROM complete)
            UNION ALL
            SELECT tenant_id, oldest FROM everyone
        ),
"""

INDEX = "ix_runs_pending_fire"


def _migration(name: str) -> ModuleType:
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def admission_round() -> str:
    """0008's definition with this migration's change."""
    text = _migration("0008_admission_round_kept_plan.py").admission_round()
    if text.count(_OLD) != 1:
        raise RuntimeError("0008's definition no longer lists the waiting tenants as it did")
    return text.replace(_OLD, _NEW)


def _define(definition: str) -> None:
    """Replace the function, with 0009's setting (CREATE OR REPLACE drops what ALTER set)."""
    op.execute(definition)
    function = _migration("0009_admission_plain_index_scans.py").FUNCTIONS[0]
    op.execute(f"ALTER FUNCTION {function} SET enable_bitmapscan = off")


def upgrade() -> None:
    op.create_index(
        INDEX,
        "runs",
        ["scheduled_for", "tenant_id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    _define(admission_round())


def downgrade() -> None:
    _define(_migration("0008_admission_round_kept_plan.py").admission_round())
    op.drop_index(INDEX, table_name="runs")
