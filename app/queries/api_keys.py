"""Every statement on `api_keys`, one named function each (ORM rows: the service reads them)."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.models import ApiKey


def add(session: Session, row: ApiKey) -> None:
    """Insert a new key row (flushed: a duplicate fails here, not at commit)."""
    session.add(row)
    session.flush()


def list_all(session: Session, *, tenant_id: str | None = None) -> list[ApiKey]:
    """Every key (revoked ones too), oldest first, optionally of one tenant."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    return list(session.scalars(query))


def find_active_by_hash(session: Session, key_hash: str) -> ApiKey | None:
    """The active key with this hash, or None."""
    query = select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    return session.scalars(query).one_or_none()


def find_active_by_id(session: Session, key_id: uuid.UUID) -> ApiKey | None:
    """The unrevoked key with this id, or None."""
    query = select(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
    return session.scalars(query).one_or_none()


def find_active_by_prefix_or_id(session: Session, value: str) -> list[ApiKey]:
    """Active keys whose display prefix, or id, is `value`."""
    condition = ApiKey.prefix == value
    with contextlib.suppress(ValueError):  # not a uuid: match the prefix only
        condition = or_(condition, ApiKey.id == uuid.UUID(value))
    query = select(ApiKey).where(condition, ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))


def has_active(session: Session, tenant_id: str) -> bool:
    """Whether the tenant has an active key."""
    query = select(ApiKey.id).where(ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None))
    return session.scalar(query.limit(1)) is not None


def mark_revoked(session: Session, key_id: uuid.UUID, *, now: datetime) -> None:
    """Stamp `revoked_at` on the key unless it is already revoked."""
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def bump_console_epoch(session: Session, key_id: uuid.UUID) -> None:
    """Add one to the key's console epoch: every console session of the key ends."""
    session.execute(
        update(ApiKey).where(ApiKey.id == key_id).values(console_epoch=ApiKey.console_epoch + 1)
    )
