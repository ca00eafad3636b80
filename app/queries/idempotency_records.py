"""Every SQL statement on `idempotency_records`, one named function each."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

_DELETE_EXPIRED = text("""
    DELETE FROM idempotency_records WHERE id = ANY(ARRAY(  -- not IN: run_history.py says why
        SELECT id FROM idempotency_records WHERE created_at < :cutoff
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ))
""")


def insert(session: Session, tenant_id: str, key: str, request_hash: str) -> int | None:
    """Record a first request; return its id, or None when the (tenant, key) has a record."""
    return session.execute(
        text(
            "INSERT INTO idempotency_records (tenant_id, key, request_hash) "
            "VALUES (:tenant, :key, :hash) "
            "ON CONFLICT (tenant_id, key) DO NOTHING RETURNING id"
        ),
        {"tenant": tenant_id, "key": key, "hash": request_hash},
    ).scalar_one_or_none()


def find(session: Session, tenant_id: str, key: str) -> tuple[str, int | None, Any] | None:
    """(request_hash, response_status, response_body) of the (tenant, key), or None."""
    row = session.execute(
        text(
            "SELECT request_hash, response_status, response_body FROM idempotency_records "
            "WHERE tenant_id = :tenant AND key = :key"
        ),
        {"tenant": tenant_id, "key": key},
    ).one_or_none()
    return None if row is None else tuple(row)


def store_response(session: Session, record_id: int, *, status: int, body: str) -> None:
    """Store the response (status, JSON text) of the request the record guards."""
    session.execute(
        text(
            "UPDATE idempotency_records SET response_status = :status, "
            "response_body = CAST(:body AS jsonb) WHERE id = :id"
        ),
        {"status": status, "body": body, "id": record_id},
    )


def delete_expired(conn: Connection, *, cutoff: datetime, batch: int) -> int:
    """Delete up to `batch` records created before `cutoff`; return how many."""
    return conn.execute(_DELETE_EXPIRED, {"cutoff": cutoff, "batch": batch}).rowcount
