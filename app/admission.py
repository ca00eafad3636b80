"""Admission (DESIGN section 12): PostgreSQL is the queue, the broker carries only what can start.

A run waits `pending` in PostgreSQL until admission gives it a slot: at most `max_running`
runs in progress (`admitted` or `running`) overall and `max_per_tenant` per tenant. Only
then is it handed to the broker, so the broker holds about as many run messages as there
are free slots, and nothing is ever re-published for want of a slot.

Who goes next: tenants take turns (fewest in progress first, then the oldest waiting
fire), oldest fire first within a tenant. A run is eligible when it is pending, not
cancelled, its `not_before` (a retry's backoff) has passed on PostgreSQL's clock, and, for
a trigger that runs one at a time (overlap `skip` or `buffer_one`), no other run of the
trigger is in progress (a run between two attempts counts) and no older fire waits.

Why an advisory lock: SKIP LOCKED only keeps two admitters from taking the same row. Each
admitter counts the runs in progress in its own snapshot, which cannot see the other's
uncommitted admissions, so two of them would both fill the last slot (or a tenant's cap)
with different rows. `pg_advisory_xact_lock` serialises admissions; it runs as its own
statement so the counting statement after it takes a fresh READ COMMITTED snapshot that
sees every admission committed before the lock was granted.

Hand-off points: after a run's finish commits (the worker), after each dispatch batch
commits, on every tick (safety net), and after a manual run is created. Publishing comes
after the commit; a publish that is lost leaves an `admitted` run that the recovery sweep
returns to the queue once its lease (`slot_lease_seconds`) has passed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock(bigint) key of the one admission critical section: ASCII "ADMIT".
ADMISSION_LOCK = 0x41444D4954
# Candidate tenants probed per free slot: a tenant whose oldest waiting run is not eligible
# yet (a retry's backoff, a buffered fire) must not cost another tenant its turn.
CANDIDATE_FACTOR = 2

Publish = Callable[[Sequence[uuid.UUID]], Any]

# Overlap policies that run one fire of a trigger at a time. Under `skip` a fire that finds
# an earlier run in progress is skipped; under `buffer_one` the oldest such fire waits and
# the later ones are skipped. Runs under admission's lock, before admitting.
SKIP_OVERLAPPING = text("""
    UPDATE runs AS r
    SET status = 'skipped', finished_at = clock_timestamp(), worker = NULL,
        error = CASE t.overlap_policy
            WHEN 'skip' THEN 'an earlier run of the trigger was still in progress'
            ELSE 'a fire of the trigger was already waiting (overlap buffer_one)' END
    FROM triggers AS t
    WHERE t.overlap_policy IN ('skip', 'buffer_one')
      AND r.trigger_id = t.id
      AND r.status = 'pending' AND r.attempt = 0
      AND (
        (t.overlap_policy = 'skip' AND EXISTS (
            SELECT 1 FROM runs AS o
            WHERE o.trigger_id = r.trigger_id AND o.id <> r.id
              AND (o.status IN ('admitted', 'running')
                   OR (o.status = 'pending' AND o.attempt > 0))))
        OR (t.overlap_policy = 'buffer_one' AND (
            SELECT count(*) FROM runs AS o
            WHERE o.trigger_id = r.trigger_id AND o.id <> r.id
              AND (o.status IN ('admitted', 'running')
                   OR (o.status = 'pending'
                       AND (o.attempt > 0 OR (o.scheduled_for, o.id) < (r.scheduled_for, r.id))))
        ) >= 2)
      )
    RETURNING r.id
