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
WALK_SLACK steps. Fires at many distinct instants ahead of everyone else's, of tenants met
already (a backfill, a long catch-up), could otherwise make every round step through them;
past the budget, the round lists every waiting tenant and probes each one's oldest first
attempt.

The indexes are built CONCURRENTLY: they read all of `runs`, history included, and a deploy
must not stop dispatch and admission from writing to the table meanwhile. Outside the
migration's transaction, so IF (NOT) EXISTS: a migration run that fails after it has
committed an index's creation or removal can be run again.

The rest of the function is 0008's, read from that migration and changed in two places,
each checked to be found (the second: see _OLD_AHEAD).
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

# Steps the walk may take beyond the tenants it needs and the tenants in progress (a few
# microseconds each here), before a round lists every waiting tenant instead.
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
"""

# The one-at-a-time test of the admitting statement, "another fire of the trigger waits
# ahead of this one", was an EXISTS. With ix_runs_pending_fire in place, a plan made before
# the table's first ANALYZE ran it as a hashed subplan over every waiting run, for every
# candidate run (3 s a round with 20,000 waiting), and with that fenced off (OFFSET 0), as
# a scan of ix_runs_pending_fire filtered on the trigger. As the first such fire in the
# trigger's line (ORDER BY ... LIMIT 1, the order of ix_runs_pending_trigger), it is a
# probe of that index whatever the statistics.
_OLD_AHEAD = """                             OR EXISTS (
                               SELECT 1 FROM runs AS o
                               WHERE o.trigger_id = t.id AND o.status = 'pending'
                                 AND o.id <> r.id
                                 AND (o.attempt > 0
                                      OR (o.scheduled_for, o.id) < (r.scheduled_for, r.id))))))"""
_NEW_AHEAD = """                             OR (
                               SELECT o.id FROM runs AS o
                               WHERE o.trigger_id = t.id AND o.status = 'pending'
                                 AND o.id <> r.id
                                 AND (o.attempt > 0
                                      OR (o.scheduled_for, o.id) < (r.scheduled_for, r.id))
                               ORDER BY o.scheduled_for, o.id LIMIT 1) IS NOT NULL)))"""

INDEXES = (
    ("ix_runs_pending_fire", ["scheduled_for", "tenant_id"],
     "status = 'pending' AND not_before IS NULL"),
    ("ix_runs_pending_retry", ["not_before"], "status = 'pending' AND not_before IS NOT NULL"),
)  # fmt: skip


def _migration(name: str) -> ModuleType:
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def admission_round() -> str:
    """0008's definition with this migration's two changes."""
    text = _migration("0008_admission_round_kept_plan.py").admission_round()
    for old, replacement in ((_OLD, _NEW), (_OLD_AHEAD, _NEW_AHEAD)):
        if text.count(old) != 1:
            raise RuntimeError(f"0008's definition no longer has: {old.strip()[:60]!r}")
        text = text.replace(old, replacement)
    return text


def _define(definition: str) -> None:
    """Replace the function, with 0009's setting (CREATE OR REPLACE drops what ALTER set)."""
    op.execute(definition)
    function = _migration("0009_admission_plain_index_scans.py").FUNCTIONS[0]
    op.execute(f"ALTER FUNCTION {function} SET enable_bitmapscan = off")


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
    _define(admission_round())


def downgrade() -> None:
    _define(_migration("0008_admission_round_kept_plan.py").admission_round())
    with op.get_context().autocommit_block():
        for name, _, _ in INDEXES:
            op.drop_index(name, table_name="runs", postgresql_concurrently=True, if_exists=True)
