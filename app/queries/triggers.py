"""Every SQL statement on the `triggers` table, one named function each.

Dispatch and reconciliation claim rows with `FOR UPDATE SKIP LOCKED` and write their new
`next_run_at` back in one round trip per batch. The service (app/triggers.py)
reads and writes ORM rows: its statements here return `Trigger` objects the session tracks.

`next_run_at` is when the next fire is due (jitter included): the claim and its index use it;
planning starts from `next_fire_at`, the nominal fire (docs/design.md section 11).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Result,
    Select,
    TextClause,
    func,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.orm import Session, aliased

from app import queries
from app.models import Run, Trigger
from app.schedule.planner import Advance, ClaimedTrigger

# pg_advisory_xact_lock(int, int) namespace for "trigger count of this tenant": ASCII "TCAP".
TENANT_CAP_LOCK_NAMESPACE = 0x54434150

# app.schedule.planner.ClaimedTrigger's fields, in its order. The id comes as text: the
# batch writes it back as text, and 100,000 uuid.UUID objects made and turned back into
# strings cost a tenth of a burst's planning.
_CLAIMED_COLUMNS = """
    CAST(t.id AS text) AS id, t.tenant_id, t.cron, t.timezone, t.run_at, t.start_at,
    t.end_at, t.interval_seconds, t.anchor_at, t.jitter_seconds,
    COALESCE(t.next_fire_at, t.next_run_at) AS next_fire_at, t.next_run_at,
    t.catchup_policy, t.catchup_window_seconds
"""
_CLAIM_DUE = text(f"""
    SELECT {_CLAIMED_COLUMNS}
    FROM triggers AS t
    WHERE t.enabled AND t.next_run_at <= :now
    ORDER BY t.next_run_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
""")
# How many triggers each tenant has due, and its earliest: a tick's fair shares.
_DUE_BY_TENANT = text("""
    SELECT tenant_id, count(*), min(next_run_at)
    FROM triggers
    WHERE enabled AND next_run_at <= :now
    GROUP BY tenant_id
""")
# Each tenant's share of a batch, its earliest due triggers first (ix_triggers_tenant_due).
_CLAIM_SHARES = text(f"""
    SELECT {_CLAIMED_COLUMNS}
    FROM unnest(CAST(:tenants AS text[]), CAST(:counts AS integer[])) AS s (tenant_id, n)
    CROSS JOIN LATERAL (
        SELECT * FROM triggers
        WHERE tenant_id = s.tenant_id AND enabled AND next_run_at <= :now
        ORDER BY next_run_at
        LIMIT s.n
        FOR UPDATE SKIP LOCKED
    ) AS t
""")
# Batch writes: each column one array parameter (queries.array_literal).
_ADVANCE = text("""
    UPDATE triggers AS t
    SET next_run_at = v.next_run_at, next_fire_at = v.next_fire_at,
        last_scheduled_for = COALESCE(v.last, t.last_scheduled_for), enabled = v.enabled
    FROM unnest(CAST(:ids AS uuid[]), CAST(:next_run_at AS timestamptz[]),
                CAST(:next_fire_at AS timestamptz[]), CAST(:last AS timestamptz[]),
                CAST(:enabled AS boolean[])) AS v (id, next_run_at, next_fire_at, last, enabled)
    WHERE t.id = v.id
""")
# Enabled triggers that should have a next fire but have none (a bulk path, a hand edit, a
# restore). Not those past end_at, nor dispatched one-time ones.
_CLAIM_UNSCHEDULED = text("""
    SELECT id, tenant_id, cron, timezone, run_at, start_at, end_at, interval_seconds,
           anchor_at, jitter_seconds
    FROM triggers
    WHERE enabled AND next_run_at IS NULL
      AND (end_at IS NULL OR end_at > :now)
      AND (run_at IS NULL OR last_scheduled_for IS NULL)
    ORDER BY id
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
""")
_SET_NEXT = text("""
    UPDATE triggers AS t SET next_run_at = v.next_run_at, next_fire_at = v.next_fire_at
    FROM unnest(CAST(:ids AS uuid[]), CAST(:next_run_at AS timestamptz[]),
                CAST(:next_fire_at AS timestamptz[])) AS v (id, next_run_at, next_fire_at)
    WHERE t.id = v.id
""")


def claim_due(conn: Connection, *, now: datetime, batch: int) -> list[ClaimedTrigger]:
    """Lock up to `batch` enabled triggers due at `now`, most overdue first (SKIP LOCKED)."""
    return _claimed(conn.execute(_CLAIM_DUE, {"now": now, "batch": batch}))


def _claimed(result: Result) -> list[ClaimedTrigger]:
    return list(map(ClaimedTrigger._make, result))


def due_by_tenant(conn: Connection, *, now: datetime) -> list[tuple[str, int, datetime]]:
    """(tenant, how many enabled triggers it has due at `now`, the earliest due) each."""
    return [
        (tenant, int(n), first) for tenant, n, first in conn.execute(_DUE_BY_TENANT, {"now": now})
    ]


def claim_shares(
    conn: Connection, *, now: datetime, shares: Sequence[tuple[str, int]]
) -> list[ClaimedTrigger]:
    """Lock, per (tenant, count) share, up to `count` of the tenant's triggers due at `now`,
    earliest first (SKIP LOCKED: a share may come back short); rows as claim_due's."""
    if not shares:
        return []
    tenants, counts = zip(*shares, strict=True)
    params = {"now": now, "tenants": list(tenants), "counts": list(counts)}
    return _claimed(conn.execute(_CLAIM_SHARES, params))


