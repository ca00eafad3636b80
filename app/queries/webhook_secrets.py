"""Every statement on `webhook_secrets`, one named function each (ORM rows)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.models import WebhookSecret


def lock_tenant(session: Session, tenant_id: str) -> None:
    """Serialise secret changes of one tenant until the transaction ends (tenants never wait
    on each other)."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"webhook_secrets:{tenant_id}"},
    )


def list_active(session: Session, tenant_id: str, *, now: datetime) -> list[WebhookSecret]:
    """The tenant's secrets active at `now`, newest first."""
    query = (
        select(WebhookSecret)
        .where(WebhookSecret.tenant_id == tenant_id, _active(now))
        .order_by(WebhookSecret.created_at.desc(), WebhookSecret.id.desc())
    )
    return list(session.scalars(query))


def has_current(session: Session, tenant_id: str) -> bool:
    """Whether the tenant has a current secret (no expiry, not revoked)."""
    query = select(WebhookSecret.id).where(WebhookSecret.tenant_id == tenant_id, _current())
    return session.scalar(query) is not None


def add(session: Session, secret: WebhookSecret) -> None:
    """Insert a new secret row (flushed)."""
    session.add(secret)
    session.flush()


def expire_current(session: Session, tenant_id: str, *, at: datetime) -> None:
    """Give the tenant's current secret an expiry at `at`."""
    session.execute(
        update(WebhookSecret)
        .where(WebhookSecret.tenant_id == tenant_id, _current())
        .values(expires_at=at)
    )


def expire(session: Session, secret_ids: Sequence[uuid.UUID], *, at: datetime) -> None:
    """Set the expiry of these secrets to `at`."""
    session.execute(
        update(WebhookSecret).where(WebhookSecret.id.in_(list(secret_ids))).values(expires_at=at)
    )


def revoke(session: Session, secret_id: uuid.UUID, *, scope: str | None, now: datetime) -> bool:
    """Revoke an active secret of `scope` (None: any tenant) now; False when none matched."""
    query = update(WebhookSecret).where(WebhookSecret.id == secret_id, _active(now))
    if scope is not None:
        query = query.where(WebhookSecret.tenant_id == scope)
    return session.execute(query.values(revoked_at=now)).rowcount == 1


_DELETE_DEAD = text("""
    DELETE FROM webhook_secrets WHERE id = ANY(ARRAY(  -- not IN: run_history.py says why
        SELECT id FROM webhook_secrets WHERE LEAST(revoked_at, expires_at) < :cutoff
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ))
""")


def delete_dead(conn: Connection, *, cutoff: datetime, batch: int) -> int:
    """Delete up to `batch` secrets revoked or expired before `cutoff`; return how many
    (LEAST skips a null: a secret is dead from the first of the two)."""
    return conn.execute(_DELETE_DEAD, {"cutoff": cutoff, "batch": batch}).rowcount


def _current():  # noqa: ANN202 - a SQL expression
    return and_(WebhookSecret.expires_at.is_(None), WebhookSecret.revoked_at.is_(None))


def _active(now: datetime):  # noqa: ANN202 - a SQL expression
    return and_(
        WebhookSecret.revoked_at.is_(None),
        or_(WebhookSecret.expires_at.is_(None), WebhookSecret.expires_at > now),
    )