""")

# One statement: count, choose, lock, mark. Numbered in admit()'s docstring.
ADMIT = text("""
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
        SELECT GREATEST(CAST(:max_running AS bigint) - COALESCE(sum(n), 0), 0) AS free
        FROM busy
    ),
    candidates AS MATERIALIZED (
        SELECT w.tenant_id, COALESCE(b.n, 0) AS n, w.oldest
        FROM waiting AS w LEFT JOIN busy AS b USING (tenant_id)
        WHERE COALESCE(b.n, 0) < :max_per_tenant
        ORDER BY COALESCE(b.n, 0), w.oldest, w.tenant_id
        LIMIT (SELECT free FROM capacity) * :factor
    ),
    locked AS MATERIALIZED (
        SELECT c.tenant_id, c.n, x.id, x.scheduled_for
        FROM candidates AS c
        CROSS JOIN LATERAL (
            SELECT r.id, r.scheduled_for FROM runs AS r
            WHERE r.tenant_id = c.tenant_id AND r.status = 'pending'
              AND r.cancel_requested_at IS NULL
              AND (r.not_before IS NULL OR r.not_before <= now())
              AND (r.attempt > 0 OR NOT EXISTS (
                  SELECT 1 FROM triggers AS t
                  WHERE t.id = r.trigger_id AND t.overlap_policy IN ('skip', 'buffer_one')
                    AND EXISTS (
                      SELECT 1 FROM runs AS o
                      WHERE o.trigger_id = r.trigger_id AND o.id <> r.id
                        AND (o.status IN ('admitted', 'running')
                             OR (o.status = 'pending'
                                 AND (o.attempt > 0
                                      OR (o.scheduled_for, o.id) < (r.scheduled_for, r.id)))))))
            ORDER BY r.scheduled_for, r.id
            LIMIT LEAST((SELECT free FROM capacity), :max_per_tenant - c.n)
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
    )
    UPDATE runs AS r
    SET status = 'admitted', admitted_at = clock_timestamp(), enqueued_at = clock_timestamp()
    FROM chosen
    WHERE r.id = chosen.id AND r.status = 'pending'
    RETURNING r.id, r.tenant_id
""")

# `enqueued_at` is stamped with the admission (the publish follows its commit at once): one
# transaction less per hand-off. A publish that fails takes the stamp back with the slot.
UNADMIT = text(
    "UPDATE runs SET status = 'pending', admitted_at = NULL, enqueued_at = NULL "
    "WHERE id = ANY(:ids) AND status = 'admitted'"
)


@dataclass(frozen=True)
class Limits:
    max_running: int
    max_per_tenant: int


@dataclass
class HandOff:
    """What one hand-off did: runs admitted, published, skipped by their overlap policy."""

    admitted: list[uuid.UUID]
    skipped: int = 0
    published: int = 0
    broker_error: str | None = None


def admit(engine: Engine, limits: Limits) -> tuple[list[uuid.UUID], int]:
    """Admit as many waiting runs as there are free slots; return (admitted ids, skipped).

    One READ COMMITTED transaction:
    1. `pg_advisory_xact_lock`, as its own statement (see the module docstring).
    2. Overlap: pending fires of `skip` / `buffer_one` triggers that may never run become
       `skipped`.
    3. One statement: count runs in progress per tenant (free = max_running - total); pick
       candidate tenants below their cap, fewest in progress first, then oldest waiting
       fire; lock each one's oldest eligible runs (LATERAL, SKIP LOCKED, MATERIALIZED so
       the planner cannot run the locking subquery twice); rank them by (in progress +
       place in the tenant's line, fire time, id); keep the first `free`; mark them
       `admitted`.
    """
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADMISSION_LOCK})
        skipped = conn.execute(SKIP_OVERLAPPING).rowcount
        rows = conn.execute(
            ADMIT,
            {
                "max_running": limits.max_running,
                "max_per_tenant": limits.max_per_tenant,
                "factor": CANDIDATE_FACTOR,
            },
        ).all()
    return [row.id for row in rows], skipped


def hand_off(engine: Engine, limits: Limits, publish: Publish) -> HandOff:
    """Admit into the free slots, then publish the admitted runs (task id = run id).

    A publish that fails is logged and reported, never raised: the runs go back to the
    queue at once (a message that did get through then finds its run not admitted and is
    dropped). A process that dies before publishing leaves `admitted` runs, which the
    recovery sweep returns to the queue once their lease has passed.
    """
    admitted, skipped = admit(engine, limits)
    result = HandOff(admitted=admitted, skipped=skipped)
    if skipped:
        logger.info("overlapping fires skipped", extra={"event": "runs_skipped_overlap",
                                                        "count": skipped})  # fmt: skip
    if not admitted:
        return result
    try:
        publish(admitted)
    except Exception as exc:
        result.broker_error = f"{type(exc).__name__}: {exc}"[:300]
        logger.error(
            "broker unavailable; admitted runs go back to the queue",
            extra={"event": "enqueue_failed", "runs": len(admitted)},
            exc_info=True,
        )
        with engine.begin() as conn:
            conn.execute(UNADMIT, {"ids": admitted})
        return result
    result.published = len(admitted)
    logger.debug("runs admitted", extra={"event": "runs_admitted", "count": len(admitted)})
    return result


@dataclass(frozen=True)
class Backlog:
    """The waiting room as /healthz and /metrics see it."""

    waiting: int  # pending runs that could start now (due, not cancelled) but have no slot
    oldest_wait_seconds: float  # how long the longest-waiting of them has waited
    in_use: int  # slots held (admitted + running)


BACKLOG = text("""
    SELECT
        (SELECT count(*) FROM runs
         WHERE status = 'pending' AND (not_before IS NULL OR not_before <= now())),
        (SELECT COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(
                    GREATEST(created_at, COALESCE(not_before, created_at)))), 0)
         FROM runs
         WHERE status = 'pending' AND (not_before IS NULL OR not_before <= now())),
        (SELECT count(*) FROM runs WHERE status IN ('admitted', 'running'))
""")

WAITING_BY_TENANT = text("""
    SELECT tenant_id, count(*) AS waiting FROM runs
    WHERE status = 'pending' AND (not_before IS NULL OR not_before <= now())
    GROUP BY tenant_id ORDER BY waiting DESC, tenant_id LIMIT :top
""")


def backlog(conn: Any) -> Backlog:
    """How many runs wait for a slot and for how long (PostgreSQL's clock)."""
    waiting, oldest, in_use = conn.execute(BACKLOG).one()
    return Backlog(waiting=int(waiting), oldest_wait_seconds=float(oldest), in_use=int(in_use))


def waiting_by_tenant(conn: Any, *, top: int) -> list[tuple[str, int]]:
    """The `top` tenants with the most runs waiting for a slot, most first."""
    return [(tenant, int(n)) for tenant, n in conn.execute(WAITING_BY_TENANT, {"top": top})]