def advance(conn: Connection, advances: Sequence[Advance]) -> None:
    """Write each trigger's advance, in one round trip."""
    _write_columns(
        conn, _ADVANCE, ("ids", "next_run_at", "next_fire_at", "last", "enabled"), advances
    )


def claim_unscheduled(conn: Connection, *, now: datetime, batch: int) -> list[Any]:
    """Lock up to `batch` enabled triggers that lack a next fire but should have one; return
    rows of their id, tenant_id and schedule columns (by the model's names)."""
    return conn.execute(_CLAIM_UNSCHEDULED, {"now": now, "batch": batch}).all()


def set_next(conn: Connection, updates: Sequence[tuple]) -> None:
    """Write (id, next_run_at, next_fire_at) per trigger, in one round trip."""
    _write_columns(conn, _SET_NEXT, ("ids", "next_run_at", "next_fire_at"), updates)


def _write_columns(
    conn: Connection, statement: TextClause, names: Sequence[str], rows: Sequence[tuple]
) -> None:
    if rows:
        columns = zip(*rows, strict=True)
        conn.execute(
            statement,
            {
                name: queries.array_literal(column)
                for name, column in zip(names, columns, strict=True)
            },
        )


def count_due(session: Any, *, now: datetime) -> int:
    """How many enabled triggers are due at `now` (a metric)."""
    return session.execute(
        text(
            "SELECT count(*) FROM triggers "
            "WHERE enabled AND next_run_at IS NOT NULL AND next_run_at <= :now"
        ),
        {"now": now},
    ).scalar_one()


def lock_tenant_count(session: Session, tenant_id: str) -> None:
    """Serialise trigger creation for one tenant until the transaction ends."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(:ns, hashtext(:tenant))"),
        {"ns": TENANT_CAP_LOCK_NAMESPACE, "tenant": tenant_id},
    )


def count_for_tenant(session: Session, tenant_id: str) -> int:
    """How many triggers the tenant has."""
    return session.scalar(select(func.count()).where(Trigger.tenant_id == tenant_id))


def get_with_last_run(
    session: Session, trigger_id: uuid.UUID, *, scope: str | None
) -> tuple[Trigger, Run | None] | None:
    """The trigger visible to `scope` with its most recent run; None when not visible."""
    row = session.execute(_with_last_run(_visible(select(Trigger), scope, trigger_id))).first()
    return None if row is None else (row[0], row[1])


def page_with_last_run(
    session: Session,
    *,
    scope: str | None,
    enabled: bool | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[tuple[Trigger, Run | None]]:
    """Up to `limit` triggers oldest first after the keyset cursor, each with its last run.

    The page is cut first and only its rows get the LATERAL last-run lookup, so the cost
    is that of `limit` rows whatever the planner thinks of the tenant's size.
    """
    page = select(Trigger).order_by(Trigger.created_at, Trigger.id).limit(limit)
    if scope is not None:
        page = page.where(Trigger.tenant_id == scope)
    if enabled is not None:
        page = page.where(Trigger.enabled.is_(enabled))
    if after is not None:
        page = page.where(tuple_(Trigger.created_at, Trigger.id) > tuple_(*after))
    trigger = aliased(Trigger, page.subquery("page"))
    query = _with_last_run(select(trigger), trigger).order_by(trigger.created_at, trigger.id)
    return [(row[0], row[1]) for row in session.execute(query)]


def lock(session: Session, trigger_id: uuid.UUID, *, scope: str | None) -> Trigger | None:
    """The trigger visible to `scope`, locked FOR UPDATE and refreshed; None when not visible."""
    query = _visible(select(Trigger), scope, trigger_id).with_for_update(of=Trigger)
    return session.scalars(query.execution_options(populate_existing=True)).one_or_none()


def exists(session: Session, trigger_id: uuid.UUID, *, scope: str | None) -> bool:
    """Whether the trigger exists and is visible to `scope`."""
    query = _visible(select(Trigger.id), scope, trigger_id).limit(1)
    return session.execute(query).first() is not None


def find_by_name(session: Session, tenant_id: str, name: str) -> Trigger | None:
    """The tenant's trigger with this name (the first if several), or None."""
    query = select(Trigger).where(Trigger.tenant_id == tenant_id, Trigger.name == name)
    return session.scalars(query.limit(1)).first()


def add(session: Session, trigger: Trigger) -> None:
    """Insert a new trigger row (flushed, so its id is usable in the same transaction)."""
    session.add(trigger)
    session.flush()


def delete(session: Session, trigger: Trigger) -> None:
    """Delete a trigger row (flushed). Its runs stay: the runs table has no foreign key."""
    session.delete(trigger)
    session.flush()


def _visible(query: Select, scope: str | None, trigger_id: uuid.UUID) -> Select:
    query = query.where(Trigger.id == trigger_id)
    return query if scope is None else query.where(Trigger.tenant_id == scope)


def _with_last_run(query: Select, trigger: Any = Trigger) -> Select:
    """Add each trigger's most recent run with a LATERAL join (one query, no N+1)."""
    latest = (
        select(Run)
        .where(Run.trigger_id == trigger.id)
        .order_by(Run.created_at.desc(), Run.id.desc())
        .limit(1)
        .lateral("last_run")
    )
    return query.add_columns(aliased(Run, latest)).outerjoin(latest, true())
